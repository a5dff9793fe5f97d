"""One chain served by this node: store, mempool, execution and consensus wired together."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zhongshu.codec import decode, encode
from zhongshu.contracts import evidence
from zhongshu.crypto import get_suite
from zhongshu.execution.executor import apply_transactions
from zhongshu.ledger.hashing import (
    compute_block_hash,
    compute_genesis_hash,
    compute_receipt_root,
    compute_state_root,
    compute_tx_hash,
    compute_tx_root,
    compute_validator_set_hash,
)
from zhongshu.ledger.history import HistoryAccumulator
from zhongshu.ledger.proof import build_bundle
from zhongshu.ledger.proof.state import build_state_bundle
from zhongshu.ledger.smt import PLACEHOLDER, SparseMerkleProof, SparseMerkleTree
from zhongshu.ledger.types import Block, CommitCertificate, Genesis, Header, Receipt, Transaction
from zhongshu.node import errors, statemap_worker
from zhongshu.node.consensus_signer import ConsensusSigner
from zhongshu.node.errors import refusal
from zhongshu.node.mempool import Mempool, PendingTx
from zhongshu.node.signer import Signer
from zhongshu.node.verifier import (
    DEFAULT_REGISTRY,
    AdmissionRules,
    SenderVerifier,
    registry_factory,
)
from zhongshu.store import BlockRecord, ChainStore, StateMapUpdate

log = logging.getLogger("zhongshu.node")

Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Committed:
    """Where a transaction landed."""

    tx_hash: bytes
    height: int
    index: int
    time: int
    receipt: Receipt


class InvalidBlock(Exception):
    """A block from another node that this node cannot accept."""


@dataclass
class NodeMetrics:
    """Where the node's time goes, summed since start (seconds of wall time per stage)."""

    submit_requests: int = 0
    verified_signatures: int = 0
    """Submitted transactions checked (those refused before their signature included)."""
    verify_seconds: float = 0.0
    """Wall time of admission batches in the worker processes (they run in parallel inside)."""
    verify_cpu_seconds: float = 0.0
    """CPU time the verify worker processes spent checking sender keys and signatures."""
    execute_seconds: float = 0.0
    """Executing blocks and computing their roots."""
    store_seconds: float = 0.0
    """Committing blocks to LMDB, fsync included."""
    map_worker_blocks: int = 0
    """Blocks whose state map update ran in the map worker process (node.statemap_worker)."""
    map_worker_cpu_seconds: float = 0.0
    """... and the CPU seconds those updates took in the worker."""
    blocks: int = 0
    committed_txs: int = 0
    access_checks: int = 0
    """On a hub node's hub chain: signed application requests the gateway checked (all chains)."""
    access_check_seconds: float = 0.0
    """... and the CPU seconds those checks took (signature, app record, grants, quotas)."""


@dataclass(frozen=True)
class BuiltBlock:
    """A block this node assembled, with everything needed to store it once decided."""

    block: Block
    block_hash: bytes
    receipts: list[Receipt]
    writes: dict[bytes, bytes | None]
    tx_hashes: list[bytes]
    state_root: bytes
    state_map: StateMapUpdate | None
    """The state map's new and stale nodes, in key order (ChainStore.save_block); None without
    the map."""
    index_entries: dict[bytes, bytes]
    """The query index entries of this block's deposits (owner listings), stored with it."""


@dataclass(frozen=True)
class StateAt:
    """A key's value at a height, with the state map's proof against that height's header."""

    key: bytes
    value: bytes | None
    """The value after block ``height``; None when the key was absent."""
    proof: SparseMerkleProof
    record: BlockRecord
    """Block ``height``, whose header's ``state_root`` the proof leads to, with its commit."""


PROPOSAL_KEY = "proposal"
"""Meta key of the block this node proposed and is about to sign (cleared when stored)."""
PRECOMMITTED_KEY = "precommitted"
"""Meta key of the blocks a replica precommitted at the height in progress (cleared when a
block is stored): a block 2f+1 precommitted is decided, so its body must outlive a crash."""


