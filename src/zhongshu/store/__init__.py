"""Embedded, crash-safe storage of blocks, state and indexes."""

from zhongshu.store.errors import StoreDamaged, StoreError
from zhongshu.store.lmdb_store import BlockRecord, ChainStore, StateMapFile, StateMapUpdate

__all__ = ["BlockRecord", "ChainStore", "StoreDamaged", "StoreError", "StateMapFile", "StateMapUpdate"]
