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
never starts the worker. A chain of its own has one worker; a hub node's chains share one per
core (``StateMapWorkers``), each call naming its chain's store.
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
from zhongshu.store.datafile import DATA_FILE

MIN_WRITES = 128
"""Blocks that write at least this many keys have their state map updated in the worker."""

log = logging.getLogger(__name__)

_files: dict[str, tuple[tuple[int, int], StateMapFile]] = {}
"""The worker's open stores, by path, with the (device, inode) of the data file they opened."""


def _start_worker(parent: int) -> None:
    """Ctrl-C reaches the whole process group, and stopping is the node's to do, so the worker
    ignores SIGINT; it ends when the node process does (even one killed with SIGKILL)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=exit_with_parent, args=(parent,), daemon=True, name="parent-watch").start()


Mapped = tuple[bytes, list[tuple[bytes, bytes]], list[bytes], float]
"""The new root, the new nodes (node key, stored bytes) and the stale node keys, both in key
order, and the worker's CPU seconds."""


def apply_updates(
    path: str,
    suite: str,
    root: bytes,
    root_version: int,
    updates: Mapping[bytes, bytes | None],
    version: int,
    with_stale: bool,
) -> Mapped:
    """``SparseMerkleTree.apply_tracked`` over the state map of the store at ``path`` (in the
    worker), its nodes and (``with_stale``: else none) stale keys sorted here rather than in
    the node."""
    started = time.process_time()
    opened = _open(path)
    with opened.reader() as nodes:
        tree = SparseMerkleTree(get_suite(suite).hasher(), nodes)
        new_root, new_nodes, stale = tree.apply_tracked(root, root_version, updates, version)
    return (
        new_root,
        sorted(new_nodes.items()),
        sorted(stale) if with_stale else [],
        time.process_time() - started,
    )


def _open(path: str) -> StateMapFile:
    """The store at ``path``, opened once per worker; again if its data file was replaced (a
    store restored from a backup is another file under the same name)."""
    stat = os.stat(Path(path) / DATA_FILE)
    identity = (stat.st_dev, stat.st_ino)
    cached = _files.get(path)
    if cached is not None and cached[0] == identity:
        return cached[1]
    if cached is not None:
        cached[1].close()
    opened = StateMapFile(Path(path))
    _files[path] = (identity, opened)
    return opened


class StateMapWorkers:
    """Worker processes for state map updates, started on first use: one for a chain of its
    own, or one per core shared by all the chains of a hub node (each call names its store)."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def apply(
        self,
        store_path: Path,
        suite: str,
        root: bytes,
        root_version: int,
        updates: Mapping[bytes, bytes | None],
        version: int,
        with_stale: bool = True,
    ) -> Mapped | None:
        """The new root, nodes and stale keys (none unless ``with_stale``) of the store at
        ``store_path``, and the worker's CPU seconds; None when no worker can be had (the caller
        then computes them itself).
        Blocks the calling thread: call it from a worker thread, never from the event loop."""
        for _ in range(2):
            pool = self._get_pool()
            try:
                return pool.submit(
                    apply_updates,
                    str(store_path),
                    suite,
                    root,
                    root_version,
                    dict(updates),
                    version,
                    with_stale,
                ).result()
            except BrokenProcessPool:
                # A worker died (killed from outside, out of memory): start others, once.
                log.warning("a state map worker stopped (store %s); starting others", store_path)
                with self._lock:
                    if self._pool is pool:
                        self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
        log.warning("no state map worker for %s: this block's map is updated in the node", store_path)
        return None

    def _get_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn: a fresh interpreter (forking a process with threads and an open store is unsafe).
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                    initargs=(os.getpid(),),
                )
            return self._pool

    def cpu_seconds(self) -> float:
        """CPU seconds the live worker processes have used, their start included (0 before)."""
        return pool_cpu_seconds(self._pool)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