class FrontierState:
    """What is persisted beside each block so a restart resumes exactly."""

    HISTORY = "history_frontier"
    HISTORY_SIZE = "history_size"
    STATE_ROOT = "state_root"
    STATE_MAP = "state_map"
    """What ``state_root`` is on this store: ``smt/2`` (the state map, ledger.smt, its nodes
    keyed by version), or
    ``chain/1`` (a hash chain over each block's writes; for measuring the map's cost only)."""


STATE_MAP_KINDS = {True: b"smt/2", False: b"chain/1"}


class ChainNode:
    """Serves one chain: accepts transactions, executes and stores blocks, answers queries.

    How blocks are decided is the subclass's: ``SoloNode`` (one validator) or ``Replica`` (BFT).
    """

    def __init__(
        self,
        genesis: Genesis,
        data_dir: Path,
        signer: Signer | ConsensusSigner,
        *,
        mempool_max_txs: int = 100_000,
        mempool_max_bytes: int = 256 * 1024 * 1024,
        verify_workers: int | None = None,
        clock: Clock = wall_clock_ms,
        crash_point: str | None = None,
        registry: str = DEFAULT_REGISTRY,
        verifier: SenderVerifier | None = None,
        state_map: bool = True,
        state_heights_kept: int = 0,
        map_workers: statemap_worker.StateMapWorkers | None = None,
    ) -> None:
        """``verifier``: a worker pool shared with other chains of this node (this chain then
        does not close it); without it the chain starts a pool of its own. ``state_map`` False
        puts a hash chain over each block's writes in ``state_root`` instead of the state map's
        root (no state proofs): only for measuring what the map costs (``zhongshu bench``).
        ``state_heights_kept``: how many of the latest heights stay provable (0: every one).
        ``map_workers``: state map workers shared with other chains of this node (this chain
        then does not close them); without them the chain starts one of its own."""
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.suite = get_suite(genesis.suite)
        self.hash = self.suite.hasher()
        self.genesis_hash = compute_genesis_hash(self.hash, genesis)
        self.validator_set_hash = compute_validator_set_hash(self.hash, genesis.validators)
        self.registry_spec = registry
        """The chain's contracts (``module:function``); every validator of a chain runs the same."""
        self.registry = registry_factory(registry)(genesis)
        self.store = ChainStore(data_dir)
        self.signer = signer
        self.clock = clock
        self.mempool = Mempool(mempool_max_txs, mempool_max_bytes)
        self._owns_verifier = verifier is None
        self.verifier = verifier or SenderVerifier(genesis.suite, verify_workers)
        """Transactions' keys and signatures, checked in worker processes."""
        self.stopped = False
        """Whether the hub stopped this chain: it stays readable and takes no transactions."""
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"verify-{self.chain_id}")
        """Single signature checks (consensus votes), in threads: no round trip to a process."""
        self._waiters: dict[bytes, list[asyncio.Future[Committed]]] = {}
        self._subscribers: dict[asyncio.Queue[dict[str, Any] | None], bool] = {}
        """Each subscriber's queue, and whether it wants contract events besides blocks."""
        self._wake = asyncio.Event()
        self._stopping = False
        self.metrics = NodeMetrics()
        self.state_map = state_map
        self.state_heights_kept = state_heights_kept
        self._owns_map_workers = map_workers is None
        self.map_workers = map_workers or statemap_worker.StateMapWorkers()
        """The state map's updates of large blocks, in worker processes (started on first use)."""
        self.crash_point = crash_point
        """For crash tests only: ``after-sign`` exits the process right after signing a block."""
        self._open_store()
        last = self.store.load_header(self.height)
        self.last_time = last.time if last else genesis.time

    # -- start-up ----------------------------------------------------------------------

    def _open_store(self) -> None:
        self.store.check(
            self.hash,
            ("genesis_hash", FrontierState.HISTORY, FrontierState.HISTORY_SIZE, FrontierState.STATE_ROOT),
        )
        stored = self.store.load_meta("genesis_hash")
        if stored is None:
            self.store.save_meta("genesis_hash", self.genesis_hash)
        elif stored != self.genesis_hash:
            raise errors.Refused(
                f"the store at {self.store.path} belongs to another genesis "
                f"({stored.hex()[:16]}..., expected {self.genesis_hash.hex()[:16]}...)"
            )
        self.height = self.store.height()
        raw_frontier = self.store.load_meta(FrontierState.HISTORY)
        raw_size = self.store.load_meta(FrontierState.HISTORY_SIZE)
        frontier = decode(raw_frontier, list[bytes]) if raw_frontier else []
        size = int.from_bytes(raw_size, "big") if raw_size else 0
        self.history = HistoryAccumulator(self.hash, size, frontier)
        # The accumulator holds every stored block: a broken invariant stops the node.
        if self.history.size != self.height:
            raise RuntimeError(f"history size {self.history.size} != stored height {self.height}")
        kind = STATE_MAP_KINDS[self.state_map]
        stored_kind = self.store.load_meta(FrontierState.STATE_MAP)
        if stored_kind is None and self.height == 0:
            self.store.save_meta(FrontierState.STATE_MAP, kind)
        elif stored_kind != kind:
            # A store keeps one kind of state root for its whole chain.
            raise errors.Refused(
                f"the store at {self.store.path} holds state roots of kind "
                f"{(stored_kind or b'chain/0').decode(errors='replace')}, this node makes "
                f"{kind.decode()}: start this chain on an empty data directory"
            )
        empty_root = PLACEHOLDER if self.state_map else self.hash(b"")
        self.state_root = self.store.load_meta(FrontierState.STATE_ROOT) or empty_root
        if self.state_map:
            self.store.check_state_map(self.hash, self.state_root, self.height)
        last_hash = self.store.load_block_hash(self.height) if self.height else None
        self.last_block_hash = last_hash or self.genesis_hash

    async def run(self) -> None:
        """Take part in producing blocks until closed (SoloNode, Replica)."""
        raise NotImplementedError

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._pool.shutdown(wait=True)
        if self._owns_map_workers:
            self.map_workers.close()
        if self._owns_verifier:
            self.verifier.close()
        for q in list(self._subscribers):
            q.put_nowait(None)
        self.store.close()

    # -- submission --------------------------------------------------------------------

    async def submit(self, txs: Sequence[Transaction]) -> list[bytes]:
        """Check, verify and pool a batch, all or nothing; return the tx hashes.

        Raises the typed Refused for a single transaction, BatchRefused for a batch. The checks
        that need no state (``check_tx``, key, signature) run in the worker processes; the node
        then refuses duplicates (in the batch, pending or committed) and checks mempool room.
        """
        params = self.genesis.params
        self.metrics.submit_requests += 1
        # A stopped chain takes no transactions.
        if self.stopped:
            raise errors.ChainStopped(f"chain {self.chain_id!r} was stopped by the hub; it is read-only")
        # A full mempool refuses at once, before any work.
        self.mempool.check_room(len(txs), 0)
        rules = AdmissionRules(
            self.registry_spec,
            self.genesis.suite,
            self.chain_id,
            self.genesis_hash,
            self.height + 1,
            params.max_tx_bytes,
        )
        started = time.perf_counter()
        results, cpu = await self.verifier.admit(rules, txs)
        self.metrics.verify_seconds += time.perf_counter() - started
        self.metrics.verify_cpu_seconds += cpu
        self.metrics.verified_signatures += len(txs)
        failures: list[tuple[int, errors.Refused]] = []
        admitted: list[tuple[int, bytes, int]] = []
        for i, result in enumerate(results):
            if isinstance(result[0], bytes):
                admitted.append((i, result[0], int(result[1])))
            else:
                failures.append((i, refusal(str(result[0]), str(result[1]))))
        # The same transaction is not already pending, committed or earlier in the batch (read
        # after the workers answered, so nothing stored or pooled meanwhile is missed).
        seen: set[bytes] = set()
        committed = self.store.has_txs([h for _, h, _ in admitted])
        for (i, h, _), is_committed in zip(admitted, committed, strict=True):
            if is_committed:
                failures.append((i, errors.Duplicate(f"transaction {h.hex()} is already committed")))
            elif h in seen or h in self.mempool:
                failures.append((i, errors.Duplicate(f"transaction {h.hex()} is already pending")))
            seen.add(h)
        if failures:
            failures.sort(key=lambda f: f[0])
            if len(txs) == 1:
                raise failures[0][1]
            raise errors.BatchRefused(failures)
        pending = [PendingTx(txs[i], h, size) for i, h, size in admitted]
        self.mempool.add(pending)
        self._wake.set()
        return [p.tx_hash for p in pending]

    async def _verify_senders(
        self, txs: Sequence[Transaction], sign_bytes: Sequence[bytes] | None = None
    ) -> list[tuple[int, errors.Refused]]:
        """Check each sender key and signature in the worker processes (``SenderVerifier``).

        ``sign_bytes``, when the caller has them, are each transaction's encoded body.
        """
        messages = sign_bytes if sign_bytes is not None else [tx.sign_bytes() for tx in txs]
        items = [(tx.sender, m, tx.signature) for tx, m in zip(txs, messages, strict=True)]
        failures, cpu = await self.verifier.check(items, self.genesis.suite)
        self.metrics.verify_cpu_seconds += cpu
        # The workers name each failure by its problem code (invalid-public-key, invalid-signature).
        return [(i, refusal(kind, why)) for i, kind, why in failures]

    def watch(self, tx_hashes: Sequence[bytes]) -> list[asyncio.Future[Committed]]:
        """Futures that resolve when each transaction commits, for transactions ``submit`` has
        just pooled (not committed: call it before awaiting anything, so no block is stored
        between). ``wait_watched`` waits for them."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Committed]] = []
        for h in tx_hashes:
            fut: asyncio.Future[Committed] = loop.create_future()
            self._waiters.setdefault(h, []).append(fut)
            futures.append(fut)
        return futures

    async def wait_committed(self, tx_hashes: Sequence[bytes], timeout: float) -> list[Committed]:
        """Wait until every transaction is committed; raise CommitTimeout otherwise."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Committed]] = []
        for h in tx_hashes:
            found = self.find_committed(h)
            if found is not None:
                fut: asyncio.Future[Committed] = loop.create_future()
                fut.set_result(found)
                futures.append(fut)
            else:
                futures.extend(self.watch([h]))
        return await self.wait_watched(tx_hashes, futures, timeout)

    async def wait_watched(
        self, tx_hashes: Sequence[bytes], futures: list[asyncio.Future[Committed]], timeout: float
    ) -> list[Committed]:
        """Wait for the futures of ``watch``; raise CommitTimeout after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                return list(await asyncio.gather(*futures))
        except TimeoutError:
            raise errors.CommitTimeout(
                f"not committed within {timeout:g} s; the transactions may still commit, but a node "
                "that halts or restarts forgets those still pending: look each up by its hash and "
                "submit again any not committed (safe: one already pending or committed is refused "
                "as a duplicate that names its hash)"
            ) from None
        finally:
            for h, fut in zip(tx_hashes, futures, strict=True):
                waiters = self._waiters.get(h)
                if waiters and fut in waiters:
                    waiters.remove(fut)
                    if not waiters:
                        del self._waiters[h]

    def end_commit_waits(self) -> int:
        """End every ``wait_watched`` still waiting with NodeStopping (the node is stopping, and
        its requests must answer before the stop's grace ends); return how many were ended."""
        ended = 0
        for waiters in self._waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(
                        errors.NodeStopping(
                            "the node is stopping; the transactions may still commit on the other nodes, "
                            "or be forgotten: look each up by its hash on a running node and submit again "
                            "any not committed"
                        )
                    )
                    ended += 1
        return ended

    def execute_block(
        self, height: int, time_ms: int, txs: list[Transaction], hashes: list[bytes], proposer: bytes
    ) -> BuiltBlock:
        """Run ``txs`` on top of the stored state and assemble the header (pure given the store)."""
        with self.store.state_reader() as read_state:
            outcome = apply_transactions(
                self.registry, read_state, self.chain_id, height, time_ms, txs, hashes
            )
        update = None
        if self.state_map:
            state_root, update = self._update_state_map(outcome.writes, height)
        else:
            state_root = compute_state_root(
                self.hash, self.state_root, [(k, v or b"") for k, v in outcome.writes.items()]
            )
        header = Header(
            chain_id=self.chain_id,
            height=height,
            time=time_ms,
            prev_hash=self.last_block_hash,
            tx_count=len(txs),
            tx_root=compute_tx_root(self.hash, txs),
            receipt_root=compute_receipt_root(self.hash, outcome.receipts),
            state_root=state_root,
            history_root=self.history.root(),
            validator_set_hash=self.validator_set_hash,
            proposer=proposer,
        )
        block = Block(header, txs)
        return BuiltBlock(
            block,
            compute_block_hash(self.hash, header),
            outcome.receipts,
            outcome.writes,
            hashes,
            state_root,
            update,
            evidence.owner_entries(height, txs, outcome.receipts),
        )

    def _update_state_map(
        self, writes: dict[bytes, bytes | None], height: int
    ) -> tuple[bytes, StateMapUpdate]:
        """The state map's root after a block's writes, and its new and stale nodes (in key
        order, as the store appends them).

        The previous root is stored under the previous height; this block's nodes, its root
        included, under this height. A large block's are computed in the map worker process.
        Stale nodes are indexed only for pruning: a node keeping every height gets none.
        """
        with_stale = self.state_heights_kept > 0
        if len(writes) >= statemap_worker.MIN_WRITES:
            mapped = self.map_workers.apply(
                self.store.path, self.genesis.suite, self.state_root, self.height, writes, height, with_stale
            )
            if mapped is not None:
                state_root, nodes, stale, cpu = mapped
                self.metrics.map_worker_blocks += 1
                self.metrics.map_worker_cpu_seconds += cpu
                return state_root, StateMapUpdate(nodes, stale)
        with self.store.state_map_reader() as reader:
            state_root, new_nodes, stale_keys = SparseMerkleTree(self.hash, reader).apply_tracked(
                self.state_root, self.height, writes, height
            )
        return state_root, StateMapUpdate(sorted(new_nodes.items()), sorted(stale_keys) if with_stale else ())

    def validate_block(self, block: Block) -> BuiltBlock:
        """Re-execute a block proposed by another node; raise InvalidBlock unless it rebuilds exactly.

        Signatures of its transactions must have been verified by the caller.
        """
        header = block.header
        # The block extends this node's tip.
        if header.height != self.height + 1 or header.prev_hash != self.last_block_hash:
            raise InvalidBlock(f"block {header.height} does not extend tip {self.height}")
        # It is signed by this chain's validator set and proposed by one of its members.
        if header.validator_set_hash != self.validator_set_hash:
            raise InvalidBlock("block names another validator set")
        if self.genesis.validators.power_of(header.proposer) == 0:
            raise InvalidBlock("block proposer is not a validator")
        # Time moves forward.
        last = self.store.load_header(self.height) if self.height else None
        if header.time <= (last.time if last else self.genesis.time):
            raise InvalidBlock("block time does not increase")
        # The block respects the chain's size limits.
        params = self.genesis.params
        if len(block.txs) > params.max_block_txs or len(encode(block)) > params.max_block_bytes + 4096:
            raise InvalidBlock("block exceeds the chain's size limits")
        # Every transaction is for this chain of this network: its chain id and its genesis.
        if any(tx.chain_id != self.chain_id or tx.genesis_hash != self.genesis_hash for tx in block.txs):
            raise InvalidBlock("block holds a transaction signed for another chain or genesis")
        hashes = [compute_tx_hash(self.hash, tx) for tx in block.txs]
        # No transaction is already committed or repeated in the block.
        if len(set(hashes)) != len(hashes) or any(self.store.has_txs(hashes)):
            raise InvalidBlock("block repeats a committed or duplicate transaction")
        built = self.execute_block(header.height, header.time, list(block.txs), hashes, header.proposer)
        # Re-execution reproduces every root of the header.
        if built.block.header != header:
            raise InvalidBlock("block header does not match its re-execution")
        return built

    async def store_block(self, built: BuiltBlock, commit: CommitCertificate) -> None:
        """Store an executed block with its certificate atomically, then advance the tip."""
        block, block_hash, receipts, hashes = built.block, built.block_hash, built.receipts, built.tx_hashes
        header = block.header
        history = HistoryAccumulator(self.hash, self.history.size, self.history.frontier)
        history.append(block_hash)
        meta = {
            FrontierState.HISTORY: encode(history.frontier),
            FrontierState.HISTORY_SIZE: history.size.to_bytes(8, "big"),
            FrontierState.STATE_ROOT: built.state_root,
            PROPOSAL_KEY: b"",
            PRECOMMITTED_KEY: b"",
        }
        record = BlockRecord(block, block_hash, receipts, commit)
        started = time.perf_counter()
        await asyncio.to_thread(
            self.store.save_block,
            record,
            hashes,
            built.writes,
            meta,
            self._with_pruning(built.state_map, header.height),
            built.index_entries,
        )
        self.metrics.store_seconds += time.perf_counter() - started
        self.metrics.blocks += 1
        self.metrics.committed_txs += len(hashes)
        self.history = history
        self.state_root = built.state_root
        self.height = header.height
        self.last_time = header.time
        self.last_block_hash = block_hash
        self.mempool.remove(hashes)
        self._notify(block, block_hash, hashes, receipts, commit.round)

    def _with_pruning(self, update: StateMapUpdate | None, height: int) -> StateMapUpdate | None:
        """``update`` with the height to keep versions from, when this node keeps only the last
        ``state_heights_kept`` heights provable (keeping every height, it indexes no stale
        nodes either: about 6 a transaction, which nothing would read)."""
        if update is None or not self.state_heights_kept:
            return update
        return dataclasses.replace(update, prune_to=max(0, height - self.state_heights_kept + 1))

    def _notify(
        self,
        block: Block,
        block_hash: bytes,
        hashes: list[bytes],
        receipts: list[Receipt],
        round_: int | None = None,
    ) -> None:
        header = block.header
        for i, (h, r) in enumerate(zip(hashes, receipts, strict=True)):
            waiters = self._waiters.pop(h, None)
            if waiters:
                done = Committed(h, header.height, i, header.time, r)
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(done)
        if not self._subscribers:
            return
        block_event: dict[str, Any] = {
            "type": "block",
            "height": header.height,
            "hash": block_hash.hex(),
            "time": header.time,
            "tx_count": header.tx_count,
            "round": round_,
        }
        # Contract events are built only when a subscriber asked for them (the block log does not).
        contract_events: list[dict[str, Any]] = []
        if any(self._subscribers.values()):
            for h, r in zip(hashes, receipts, strict=True):
                for e in r.events:
                    contract_events.append(
                        {
                            "type": "event",
                            "height": header.height,
                            "tx_hash": h.hex(),
                            "contract": e.contract,
                            "name": e.name,
                            "data": e.data.hex(),
                        }
                    )
        for q, wants_events in list(self._subscribers.items()):
            for ev in [block_event, *contract_events] if wants_events else [block_event]:
                if q.full():
                    # A subscriber that cannot keep up is cut off rather than buffered forever.
                    self._subscribers.pop(q, None)
                    q.put_nowait(None) if not q.full() else None
                    break
                q.put_nowait(ev)

    def subscribe(
        self, maxsize: int = 10_000, *, events: bool = True
    ) -> asyncio.Queue[dict[str, Any] | None]:
        """A queue of ``block`` events and, with ``events``, contract events; None at the end."""
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize)
        self._subscribers[q] = events
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.pop(q, None)

    # -- queries -----------------------------------------------------------------------

    def find_committed(self, tx_hash: bytes) -> Committed | None:
        found = self._find_in_blocks(tx_hash)
        return found[1] if found else None

    def _find_in_blocks(self, tx_hash: bytes) -> tuple[Transaction, Committed] | None:
        """A committed transaction and where it is, from the transaction index."""
        loc = self.store.load_tx_location(tx_hash)
        if loc is None:
            return None
        record = self.store.load_block(loc.height)
        if record is None:
            raise RuntimeError(f"tx index points at missing block {loc.height}")
        committed = Committed(
            tx_hash, loc.height, loc.index, record.block.header.time, record.receipts[loc.index]
        )
        return record.block.txs[loc.index], committed

    def load_block(self, height: int) -> BlockRecord:
        record = self.store.load_block(height) if 1 <= height <= self.height else None
        if record is None:
            raise errors.NotFound(f"no block at height {height} (chain height is {self.height})")
        return record

    def load_tx(self, tx_hash: bytes) -> tuple[Transaction, Committed | None]:
        """A transaction and where it was committed, or None beside one still pending."""
        found = self._find_in_blocks(tx_hash)
        # A block being stored is not shown before the chain's height includes it.
        if found is not None and found[1].height <= self.height:
            return found
        pending = self.mempool.get(tx_hash)
        if pending is not None:
            return pending, None
        raise errors.NotFound(f"no transaction {tx_hash.hex()} on chain {self.chain_id!r}")

    def build_proof(self, tx_hash: bytes, *, anchor_latest: bool = False) -> dict[str, Any]:
        """The offline proof bundle of a committed transaction."""
        loc = self.store.load_tx_location(tx_hash)
        if loc is None:
            raise errors.NotFound(f"transaction {tx_hash.hex()} is not committed on {self.chain_id!r}")
        record = self.load_block(loc.height)
        anchor = self._latest_anchor(loc.height) if anchor_latest else None
        return build_bundle(
            self.genesis.suite,
            record.block,
            record.receipts,
            loc.index,
            record.commit,
            self.genesis.validators,
            anchor=anchor,
        )

    def prove_state(self, key: bytes, height: int | None = None) -> StateAt:
        """``key``'s value after block ``height`` (default: the tip) and the state map's proof.

        Raises NotFound for a height with no block, NoStateMap when this chain keeps no state
        map, StatePruned for a height whose state this node no longer keeps.
        """
        if not self.state_map:
            raise errors.NoStateMap(
                f"this node runs chain {self.chain_id!r} without the state map: no state proofs"
            )
        at = self.height if height is None else height
        record = self.load_block(at)
        provable_from = self.store.state_provable_from()
        if at < provable_from:
            raise errors.StatePruned(
                f"this node keeps the state of chain {self.chain_id!r} provable from height "
                f"{provable_from} on (state_heights_kept {self.state_heights_kept}), not at {at}"
            )
        root = record.block.header.state_root
        with self.store.state_map_reader() as nodes:
            proof = SparseMerkleTree(self.hash, nodes).prove(root, at, key)
        value = self.store.get_state_at(key, at)
        return StateAt(key, value, proof, record)

    def build_state_proof(self, state: StateAt, *, anchor_latest: bool = False) -> dict[str, Any]:
        """The offline state bundle (``zhongshu-state-proof/1``) of ``state``; with
        ``anchor_latest``, its block is also proven through the newest header."""
        anchor = self._latest_anchor(state.record.block.header.height) if anchor_latest else None
        return build_state_bundle(
            self.genesis.suite,
            state.key,
            state.value,
            state.proof,
            state.record.block,
            state.record.commit,
            self.genesis.validators,
            anchor=anchor,
        )

    def _latest_anchor(self, height: int) -> tuple[Header, CommitCertificate, list[bytes]] | None:
        """What proves block ``height`` through the newest header (its commit and the block
        hashes under its history root); None when ``height`` is the newest."""
        if self.height <= height:
            return None
        latest = self.load_block(self.height)
        return latest.block.header, latest.commit, self.store.load_block_hashes(self.height - 1)

    def get_evidence(self, digest: bytes) -> evidence.EvidenceRecord:
        raw = self.store.get_state(evidence.digest_key(digest))
        if raw is None:
            raise errors.NotFound(f"no evidence with digest {digest.hex()} on {self.chain_id!r}")
        return evidence.decode_record(raw)

    def list_evidence(self, owner: bytes, limit: int = 100) -> list[evidence.EvidenceRecord]:
        out = []
        for _, digest in self.store.scan_index(evidence.owner_prefix(owner), limit):
            out.append(self.get_evidence(digest))
        return out

    def _cpu(self) -> dict[str, float]:
        workers = self.verifier.workers_cpu_seconds() + self.map_workers.cpu_seconds()
        return {"process_cpu_seconds": time.process_time() + workers, "workers_cpu_seconds": workers}

    def status(self) -> dict[str, Any]:
        header = self.store.load_header(self.height) if self.height else None
        return {
            "chain_id": self.chain_id,
            "suite": self.genesis.suite,
            "height": self.height,
            "latest_block_hash": self.last_block_hash.hex() if self.height else None,
            "latest_block_time": header.time if header else None,
            "genesis_hash": self.genesis_hash.hex(),
            "validators": len(self.genesis.validators.validators),
            "mempool_txs": len(self.mempool),
            "mempool_bytes": self.mempool.bytes,
            "metrics": dataclasses.asdict(self.metrics) | self._cpu(),
        }
