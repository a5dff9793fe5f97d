"""LMDB storage for one chain: everything a block changes commits in one write transaction.

LMDB's copy-on-write B+tree with a synced commit means a ``kill -9`` at any moment leaves
the last committed block and all before it intact; nothing half-written is ever visible.
Damage from outside (a truncated or overwritten file) is looked for at start: the data file's
size and free-page list before it is mapped, then the chain meta and the last blocks' hash
chain (``check``).
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import lmdb

from zhongshu.codec import DecodeError, decode, encode
from zhongshu.ledger.hashing import compute_block_hash
from zhongshu.ledger.merkle import Hasher
from zhongshu.ledger.smt import INTERNAL_SIZE, INTERNAL_TAG, LEAF_SIZE, LEAF_TAG, PLACEHOLDER, node_key
from zhongshu.ledger.types import Block, CommitCertificate, Header, Receipt
from zhongshu.store.datafile import check_data_file
from zhongshu.store.errors import StoreDamaged, StoreError

_U64 = struct.Struct(">Q")
_LOC = struct.Struct(">QI")

_MAP_SIZE = int(os.environ.get("ZHONGSHU_LMDB_MAP_SIZE", str(64 << 30)))

CHECKED_BLOCKS = 64
"""How many of the last blocks ``ChainStore.check`` walks at start."""
CHECKED_MAP_NODES = 4096
"""How many state map nodes, from the tip's root down, ``ChainStore.check_state_map`` walks."""
PRUNE_BATCH = 50_000
"""At most this many stale state map nodes are deleted with one block (a block of 1,000 written
keys leaves about 7,000): a node that starts pruning a long history catches up over blocks
instead of holding one write transaction for minutes."""
PROVABLE_FROM = "state_provable_from"
"""Meta key: the lowest height whose state map version is whole (u64 BE; absent: every height)."""


@dataclass(frozen=True)
class StateMapUpdate:
    """What a block changes in the state map's table (ledger.smt), stored with the block."""

    nodes: Sequence[tuple[bytes, bytes]] = ()
    """The version's new nodes, (node key, stored bytes), in key order."""
    stale: Sequence[bytes] = ()
    """Node keys of the previous version that this one no longer reaches, in key order: indexed
    as stale since the block's height, for pruning."""
    prune_to: int = 0
    """Keep every version from this height on, and delete (up to PRUNE_BATCH per block) the
    nodes that only older versions reach; 0 prunes nothing."""


_DAMAGE = (
    lmdb.CorruptedError,
    lmdb.PageNotFoundError,
    lmdb.InvalidError,
    lmdb.VersionMismatchError,
    lmdb.BadTxnError,
    DecodeError,
)
"""What LMDB and the codec raise on pages or values that are not what was written."""


def _h(height: int) -> bytes:
    return _U64.pack(height)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass(frozen=True)
class BlockRecord:
    """A committed block with what was committed beside it."""

    block: Block
    block_hash: bytes
    receipts: list[Receipt]
    commit: CommitCertificate


@dataclass(frozen=True)
class TxLocation:
    height: int
    index: int


class StateMapNodes:
    """The state map's nodes in one LMDB read transaction: ``get_node`` of ledger.smt's NodeStore.

    Read-only: a block's new nodes are written by ``ChainStore.save_block`` with the block.
    """

    def __init__(self, txn: lmdb.Transaction) -> None:
        self._get = txn.get

    def get_node(self, node_hash: bytes) -> bytes | None:
        # The transaction is opened without buffers=True: get returns bytes, not a memoryview.
        return self._get(node_hash)  # type: ignore[return-value]

    def put_nodes(self, nodes: Mapping[bytes, bytes]) -> None:
        raise StoreError("state map nodes are written with their block (ChainStore.save_block)")


def _open_env(path: Path, *, sync: bool = True, readonly: bool = False) -> lmdb.Environment:
    """The chain store's LMDB environment, as the node (read-write) or a worker (read-only)
    opens it: one map size and reader table for both."""
    return lmdb.open(
        str(path),
        map_size=_MAP_SIZE,
        max_dbs=16,
        sync=sync,
        metasync=sync,
        readonly=readonly,
        readahead=False,
        max_readers=256,
    )


