"""The state map's update of a large block, in a worker process outside the node's GIL.

A node under load is bound by its one interpreter lock: the event loop (the gateway, admission,
consensus), block execution and the store's Python all take turns on it. Updating the state map
(ledger.smt) costs 45-60 µs of Python per written key, most of it hashing and walking nodes; in
the node's own process that added as much to the 260-285 µs each transaction held the lock, and
TPS fell by 14-17 % (docs/performance.md). A worker process has a lock of its own: it opens the
chain's store read-only (``store.StateMapFile``), computes the new root and nodes, and sends them
back; the node writes them with the block, in the same LMDB transaction as before, so nothing of
the store's atomicity changes. The result is the same function of the same inputs, only computed
elsewhere. Blocks of fewer than ``MIN_WRITES`` written keys are updated in the node's process:
for them the round trip costs more than it saves, and a chain that never sees a large block
never starts the worker.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from zhongshu.crypto import get_suite
from zhongshu.ledger.smt import SparseMerkleTree
from zhongshu.node.verifier import exit_with_parent, pool_cpu_seconds
from zhongshu.store import StateMapFile

MIN_WRITES = 128
"""Blocks that write at least this many keys have their state map updated in the worker."""

log = logging.getLogger(__name__)

_files: dict[str, StateMapFile] = {}
"""The worker's open stores, by path."""


def _start_worker(parent: int) -> None:
    """Ctrl-C reaches the whole process group, and stopping is the node's to do, so the worker
    ignores SIGINT; it ends when the node process does (even one killed with SIGKILL)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=exit_with_parent, args=(parent,), daemon=True, name="parent-watch").start()


Mapped = tuple[bytes, list[tuple[bytes, bytes]], list[bytes], float]
"""The new root, the new nodes (node key, stored bytes) and the stale node keys, both in key
order, and the worker's CPU seconds."""


def apply_updates(
    path: str, suite: str, root: bytes, root_version: int, updates: Mapping[bytes, bytes | None], version: int
) -> Mapped:
    """``SparseMerkleTree.apply_tracked`` over the state map of the store at ``path`` (in the
    worker), its nodes and stale keys sorted here rather than in the node."""
    started = time.process_time()
    opened = _files.get(path)
    if opened is None:
        opened = _files[path] = StateMapFile(Path(path))
    with opened.reader() as nodes:
        tree = SparseMerkleTree(get_suite(suite).hasher(), nodes)
        new_root, new_nodes, stale = tree.apply_tracked(root, root_version, updates, version)
    return new_root, sorted(new_nodes.items()), sorted(stale), time.process_time() - started


class StateMapWorker:
    """One worker process for the state map of one chain's store, started on first use."""

    def __init__(self, store_path: Path, suite: str) -> None:
        self.store_path = str(store_path)
        self.suite = suite
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def apply(
        self, root: bytes, root_version: int, updates: Mapping[bytes, bytes | None], version: int
    ) -> Mapped | None:
        """The new root, nodes and stale keys, and the worker's CPU seconds; None when no worker
        can be had (the caller then computes them itself). Blocks the calling thread: call it
        from a worker thread, never from the event loop."""
        for _ in range(2):
            pool = self._get_pool()
            try:
                return pool.submit(
                    apply_updates, self.store_path, self.suite, root, root_version, dict(updates), version
                ).result()
            except BrokenProcessPool:
                # The worker died (killed from outside, out of memory): start another, once.
                log.warning("the state map worker of %s stopped; starting another", self.store_path)
                with self._lock:
                    if self._pool is pool:
                        self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
        log.warning("no state map worker for %s: this block's map is updated in the node", self.store_path)
        return None

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn: a fresh interpreter (forking a process with threads and an open store is unsafe).
                self._pool = ProcessPoolExecutor(
                    1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                    initargs=(os.getpid(),),
                )
            return self._pool

    def cpu_seconds(self) -> float:
        """CPU seconds the live worker process has used, its start included (0 before it starts)."""
        return pool_cpu_seconds(self._pool)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
