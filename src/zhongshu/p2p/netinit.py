"""The files ``zhongshu network init`` creates, and reading a node's p2p settings back from them.

``init_network(DIR, N, suite, P, now_ms, hosts=...)`` writes::

    DIR/ca/ca.pem            the network CA certificate
    DIR/ca/ca_key.pem        its private key (0600); it never goes into a node home
    DIR/node{i}/node_key.pem validator key of the chain's suite (0600)
    DIR/node{i}/tls_key.pem  ECDSA P-256 TLS key (0600)
    DIR/node{i}/tls_cert.pem TLS certificate from the network CA naming the validator key and host
    DIR/node{i}/ca.pem       the network CA certificate (the only TLS trust anchor)
    DIR/node{i}/genesis.json the same file in every home: chain "main", validators node0.. power 1
    DIR/node{i}/config.json  where the API and the p2p listener bind, and the peers to dial

Addresses (``plan_addresses``): node i has a *host*, the address its peers dial (``hosts[i]``,
127.0.0.1 for every node when no hosts are given). The k-th node on a host (k = 0, 1, ...) gets
the API port P+k and the p2p port P+100+k, so nodes on different hosts all use P and P+100, and
N nodes on 127.0.0.1 get P+i and P+100+i. A node binds its host when that is an IP address; a
node named by DNS, or every node with ``listen="any"``, binds all addresses (0.0.0.0, or :: for
an IPv6 host). The API binds where the p2p listener does, or 127.0.0.1 with ``api_local``.

A home stays a valid single-node home (``api_host``/``api_port`` in config.json, genesis.json and
node_key.pem at the root); the p2p keys are additions.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zhongshu.crypto import CryptoError, get_suite, load_private_key_pem
from zhongshu.ledger.genesis import load_genesis, save_genesis
from zhongshu.ledger.types import ChainParams, Genesis, Validator, ValidatorSet
from zhongshu.p2p.config import compute_max_frame
from zhongshu.p2p.pki import NetworkCA, TLSFiles, create_network_ca, generate_tls_key, issue_node_cert
from zhongshu.p2p.transport import PeerAddress, TransportConfig

GENESIS_FILE = "genesis.json"
CONFIG_FILE = "config.json"
NODE_KEY_FILE = "node_key.pem"
TLS_KEY_FILE = "tls_key.pem"
TLS_CERT_FILE = "tls_cert.pem"
CA_CERT_FILE = "ca.pem"
CA_DIR = "ca"
CA_KEY_FILE = "ca_key.pem"
HOST = "127.0.0.1"
P2P_PORT_OFFSET = 100
"""The k-th node on a host listens for peers on base_port + P2P_PORT_OFFSET + k (API: base_port + k)."""
MAX_NODES = P2P_PORT_OFFSET
"""More nodes on one host would make API and p2p ports collide."""
LISTEN_ADDRESS = "address"
"""``listen``: each node binds the IP address peers dial (all addresses for a DNS name)."""
LISTEN_ANY = "any"
"""``listen``: every node binds all addresses (machines behind NAT, addresses not on an interface)."""
LOOPBACK_API = "127.0.0.1"
"""Where the API binds with ``api_local``."""
MAX_DNS_NAME = 253
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class NetworkInitError(ValueError):
    """Arguments ``network init`` cannot honour, or files it must not overwrite."""


class P2PConfigError(ValueError):
    """A node home whose p2p files are missing or inconsistent."""


@dataclass(frozen=True)
class NodeAddress:
    """Where one node of a network is reached and what it binds."""

    host: str
    """The address its peers dial and its certificate names: an IP address or a DNS name."""
    p2p_bind: str
    """The address the p2p listener binds (config.json ``p2p_host``)."""
    p2p_port: int
    api_bind: str
    """The address the API binds (config.json ``api_host``)."""
    api_port: int

    def api_url(self) -> str:
        """The API's base URL as a client reaches it (the host when the API binds all addresses)."""
        host = self.host if self.api_bind in ("0.0.0.0", "::") else self.api_bind
        return f"http://{_endpoint(host, self.api_port)}"

    def p2p_endpoint(self) -> str:
        """``host:port`` its peers dial (an IPv6 host in brackets)."""
        return _endpoint(self.host, self.p2p_port)


