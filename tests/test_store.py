"""The LMDB store: blocks commit in order and atomically; point-in-time state reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from zhongshu.ledger.types import Block, CommitCertificate, Header
from zhongshu.store import BlockRecord, ChainStore, StoreError


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
    assert reopened.load_block(3) is not None and reopened.load_block_hashes(4) == [
        bytes([h]) * 32 for h in range(1, 5)
    ]
    assert isinstance(reopened.load_block(2).receipts, list)  # type: ignore[union-attr]
