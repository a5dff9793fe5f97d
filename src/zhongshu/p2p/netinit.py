"""The files ``zhongshu network init`` creates, and reading a node's p2p settings back from them.

``init_network(DIR, N, suite, P, now_ms)`` writes::

    DIR/ca/ca.pem            the network CA certificate
    DIR/ca/ca_key.pem        its private key (0600); it never goes into a node home
    DIR/node{i}/node_key.pem validator key of the chain's suite (0600)
    DIR/node{i}/tls_key.pem  ECDSA P-256 TLS key (0600)
    DIR/node{i}/tls_cert.pem TLS certificate from the network CA naming the validator key
    DIR/node{i}/ca.pem       the network CA certificate (the only TLS trust anchor)
    DIR/node{i}/genesis.json the same file in every home: chain "main", validators node0.. power 1
    DIR/node{i}/config.json  API on 127.0.0.1:P+i, p2p on 127.0.0.1:P+100+i, and the peers

A home stays a valid single-node home (``api_host``/``api_port`` in config.json, genesis.json and
node_key.pem at the root); the p2p keys are additions.
"""

from __future__ import annotations

import json
import os
import secrets
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
"""Node i listens for peers on base_port + P2P_PORT_OFFSET + i (its API is on base_port + i)."""
MAX_NODES = P2P_PORT_OFFSET
"""More nodes would make API and p2p ports collide."""


class NetworkInitError(ValueError):
    """Arguments ``network init`` cannot honour, or files it must not overwrite."""


class P2PConfigError(ValueError):
    """A node home whose p2p files are missing or inconsistent."""


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_new(path: Path, data: bytes) -> None:
    with path.open("xb") as f:
        f.write(data)


def init_network(
    out: Path, nodes: int, suite: str, base_port: int, now_ms: int, *, chain_id: str = "main"
) -> list[Path]:
    """Create a CA and ``nodes`` node homes in ``out``; return the homes in order.

    Refuses (NetworkInitError) when ``out/ca`` or any ``out/node{i}`` exists, when ``nodes`` is
    not 1..100, or when a port would fall outside 1..65535. ``now_ms`` is the genesis time and
    the certificates' issue time.
    """
    # One node at least; past 100 the API and p2p port ranges would overlap.
    if not 1 <= nodes <= MAX_NODES:
        raise NetworkInitError(f"--nodes must be between 1 and {MAX_NODES}, not {nodes}")
    # Every API and p2p port must be a valid TCP port.
    if base_port < 1 or base_port + P2P_PORT_OFFSET + nodes - 1 > 65535:
        raise NetworkInitError(
            f"--base-port {base_port} does not leave room for ports up to base+{P2P_PORT_OFFSET + nodes - 1}"
        )
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
            issue_node_cert(ca, names[i], keys[i].public_bytes(), tls_keys[i], now_ms=now_ms),
        )
        _write_new(home / CA_CERT_FILE, ca_cert_pem)
        save_genesis(home / GENESIS_FILE, genesis)
        config = {
            "name": names[i],
            "api_host": HOST,
            "api_port": base_port + i,
            "p2p_host": HOST,
            "p2p_port": base_port + P2P_PORT_OFFSET + i,
            "peers": [
                {
                    "name": names[j],
                    "host": HOST,
                    "port": base_port + P2P_PORT_OFFSET + j,
                    "validator": keys[j].public_hex(),
                }
                for j in range(nodes)
                if j != i
            ],
        }
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
