"""The LMDB store: blocks commit in order and atomically; point-in-time state reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from zhongshu.crypto import get_suite
from zhongshu.ledger.hashing import compute_block_hash
from zhongshu.ledger.types import STATUS_OK, Block, CommitCertificate, CommitSig, Header, Receipt
from zhongshu.store import BlockRecord, ChainStore, StateMapUpdate, StoreError


def _record(height: int) -> BlockRecord:
    z = b"\x00" * 32
    header = Header("main", height, 1000 + height, z, 0, z, z, z, z, z, b"p")
    return BlockRecord(Block(header, []), bytes([height]) * 32, [], CommitCertificate(height, 0, z, []))


def test_blocks_commit_in_order(tmp_path: Path) -> None:
    store = ChainStore(tmp_path)
    store.save_block(_record(1), [b"t" * 32], {b"k": b"v1"}, {})
    with pytest.raises(StoreError, match="does not follow"):
        store.save_block(_record(3), [], {}, {})
    assert store.height() == 1
    assert store.load_tx_location(b"t" * 32) is not None


def test_failed_commit_leaves_nothing_behind(tmp_path: Path) -> None:
    store = ChainStore(tmp_path)
    store.save_block(_record(1), [], {b"k": b"v1"}, {})
    bad = _record(2)
    with pytest.raises(TypeError):
        store.save_block(bad, [b"x" * 32], {b"k": b"v2", b"j": 123}, {})  # type: ignore[dict-item]
    assert store.height() == 1
    assert store.get_state(b"k") == b"v1"
    assert store.load_tx_location(b"x" * 32) is None
    assert store.load_block(2) is None


def test_state_map_nodes_out_of_key_order_fail_the_whole_commit(tmp_path: Path) -> None:
    """LMDB's append skips an out-of-order key without an error; the store must not."""
    store = ChainStore(tmp_path)
    at = (1).to_bytes(8, "big")
    nodes = [(at + bytes([i]) * 32, bytes([i]) * 65) for i in (1, 2, 3)]
    store.save_block(_record(1), [], {b"k": b"v1"}, {}, StateMapUpdate(nodes))
    later = (2).to_bytes(8, "big")
    for shuffled in (
        [(later + b"\x05" * 32, b"a" * 65), (later + b"\x04" * 32, b"b" * 65)],  # descending
        [(at + b"\x00" * 32, b"c" * 65)],  # below the stored ones
    ):
        with pytest.raises(StoreError, match="not in key order"):
            store.save_block(_record(2), [b"y" * 32], {b"k": b"v2"}, {}, StateMapUpdate(shuffled))
        assert store.height() == 1
        assert store.get_state(b"k") == b"v1"
        assert store.load_tx_location(b"y" * 32) is None
    assert store.state_map_nodes() == 3
    store.save_block(_record(2), [], {b"k": b"v2"}, {}, StateMapUpdate([(later + b"\x04" * 32, b"b" * 65)]))
    assert store.state_map_nodes() == 4


def test_point_in_time_reads(tmp_path: Path) -> None:
    store = ChainStore(tmp_path)
    store.save_block(_record(1), [], {b"k": b"v1"}, {})
    store.save_block(_record(2), [], {b"other": b"o"}, {})
    store.save_block(_record(3), [], {b"k": b"v3"}, {})
    store.save_block(_record(4), [], {b"k": None}, {})
    assert [store.get_state_at(b"k", h) for h in range(0, 6)] == [None, b"v1", b"v1", b"v3", None, None]
    assert store.get_state(b"k") is None
    store.close()
    reopened = ChainStore(tmp_path)
    assert reopened.height() == 4
    assert reopened.load_block(3) == _record(3)
    assert reopened.load_block_hashes(4) == [bytes([h]) * 32 for h in range(1, 5)]
    assert reopened.load_block(2) == _record(2)
    reopened.close()


# --- a crash between any two writes of a block ----------------------------------------------

HASHER = get_suite("intl").hasher()


class Crash(Exception):
    """The process died here (injected)."""