def _endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_host(text: str) -> str:
    """The canonical form of one ``--hosts`` entry: an IP address, or a DNS name in lower case.

    Rule: an IPv4 or IPv6 address peers can dial (not unspecified, multicast or scoped), or a DNS
    name of letters, digits and hyphens (labels 1..63, at most 253 characters) whose last label is
    not all digits, so a mistyped IPv4 address such as 10.0.0.256 is not taken for a name.
    Anything else raises NetworkInitError.
    """
    entry = text.strip()
    # An empty entry (",," or a trailing comma) names no node.
    if not entry:
        raise NetworkInitError("--hosts has an empty entry; give one address per node, comma-separated")
    try:
        ip = ipaddress.ip_address(entry)
    except ValueError:
        ip = None
    if ip is not None:
        # Peers cannot dial the wildcard address.
        if ip.is_unspecified:
            raise NetworkInitError(
                f"--hosts entry {entry} is the unspecified address; give the address peers dial "
                "(--listen any makes a node bind all addresses)"
            )
        # A multicast address is not one machine.
        if ip.is_multicast:
            raise NetworkInitError(f"--hosts entry {entry} is a multicast address, not a machine's")
        # A scope (fe80::1%eth0) is local to one machine and cannot go into a certificate.
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            raise NetworkInitError(f"--hosts entry {entry} has a scope; use a global or ULA IPv6 address")
        return str(ip)
    name = entry.lower().removesuffix(".")
    labels = name.split(".")
    # A DNS name: valid labels, bounded length, and not something that only looks like an IPv4 address.
    if (
        len(name) > MAX_DNS_NAME
        or not all(_DNS_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise NetworkInitError(f"--hosts entry {entry!r} is not an IPv4 or IPv6 address or a DNS name")
    return name


def _bind_of(host: str, listen: str) -> str:
    """What a node dialled at ``host`` binds: the IP address itself, or all addresses.

    A DNS name binds all addresses: on the machine itself the name may resolve elsewhere (Debian's
    /etc/hosts maps the machine's own name to 127.0.1.1).
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "0.0.0.0"
    if listen == LISTEN_ANY:
        return "::" if ":" in host else "0.0.0.0"
    return host


def plan_addresses(
    nodes: int,
    base_port: int,
    hosts: Sequence[str] | None = None,
    *,
    listen: str = LISTEN_ADDRESS,
    api_local: bool = False,
) -> list[NodeAddress]:
    """Where each of ``nodes`` nodes is dialled and what it binds (rules in the module docstring).

    Refuses (NetworkInitError) a count of hosts other than ``nodes``, a bad host (``parse_host``),
    an unknown ``listen``, more than 100 nodes, and ports outside 1..65535.
    """
    # One node at least; past 100 on one host the API and p2p port ranges would overlap.
    if not 1 <= nodes <= MAX_NODES:
        raise NetworkInitError(f"--nodes must be between 1 and {MAX_NODES}, not {nodes}")
    # Exactly one host per node.
    if hosts is not None and len(hosts) != nodes:
        raise NetworkInitError(
            f"--hosts names {len(hosts)} addresses for {nodes} nodes; give exactly one per node"
        )
    # Only the two documented bind rules.
    if listen not in (LISTEN_ADDRESS, LISTEN_ANY):
        raise NetworkInitError(f"--listen must be {LISTEN_ADDRESS} or {LISTEN_ANY}, not {listen!r}")
    names = [parse_host(h) for h in hosts] if hosts is not None else [HOST] * nodes
    seen: Counter[str] = Counter()
    slots = []
    for host in names:
        slots.append(seen[host])
        seen[host] += 1
    top = P2P_PORT_OFFSET + max(slots)
    # Every API and p2p port must be a valid TCP port.
    if base_port < 1 or base_port + top > 65535:
        raise NetworkInitError(f"--base-port {base_port} does not leave room for ports up to base+{top}")
    addresses = []
    for host, k in zip(names, slots, strict=True):
        bind = _bind_of(host, listen)
        api_bind = LOOPBACK_API if api_local else bind
        addresses.append(NodeAddress(host, bind, base_port + P2P_PORT_OFFSET + k, api_bind, base_port + k))
    return addresses


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_new(path: Path, data: bytes) -> None:
    with path.open("xb") as f:
        f.write(data)


def init_network(
    out: Path,
    nodes: int,
    suite: str,
    base_port: int,
    now_ms: int,
    *,
    chain_id: str = "main",
    hosts: Sequence[str] | None = None,
    listen: str = LISTEN_ADDRESS,
    api_local: bool = False,
) -> list[Path]:
    """Create a CA and ``nodes`` node homes in ``out``; return the homes in order.

    ``hosts``, ``listen`` and ``api_local`` place the nodes (``plan_addresses``); without hosts
    every node is on 127.0.0.1 with ports P+i and P+100+i. Refuses (NetworkInitError) what
    ``plan_addresses`` refuses, and when ``out/ca`` or any ``out/node{i}`` exists. ``now_ms`` is
    the genesis time and the certificates' issue time.
    """
    addresses = plan_addresses(nodes, base_port, hosts, listen=listen, api_local=api_local)
    chain_suite = get_suite(suite)
    homes = [out / f"node{i}" for i in range(nodes)]
    # Never overwrite an existing network (its keys could not be recovered).
    for path in [out / CA_DIR, *homes]:
        if path.exists():
            raise NetworkInitError(f"{path} already exists; choose another --out or remove it")

    # A random tag tells the CAs of different networks apart by name, not only by key.
    ca_name = f"zhongshu {chain_id} network CA {secrets.token_hex(4)}"
    ca_cert_pem, ca_key_pem = create_network_ca(ca_name, now_ms=now_ms)
    ca = NetworkCA.from_pem(ca_cert_pem, ca_key_pem)
    keys = [chain_suite.generate_private_key() for _ in range(nodes)]
    tls_keys = [generate_tls_key() for _ in range(nodes)]
    names = [home.name for home in homes]
    genesis = Genesis(
        chain_id,
        suite,
        now_ms,
        ValidatorSet([Validator(k.public_bytes(), 1, name) for k, name in zip(keys, names, strict=True)]),
        ChainParams(),
    )

    out.mkdir(parents=True, exist_ok=True)
    (out / CA_DIR).mkdir()
    _write_new(out / CA_DIR / CA_CERT_FILE, ca_cert_pem)
    _write_secret(out / CA_DIR / CA_KEY_FILE, ca_key_pem)
    for i, home in enumerate(homes):
        home.mkdir()
        _write_secret(home / NODE_KEY_FILE, keys[i].encode_pem())
        _write_secret(home / TLS_KEY_FILE, tls_keys[i])
        _write_new(
            home / TLS_CERT_FILE,
            issue_node_cert(
                ca, names[i], keys[i].public_bytes(), tls_keys[i], now_ms=now_ms, hosts=[addresses[i].host]
            ),
        )
        _write_new(home / CA_CERT_FILE, ca_cert_pem)
        save_genesis(home / GENESIS_FILE, genesis)
        config = {
            "name": names[i],
            "api_host": addresses[i].api_bind,
            "api_port": addresses[i].api_port,
            "p2p_host": addresses[i].p2p_bind,
            "p2p_port": addresses[i].p2p_port,
            "peers": [
                {
                    "name": names[j],
                    "host": addresses[j].host,
                    "port": addresses[j].p2p_port,
                    "validator": keys[j].public_hex(),
                }
                for j in range(nodes)
                if j != i
            ],
        }
        if hosts is None:
            # Every node runs on this machine: each gets its share of the cores for its
            # admission workers (docs/operations.md, Worker processes).
            config["verify_workers"] = max(1, (os.cpu_count() or 1) // nodes)
        _write_new(home / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    return homes


def tls_files(home: Path) -> TLSFiles:
    """The TLS files of a node home."""
    return TLSFiles(home / CA_CERT_FILE, home / TLS_CERT_FILE, home / TLS_KEY_FILE)


def load_transport_config(home: Path) -> TransportConfig:
    """The transport settings of a home made by ``init_network`` (limits at their defaults).

    Raises P2PConfigError when config.json lacks the p2p keys or a peer is not a validator of
    the genesis.
    """
    genesis = load_genesis(home / GENESIS_FILE)
    try:
        key = load_private_key_pem((home / NODE_KEY_FILE).read_bytes())
        doc: Any = json.loads((home / CONFIG_FILE).read_text())
        peers = tuple(
            PeerAddress(str(p["name"]), str(p["host"]), int(p["port"]), bytes.fromhex(p["validator"]))
            for p in doc["peers"]
        )
        host, port, name = str(doc["p2p_host"]), int(doc["p2p_port"]), str(doc.get("name", home.name))
    except (OSError, ValueError, KeyError, TypeError, CryptoError) as exc:
        raise P2PConfigError(f"cannot read the p2p settings of {home}: {exc!r}") from None
    validators = frozenset(v.public_key for v in genesis.validators.validators)
    # Every configured peer must be a validator of the chain.
    for peer in peers:
        if peer.validator not in validators:
            raise P2PConfigError(
                f"peer {peer.name} in {home / CONFIG_FILE} is not a validator of the genesis"
            )
    return TransportConfig(
        chain_id=genesis.chain_id,
        suite=genesis.suite,
        validator_key=key,
        validators=validators,
        tls=tls_files(home),
        listen_host=host,
        listen_port=port,
        peers=peers,
        name=name,
        max_frame=compute_max_frame(genesis.params),
        queue_bytes=max(32 * 1024 * 1024, 3 * compute_max_frame(genesis.params)),
    )
