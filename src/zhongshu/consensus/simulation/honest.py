"""An honest simulated node: the engine behind a write-ahead log, a guarded signer and a store.

What survives a crash is what a real node keeps on disk: the WAL (every input since the last
``StartHeight``, written before the engine sees it), the signer's ``LastSigned`` (written
before a signature is released) and the decided blocks with the messages that decided them.
A restart builds a fresh engine, replays the WAL into it and carries out the actions the
replay produces again: timeouts are re-armed, broadcasts repeated, signatures asked for again
(the guard hands back the stored one for the same bytes and refuses anything else).

Block time and block fetching follow the node's rules (``consensus.timing``, issue 6):

- As proposer it dates its block ``compute_block_time(parent's time, its clock)`` and never
  waits for its clock to pass a block time.
- It gets a proposed block's body from one peer at a time. A copy whose transaction root
  differs from the header's is the peer's fault, not the block's: it is dropped and the
  block fetched again from another peer. A peer that does not answer within
  ``FETCH_TIMEOUT_MS`` is passed over the same way.
- With an intact copy it answers valid(v) (``BlockData``) only once the block's time is
  within ``MAX_FUTURE_MS`` of its clock, waiting for that if it comes within
  ``MAX_TIMELY_WAIT_MS`` and answering invalid otherwise.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from zhongshu.consensus.guard import LastSigned, SignCheck, check_signing, get_position
from zhongshu.consensus.messages import (
    BlockBuilt,
    BlockData,
    Broadcast,
    BuildBlock,
    ConsensusMessage,
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
    SignVote,
    StartHeight,
    TimeoutFired,
    VoteSigned,
)
from zhongshu.consensus.simulation.blocks import FETCH_TIMEOUT_MS, BlockCopy, SimBlock, get_intact_copy
from zhongshu.consensus.timing import compute_block_time, get_timely_delay, is_too_far_ahead

if TYPE_CHECKING:
    from zhongshu.consensus.simulation.runner import Simulation
    from zhongshu.consensus.tendermint import TendermintEngine

WorkItem = EngineInput | EngineAction
Work = deque[WorkItem] | None
"""Where an answer goes: the queue being worked on, or ``None`` to feed it as a new input."""


class HonestNode:
    honest = True

    def __init__(self, sim: Simulation, index: int, key: bytes) -> None:
        self.sim = sim
        self.index = index
        self.key = key
        self.alive = True
        self.epoch = 0
        """Bumped at each crash; events armed before it are dropped."""
        self.cut: int | None = None
        """Steps left before a pending mid-input crash."""
        # What a real node keeps on disk:
        self.wal: list[EngineInput] = []
        self.last_signed: LastSigned | None = None
        self.store: dict[int, bytes] = {}
        self.catchup: dict[int, list[ConsensusMessage]] = {}
        """Per decided height, the proposal and precommits that decided it (for lagging peers)."""
        self.engine: TendermintEngine = sim.make_engine(key)

    def boot(self) -> None:
        """Start fresh, or replay the WAL after a crash."""
        self.alive = True
        self.cut = None
        self.engine = self.sim.make_engine(self.key)
        if not self.wal:
            self.feed(StartHeight(max(self.store, default=0) + 1, self.sim.validators))
            return
        replayed: deque[WorkItem] = deque()
        for event in self.wal:
            replayed.extend(self.engine.handle(event))
        self._work(replayed)

    def crash(self) -> None:
        self.alive = False
        self.epoch += 1

    def feed(self, event: EngineInput) -> None:
        self._work(deque([event]))

    def receive(self, message: ConsensusMessage) -> None:
        """A message from the network, signature already checked."""
        if self.engine.knows(message):
            return
        items: deque[WorkItem] = deque([message])
        self._work(items)

    def _work(self, items: deque[WorkItem]) -> None:
        while items and self.alive:
            if self.cut is not None:
                if self.cut == 0:
                    self.sim.crash_now(self)
                    return
                self.cut -= 1
            item = items.popleft()
            match item:
                case SignVote() | SignProposal():
                    self._sign(item, items)
                case Broadcast():
                    self.sim.broadcast(self.index, item.message)
                case ScheduleTimeout():
                    self.sim.schedule_input(
                        self, TimeoutFired(item.height, item.round, item.step), item.delay_ms
                    )
                case BuildBlock():
                    self._build(item)
                case FetchBlock():
                    block = self.sim.blocks.get(item.block_hash)
                    if block is not None and block.height == item.height:
                        self._fetch(item, frozenset(), items)
                case Decide():
                    self._decide(item, items)
                case Equivocation():
                    self.sim.check_evidence(self, item)
                case _:
                    # An input: to the WAL first, then to the engine.
                    if isinstance(item, StartHeight):
                        self.wal = [item]
                    else:
                        self.wal.append(item)
                    if isinstance(item, BlockData):
                        self.sim.check_block_data(self, item)
                    items.extend(self.engine.handle(item))

    def answer_fetch(self, block_hash: bytes, block: SimBlock) -> BlockCopy | None:
        """A peer fetches a block from us: we send it as it is."""
        return get_intact_copy(block_hash, block)

    def get_parent_time(self, height: int) -> int:
        """The time of the block this node decided at ``height - 1``."""
        return self.sim.get_block_time(self.store.get(height - 1))

    def _build(self, build: BuildBlock) -> None:
        """Build a block dated by our clock, strictly after its parent, without waiting."""
        time = compute_block_time(self.get_parent_time(build.height), self.sim.get_clock(self.index))
        self._finish_build(build, time, self.sim.rng.randrange(0, self.sim.scenario.build_delay_ms))

    def _finish_build(self, build: BuildBlock, time: int, delay_ms: int) -> None:
        block_hash = self.sim.new_block(build.height, build.round, self.index, True, time)
        self.sim.schedule_input(self, BlockBuilt(build.height, build.round, block_hash), delay_ms)

    def _fetch(self, fetch: FetchBlock, tried: frozenset[int], items: Work) -> None:
        """Ask one peer we have not tried yet (all of them again once each has been tried) for
        the block; its copy arrives now or after a delay (lost if we crash)."""
        if self.engine.height != fetch.height:
            return
        rng = self.sim.rng
        peers = [j for j in range(len(self.sim.nodes)) if j != self.index and j not in tried]
        if not peers:
            tried = frozenset()
            peers = [j for j in range(len(self.sim.nodes)) if j != self.index]
        peer = rng.choice(peers)
        tried = tried | {peer}
        copy = self.sim.ask_for_block(self.index, peer, fetch.block_hash)
        if copy is None:
            self.sim.schedule_call(self, FETCH_TIMEOUT_MS, lambda: self._fetch(fetch, tried, None))
        elif items is not None and rng.random() >= 0.3:
            self._receive_copy(fetch, peer, copy, tried, items)
        else:
            delay = rng.randrange(1, self.sim.scenario.build_delay_ms)
            self.sim.schedule_call(self, delay, lambda: self._receive_copy(fetch, peer, copy, tried, None))

    def _receive_copy(
        self, fetch: FetchBlock, peer: int, copy: BlockCopy, tried: frozenset[int], items: Work
    ) -> None:
        """Check a fetched copy against the header before judging the block by it."""
        block = self.sim.blocks[fetch.block_hash]
        # The copy's transactions must be the ones the header commits to; else the peer lied.
        if copy.tx_root != block.tx_root:
            self.sim.note_bad_copy(self, fetch.block_hash, peer)
            self._fetch(fetch, tried, items)
            return
        self._answer(BlockData(fetch.height, fetch.block_hash, copy.validates), block.time, items)

    def _answer(self, data: BlockData, block_time: int, items: Work) -> None:
        """Give valid(v) once the block's time is timely on our clock (invalid at once if too far)."""
        delay = get_timely_delay(block_time, self.sim.get_clock(self.index))
        if delay > 0:
            self.sim.note_untimely(self, data.block_hash, delay)
        # A block dated so far ahead that it would be timely only after MAX_TIMELY_WAIT_MS: invalid.
        if is_too_far_ahead(block_time, self.sim.get_clock(self.index)):
            data = BlockData(data.height, data.block_hash, False)
            delay = 0
        if delay > 0:
            self.sim.schedule_input(self, data, delay)
        elif items is not None:
            items.append(data)
        else:
            self.feed(data)

    def _sign(self, request: SignVote | SignProposal, items: deque[WorkItem]) -> None:
        message = request.vote if isinstance(request, SignVote) else request.proposal
        check = check_signing(self.last_signed, message)
        if check == SignCheck.REFUSE_CONFLICT:
            self.sim.fail("double-sign", f"node {self.index}'s engine asked to sign a conflicting {message}")
        if check == SignCheck.REFUSE_STALE:
            return
        if check == SignCheck.SIGN:
            height, round, step, data = get_position(message)
            signature = self.sim.sign(self.key, data)
            # The guard is persisted before the signature is released.
            self.last_signed = LastSigned(height, round, step, data, signature)
            self.sim.check_signature(self, height, round, step, data)
        assert self.last_signed is not None
        signature = self.last_signed.signature
        if isinstance(request, SignVote):
            items.append(VoteSigned(request.vote, signature))
        else:
            items.append(ProposalSigned(request.proposal, signature))

    def _decide(self, decide: Decide, items: deque[WorkItem]) -> None:
        self.sim.check_decision(self, decide)
        h = decide.height
        if h not in self.store:
            self.store[h] = decide.block_hash
            kept: list[ConsensusMessage] = [
                m
                for m in self.engine.get_messages()
                if isinstance(m, SignedProposal)
                and (m.proposal.round, m.proposal.block_hash) == (decide.round, decide.block_hash)
            ]
            kept += [
                SignedVote(decide.certificate.vote(self.sim.chain_id), s.validator, s.signature)
                for s in decide.certificate.signatures
            ]
            self.catchup[h] = kept
            self.sim.note_stored(self, h)
        if self.engine.height == h:
            items.append(StartHeight(h + 1, self.sim.validators))
