"""An honest simulated node: the engine behind a write-ahead log, a guarded signer and a store.

What survives a crash is what a real node keeps on disk: the WAL (every input since the last
``StartHeight``, written before the engine sees it), the signer's ``LastSigned`` (written
before a signature is released) and the decided blocks with the messages that decided them.
A restart builds a fresh engine, replays the WAL into it and carries out the actions the
replay produces again: timeouts are re-armed, broadcasts repeated, signatures asked for again
(the guard hands back the stored one for the same bytes and refuses anything else).
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

if TYPE_CHECKING:
    from zhongshu.consensus.simulation.runner import Simulation
    from zhongshu.consensus.tendermint import TendermintEngine

WorkItem = EngineInput | EngineAction


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
                    block_hash = self.sim.new_block(item.height, item.round, self.index, True)
                    delay = self.sim.rng.randrange(0, self.sim.scenario.build_delay_ms)
                    self.sim.schedule_input(self, BlockBuilt(item.height, item.round, block_hash), delay)
                case FetchBlock():
                    self._fetch(item, items)
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
                    items.extend(self.engine.handle(item))

    def _fetch(self, fetch: FetchBlock, items: deque[WorkItem]) -> None:
        """Get a proposed block from the network: now, or after a delay (lost if we crash)."""
        block = self.sim.blocks.get(fetch.block_hash)
        if block is None or block[0] != fetch.height:
            return
        data = BlockData(fetch.height, fetch.block_hash, block[1])
        if self.sim.rng.random() < 0.3:
            self.sim.schedule_input(self, data, self.sim.rng.randrange(1, self.sim.scenario.build_delay_ms))
        else:
            items.append(data)

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
