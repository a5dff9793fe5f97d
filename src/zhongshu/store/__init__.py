"""Embedded, crash-safe storage of blocks, state and indexes."""

from zhongshu.store.lmdb_store import BlockRecord, ChainStore, StoreError

__all__ = ["BlockRecord", "ChainStore", "StoreError"]
