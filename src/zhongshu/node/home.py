"""A node's home directory: genesis.json at its root, the validator key, config and data."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from zhongshu.crypto import PrivateKey, get_suite, load_private_key_pem
from zhongshu.ledger.genesis import load_genesis, save_genesis
from zhongshu.ledger.types import ChainParams, Genesis, Validator, ValidatorSet

GENESIS_FILE = "genesis.json"
KEY_FILE = "node_key.pem"
CONFIG_FILE = "config.json"
DEFAULT_PORT = 7700


class HomeError(RuntimeError):
    """The home directory is missing files or holds inconsistent ones."""


@dataclass(frozen=True)
class PeerConfig:
    """Another validator node of the network, as config.json names it."""

    name: str
    host: str
    port: int
    validator: bytes
    """The peer's validator public key."""


@dataclass(frozen=True)
class NodeConfig:
    home: Path
    api_host: str
    api_port: int
    p2p_host: str = "127.0.0.1"
    p2p_port: int = 0
    """0: no P2P (a single-validator chain)."""
    peers: tuple[PeerConfig, ...] = ()
    heartbeat_ms: int = 60_000
    """An idle BFT chain makes an empty block this long after its last block (``heartbeat_ms``)."""
    verify_workers: int = 0
    """Worker processes for admission and signature checks (``verify_workers``); 0: one per core."""
    app_auth: bool = True
    """On a hub node, whether business chains take only signed application requests
    (``app_auth``). False is for measuring what the check costs (``zhongshu bench --hub``)."""
    state_map: bool = True
    """Whether block headers' ``state_root`` is the state map's root, which state proofs need
    (``state_map``). False puts a hash chain over each block's writes there instead, with no
    state proofs: for measuring what the map costs only (``zhongshu bench --state-map-compare``).
    A store keeps the kind its chain started with."""
    state_heights_kept: int = 0
    """How many of the latest heights keep their state provable (``state_heights_kept``): the
    state map's nodes that only older heights reach are deleted as blocks are made. 0, the
    default, keeps every height. Applies to every chain the node serves."""

    @property
    def networked(self) -> bool:
        return self.p2p_port > 0

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def genesis_path(self) -> Path:
        return self.home / GENESIS_FILE


def default_home() -> Path:
    return Path(os.environ.get("ZHONGSHU_HOME", Path.home() / ".zhongshu"))


def save_key(path: Path, key: PrivateKey) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.encode_pem())


def init_single_home(
    home: Path, *, suite: str = "sm", chain_id: str = "main", port: int = DEFAULT_PORT, now_ms: int
) -> NodeConfig:
    """Create a one-validator chain in ``home`` (refuses to overwrite an existing genesis)."""
    home.mkdir(parents=True, exist_ok=True)
    if (home / GENESIS_FILE).exists():
        raise HomeError(f"{home / GENESIS_FILE} already exists")
    key = get_suite(suite).generate_private_key()
    save_key(home / KEY_FILE, key)
    genesis = Genesis(
        chain_id, suite, now_ms, ValidatorSet([Validator(key.public_bytes(), 1, "node0")]), ChainParams()
    )
    save_genesis(home / GENESIS_FILE, genesis)
    config = NodeConfig(home, "127.0.0.1", port)
    save_config(config)
    return config


def save_config(config: NodeConfig) -> None:
    doc = {"api_host": config.api_host, "api_port": config.api_port}
    (config.home / CONFIG_FILE).write_text(json.dumps(doc, indent=2) + "\n")


def _int_field(doc: dict[str, object], name: str, default: int) -> int:
    value = doc.get(name, default)
    # A whole number (JSON true/false are not numbers here).
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    return value


def _bool_field(doc: dict[str, object], name: str, default: bool) -> bool:
    value = doc.get(name, default)
    # JSON true or false, nothing else.
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return value


def load_home(home: Path) -> tuple[NodeConfig, Genesis, PrivateKey]:
    """Read config, genesis and key; raise HomeError with what is missing or wrong."""
    if not (home / GENESIS_FILE).exists():
        raise HomeError(f"no {GENESIS_FILE} in {home}: run `zhongshu up --home {home}` first")
    genesis = load_genesis(home / GENESIS_FILE)
    try:
        key = load_private_key_pem((home / KEY_FILE).read_bytes())
        doc = json.loads((home / CONFIG_FILE).read_text())
        peers = tuple(
            PeerConfig(str(p["name"]), str(p["host"]), int(p["port"]), bytes.fromhex(p["validator"]))
            for p in doc.get("peers", [])
        )
        config = NodeConfig(
            home,
            str(doc.get("api_host", "127.0.0.1")),
            int(doc["api_port"]),
            str(doc.get("p2p_host", "127.0.0.1")),
            int(doc.get("p2p_port", 0)),
            peers,
            _int_field(doc, "heartbeat_ms", 60_000),
            _int_field(doc, "verify_workers", 0),
            _bool_field(doc, "app_auth", True),
            _bool_field(doc, "state_map", True),
            _int_field(doc, "state_heights_kept", 0),
        )
        # The heartbeat must leave room for a round: at least one second.
        if config.heartbeat_ms < 1000:
            raise ValueError(f"heartbeat_ms must be at least 1000, not {config.heartbeat_ms}")
        if not 0 <= config.verify_workers <= 256:
            raise ValueError(f"verify_workers must be 0 (one per core) to 256, not {config.verify_workers}")
        if config.state_heights_kept < 0:
            raise ValueError(
                f"state_heights_kept must be 0 (every height) or more, not {config.state_heights_kept}"
            )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HomeError(f"cannot read node files in {home}: {exc}") from None
    if key.suite.name != genesis.suite:
        raise HomeError(f"the node key is {key.suite.name}, the chain uses {genesis.suite}")
    return config, genesis, key
