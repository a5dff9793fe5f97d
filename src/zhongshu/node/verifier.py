"""Sender checks (public key and signature) in worker processes, outside the node's GIL.

The C code of a signature check releases the GIL, but every check also runs some Python, and
a thread that wants the GIL back waits up to the interpreter's switch interval (5 ms) while the
event loop runs Python. Measured on a 2-core machine: two verify threads beside one busy Python
thread checked 525 Ed25519 signatures a second, two worker processes 6,950 (docs/performance.md).
So the node sends each batch, as one MessagePack blob of (sender, sign-bytes, signature)
triples, to a pool of processes, one per core.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import msgspec

from zhongshu.crypto import InvalidKey, get_suite

INVALID_PUBLIC_KEY = "invalid-public-key"
INVALID_SIGNATURE = "invalid-signature"

Item = tuple[bytes, bytes, bytes]
"""(sender public key, sign-bytes, signature)."""

Failure = tuple[int, str, str]
"""(index in the batch, INVALID_PUBLIC_KEY or INVALID_SIGNATURE, why)."""

_items_decoder = msgspec.msgpack.Decoder(list[Item])


def check_items(suite_name: str, blob: bytes) -> tuple[list[Failure], float]:
    """Check each triple of ``blob``; return the failures and this call's CPU seconds.

    Runs in a worker process (and is a plain function, so tests can call it directly).
    """
    started = time.process_time()
    suite = get_suite(suite_name)
    failures: list[Failure] = []
    for i, (sender, message, signature) in enumerate(_items_decoder.decode(blob)):
        # The sender is a valid public key of the chain's suite.
        try:
            suite.check_public_key(sender)
        except InvalidKey as exc:
            failures.append((i, INVALID_PUBLIC_KEY, str(exc)))
            continue
        # The signature verifies over the sign-bytes with that key.
        if not suite.verify(sender, message, signature):
            failures.append((i, INVALID_SIGNATURE, "the signature does not verify for the sender's key"))
    return failures, time.process_time() - started


PARENT_POLL_SECONDS = 0.5


def _exit_with_parent(parent: int) -> None:
    """End this worker once its node is gone (a node killed with SIGKILL cannot shut it down)."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(0)


def _start_worker(suite_name: str, parent: int) -> None:
    """A worker's start: Ctrl-C reaches the whole process group, and stopping is the node's
    to do (it shuts the pool down), so the worker ignores SIGINT; it ends when the node process
    does; then it loads the crypto."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="parent-watch").start()
    get_suite(suite_name)


def _warm(suite_name: str) -> None:
    """Load the suite's crypto libraries in the worker before the first batch."""
    get_suite(suite_name)


class SenderVerifier:
    """A pool of worker processes checking sender keys and signatures for one chain's suite."""

    def __init__(self, suite_name: str, workers: int | None = None) -> None:
        self.suite_name = suite_name
        self.workers = max(1, workers or os.cpu_count() or 2)
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a fresh interpreter (forking a process with threads and an open store is unsafe).
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.suite_name, os.getpid()),
            )
        return self._pool

    async def warm(self) -> None:
        """Start every worker now, so the first batch does not wait for them."""
        loop = asyncio.get_running_loop()
        pool = self._get_pool()
        await asyncio.gather(
            *(loop.run_in_executor(pool, _warm, self.suite_name) for _ in range(self.workers))
        )

    async def check(self, items: Sequence[Item]) -> tuple[list[Failure], float]:
        """The failures among ``items`` (indices into it, in order) and the workers' CPU seconds."""
        if not items:
            return [], 0.0
        chunk = -(-len(items) // self.workers)
        starts = range(0, len(items), chunk)
        blobs = [msgspec.msgpack.encode(items[s : s + chunk]) for s in starts]
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            pool = self._get_pool()
            try:
                parts = await asyncio.gather(
                    *(loop.run_in_executor(pool, check_items, self.suite_name, blob) for blob in blobs)
                )
                break
            except BrokenProcessPool:
                # A worker died (killed from outside, out of memory): start a new pool and retry once.
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
                if attempt == 2:
                    raise
        failures = [
            (s + i, kind, why) for s, (bad, _) in zip(starts, parts, strict=True) for i, kind, why in bad
        ]
        return failures, sum(cpu for _, cpu in parts)

    def workers_cpu_seconds(self) -> float:
        """CPU seconds the live workers have used in all (from /proc; 0 where there is none)."""
        if self._pool is None:
            return 0.0
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in list(self._pool._processes or {}):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    # After the command name (it may hold spaces): utime is the 12th field, stime the 13th.
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):
                continue
        return total

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
