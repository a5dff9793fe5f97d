"""LMDB storage for one chain: everything a block changes commits in one write transaction.

LMDB's copy-on-write B+tree with a synced commit means a ``kill -9`` at any moment leaves
the last committed block and all before it intact; nothing half-written is ever visible.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import lmdb

from zhongshu.codec import decode, encode
from zhongshu.ledger.types import Block, CommitCertificate, Header, Receipt

_U64 = struct.Struct(">Q")
_LOC = struct.Struct(">QI")

_MAP_SIZE = int(os.environ.get("ZHONGSHU_LMDB_MAP_SIZE", str(64 << 30)))


class StoreError(RuntimeError):
    """The store is missing, belongs to another chain, or its contents are inconsistent."""


def _h(height: int) -> bytes:
    return _U64.pack(height)


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


class ChainStore:
    """Blocks, receipts, commits, the tx index, block hashes and the current state of one chain."""

    def __init__(self, path: Path, *, sync: bool = True) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.env = lmdb.open(
            str(path),
            map_size=_MAP_SIZE,
            max_dbs=16,
            sync=sync,
            metasync=sync,
            readahead=False,
            max_readers=256,
        )
        self._meta = self.env.open_db(b"meta")
        self._blocks = self.env.open_db(b"blocks")
        self._receipts = self.env.open_db(b"receipts")
        self._commits = self.env.open_db(b"commits")
        self._hashes = self.env.open_db(b"hashes")
        self._txindex = self.env.open_db(b"txindex")
        self._state = self.env.open_db(b"state")
        self._history = self.env.open_db(b"state_history")

    def close(self) -> None:
        self.env.close()

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
    ) -> None:
        """Commit a block, its receipts, commit, tx index, state writes and chain meta at once.

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
            for i, tx_hash in enumerate(tx_hashes):
                txn.put(tx_hash, _LOC.pack(height, i), db=self._txindex)
            for key, value in writes.items():
                if value is None:
                    txn.delete(key, db=self._state)
                    txn.put(key + hkey, b"", db=self._history)
                else:
                    txn.put(key, value, db=self._state)
                    txn.put(key + hkey, b"\x01" + value, db=self._history)
            for mkey, mvalue in meta.items():
                txn.put(mkey.encode(), mvalue, db=self._meta)
            txn.put(b"height", _h(height), db=self._meta)

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
        out: list[tuple[bytes, bytes]] = []
        with self.env.begin(db=self._state) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(prefix):
                return out
            for key, value in cursor:
                if not bytes(key).startswith(prefix) or len(out) >= limit:
                    break
                out.append((bytes(key), bytes(value)))
        return out