class StateMapFile:
    """The state map's nodes of a chain store opened read-only, by another process than the
    node's (``node.statemap_worker``): LMDB lets processes read one file while one writes it,
    and a read transaction begun after a commit sees it."""

    def __init__(self, path: Path) -> None:
        self.env = _open_env(path, readonly=True)
        try:
            self._smt = self.env.open_db(b"state_map", create=False)
        except _DAMAGE as exc:
            self.env.close()
            raise StoreDamaged(path, _one_line(exc)) from None

    @contextlib.contextmanager
    def reader(self) -> Iterator[StateMapNodes]:
        """The nodes over one read transaction (a ledger.smt NodeStore)."""
        with self.env.begin(db=self._smt) as txn:
            yield StateMapNodes(txn)

    def close(self) -> None:
        self.env.close()


class ChainStore:
    """Blocks, receipts, commits, the tx index, block hashes and the current state of one chain."""

    def __init__(self, path: Path, *, sync: bool = True) -> None:
        """Open (or create) the store in ``path``; raise StoreDamaged if its file is truncated."""
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        check_data_file(path)
        self.env = _open_env(path, sync=sync)
        try:
            self._meta = self.env.open_db(b"meta")
            self._blocks = self.env.open_db(b"blocks")
            self._receipts = self.env.open_db(b"receipts")
            self._commits = self.env.open_db(b"commits")
            self._hashes = self.env.open_db(b"hashes")
            self._txindex = self.env.open_db(b"txindex")
            self._state = self.env.open_db(b"state")
            self._history = self.env.open_db(b"state_history")
            self._smt = self.env.open_db(b"state_map")
            self._stale = self.env.open_db(b"state_map_stale")
            self._index = self.env.open_db(b"query_index")
        except _DAMAGE as exc:
            self.env.close()
            raise StoreDamaged(path, _one_line(exc)) from None

    def close(self) -> None:
        self.env.close()

    # -- the start-up check -------------------------------------------------------------

    def check(self, hasher: Hasher, required_meta: Iterable[str] = ()) -> None:
        """Raise StoreDamaged unless the chain meta and the last blocks' hash chain are intact.

        Reads only the tail: the stored height, the ``required_meta`` keys (which a store with
        blocks must hold), the last stored keys, and the last ``CHECKED_BLOCKS`` blocks, each
        with its receipts, commit and a hash equal to ``hasher`` over its header, each header
        naming the stored hash of the block before it.
        """
        try:
            self._check_tail(hasher, required_meta)
        except StoreDamaged:
            raise
        except (*_DAMAGE, StoreError) as exc:
            raise StoreDamaged(self.path, _one_line(exc)) from None

    def _check_tail(self, hasher: Hasher, required_meta: Iterable[str]) -> None:
        with self.env.begin(buffers=True) as txn:
            raw_height = txn.get(b"height", db=self._meta)
            # The stored height is a big-endian u64 when present.
            if raw_height is not None and len(raw_height) != _U64.size:
                raise StoreDamaged(self.path, f"meta 'height' is {len(raw_height)} bytes, not {_U64.size}")
            height = _U64.unpack(raw_height)[0] if raw_height is not None else 0
            # The last stored block and block hash are the stored height: none missing, none beyond.
            for name, db in (("block", self._blocks), ("block hash", self._hashes)):
                cursor = txn.cursor(db=db)
                last = _U64.unpack(bytes(cursor.key()))[0] if cursor.last() else 0
                if last != height:
                    reason = f"the last stored {name} is {last} but the stored height is {height}"
                    raise StoreDamaged(self.path, reason)
            if height == 0:
                return
            # A store with blocks holds the meta the node resumes from.
            for key in required_meta:
                if not txn.get(key.encode(), db=self._meta):
                    raise StoreDamaged(self.path, f"meta {key!r} is missing at height {height}")
        first = max(1, height - CHECKED_BLOCKS + 1)
        prev_hash = self.load_block_hash(first - 1) if first > 1 else None
        for h in range(first, height + 1):
            record = self.load_block(h)
            # Every height up to the tip holds a block.
            if record is None:
                raise StoreDamaged(self.path, f"block {h} is missing below height {height}")
            header = record.block.header
            # The block is stored under its own height.
            if header.height != h:
                raise StoreDamaged(self.path, f"the block stored at {h} says height {header.height}")
            # Its stored hash is the hash of its header.
            if compute_block_hash(hasher, header) != record.block_hash:
                raise StoreDamaged(self.path, f"block {h}'s stored hash is not the hash of its header")
            # It follows the block stored before it.
            if prev_hash is not None and header.prev_hash != prev_hash:
                raise StoreDamaged(self.path, f"block {h} does not follow the stored hash of block {h - 1}")
            prev_hash = record.block_hash

    def check_state_map(
        self, hasher: Hasher, root: bytes, version: int, limit: int = CHECKED_MAP_NODES
    ) -> None:
        """Raise StoreDamaged unless the state map's nodes near ``root`` are whole.

        Walks breadth-first from ``root`` as stored under ``version`` (the tip's height) over at
        most ``limit`` nodes, each of which must be stored under the version its parent names,
        be a leaf or internal node, and hash to the hash it is stored under. A small map is
        checked whole; a large one, its top levels.
        """
        try:
            with self.env.begin(db=self._smt) as txn:
                queue = [] if root == PLACEHOLDER else [node_key(version, root)]
                for key in queue:
                    if len(queue) > limit:
                        break
                    node = txn.get(key)
                    where = (
                        f"state map node {key[8:].hex()[:16]}.. of version {int.from_bytes(key[:8], 'big')}"
                    )
                    # Every node reachable from the tip's root is stored ...
                    if node is None:
                        raise StoreDamaged(self.path, f"{where} is missing")
                    # ... is a leaf or an internal node, and hashes to the hash it is stored under.
                    size = {LEAF_TAG: LEAF_SIZE, INTERNAL_TAG: INTERNAL_SIZE}.get(node[:1])
                    if len(node) != size or hasher(node[:LEAF_SIZE]) != key[8:]:
                        raise StoreDamaged(self.path, f"{where} is damaged")
                    if node[:1] == INTERNAL_TAG:
                        for child, at in ((node[1:33], node[65:73]), (node[33:65], node[73:81])):
                            if child != PLACEHOLDER:
                                queue.append(at + child)
        except _DAMAGE as exc:
            raise StoreDamaged(self.path, _one_line(exc)) from None

    # -- chain identity -----------------------------------------------------------------

    def load_meta(self, key: str) -> bytes | None:
        with self.env.begin(db=self._meta) as txn:
            value = txn.get(key.encode())
            return bytes(value) if value is not None else None

    def save_meta(self, key: str, value: bytes) -> None:
        with self.env.begin(db=self._meta, write=True) as txn:
            txn.put(key.encode(), value)

    def height(self) -> int:
        raw = self.load_meta("height")
        return _U64.unpack(raw)[0] if raw else 0

    # -- the atomic block commit --------------------------------------------------------

    def save_block(
        self,
        record: BlockRecord,
        tx_hashes: list[bytes],
        writes: Mapping[bytes, bytes | None],
        meta: Mapping[str, bytes],
        state_map: StateMapUpdate | None = None,
        index_entries: Mapping[bytes, bytes] | None = None,
    ) -> None:
        """Commit a block, its receipts, commit, tx index, state writes, the state map's change
        (its new nodes, its stale ones, and pruning), the query index entries (``index_entries``:
        derived from the block for listings, not state) and chain meta at once.

        The block must be the next height; anything else is a broken invariant.
        """
        height = record.block.header.height
        with self.env.begin(write=True) as txn:
            raw = txn.get(b"height", db=self._meta)
            current = _U64.unpack(raw)[0] if raw else 0
            # Blocks are stored strictly in order, one height at a time.
            if height != current + 1:
                raise StoreError(f"block {height} does not follow stored height {current}")
            hkey = _h(height)
            txn.put(hkey, encode(record.block), db=self._blocks)
            txn.put(hkey, encode(record.receipts), db=self._receipts)
            txn.put(hkey, encode(record.commit), db=self._commits)
            txn.put(hkey, record.block_hash, db=self._hashes)
            # Many entries per block: one C call per table (putmulti) rather than a put each.
            txn.cursor(db=self._txindex).putmulti(
                [(tx_hash, _LOC.pack(height, i)) for i, tx_hash in enumerate(tx_hashes)]
            )
            state = txn.cursor(db=self._state)
            for key, value in writes.items():
                if value is None:
                    txn.delete(key, db=self._state)
            state.putmulti([(key, value) for key, value in writes.items() if value is not None])
            # The history keeps every value by height: b"" for a deletion, 0x01 || value otherwise.
            txn.cursor(db=self._history).putmulti(
                [(key + hkey, b"" if value is None else b"\x01" + value) for key, value in writes.items()]
            )
            if state_map is not None:
                self._save_state_map(txn, height, state_map)
            if index_entries:
                txn.cursor(db=self._index).putmulti(index_entries.items())
            for mkey, mvalue in meta.items():
                txn.put(mkey.encode(), mvalue, db=self._meta)
            txn.put(b"height", _h(height), db=self._meta)

    def _save_state_map(self, txn: lmdb.Transaction, height: int, update: StateMapUpdate) -> None:
        hkey = _h(height)
        # Node keys start with the block's height, above every stored one, and so do its stale
        # entries: appended in order, they fill the tables' last pages instead of rewriting
        # pages all over them. LMDB skips, without an error, a key appended out of order.
        for db, items, what in (
            (self._smt, update.nodes, "nodes"),
            (self._stale, [(hkey + key, b"") for key in update.stale], "stale nodes"),
        ):
            _, added = txn.cursor(db=db).putmulti(items, append=True)
            if added != len(items):
                raise StoreError(
                    f"block {height}'s state map {what} are not in key order above the stored ones"
                )
        if update.prune_to:
            self._prune_state_map(txn, update.prune_to)

    def _prune_state_map(self, txn: lmdb.Transaction, keep_from: int) -> None:
        """Delete the nodes stale since ``keep_from`` or earlier (at most PRUNE_BATCH): no version
        from ``keep_from`` on reaches them (ledger.smt, "Pruning")."""
        raw = txn.get(PROVABLE_FROM.encode(), db=self._meta)
        if raw is None or _U64.unpack(raw)[0] < keep_from:
            # From this transaction on, versions below keep_from may be partly deleted.
            txn.put(PROVABLE_FROM.encode(), _h(keep_from), db=self._meta)
        stale = txn.cursor(db=self._stale)
        found = stale.first()
        for _ in range(PRUNE_BATCH):
            if not found:
                break
            entry = stale.key()
            if _U64.unpack(entry[:8])[0] > keep_from:
                break
            txn.delete(entry[8:], db=self._smt)
            # Deleting moves the cursor to the next entry; False when it was the last.
            found = stale.delete() and bool(stale.key())

    def state_provable_from(self) -> int:
        """The lowest height whose state map version is whole (1 when nothing was pruned)."""
        raw = self.load_meta(PROVABLE_FROM)
        return _U64.unpack(raw)[0] if raw else 1

    def stale_state_nodes(self) -> int:
        """How many stale state map nodes are indexed (not yet pruned)."""
        with self.env.begin() as txn:
            return int(txn.stat(self._stale)["entries"])

    # -- reads --------------------------------------------------------------------------

    def load_block(self, height: int) -> BlockRecord | None:
        hkey = _h(height)
        with self.env.begin(buffers=True) as txn:
            raw = txn.get(hkey, db=self._blocks)
            if raw is None:
                return None
            block = decode(bytes(raw), Block, canonical=False)
            raw_receipts, raw_commit = txn.get(hkey, db=self._receipts), txn.get(hkey, db=self._commits)
            raw_hash = txn.get(hkey, db=self._hashes)
            # A stored block always has its receipts, commit and hash beside it.
            if raw_receipts is None or raw_commit is None or raw_hash is None:
                raise StoreError(f"block {height} is stored without its receipts, commit or hash")
            receipts = decode(bytes(raw_receipts), list[Receipt], canonical=False)
            commit = decode(bytes(raw_commit), CommitCertificate, canonical=False)
            block_hash = bytes(raw_hash)
        return BlockRecord(block, block_hash, receipts, commit)

    def load_header(self, height: int) -> Header | None:
        record = self.load_block(height)
        return record.block.header if record else None

    def load_block_hash(self, height: int) -> bytes | None:
        with self.env.begin(db=self._hashes) as txn:
            raw = txn.get(_h(height))
            return bytes(raw) if raw is not None else None

    def load_block_hashes(self, upto: int) -> list[bytes]:
        """Hashes of blocks 1 .. upto, in order."""
        out: list[bytes] = []
        with self.env.begin(db=self._hashes) as txn:
            cursor = txn.cursor()
            if not cursor.set_key(_h(1)):
                return out
            for key, value in cursor:
                if _U64.unpack(key)[0] > upto:
                    break
                out.append(bytes(value))
        return out

    def load_tx_location(self, tx_hash: bytes) -> TxLocation | None:
        with self.env.begin(db=self._txindex) as txn:
            raw = txn.get(tx_hash)
        if raw is None:
            return None
        height, index = _LOC.unpack(raw)
        return TxLocation(height, index)

    def has_tx(self, tx_hash: bytes) -> bool:
        with self.env.begin(db=self._txindex) as txn:
            return txn.get(tx_hash) is not None

    def has_txs(self, tx_hashes: list[bytes]) -> list[bool]:
        with self.env.begin(db=self._txindex) as txn:
            return [txn.get(h) is not None for h in tx_hashes]

    def get_state(self, key: bytes) -> bytes | None:
        with self.env.begin(db=self._state) as txn:
            raw = txn.get(key)
            return bytes(raw) if raw is not None else None

    @contextlib.contextmanager
    def state_reader(self) -> Iterator[Callable[[bytes], bytes | None]]:
        """``get_state`` over one read transaction: one consistent snapshot for a whole block,
        without opening a transaction per key."""
        with self.env.begin(db=self._state) as txn:
            # Without buffers=True, get returns bytes (or None for a missing key).
            yield txn.get

    @contextlib.contextmanager
    def state_map_reader(self) -> Iterator[StateMapNodes]:
        """The state map's stored nodes (a ledger.smt NodeStore) over one read transaction."""
        with self.env.begin(db=self._smt) as txn:
            yield StateMapNodes(txn)

    def state_map_nodes(self) -> int:
        """How many state map nodes are stored."""
        with self.env.begin() as txn:
            return int(txn.stat(self._smt)["entries"])

    def get_state_at(self, key: bytes, height: int) -> bytes | None:
        """The value of ``key`` as it was after block ``height`` (point-in-time read)."""
        with self.env.begin(db=self._history) as txn:
            cursor = txn.cursor()
            target = key + _h(height)
            if not cursor.set_range(target):
                found = cursor.last()
            else:
                found = True
                if bytes(cursor.key()) != target:
                    found = cursor.prev()
            if not found:
                return None
            k = bytes(cursor.key())
            if k[:-8] != key:
                return None
            v = bytes(cursor.value())
            return v[1:] if v else None

    def scan_state(self, prefix: bytes, limit: int = 1000) -> list[tuple[bytes, bytes]]:
        """Current state entries whose keys start with ``prefix``, in key order."""
        return self._scan(self._state, prefix, limit)

    def scan_index(self, prefix: bytes, limit: int = 1000) -> list[tuple[bytes, bytes]]:
        """Query index entries whose keys start with ``prefix``, in key order."""
        return self._scan(self._index, prefix, limit)

    def _scan(self, db: lmdb._Database, prefix: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        with self.env.begin(db=db) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(prefix):
                return out
            for key, value in cursor:
                if not bytes(key).startswith(prefix) or len(out) >= limit:
                    break
                out.append((bytes(key), bytes(value)))
        return out
