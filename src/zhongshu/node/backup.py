"""Backup and restore of a node home's store: one ``tar.gz`` file with a manifest.

The archive holds, in this order:

- ``manifest.json``: format, creation time, chain id, genesis hash, the height and block hash
  of the copied store, whether keys are included, and every other member's size and SHA-256;
- ``data/data.mdb``: LMDB's compacting copy of the store, taken in one read transaction, so it
  is consistent while the node keeps writing;
- ``genesis.json``, ``config.json`` and the public certificates of the home;
- ``node_key.pem`` and ``tls_key.pem`` only when asked for (``with_keys``).

Never included: the consensus WAL (it belongs to the height in progress) and the signer state
(``consensus_signer.bin``, ``signer_state.json``): a signer state older than the key's last
signature would let the key sign twice at one height. A restore keeps the home's own.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lmdb

from zhongshu.crypto import get_suite
from zhongshu.ledger.genesis import GenesisError, load_genesis
from zhongshu.ledger.hashing import compute_genesis_hash
from zhongshu.node.home import CONFIG_FILE, GENESIS_FILE, KEY_FILE, HomeError
from zhongshu.node.lock import acquire_home_lock
from zhongshu.store import ChainStore, StoreDamaged

FORMAT = "zhongshu-backup/1"
MANIFEST_FILE = "manifest.json"
STORE_FILE = "data/data.mdb"
"""The store's data file inside the archive and inside the home."""
PUBLIC_FILES = (GENESIS_FILE, CONFIG_FILE, "ca.pem", "tls_cert.pem")
"""Home files copied when present (genesis.json must be)."""
KEY_FILES = (KEY_FILE, "tls_key.pem")
"""Private keys: copied only with ``with_keys``; restored only where the home has none."""
STALE_FILES = ("data/lock.mdb", "data/consensus.wal")
"""Files beside a replaced store that belong to it: removed when a store is restored."""
MAX_MEMBER_BYTES = 1 << 40
"""Refuse archive members claiming more than this (1 TiB)."""