class CrashingTxn:
    """A write transaction that dies at its ``fail_at``-th write (put or delete)."""

    def __init__(self, txn: Any, counter: list[int], fail_at: int) -> None:
        self._txn = txn
        self._counter = counter
        self._fail_at = fail_at

    def _write(self) -> None:
        self._counter[0] += 1
        if self._counter[0] == self._fail_at:
            raise Crash(f"crash at write {self._fail_at}")

    def put(self, *args: Any, **kwargs: Any) -> Any:
        self._write()
        return self._txn.put(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        self._write()
        return self._txn.delete(*args, **kwargs)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return _CrashingCursor(self._txn.cursor(*args, **kwargs), self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._txn, name)


class _CrashingCursor:
    """A cursor of a crashing transaction: each putmulti (one C call) or put is one write."""

    def __init__(self, cursor: Any, txn: CrashingTxn) -> None:
        self._cursor = cursor
        self._txn = txn

    def put(self, *args: Any, **kwargs: Any) -> Any:
        self._txn._write()
        return self._cursor.put(*args, **kwargs)

    def putmulti(self, *args: Any, **kwargs: Any) -> Any:
        self._txn._write()
        return self._cursor.putmulti(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class CrashingEnv:
    """The store's LMDB environment, with each write transaction crashing at write ``fail_at``."""

    def __init__(self, env: Any, fail_at: int) -> None:
        self._env = env
        self.fail_at = fail_at
        self.writes = [0]
        """Writes made by write transactions so far (all of them, across transactions)."""

    def begin(self, *args: Any, **kwargs: Any) -> Any:
        txn = self._env.begin(*args, **kwargs)
        if not kwargs.get("write"):
            return txn
        return _Wrapped(txn, CrashingTxn(txn, self.writes, self.fail_at))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


class _Wrapped:
    """``with env.begin(write=True) as txn``: the real transaction's commit/abort, our writes."""

    def __init__(self, txn: Any, crashing: CrashingTxn) -> None:
        self._txn = txn
        self._crashing = crashing

    def __enter__(self) -> CrashingTxn:
        self._txn.__enter__()
        return self._crashing

    def __exit__(self, *exc: Any) -> Any:
        return self._txn.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._crashing, name)


def _chained(height: int, prev_hash: bytes) -> BlockRecord:
    """Block ``height`` after ``prev_hash``, with two transactions, receipts and a commit."""
    z = b"\x00" * 32
    header = Header("main", height, 1000 + height, prev_hash, 2, z, z, z, z, z, b"p")
    block_hash = compute_block_hash(HASHER, header)
    receipts = [Receipt(bytes([height, i]) * 16, STATUS_OK, b"", "", []) for i in range(2)]
    commit = CommitCertificate(height, 0, block_hash, [CommitSig(b"v", b"s")])
    return BlockRecord(Block(header, []), block_hash, receipts, commit)


def _save(store: ChainStore, record: BlockRecord) -> None:
    height = record.block.header.height
    tx_hashes = [r.tx_hash for r in record.receipts]
    writes: dict[bytes, bytes | None] = {
        b"k": b"v%d" % height,
        b"gone": b"g" if height == 1 else None,
        b"new%d" % height: b"n",
    }
    store.save_block(record, tx_hashes, writes, {"frontier": b"f%d" % height})


def test_a_crash_between_any_two_writes_of_a_block_leaves_the_previous_tip(tmp_path: Path) -> None:
    """save_block is one write transaction: die after any of its writes, and nothing of it shows."""
    first = _chained(1, b"\x11" * 32)
    second = _chained(2, first.block_hash)
    # Count the writes of one block by saving it once in a scratch store.
    scratch = ChainStore(tmp_path / "scratch", sync=False)
    _save(scratch, first)
    counting = CrashingEnv(scratch.env, fail_at=0)
    scratch.env = counting
    _save(scratch, second)
    total = counting.writes[0]
    scratch.env = counting._env
    scratch.close()
    assert total >= 10, "every part of a block is a write of its own"

    for k in range(1, total + 1):
        path = tmp_path / f"crash-{k}"
        store = ChainStore(path, sync=False)
        _save(store, first)
        real = store.env
        store.env = CrashingEnv(real, fail_at=k)
        with pytest.raises(Crash):
            _save(store, second)
        store.env = real
        store.close()
        # After the crash the store opens, passes its start-up check, and block 1 is the tip.
        again = ChainStore(path, sync=False)
        again.check(HASHER)
        assert again.height() == 1, f"crash at write {k} of {total}"
        assert again.load_block(2) is None and again.load_block_hash(2) is None, k
        assert again.load_block(1) == first, k
        assert [again.get_state(key) for key in (b"k", b"gone", b"new2")] == [b"v1", b"g", None], k
        assert again.get_state_at(b"k", 2) == b"v1", k
        assert not any(again.has_txs([r.tx_hash for r in second.receipts])), k
        assert again.load_meta("frontier") == b"f1", k
        # The same block then commits whole.
        _save(again, second)
        again.check(HASHER)
        assert (again.height(), again.load_block(2), again.get_state(b"k")) == (2, second, b"v2")
        again.close()
