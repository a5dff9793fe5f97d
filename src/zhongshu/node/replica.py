"""A replica of a BFT chain: the Tendermint engine driven by the network, timers and a WAL.

Every input of the engine goes through one queue and is appended to the write-ahead log
(``consensus.wal``, fsynced) before the engine sees it; a restart replays the log of the
current height into a fresh engine. Block data and transaction gossip travel beside consensus
messages (``zhongshu.node.wire``); so do block sync and the assembly of compact proposals,
parts of their own (``node.blocksync``, ``node.assembly``) that the replica owns and calls.
All state changes happen in the one consumer task; validation runs in worker threads and comes
back through the queue.
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
    DuplicateVoteEvidence,
    EngineAction,
    EngineInput,
    Equivocation,
    FetchBlock,
    Proposal,
    ProposalSigned,
    ScheduleTimeout,
    SignedProposal,
    SignedVote,
    SignProposal,
    StartHeight,
    TimeoutFired,
    VoteSigned,
)
from zhongshu.consensus.proposer import get_proposer
from zhongshu.consensus.tendermint import TendermintEngine, TimeoutConfig
from zhongshu.consensus.timing import compute_block_time, get_timely_delay, is_too_far_ahead
from zhongshu.consensus.votes import NIL
from zhongshu.ledger.hashing import compute_block_hash, compute_tx_hash
from zhongshu.ledger.types import PRECOMMIT, PREVOTE, Block, Genesis, Transaction, Vote
from zhongshu.node import errors
from zhongshu.node.assembly import Assembler
from zhongshu.node.blocksync import SYNC_BATCH, BlockSync
from zhongshu.node.chain import PRECOMMITTED_KEY, BuiltBlock, ChainNode, InvalidBlock
from zhongshu.node.consensus_signer import ConsensusSigner
from zhongshu.node.peerbook import (
    GOSSIP_CHUNK_BYTES,
    PeerBook,
    check_body,
    estimate_tx_bytes,
    split_by_bytes,
)
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
    peek_proposal,
)
from zhongshu.p2p.channels import Channel
from zhongshu.p2p.transport import Transport, TransportConfig

log = logging.getLogger("zhongshu.replica")

_LEN = struct.Struct(">I")
STATUS_INTERVAL = 1.0
MAX_FUTURE_PER_SIGNER = 64
"""Messages of the next height kept per signer while the current height finishes."""
MAX_VOTE_ROUNDS_AHEAD = 20
"""Votes for rounds further ahead of this node's round are dropped unverified (rounds move
together; a node behind catches up from f+1 votes of a nearer round)."""
GOSSIP_SLOTS = 8
"""Gossiped transaction batches verified at once; more wait, holding back their peer."""
MAX_QUEUED_INPUTS = 20_000
"""Peer inputs waiting for the engine beyond this are dropped (votes are re-sent on a stall)."""
HEARTBEAT_MS = 60_000
"""With no transactions, the next height starts (and an empty block is made) this long after the
previous block's time: time and liveness still advance on an idle chain, at little disk cost."""
IDLE_POLL = 0.05
"""Seconds between checks of an idle replica for a reason to start the next height."""


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
class _Wake:
    """Start the next height now (transactions arrived, a peer started it, or the heartbeat is due)."""


@dataclass(frozen=True)
class _Synced:
    item: SyncedBlock
    peer: bytes


_Item = EngineInput | _BuildNow | _Validated | _Synced | _Wake


def _input_height(event: EngineInput) -> int:
    """The height an engine input is about."""
    if isinstance(event, SignedProposal | ProposalSigned):
        return event.proposal.height
    if isinstance(event, SignedVote | VoteSigned):
        return event.vote.height
    return event.height


