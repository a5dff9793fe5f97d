"""Admission checks and sender checks (public key, signature) in worker processes, outside
the node's GIL.

The C code of a signature check releases the GIL, but every check also runs some Python, and
a thread that wants the GIL back waits up to the interpreter's switch interval (5 ms) while the
event loop runs Python. Measured on a 2-core machine: two verify threads beside one busy Python
thread checked 525 Ed25519 signatures a second, two worker processes 6,950 (docs/performance.md).
So the node sends each batch to a pool of processes, one per core: a submitted batch as its
transactions' canonical encoding, for every stateless check (``check_tx``), the tx hash and the
signature (``admit_txs``); a block's transactions from a peer as (sender, sign-bytes, signature)
triples (``check_items``). The node keeps the checks that need its state: duplicates, mempool room.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import msgspec

from zhongshu.crypto import InvalidKey, Suite, get_suite
from zhongshu.execution.registry import Registry
from zhongshu.ledger.types import Genesis, Transaction
from zhongshu.node import errors
from zhongshu.node.txcheck import check_tx

T = TypeVar("T")

INVALID_PUBLIC_KEY = "invalid-public-key"
INVALID_SIGNATURE = "invalid-signature"

Item = tuple[bytes, bytes, bytes]
"""(sender public key, sign-bytes, signature)."""

Failure = tuple[int, str, str]
"""(index in the batch, INVALID_PUBLIC_KEY or INVALID_SIGNATURE, why)."""

_items_decoder = msgspec.msgpack.Decoder(list[Item])
_txs_decoder = msgspec.msgpack.Decoder(list[Transaction])


class AdmissionRules(msgspec.Struct, frozen=True):
    """What a worker needs to check a submitted transaction without the node's state."""

    registry: str
    """The chain's contracts, as ``module:function`` returning its Registry (``registry_factory``)."""
    suite: str
    chain_id: str
    genesis_hash: bytes
    next_height: int
    max_tx_bytes: int


Admitted = tuple[bytes, int]
"""(tx hash, encoded size) of a transaction that passed every check."""

Refusal = tuple[str, str]
"""(problem code, detail) of one that did not."""

_registries: dict[str, Registry] = {}

DEFAULT_REGISTRY = "zhongshu.contracts:build_registry"
"""The contracts of a business chain."""


RegistryFactory = Callable[[Genesis | None], Registry]
"""Builds a chain's contracts; given the chain's genesis when it executes blocks (a contract
may need it), None when it only admits transactions (decoding and limits need no genesis)."""


def registry_factory(spec: str) -> RegistryFactory:
    """The function a ``module:function`` spec names (its module imported on first use)."""
    module_name, _, function = spec.partition(":")
    factory: RegistryFactory = getattr(importlib.import_module(module_name), function)
    return factory


def _registry(spec: str) -> Registry:
    registry = _registries.get(spec)
    if registry is None:
        registry = _registries[spec] = registry_factory(spec)(None)
    return registry


def admit_txs(rules: AdmissionRules, blob: bytes) -> tuple[list[Admitted | Refusal], float]:
    """Check each transaction of ``blob`` (canonical MessagePack of a list of transactions):
    ``check_tx``, then the sender key and signature. Return one result per transaction, in order,
    and the CPU seconds spent in key and signature checks alone."""
    registry = _registry(rules.registry)
    suite = get_suite(rules.suite)
    hasher = suite.hasher()
    results: list[Admitted | Refusal] = []
    verify_cpu = 0.0
    for tx in _txs_decoder.decode(blob):
        try:
            size = check_tx(
                tx,
                chain_id=rules.chain_id,
                genesis_hash=rules.genesis_hash,
                registry=registry,
                next_height=rules.next_height,
                max_tx_bytes=rules.max_tx_bytes,
            )
        except errors.Refused as exc:
            results.append((exc.code, exc.detail))
            continue
        # The tx hash is the hash of the sign-bytes: encoded once, for both.
        message = tx.sign_bytes()
        started = time.process_time()
        failure = _check_sender(suite, tx.sender, message, tx.signature)
        verify_cpu += time.process_time() - started
        results.append(failure[1:] if failure else (hasher(message), size))
    return results, verify_cpu


