"""The files of a hub: what ``zhongshu up`` and ``network init --hub`` write, and reading them back.

A hub is a network (``zhongshu.p2p.netinit``) whose chain is ``hub``, plus::

    DIR/operator_key.pem          the operator's key, of the hub's suite (0600); never in a node home
    DIR/node{i}/node_key.pem      the node's validator key of the hub's suite (its TLS certificate names it)
    DIR/node{i}/node_key_<s>.pem  its validator key of the other suite s, for business chains of s (0600)
    DIR/node{i}/hub.json          what ``hub.init`` records: the operator's public key and every
                                  node's name and keys of both suites (the same file in every home)
    DIR/node{i}/chains/<name>/    one directory per business chain the node validates: genesis.json
                                  (derived from the hub record), data/, consensus.wal, signer state

The first validator of the hub submits ``hub.init`` from its hub.json when the hub chain is empty.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from zhongshu.crypto import SUITE_NAMES, CryptoError, PrivateKey, get_suite, load_private_key_pem
from zhongshu.hub.chains import HUB_CHAIN
from zhongshu.hub.registry import HubInit
from zhongshu.hub.roles import NodeKeys
from zhongshu.p2p.netinit import LISTEN_ADDRESS, NODE_KEY_FILE, init_network

OPERATOR_KEY_FILE = "operator_key.pem"
HUB_FILE = "hub.json"
CHAINS_DIR = "chains"


class HubFilesError(ValueError):
    """A hub home whose hub files are missing or inconsistent."""


def suite_key_file(suite: str) -> str:
    """The file of a node's validator key of ``suite`` other than the hub's own (node_key.pem)."""
    return f"node_key_{suite}.pem"


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def init_hub(
    out: Path,
    nodes: int,
    suite: str,
    base_port: int,
    now_ms: int,
    *,
    hosts: Sequence[str] | None = None,
    listen: str = LISTEN_ADDRESS,
    api_local: bool = False,
) -> list[Path]:
    """Create a hub of ``nodes`` nodes in ``out`` (the network files, then the hub files above);
    return the node homes in order. Refuses what ``init_network`` refuses."""
    homes = init_network(
        out,
        nodes,
        suite,
        base_port,
        now_ms,
        chain_id=HUB_CHAIN,
        hosts=hosts,
        listen=listen,
        api_local=api_local,
    )
    operator = get_suite(suite).generate_private_key()
    _write_secret(out / OPERATOR_KEY_FILE, operator.encode_pem())
    node_keys = []
    for home in homes:
        keys = {suite: load_private_key_pem((home / NODE_KEY_FILE).read_bytes())}
        for other in SUITE_NAMES:
            if other != suite:
                keys[other] = get_suite(other).generate_private_key()
                _write_secret(home / suite_key_file(other), keys[other].encode_pem())
        node_keys.append(NodeKeys(home.name, keys["sm"].public_bytes(), keys["intl"].public_bytes()))
    doc = {
        "operator": operator.public_hex(),
        "nodes": [
            {"name": n.name, "sm_key": n.sm_key.hex(), "intl_key": n.intl_key.hex()} for n in node_keys
        ],
    }
    for home in homes:
        with (home / HUB_FILE).open("x") as f:
            f.write(json.dumps(doc, indent=2) + "\n")
    return homes


def is_hub_home(home: Path) -> bool:
    """Whether ``home`` is a node of a hub (it holds hub.json)."""
    return (home / HUB_FILE).exists()


def load_hub_init(home: Path) -> HubInit:
    """The ``hub.init`` arguments recorded in the home's hub.json."""
    try:
        doc = json.loads((home / HUB_FILE).read_text())
        nodes = [
            NodeKeys(str(n["name"]), bytes.fromhex(n["sm_key"]), bytes.fromhex(n["intl_key"]))
            for n in doc["nodes"]
        ]
        return HubInit(bytes.fromhex(doc["operator"]), nodes)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HubFilesError(f"cannot read {home / HUB_FILE}: {exc!r}") from None


def load_node_keys(home: Path, hub_key: PrivateKey) -> dict[str, PrivateKey]:
    """The node's validator key of each suite: ``hub_key`` (node_key.pem) and node_key_<s>.pem."""
    keys = {hub_key.suite.name: hub_key}
    for suite in SUITE_NAMES:
        if suite in keys:
            continue
        path = home / suite_key_file(suite)
        try:
            key = load_private_key_pem(path.read_bytes())
        except (OSError, CryptoError) as exc:
            raise HubFilesError(f"cannot read the node's {suite} key {path}: {exc!r}") from None
        # The file holds a key of the suite its name says.
        if key.suite.name != suite:
            raise HubFilesError(f"{path} holds a {key.suite.name} key, not {suite}")
        keys[suite] = key
    return keys


def chain_dir(home: Path, name: str) -> Path:
    """Where the node keeps business chain ``name``."""
    return home / CHAINS_DIR / name