class Replica(ChainNode):
    """A validator node of a multi-validator chain."""

    def __init__(
        self,
        genesis: Genesis,
        data_dir: Path,
        signer: ConsensusSigner,
        link: TransportConfig | Channel,
        *,
        timeouts: TimeoutConfig | None = None,
        heartbeat_ms: int = HEARTBEAT_MS,
        first_block_at_once: bool = False,
        **kwargs: Any,
    ) -> None:
        """``link``: a transport of its own (a TransportConfig), or this chain's channel on a hub
        node's shared transport. ``first_block_at_once``: an empty chain starts height 1 at once
        instead of waiting for a transaction or the heartbeat (a chain created on demand shows
        it is up by committing its first block)."""
        super().__init__(genesis, data_dir, signer, **kwargs)
        self.heartbeat_ms = heartbeat_ms
        self.first_block_at_once = first_block_at_once
        self._idle = False
        """Whether the stored tip is decided and the next height waits for a reason to start."""
        self.csigner = signer
        self.engine = TendermintEngine(self.chain_id, signer.public_key, timeouts)
        self.transport: Transport | Channel
        if isinstance(link, Channel):
            self.transport = link
            link.attach(self._on_wire)
        else:
            self.transport = Transport(link, self._on_wire)
        self.wal = WriteAheadLog(data_dir / "consensus.wal")
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._blocks: dict[bytes, BuiltBlock] = {}
        self._undecided: Decide | None = None
        self._future: dict[bytes, list[SignedProposal | SignedVote]] = {}
        """Per signer, messages of the next height that arrived before this node finished the current one."""
        self._verified_votes: dict[tuple[bytes, int, int, int], set[bytes]] = {}
        """Per (validator, height, round, kind), the blocks of the votes taken (this height and next)."""
        self._wanted_bodies: set[bytes] = set()
        """Hashes of proposed blocks asked for whole (GetBlock); other bodies are ignored."""
        self._kept_bodies: list[Block] = []
        """The blocks this node precommitted at the height in progress, as on disk (PRECOMMITTED_KEY)."""
        self.peerbook = PeerBook()
        self.block_sync = BlockSync(self, self.transport, self.peerbook, self._blame)
        self.assembler = Assembler(
            self.hash, self.mempool, self.transport, lambda h: self._spawn(self._validate_assembled(h))
        )
        self._committed_at = time.monotonic()
        """When this node stored its latest block (monotonic): the block interval counts from here."""
        self._progress_at = time.monotonic()
        self._timers: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._gossip_slots = asyncio.Semaphore(GOSSIP_SLOTS)
        self.equivocations = 0
        self.dropped_inputs = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        await self.transport.start()
        background = [
            asyncio.create_task(self._status_loop(), name="status"),
            asyncio.create_task(self._idle_loop(), name="idle"),
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
        """Replay the WAL of the height after the stored tip, from its StartHeight on, or start it.

        Records before that StartHeight are of the height already stored (a late vote handled
        after the commit reset the log); they change nothing and are skipped. Without the
        replay, what this node signed at that height would be lost to its engine while its
        signer remembers it, and it could sign nothing more in that round.
        """
        self._restore_bodies()
        records = self.wal.read()
        start = next(
            (
                i
                for i, record in enumerate(records)
                if isinstance(record, StartHeight) and record.height == self.height + 1
            ),
            None,
        )
        if start is not None:
            log.info("replaying %d WAL records of height %d", len(records) - start, self.height + 1)
            height = self.height
            for record in records[start:]:
                await self._act(self.engine.handle(record), replaying=True)
                # A block decided in the replay (its body kept on disk) was stored, and the next
                # height has started: the rest of the log is of the height just finished.
                if self.height != height:
                    break
            return
        self.wal.reset()
        await self._start_next_height()

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
            await self._apply_synced(item.item, item.peer)
        elif isinstance(item, _Wake):
            if self._idle:
                await self._start_next_height()
        elif isinstance(item, SignedProposal | SignedVote) and self._is_next_height(item):
            # A peer already at the next height: keep its message until we get there (bounded per signer).
            kept = self._future.setdefault(self._message_signer(item), [])
            if len(kept) < MAX_FUTURE_PER_SIGNER:
                kept.append(item)
        else:
            await self._feed(item)

    @staticmethod
    def _message_height(item: SignedProposal | SignedVote) -> int:
        return item.proposal.height if isinstance(item, SignedProposal) else item.vote.height

    @staticmethod
    def _message_signer(item: SignedProposal | SignedVote) -> bytes:
        return item.proposal.proposer if isinstance(item, SignedProposal) else item.validator

    def _is_next_height(self, item: SignedProposal | SignedVote) -> bool:
        """Whether a message is for the height after the one the engine runs, or, while no height
        runs (idle, or just booted), for the height after the stored tip."""
        running = not self._idle and self.engine.height == self.height + 1
        upcoming = self.height + 2 if running else self.height + 1
        return self._message_height(item) == upcoming

    async def _start_next_height(self) -> None:
        """Start consensus on the height after the stored tip, then hand it the messages kept for it.

        An idle chain waits instead: the height starts when transactions are pending, when a peer
        has started it (its messages arrive), or when the heartbeat is due. So an idle network
        writes one small block per heartbeat, not one per second, and no rounds time out meanwhile.
        """
        if self._is_idle():
            self._idle = True
            return
        self._idle = False
        await self._feed(StartHeight(self.height + 1, self.genesis.validators))
        kept, self._future = self._future, {}
        for item in [m for messages in kept.values() for m in messages]:
            await self._process(item)
        self.assembler.fill()

    async def _feed(self, event: EngineInput) -> None:
        """Log the input, then hand it to the engine and carry out what it asks.

        An input of a height already stored (a vote or timer queued before the commit) is
        dropped: the engine would ignore it, and the log holds the running height only."""
        if _input_height(event) <= self.height:
            return
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
                if isinstance(action, SignVote) and not replaying:
                    self._keep_body(action.vote)
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
                self._log_equivocation(action)

    def _log_equivocation(self, action: Equivocation) -> None:
        """One short line per equivocation: who, where and what (the evidence itself stays out
        of the log: a Byzantine validator chooses how large it is)."""
        evidence = action.evidence
        if isinstance(evidence, DuplicateVoteEvidence):
            vote = evidence.first.vote
            who, height, round_ = evidence.first.validator, vote.height, vote.round
            what = "prevotes" if vote.kind == PREVOTE else "precommits"
        else:
            proposal = evidence.first.proposal
            who, height, round_, what = proposal.proposer, proposal.height, proposal.round, "proposals"
        at = f"height {height} round {round_}"
        log.warning("equivocation: validator %s signed two %s at %s", who.hex()[:16], what, at)

    def _keep_body(self, vote: Vote) -> None:
        """Before precommitting a block, put its body on disk: if 2f+1 precommit it, it is
        decided, and after all of them crash at once only their disks still hold it."""
        if vote.kind != PRECOMMIT or vote.block_hash == NIL:
            return
        built = self._blocks.get(vote.block_hash)
        if built is None or any(b is built.block for b in self._kept_bodies):
            return
        self._kept_bodies.append(built.block)
        # On the loop, not in a thread: one synced write per height, and no write in flight
        # when the node stops and closes its store.
        self.store.save_meta(PRECOMMITTED_KEY, encode(self._kept_bodies))

    def _restore_bodies(self) -> None:
        """The blocks precommitted before a restart, re-executed, for the height to finish."""
        raw = self.store.load_meta(PRECOMMITTED_KEY)
        if not raw:
            return
        for block in decode(raw, list[Block]):
            if block.header.height != self.height + 1:
                continue
            try:
                built = self.validate_block(block)
            except InvalidBlock as exc:
                log.warning("a precommitted block kept on disk no longer validates: %s", exc)
                continue
            self._blocks[built.block_hash] = built
            self._kept_bodies.append(block)

    def _fetch_block(self, action: FetchBlock) -> None:
        """The engine needs valid(v) for a proposal: answer from what we hold, or ask the peers."""
        if action.block_hash in self._blocks:
            self._queue.put_nowait(
                _Validated(action.height, action.block_hash, self._blocks[action.block_hash])
            )
        elif action.block_hash not in self.assembler:
            self._request_body(action.block_hash)

    def _request_body(self, block_hash: bytes) -> None:
        """Ask every peer for a proposed block, whole; the first body that matches its header wins."""
        self._wanted_bodies.add(block_hash)
        self.transport.broadcast(encode(GetBlock(block_hash)))

    def _is_idle(self) -> bool:
        """No transaction pending, no peer at the next height, and the heartbeat not yet due."""
        if self.first_block_at_once and self.height == 0:
            return False
        due = self.last_time + self.heartbeat_ms
        return len(self.mempool) == 0 and not self._future and self.clock() < due

    def _wake_if_idle(self) -> None:
        if self._idle:
            self._queue.put_nowait(_Wake())

    async def _idle_loop(self) -> None:
        while True:
            await asyncio.sleep(IDLE_POLL)
            if self._idle and not self._is_idle():
                self._queue.put_nowait(_Wake())

    def _schedule_build(self, action: BuildBlock) -> None:
        """Build when there are transactions or the heartbeat is due, never sooner than the interval.

        The interval counts on this node's monotonic clock from when it stored the previous block,
        never from that block's time (which a Byzantine proposer may have dated ahead).
        """

        async def wait_and_build() -> None:
            earliest = self._committed_at + self.genesis.params.block_interval_ms / 1000
            while True:
                now = time.monotonic()
                heartbeat_due = self.clock() >= self.last_time + self.heartbeat_ms
                first_due = self.first_block_at_once and self.height == 0
                if now >= earliest and (len(self.mempool) > 0 or heartbeat_due or first_due):
                    break
                if self.engine.get_state().round != action.round or self.height + 1 != action.height:
                    return
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
        block_time = compute_block_time(self.last_time, self.clock())
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
            # The block was decided before this node had it: fetch it (with its commit) by sync,
            # or, when no peer has stored it yet, its body from a peer that precommitted it.
            self.block_sync.request_blocks(None)
            self._request_body(decided.block_hash)
            return
        self._undecided = None
        await self.store_block(built, decided.certificate)
        self._after_commit()
        await self._start_next_height()

    def _after_commit(self) -> None:
        self._progress_at = time.monotonic()
        self.wal.reset()
        self._blocks.clear()
        self._kept_bodies = []
        self.assembler.forget_through(self.height)
        self._future = {
            signer: [m for m in messages if self._message_height(m) > self.height]
            for signer, messages in self._future.items()
        }
        self._wanted_bodies.clear()
        self._verified_votes = {k: v for k, v in self._verified_votes.items() if k[1] > self.height}
        self._committed_at = time.monotonic()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    # -- gossip out --------------------------------------------------------------------

    def _broadcast_own(self, message: SignedProposal | SignedVote) -> None:
        """Send a message this node signed to every peer."""
        self._send_consensus(message)

    def _relay(self, message: SignedProposal | SignedVote) -> None:
        """Pass on another validator's message to every peer."""
        self._send_consensus(message)

    def _send_consensus(self, message: SignedProposal | SignedVote) -> None:
        """A vote as it is; a proposal only with a block this node holds, header and transaction
        hashes beside it (whoever takes it asks this node for the transactions it lacks)."""
        if isinstance(message, SignedVote):
            self.transport.broadcast(encode(VoteGossip(message)))
            return
        built = self._blocks.get(message.proposal.block_hash)
        if built is not None:
            self.transport.broadcast(encode(ProposalGossip(message, built.block.header, built.tx_hashes)))

    async def submit(self, txs: list[Transaction] | Any) -> list[bytes]:
        hashes = await super().submit(txs)
        self._wake_if_idle()
        # A large batch travels as several messages, each well inside one frame.
        for part in split_by_bytes(txs, GOSSIP_CHUNK_BYTES, estimate_tx_bytes):
            self.transport.broadcast(encode(TxsGossip(part)))
        return hashes

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            self.block_sync.announce()
            # A height that makes no progress re-sends what peers may lack: our own messages and
            # the others' that the engine relays. A Byzantine validator may have sent a vote to
            # some validators only; unless the others pass it on, two of them can stay locked on
            # a value whose polka the third never sees (tests/byzantine, "lock-split").
            if not self._idle and time.monotonic() - self._progress_at > 2 * STATUS_INTERVAL:
                for message in self.engine.get_gossip():
                    signer = (
                        message.proposal.proposer
                        if isinstance(message, SignedProposal)
                        else message.validator
                    )
                    if signer == self.csigner.public_key:
                        self._broadcast_own(message)
                    else:
                        self._relay(message)

    # -- gossip in ---------------------------------------------------------------------

    async def _on_wire(self, peer: bytes, payload: bytes) -> None:
        # A proposal that cannot be of use is dropped before its (possibly large) body is decoded.
        head = peek_proposal(payload)
        if head is not None and not self._is_wanted_proposal(head.proposal):
            return
        try:
            message: Any = decode(payload, WireMessage)  # type: ignore[arg-type]
        except DecodeError as exc:
            log.info("undecodable message from %s: %s", peer.hex()[:12], exc)
            return
        if isinstance(message, VoteGossip):
            vote = message.vote
            # Votes that cannot be of use are dropped before their signature costs a verification.
            if not self._is_wanted_vote(vote):
                return
            # Only votes whose signature verifies reach the engine.
            verified = await self._verify_one(vote.validator, encode(vote.vote), vote.signature)
            if verified and self._enqueue_from_peer(vote):
                self._verified_votes.setdefault(self._vote_slot(vote), set()).add(vote.vote.block_hash)
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
            self._spawn(self._on_block_body(peer, message.block))
        elif isinstance(message, GetTxs):
            built = self._blocks.get(message.block_hash)
            self.assembler.answer(peer, message, built, self.genesis.params.max_block_txs)
        elif isinstance(message, TxsReply):
            self.assembler.on_reply(peer, message)
        elif isinstance(message, Status):
            self.block_sync.on_status(peer, message)
        elif isinstance(message, GetBlocks):
            self.block_sync.reply_blocks(peer, message)
        elif isinstance(message, BlocksReply):
            for item in message.blocks[:SYNC_BATCH]:
                self._enqueue_from_peer(_Synced(item, peer))

    def _blame(self, peer: bytes, what: str) -> None:
        """A peer sent data that does not match what it claims: count it, say so once per fault."""
        count = self.peerbook.note_fault(peer)
        log.warning("peer %s sent %s (fault %d from this peer)", peer.hex()[:12], what, count)

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

    def _enqueue_from_peer(self, item: _Item) -> bool:
        """Queue a peer's input unless the queue is full: then it is dropped (peers re-send)."""
        if self._queue.qsize() >= MAX_QUEUED_INPUTS:
            self.dropped_inputs += 1
            return False
        self._queue.put_nowait(item)
        return True

    async def _accept_gossip(self, txs: list[Transaction]) -> None:
        """Pool transactions another node's gateway accepted; ones known here already are skipped."""
        try:
            await self._pool_gossip(txs)
        finally:
            self._gossip_slots.release()

    async def _pool_gossip(self, txs: list[Transaction]) -> None:
        hashes = [compute_tx_hash(self.hash, tx) for tx in txs]
        self.assembler.gossip_pending.update(hashes)
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
            self.assembler.gossip_pending.difference_update(hashes)
        self._wake_if_idle()
        self.assembler.fill()

    @staticmethod
    def _vote_slot(signed: SignedVote) -> tuple[bytes, int, int, int]:
        v = signed.vote
        return (signed.validator, v.height, v.round, v.kind)

    def _is_wanted_vote(self, signed: SignedVote) -> bool:
        """A vote for the height being decided or the next, at most MAX_VOTE_ROUNDS_AHEAD rounds
        beyond this node's round, not a copy of one already taken (another signature on the same
        vote), and not a third value from one validator in one round and step (two already
        prove its equivocation)."""
        vote = signed.vote
        if not self.height < vote.height <= self.height + 2 or vote.round < 0:
            return False
        if vote.round > self.engine.get_state().round + MAX_VOTE_ROUNDS_AHEAD:
            return False
        taken = self._verified_votes.get(self._vote_slot(signed), ())
        return vote.block_hash not in taken and len(taken) < 2

    def _is_wanted_proposal(self, proposal: Proposal) -> bool:
        """Whether a proposal is for the height being decided or the next, from its proposer."""
        if not self.height < proposal.height <= self.height + 2 or proposal.round < 0:
            return False
        return proposal.proposer == get_proposer(self.genesis.validators, proposal.height, proposal.round)

    async def _on_proposal(self, peer: bytes, gossip: ProposalGossip) -> None:
        signed = gossip.proposal
        proposal = signed.proposal
        # Only the height being decided and the next one are of use, from the proposer of the round.
        if not self._is_wanted_proposal(proposal):
            return
        # The header is the block the proposal names and lists as many hashes as it has transactions.
        header = gossip.header
        if compute_block_hash(self.hash, header) != proposal.block_hash or header.height != proposal.height:
            return
        if len(gossip.tx_hashes) != header.tx_count or header.tx_count > self.genesis.params.max_block_txs:
            return
        # The proposer signed the proposal. A copy of one the engine holds (peers re-send on a
        # stall) is not verified again; its block may still be wanted.
        if not self.engine.knows(signed):
            if not await self._verify_one(proposal.proposer, encode(proposal), signed.signature):
                return
            self._enqueue_from_peer(signed)
        if proposal.block_hash in self._blocks or proposal.block_hash in self.assembler:
            return
        self.assembler.add(peer, gossip)

    async def _on_block_body(self, peer: bytes, block: Block) -> None:
        """A proposed block a peer sent on request: check it is the header's, then judge it."""
        block_hash = compute_block_hash(self.hash, block.header)
        if block_hash not in self._wanted_bodies or block_hash in self._blocks:
            return
        if block.header.height != self.height + 1:
            return
        # The transactions are the ones the header commits to; if not, the sender is at fault, not the block.
        reason = check_body(self.hash, block.header, block)
        if reason is not None:
            self._blame(peer, f"a body for block {block_hash.hex()[:12]} that is not its header's: {reason}")
            return
        self._wanted_bodies.discard(block_hash)
        valid = not await self._verify_senders(block.txs)
        await self._report_validity(block, block_hash, check=valid)

    async def _report_validity(self, block: Block, block_hash: bytes, *, check: bool = True) -> None:
        """Re-execute a proposed block (unless already known bad) and queue valid(v) for the engine.

        A valid block dated beyond this node's clock plus MAX_FUTURE_MS is answered only once it is
        timely (consensus/timing.py): until then the engine's propose timeout makes it prevote nil.
        """
        built: BuiltBlock | None = None
        if check:
            try:
                built = await asyncio.to_thread(self.validate_block, block)
            except InvalidBlock as exc:
                log.info("invalid block %s: %s", block_hash.hex()[:12], exc)
        result = _Validated(block.header.height, block_hash, built)
        if built is not None:
            now = self.clock()
            delay = get_timely_delay(block.header.time, now)
            if is_too_far_ahead(block.header.time, now):
                log.warning(
                    "proposed block %s is dated %d ms ahead of this node's clock: invalid",
                    block_hash.hex()[:12],
                    block.header.time - now,
                )
                result = _Validated(block.header.height, block_hash, None)
            elif delay > 0:
                log.info("proposed block %s is dated ahead: answered in %d ms", block_hash.hex()[:12], delay)
                asyncio.get_running_loop().call_later(delay / 1000, self._queue.put_nowait, result)
                return
        self._queue.put_nowait(result)

    async def _validate_assembled(self, block_hash: bytes) -> None:
        taken = self.assembler.take(block_hash, self.height)
        if taken is None:
            return
        block, fetched = taken
        header = block.header
        # The gathered copies are the header's transactions (a copy with another signature is not):
        # on a mismatch the copies are at fault, not the block, which is then fetched whole.
        reason = check_body(self.hash, header, block)
        if reason is not None:
            log.info(
                "gathered transactions of %s do not match: %s; fetching it whole",
                block_hash.hex()[:12],
                reason,
            )
            self._request_body(block_hash)
            return
        # Fetched copies had their signatures checked by the sender only; the mempool's are checked.
        valid = not await self._verify_senders(fetched)
        await self._report_validity(block, block_hash, check=valid)

    # -- block sync --------------------------------------------------------------------

    async def _apply_synced(self, item: SyncedBlock, peer: bytes) -> None:
        """Store a block fetched from a peer once block sync has checked it (``check_synced``),
        and move on to the next height as after a decided block."""
        built = await self.block_sync.check_synced(item, peer)
        if built is None:
            return
        await self.store_block(built, item.commit)
        self._undecided = None
        self._after_commit()
        log.info("synced block %d", item.block.header.height)
        with contextlib.suppress(Exception):
            await self._start_next_height()
        self.block_sync.note_stored()

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
            "peer_faults": self.peerbook.summary(),
            "idle": self._idle,
        }
        return out