class BackupError(HomeError):
    """A backup cannot be made, or a file is not a backup this node can restore."""


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` says about the archive it opens."""

    format: str
    created_ms: int
    """When the backup was taken (milliseconds since the Unix epoch)."""
    chain_id: str
    genesis_hash: str
    """Hex hash of the chain's genesis: a restore refuses a home of another chain."""
    height: int
    """Height of the copied store."""
    block_hash: str | None
    """Hex hash of the block at ``height`` (None for an empty store)."""
    with_keys: bool
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each other member: ``{"size": bytes, "sha256": hex}``."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _genesis_hash_hex(path: Path) -> tuple[str, str]:
    """Chain id and hex genesis hash of the genesis file at ``path``; BackupError if unreadable."""
    try:
        genesis = load_genesis(path)
    except GenesisError as exc:
        raise BackupError(str(exc)) from None
    return genesis.chain_id, compute_genesis_hash(get_suite(genesis.suite).hasher(), genesis).hex()


def _read_store(data_dir: Path, genesis_path: Path) -> tuple[int, str | None]:
    """Height and tip hash of the store in ``data_dir``, after checking its tail (StoreDamaged)."""
    genesis = load_genesis(genesis_path)
    try:
        store = ChainStore(data_dir)
    except lmdb.Error as exc:
        raise StoreDamaged(data_dir, " ".join(str(exc).split())) from None
    try:
        store.check(get_suite(genesis.suite).hasher())
        height = store.height()
        tip = store.load_block_hash(height) if height else None
        return height, tip.hex() if tip else None
    finally:
        store.close()


def save_backup(home: Path, out: Path, *, now_ms: int, with_keys: bool = False) -> Manifest:
    """Write a backup of ``home`` (running or not) to ``out``; refuses to overwrite ``out``."""
    data_dir = home / "data"
    if not (data_dir / "data.mdb").exists():
        raise BackupError(f"no store in {data_dir}: nothing to back up")
    if out.exists():
        raise BackupError(f"{out} exists; refusing to overwrite it")
    chain_id, genesis_hash = _genesis_hash_hex(home / GENESIS_FILE)
    with tempfile.TemporaryDirectory(prefix="zhongshu-backup-") as tmp:
        staged = Path(tmp)
        (staged / "data").mkdir()
        env = lmdb.open(str(data_dir), readonly=True, lock=True, max_dbs=16, readahead=False)
        try:
            env.copy(str(staged / "data"), compact=True)
        finally:
            env.close()
        height, tip = _read_store(staged / "data", home / GENESIS_FILE)
        (staged / "data" / "lock.mdb").unlink(missing_ok=True)
        names = [STORE_FILE]
        for name in PUBLIC_FILES + (KEY_FILES if with_keys else ()):
            if (home / name).exists():
                shutil.copyfile(home / name, staged / name)
                names.append(name)
        files = {n: {"size": (staged / n).stat().st_size, "sha256": _sha256(staged / n)} for n in names}
        manifest = Manifest(FORMAT, now_ms, chain_id, genesis_hash, height, tip, with_keys, files)
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w:gz") as tar:
            doc = (json.dumps(asdict(manifest), indent=2) + "\n").encode()
            info = tarfile.TarInfo(MANIFEST_FILE)
            info.size, info.mtime, info.mode = len(doc), now_ms // 1000, 0o644
            tar.addfile(info, io.BytesIO(doc))
            for name in names:
                tar.add(staged / name, arcname=name, recursive=False)
        with partial.open("rb") as f:
            os.fsync(f.fileno())
        partial.rename(out)
    return manifest


def _parse_manifest(raw: bytes) -> Manifest:
    try:
        doc = json.loads(raw)
        manifest = Manifest(**doc)
    except (ValueError, TypeError) as exc:
        raise BackupError(f"the backup's manifest is not valid: {exc}") from None
    # The format is one this node writes.
    if manifest.format != FORMAT:
        raise BackupError(f"backup format {manifest.format!r} is not {FORMAT!r}")
    # Every member name is a plain relative path this module writes.
    allowed = {STORE_FILE, *PUBLIC_FILES, *KEY_FILES}
    unknown = set(manifest.files) - allowed
    if unknown or STORE_FILE not in manifest.files or GENESIS_FILE not in manifest.files:
        raise BackupError(f"the backup's manifest lists unexpected files: {sorted(unknown) or 'none'}")
    return manifest


def _extract(archive: Path, staged: Path) -> Manifest:
    """Unpack ``archive`` into ``staged``, checking each member against the manifest."""
    with tarfile.open(archive, "r:gz") as tar:
        first = tar.next()
        # The manifest comes first and is small.
        if first is None or first.name != MANIFEST_FILE or not first.isfile() or first.size > 1 << 20:
            raise BackupError(f"{archive} does not start with a {MANIFEST_FILE}")
        raw = tar.extractfile(first)
        assert raw is not None
        manifest = _parse_manifest(raw.read())
        seen: set[str] = set()
        while (member := tar.next()) is not None:
            expected = manifest.files.get(member.name)
            # Each member is a regular file the manifest lists, once, of the listed size.
            if expected is None or member.name in seen or not member.isfile():
                raise BackupError(f"unexpected member {member.name!r} in {archive}")
            if member.size != expected["size"] or member.size > MAX_MEMBER_BYTES:
                raise BackupError(
                    f"{member.name} is {member.size} bytes, the manifest says {expected['size']}"
                )
            seen.add(member.name)
            source = tar.extractfile(member)
            assert source is not None
            target = staged / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with target.open("wb") as sink:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    sink.write(chunk)
            # Its bytes are the ones the backup recorded.
            if digest.hexdigest() != expected["sha256"]:
                raise BackupError(f"{member.name} in {archive} does not match its SHA-256 in the manifest")
        missing = set(manifest.files) - seen
        if missing:
            raise BackupError(f"{archive} lacks {', '.join(sorted(missing))}")
    return manifest


def load_backup(archive: Path, home: Path, *, force: bool = False) -> Manifest:
    """Restore the store (and missing home files) of ``archive`` into ``home``, which must not run.

    Refuses (BackupError) a file that is not an intact backup, a home of another chain, and an
    existing store unless ``force``. Keeps the home's own config, keys and signer state.
    """
    home.mkdir(parents=True, exist_ok=True)
    with acquire_home_lock(home), tempfile.TemporaryDirectory(prefix=".restore-", dir=home) as tmp:
        staged = Path(tmp)
        try:
            manifest = _extract(archive, staged)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise BackupError(f"no backup file {archive}") from None
            raise BackupError(f"{archive} is not a readable backup: {' '.join(str(exc).split())}") from None
        # The genesis in the backup is the one the manifest names.
        if _genesis_hash_hex(staged / GENESIS_FILE)[1] != manifest.genesis_hash:
            raise BackupError(f"the genesis in {archive} is not the one its manifest names")
        # The store copy opens, its tail is intact, and it is the height the manifest names.
        try:
            height, tip = _read_store(staged / "data", staged / GENESIS_FILE)
        except StoreDamaged as exc:
            raise BackupError(f"the store in {archive} is damaged: {exc.reason}") from None
        if (height, tip) != (manifest.height, manifest.block_hash):
            raise BackupError(
                f"the store in {archive} is at height {height}, the manifest says {manifest.height}"
            )
        # The home, if it has a chain, has this one.
        if (home / GENESIS_FILE).exists():
            home_genesis = _genesis_hash_hex(home / GENESIS_FILE)[1]
            if home_genesis != manifest.genesis_hash:
                raise BackupError(
                    f"{home} belongs to another chain (genesis {home_genesis[:16]}..., "
                    f"the backup's is {manifest.genesis_hash[:16]}...)"
                )
        if (home / STORE_FILE).exists() and not force:
            raise BackupError(f"{home / 'data'} already holds a store; --force replaces it")
        for name in manifest.files:
            if name != STORE_FILE and not (home / name).exists():
                os.replace(staged / name, home / name)
                if name in KEY_FILES:
                    os.chmod(home / name, 0o600)
        (home / "data").mkdir(exist_ok=True)
        for name in STALE_FILES:
            (home / name).unlink(missing_ok=True)
        os.replace(staged / STORE_FILE, home / STORE_FILE)
    return manifest