def _check_sender(suite: Suite, sender: bytes, message: bytes, signature: bytes) -> Failure | None:
    """Index 0 and the failure, or None when the key is valid and the signature verifies."""
    # The sender is a valid public key of the chain's suite.
    try:
        suite.check_public_key(sender)
    except InvalidKey as exc:
        return (0, INVALID_PUBLIC_KEY, str(exc))
    # The signature verifies over the sign-bytes with that key.
    if not suite.verify(sender, message, signature):
        return (0, INVALID_SIGNATURE, "the signature does not verify for the sender's key")
    return None


def check_items(suite_name: str, blob: bytes) -> tuple[list[Failure], float]:
    """Check each triple of ``blob``; return the failures and this call's CPU seconds.

    Runs in a worker process (and is a plain function, so tests can call it directly).
    """
    started = time.process_time()
    suite = get_suite(suite_name)
    failures: list[Failure] = []
    for i, (sender, message, signature) in enumerate(_items_decoder.decode(blob)):
        failure = _check_sender(suite, sender, message, signature)
        if failure:
            failures.append((i, *failure[1:]))
    return failures, time.process_time() - started


PARENT_POLL_SECONDS = 0.5

WORKER_NICE = 5
"""Workers run below the node's priority: the node's own process (consensus messages, the
gateway, block commits) gets a core first, batch checks take what is left."""


def exit_with_parent(parent: int) -> None:
    """End this worker once its node is gone (a node killed with SIGKILL cannot shut it down)."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(0)


def _start_worker(suite_name: str, parent: int) -> None:
    """A worker's start: Ctrl-C reaches the whole process group, and stopping is the node's
    to do (it shuts the pool down), so the worker ignores SIGINT; it ends when the node process
    does; then it loads the crypto."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(WORKER_NICE)
    threading.Thread(target=exit_with_parent, args=(parent,), daemon=True, name="parent-watch").start()
    get_suite(suite_name)


def _warm(suite_name: str) -> None:
    """Load the suite's crypto libraries in the worker before the first batch."""
    get_suite(suite_name)


class SenderVerifier:
    """A pool of worker processes checking sender keys and signatures, for the chains of a node
    (``suite_name`` is the suite its workers load at start; others load on first use)."""

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

    async def check(
        self, items: Sequence[Item], suite_name: str | None = None
    ) -> tuple[list[Failure], float]:
        """The failures among ``items`` (indices into it, in order) and the workers' CPU seconds.

        ``suite_name``: the suite of the chain the items are from (a pool serves every chain of
        a node, whatever its suite); the pool's own suite when not given."""
        if not items:
            return [], 0.0
        starts, parts = await self._run(check_items, suite_name or self.suite_name, items)
        failures = [
            (s + i, kind, why) for s, (bad, _) in zip(starts, parts, strict=True) for i, kind, why in bad
        ]
        return failures, sum(cpu for _, cpu in parts)

    async def admit(
        self, rules: AdmissionRules, txs: Sequence[Transaction]
    ) -> tuple[list[Admitted | Refusal], float]:
        """``admit_txs`` over ``txs`` in the workers: one result per transaction, in order, and
        the CPU seconds of key and signature checks."""
        if not txs:
            return [], 0.0
        _, parts = await self._run(admit_txs, rules, txs)
        return [r for results, _ in parts for r in results], sum(cpu for _, cpu in parts)

    async def _run(
        self, work: Callable[[Any, bytes], T], first: Any, items: Sequence[Any]
    ) -> tuple[range, list[T]]:
        """``work(first, blob)`` for each worker's share of ``items``, encoded as one blob."""
        chunk = -(-len(items) // self.workers)
        starts = range(0, len(items), chunk)
        blobs = [msgspec.msgpack.encode(items[s : s + chunk]) for s in starts]
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            pool = self._get_pool()
            try:
                parts = await asyncio.gather(
                    *(loop.run_in_executor(pool, work, first, blob) for blob in blobs)
                )
                return starts, list(parts)
            except BrokenProcessPool:
                # A worker died (killed from outside, out of memory): start a new pool and retry once.
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def workers_cpu_seconds(self) -> float:
        """CPU seconds the live workers have used in all (from /proc; 0 where there is none)."""
        return pool_cpu_seconds(self._pool)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def pool_cpu_seconds(pool: ProcessPoolExecutor | None) -> float:
    """CPU seconds the live processes of ``pool`` have used in all (from /proc; 0 where there is none)."""
    if pool is None:
        return 0.0
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in list(pool._processes or {}):
        try:
            with open(f"/proc/{pid}/stat") as f:
                # After the command name (it may hold spaces): utime is the 12th field, stime the 13th.
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total
