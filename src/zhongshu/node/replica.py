"""A replica of a BFT chain: the Tendermint engine driven by the network, timers and a WAL.

Every input of the engine goes through one queue and is appended to the write-ahead log
(``consensus.wal``, fsynced) before the engine sees it; a restart replays the log of the
current height into a fresh engine. Block data, transaction gossip and block sync travel
beside consensus messages (``zhongshu.node.wire``). All state changes happen in the one
consumer task; validation runs in worker threads and comes back through the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zhongshu.codec import DecodeError, decode, encode
from zhongshu.consensus.boundary import SignVote
from zhongshu.consensus.messages import (
    BlockBuilt,
    BlockData,
    Broadcast,
    BuildBlock,
    Decide,
    EngineAction,
    EngineInput,
    Equivocation,
    FetchBlock,
    ProposalSigned,
    ScheduleTimeout,
    SignedProposal,
    SignedVote,
    SignProposal,
    StartHeight,
    TimeoutFired,
    VoteSigned,
)
from zhongshu.consensus.tendermint import TendermintEngine, TimeoutConfig
from zhongshu.ledger.commit import InvalidCommit, check_commit
from zhongshu.ledger.hashing import compute_block_hash, compute_tx_hash
from zhongshu.ledger.types import Block, Genesis, Transaction
from zhongshu.node import errors
from zhongshu.node.chain import BuiltBlock, ChainNode, InvalidBlock
from zhongshu.node.consensus_signer import ConsensusSigner
from zhongshu.node.signer import DoubleSignRefused
from zhongshu.node.wal import WriteAheadLog
from zhongshu.node.wire import (
    BlockBody,
    BlocksReply,
    GetBlock,
    GetBlocks,
    GetTxs,
    ProposalGossip,
    Status,
    SyncedBlock,
    TxsGossip,
    TxsReply,
    VoteGossip,
    WireMessage,
)
from zhongshu.p2p.transport import Transport, TransportConfig

log = logging.getLogger("zhongshu.replica")

_LEN = struct.Struct(">I")
SYNC_BATCH = 20
STATUS_INTERVAL = 1.0
MAX_FUTURE_MESSAGES = 1000
"""Messages of the next height kept while the current one finishes."""
GOSSIP_SLOTS = 8
"""Gossiped transaction batches verified at once; more wait, holding back their peer."""
MAX_QUEUED_INPUTS = 20_000
"""Peer inputs waiting for the engine beyond this are dropped (votes are re-sent on a stall)."""
IDLE_BLOCK_MS = 1000
"""With no transactions, the proposer still proposes (an empty block) after this long."""


@dataclass(frozen=True)
class _BuildNow:
    height: int
    round: int


@dataclass(frozen=True)
class _Validated:
    height: int
    block_hash: bytes
    built: BuiltBlock | None


@dataclass(frozen=True)
class _Synced:
    item: SyncedBlock


@dataclass
class _Assembly:
    """A compact proposal whose transactions are being gathered."""

    gossip: ProposalGossip
    txs: dict[bytes, Transaction]
    peer: bytes
    requested: bool = False
    """Whether the missing transactions were asked of the proposer."""


_Item = EngineInput | _BuildNow | _Validated | _Synced


class Replica(ChainNode):
    """A validator node of a multi-validator chain."""

    def __init__(
        self,
        genesis: Genesis,
        data_dir: Path,
        signer: ConsensusSigner,
        transport_config: TransportConfig,
        *,
        timeouts: TimeoutConfig | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(genesis, data_dir, signer, **kwargs)
        self.csigner = signer
        self.engine = TendermintEngine(self.chain_id, signer.public_key, timeouts)
        self.transport = Transport(transport_config, self._on_wire)
        self.wal = WriteAheadLog(data_dir / "consensus.wal")
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._blocks: dict[bytes, BuiltBlock] = {}
        self._assembling: dict[bytes, _Assembly] = {}
        self._undecided: Decide | None = None
        self._future: list[SignedProposal | SignedVote] = []
        """Messages of the next height that arrived before this node finished the current one."""
        self._sync_requested_at = 0.0
        self._progress_at = time.monotonic()
        self._timers: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._gossip_pending: set[bytes] = set()
        """Hashes of gossiped transactions whose signatures are being verified right now."""
        self._gossip_slots = asyncio.Semaphore(GOSSIP_SLOTS)
        self.equivocations = 0
        self.dropped_inputs = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        await self.transport.start()
        background = [
            asyncio.create_task(self._status_loop(), name="status"),
        ]
        try:
            await self._replay_or_start()
            while not self._stopping:
                item = await self._queue.get()
                await self._process(item)
        finally:
            for task in [*background, *self._tasks]:
                task.cancel()
            for timer in self._timers:
                timer.cancel()
            await self.transport.close()

    def close(self) -> None:
        self.wal.close()
        super().close()

    async def _replay_or_start(self) -> None:
        records = self.wal.read()
        if records and isinstance(records[0], StartHeight) and records[0].height == self.height + 1:
            log.info("replaying %d WAL records of height %d", len(records), self.height + 1)
            for record in records:
                await self._act(self.engine.handle(record), replaying=True)
            return
        self.wal.reset()
        await self._feed(StartHeight(self.height + 1, self.genesis.validators))

    # -- the one consumer ------------------------------------------------------------------

    async def _process(self, item: _Item) -> None:
        if isinstance(item, _BuildNow):
            await self._build(item)
        elif isinstance(item, _Validated):
            if item.built is not None and item.built.block.header.height == self.height + 1:
                self._blocks[item.block_hash] = item.built
            if item.height == self.engine.height:
                await self._feed(BlockData(item.height, item.block_hash, item.built is not None))
            await self._maybe_finish_decided()
        elif isinstance(item, _Synced):
            await self._apply_synced(item.item)
        elif isinstance(item, SignedProposal | SignedVote) and self._is_next_height(item):
            # A peer already at the next height: keep its message until we get there.
            if len(self._future) < MAX_FUTURE_MESSAGES:
                self._future.append(item)
        else:
            await self._feed(item)

    @staticmethod
    def _message_height(item: SignedProposal | SignedVote) -> int:
        return item.proposal.height if isinstance(item, SignedProposal) else item.vote.height

    def _is_next_height(self, item: SignedProposal | SignedVote) -> bool:
        return self._message_height(item) == self.engine.height + 1

    async def _start_next_height(self) -> None:
        """Start consensus on the height after the stored tip, then hand it the messages kept for it."""
        await self._feed(StartHeight(self.height + 1, self.genesis.validators))
        kept, self._future = self._future, []
        for item in kept:
            await self._process(item)
        await self._fill_assemblies()

    async def _feed(self, event: EngineInput) -> None:
        """Log the input, then hand it to the engine and carry out what it asks."""
        self.wal.append(event)
        await self._act(self.engine.handle(event))

    async def _act(self, actions: list[EngineAction], *, replaying: bool = False) -> None:
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            if isinstance(action, BuildBlock):
                self._schedule_build(action)
            elif isinstance(action, SignProposal | SignVote):
                message = action.proposal if isinstance(action, SignProposal) else action.vote
                try:
                    signature = self.csigner.sign(message)
                except DoubleSignRefused as exc:
                    log.warning("signer refused: %s", exc)
                    continue
                signed: EngineInput = (
                    ProposalSigned(message, signature)  # type: ignore[arg-type]
                    if isinstance(action, SignProposal)
                    else VoteSigned(message, signature)  # type: ignore[arg-type]
                )
                if self.crash_point == "after-sign":
                    os._exit(70)
                if replaying:
                    queue.extend(self.engine.handle(signed))
                else:
                    self.wal.append(signed)
                    queue.extend(self.engine.handle(signed))
            elif isinstance(action, Broadcast):
                self._broadcast_own(action.message)
            elif isinstance(action, ScheduleTimeout):
                loop = asyncio.get_running_loop()
                timeout = TimeoutFired(action.height, action.round, int(action.step))
                self._timers = [t for t in self._timers if not t.cancelled()]
                self._timers.append(loop.call_later(action.delay_ms / 1000, self._queue.put_nowait, timeout))
            elif isinstance(action, Decide):
                self._undecided = action
                await self._maybe_finish_decided()
            elif isinstance(action, FetchBlock):
                self._fetch_block(action)
            elif isinstance(action, Equivocation):
                self.equivocations += 1
                log.warning("equivocation: %r", action.evidence)

    def _fetch_block(self, action: FetchBlock) -> None:
        """The engine needs valid(v) for a proposal: answer from what we hold, or ask the peers."""
        if action.block_hash in self._blocks:
            self._queue.put_nowait(
                _Validated(action.height, action.block_hash, self._blocks[action.block_hash])
            )
        elif action.block_hash not in self._assembling:
            self.transport.broadcast(encode(GetBlock(action.block_hash)))

    def _schedule_build(self, action: BuildBlock) -> None:
        """Build when there are transactions, or after IDLE_BLOCK_MS, never sooner than the interval."""

        async def wait_and_build() -> None:
            interval = self.genesis.params.block_interval_ms
            earliest = self.last_time + interval
            idle_deadline = time.monotonic() + IDLE_BLOCK_MS / 1000
            while True:
                now = self.clock()
                if now >= earliest and (len(self.mempool) > 0 or time.monotonic() >= idle_deadline):
                    break
                await asyncio.sleep(0.01)
            self._queue.put_nowait(_BuildNow(action.height, action.round))

        asyncio.get_running_loop().create_task(wait_and_build())

    async def _build(self, item: _BuildNow) -> None:
        state = self.engine.get_state()
        if (state.height, state.round) != (item.height, item.round) or item.height != self.height + 1:
            return
        params = self.genesis.params
        self.mempool.drop_expired(item.height)
        pending = self.mempool.reap(params.max_block_txs, params.max_block_bytes)
        block_time = max(self.clock(), self.last_time + 1)
        started = time.perf_counter()
        built = await asyncio.to_thread(
            self.execute_block,
            item.height,
            block_time,
            [p.tx for p in pending],
            [p.tx_hash for p in pending],
            self.csigner.public_key,
        )
        self.metrics.execute_seconds += time.perf_counter() - started
        self._blocks[built.block_hash] = built
        await self._feed(BlockBuilt(item.height, item.round, built.block_hash))

    async def _maybe_finish_decided(self) -> None:
        decided = self._undecided
        if decided is None:
            return
        built = self._blocks.get(decided.block_hash)
        if built is None:
            # The block was decided before this node had it: fetch it (with its commit) by sync.
            self._request_blocks(None)
            return
        self._undecided = None
        await self.store_block(built, decided.certificate)
        self._after_commit()
        await self._start_next_height()

    def _after_commit(self) -> None:
        self._progress_at = time.monotonic()
        self.wal.reset()
        self._blocks.clear()
        # Proposals already gathered for the next height are kept; older ones are done with.
        self._assembling = {h: a for h, a in self._assembling.items() if a.gossip.header.height > self.height}
        self._future = [m for m in self._future if self._message_height(m) > self.height]
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    # -- gossip out --------------------------------------------------------------------

    def _broadcast_own(self, message: SignedProposal | SignedVote) -> None:
        if isinstance(message, SignedVote):
            self.transport.broadcast(encode(VoteGossip(message)))
            return
        built = self._blocks.get(message.proposal.block_hash)
        if built is None:
            return
        gossip = ProposalGossip(message, built.block.header, built.tx_hashes)
        self.transport.broadcast(encode(gossip))

    async def submit(self, txs: list[Transaction] | Any) -> list[bytes]:
        hashes = await super().submit(txs)
        self.transport.broadcast(encode(TxsGossip(list(txs))))
        return hashes

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            self.transport.broadcast(encode(Status(self.height)))
            # A height that makes no progress re-sends our own messages (peers may have missed them).
            if time.monotonic() - self._progress_at > 2 * STATUS_INTERVAL:
                for message in self.engine.get_messages():
                    own = (
                        message.proposal.proposer
                        if isinstance(message, SignedProposal)
                        else message.validator
                    )
                    if own == self.csigner.public_key:
                        self._broadcast_own(message)

    # -- gossip in ---------------------------------------------------------------------

    async def _on_wire(self, peer: bytes, payload: bytes) -> None:
        try:
            message: Any = decode(payload, WireMessage)  # type: ignore[arg-type]
        except DecodeError as exc:
            log.info("undecodable message from %s: %s", peer.hex()[:12], exc)
            return
        if isinstance(message, VoteGossip):
            vote = message.vote
            # Only votes whose signature verifies reach the engine.
            if await self._verify_one(vote.validator, encode(vote.vote), vote.signature):
                self._enqueue_from_peer(vote)
        elif isinstance(message, ProposalGossip):
            await self._on_proposal(peer, message)
        elif isinstance(message, TxsGossip):
            # Verified in the background so this peer's votes are not held up behind it.
            # At most GOSSIP_SLOTS batches verify at once; beyond that this peer waits (back-pressure).
            await self._gossip_slots.acquire()
            self._spawn(self._accept_gossip(message.txs))
        elif isinstance(message, GetBlock):
            built = self._blocks.get(message.block_hash)
            if built is not None:
                self.transport.send(peer, encode(BlockBody(built.block)))
        elif isinstance(message, BlockBody):
            self._spawn(self._on_block_body(message.block))
        elif isinstance(message, GetTxs):
            self._reply_txs(peer, message)
        elif isinstance(message, TxsReply):
            await self._on_txs_reply(message)
        elif isinstance(message, Status):
            if message.height > self.height:
                self._request_blocks(peer)
        elif isinstance(message, GetBlocks):
            self._reply_blocks(peer, message)
        elif isinstance(message, BlocksReply):
            for item in message.blocks:
                self._enqueue_from_peer(_Synced(item))

    async def _verify_one(self, key: bytes, data: bytes, signature: bytes) -> bool:
        if self.genesis.validators.power_of(key) == 0:
            return False
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self.suite.verify, key, data, signature
        )

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("background task failed", exc_info=t.exception())

        task.add_done_callback(done)

    def _enqueue_from_peer(self, item: _Item) -> None:
        """Queue a peer's input unless the queue is full: then it is dropped (peers re-send)."""
        if self._queue.qsize() >= MAX_QUEUED_INPUTS:
            self.dropped_inputs += 1
            return
        self._queue.put_nowait(item)

    async def _accept_gossip(self, txs: list[Transaction]) -> None:
        """Pool transactions another node's gateway accepted; ones known here already are skipped."""
        try:
            await self._pool_gossip(txs)
        finally:
            self._gossip_slots.release()

    async def _pool_gossip(self, txs: list[Transaction]) -> None:
        hashes = [compute_tx_hash(self.hash, tx) for tx in txs]
        self._gossip_pending.update(hashes)
        remaining = list(txs)
        try:
            while remaining:
                try:
                    await ChainNode.submit(self, remaining)
                    break
                except errors.BatchRefused as exc:
                    bad = {i for i, _ in exc.errors}
                    remaining = [t for i, t in enumerate(remaining) if i not in bad]
                except errors.Refused:
                    break
        finally:
            self._gossip_pending.difference_update(hashes)
        await self._fill_assemblies()

    async def _fill_assemblies(self) -> None:
        """Complete proposals from the mempool; ask the proposer only for what no gossip brings."""
        for block_hash, assembly in list(self._assembling.items()):
            missing = []
            for h in assembly.gossip.tx_hashes:
                if h not in assembly.txs:
                    tx = self.mempool.get(h)
                    if tx is None:
                        missing.append(h)
                    else:
                        assembly.txs[h] = tx
            if not missing:
                self._spawn(self._validate_assembled(block_hash))
            elif not assembly.requested and not any(h in self._gossip_pending for h in missing):
                assembly.requested = True
                self.transport.send(assembly.peer, encode(GetTxs(block_hash, missing)))

    async def _on_proposal(self, peer: bytes, gossip: ProposalGossip) -> None:
        signed = gossip.proposal
        proposal = signed.proposal
        # The header is the block the proposal names, and the proposer signed the proposal.
        if compute_block_hash(self.hash, gossip.header) != proposal.block_hash:
            return
        if not await self._verify_one(proposal.proposer, encode(proposal), signed.signature):
            return
        self._enqueue_from_peer(signed)
        if proposal.block_hash in self._blocks or proposal.block_hash in self._assembling:
            return
        self._assembling[proposal.block_hash] = _Assembly(gossip, {}, peer)
        await self._fill_assemblies()

    def _reply_txs(self, peer: bytes, request: GetTxs) -> None:
        built = self._blocks.get(request.block_hash)
        by_hash = dict(zip(built.tx_hashes, built.block.txs, strict=True)) if built else {}
        txs = []
        for h in request.tx_hashes[: self.genesis.params.max_block_txs]:
            tx = by_hash.get(h) or self.mempool.get(h)
            if tx is not None:
                txs.append(tx)
        self.transport.send(peer, encode(TxsReply(request.block_hash, txs)))

    async def _on_txs_reply(self, reply: TxsReply) -> None:
        assembly = self._assembling.get(reply.block_hash)
        if assembly is None:
            return
        wanted = set(assembly.gossip.tx_hashes)
        fetched = [tx for tx in reply.txs if compute_tx_hash(self.hash, tx) in wanted]
        # Fetched transactions had their signatures checked by the sender, but not by us.
        bad = await self._verify_senders(fetched)
        if bad:
            log.info("proposal %s carries transactions that do not verify", reply.block_hash.hex()[:12])
            self._assembling.pop(reply.block_hash, None)
            height = assembly.gossip.header.height
            self._queue.put_nowait(_Validated(height, reply.block_hash, None))
            return
        for tx in fetched:
            assembly.txs[compute_tx_hash(self.hash, tx)] = tx
        self._spawn(self._validate_assembled(reply.block_hash))

    async def _on_block_body(self, block: Block) -> None:
        """A proposed block a peer sent on request: verify its transactions, re-execute it."""
        block_hash = compute_block_hash(self.hash, block.header)
        if block_hash in self._blocks or block.header.height != self.height + 1:
            return
        valid = not await self._verify_senders(block.txs)
        await self._report_validity(block, block_hash, check=valid)

    async def _report_validity(self, block: Block, block_hash: bytes, *, check: bool = True) -> None:
        """Re-execute a proposed block (unless already known bad) and queue valid(v) for the engine."""
        built: BuiltBlock | None = None
        if check:
            try:
                built = await asyncio.to_thread(self.validate_block, block)
            except InvalidBlock as exc:
                log.info("invalid block %s: %s", block_hash.hex()[:12], exc)
        self._queue.put_nowait(_Validated(block.header.height, block_hash, built))

    async def _validate_assembled(self, block_hash: bytes) -> None:
        assembly = self._assembling.get(block_hash)
        if assembly is None or any(h not in assembly.txs for h in assembly.gossip.tx_hashes):
            return
        header = assembly.gossip.header
        # A proposal for a later height waits until this node has stored the block before it.
        if header.height > self.height + 1:
            return
        del self._assembling[block_hash]
        if header.height <= self.height:
            return
        block = Block(header, [assembly.txs[h] for h in assembly.gossip.tx_hashes])
        await self._report_validity(block, block_hash)

    # -- block sync --------------------------------------------------------------------

    def _request_blocks(self, peer: bytes | None) -> None:
        now = time.monotonic()
        if now - self._sync_requested_at < 0.5:
            return
        self._sync_requested_at = now
        request = encode(GetBlocks(self.height + 1, SYNC_BATCH))
        if peer is None:
            self.transport.broadcast(request)
        else:
            self.transport.send(peer, request)

    def _reply_blocks(self, peer: bytes, request: GetBlocks) -> None:
        items = []
        for height in range(
            request.start, min(request.start + min(request.count, SYNC_BATCH), self.height + 1)
        ):
            record = self.store.load_block(height)
            if record is None:
                break
            items.append(SyncedBlock(record.block, record.commit))
        if items:
            self.transport.send(peer, encode(BlocksReply(items)))

    async def _apply_synced(self, item: SyncedBlock) -> None:
        """Store a block fetched from a peer after checking its commit and re-executing it."""
        header = item.block.header
        if header.height != self.height + 1:
            return
        block_hash = compute_block_hash(self.hash, header)
        try:
            # More than 2/3 of the validator set precommitted this block.
            check_commit(
                self.suite, self.chain_id, self.genesis.validators, item.commit, block_hash, header.height
            )
        except InvalidCommit as exc:
            log.info("synced block %d refused: %s", header.height, exc)
            return
        # Its transactions carry valid signatures.
        if await self._verify_senders(item.block.txs):
            log.info("synced block %d has transactions that do not verify", header.height)
            return
        try:
            built = await asyncio.to_thread(self.validate_block, item.block)
        except InvalidBlock as exc:
            log.error("a committed block does not re-execute here: %s", exc)
            raise RuntimeError(f"block {header.height} with a valid commit fails validation: {exc}") from exc
        await self.store_block(built, item.commit)
        self._undecided = None
        self._after_commit()
        log.info("synced block %d", header.height)
        with contextlib.suppress(Exception):
            await self._start_next_height()
        self._sync_requested_at = 0.0

    def status(self) -> dict[str, Any]:
        out = super().status()
        state = self.engine.get_state()
        out["consensus"] = {
            "height": state.height,
            "round": state.round,
            "step": state.step.name.lower(),
            "proposer": self.engine.get_proposer(state.round).hex() if state.height else None,
            "peers": [p.name or p.validator.hex()[:16] for p in self.transport.peers()],
            "equivocations": self.equivocations,
            "dropped_inputs": self.dropped_inputs,
        }
        return out
