"""A Byzantine simulated node: it follows the protocol to keep up, then lies about what it sends.

It runs an ordinary engine (so it knows heights, rounds and proposals) and signs without a
guard. Each message that engine would broadcast is replaced, per behaviour:

- ``silent``: sends nothing.
- ``equivocate``: as proposer, a second valid block proposed to some peers and the real one to
  the others; as voter, a conflicting vote to some peers and the real one to the others.
- ``double_vote``: every peer gets the real vote and a conflicting one.
- ``invalid``: proposes blocks that do not validate and votes for blocks that do not validate.
- ``flood``: the real message plus junk: undecodable bytes, votes of old heights, far-future
  rounds, other chains, non-validators, forged signatures, proposals out of turn, copies.
- ``amnesia``: runs an engine that forgets its locks and valid values, so it proposes fresh
  blocks whatever was locked before, votes for its own blocks only (nil for all others), and
  stays at a height until no honest node is left there.
  With the network cutting off whoever decides first, this is the attack the locking rule
  exists to stop: without locks the others would decide the amnesiac's later block.
- ``future_time``: as proposer, dates its new blocks in the future (``blocks.compute_future_time``:
  ten years ahead as in issue 6, at the edge of what the fastest honest clock accepts, or a
  little beyond it); otherwise honest.
- ``bad_fetch``: answers other nodes' block fetches with corrupted copies (transactions with
  broken signatures under the right block hash); otherwise honest.
- ``mixed``: one of the above, chosen per message and per fetch answered (with an ordinary
  engine); as ``future_time`` it replaces its proposal with one of a future-dated block.

Every other block it builds is dated as an honest proposer would. A ``silent`` node answers no
fetch; the others answer with intact copies unless ``bad_fetch``.

It can only sign with its own key: the network checks every signature.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from zhongshu.consensus.messages import (
    BlockBuilt,
    Broadcast,
    BuildBlock,
    ConsensusMessage,
    Decide,
    EngineAction,
    EngineInput,
    FetchBlock,
    Proposal,
    ScheduleTimeout,
    SignedProposal,
    SignedVote,
    SignProposal,
    SignVote,
    TimeoutFired,
    proposal_sign_bytes,
    vote_sign_bytes,
)
from zhongshu.consensus.simulation.blocks import (
    BlockCopy,
    SimBlock,
    compute_future_time,
    get_corrupted_copy,
    get_intact_copy,
)
from zhongshu.consensus.simulation.scenario import SEND_MODES
from zhongshu.consensus.tendermint import TendermintEngine
from zhongshu.consensus.timing import compute_block_time
from zhongshu.ledger.types import PREVOTE, Vote

if TYPE_CHECKING:
    from zhongshu.consensus.simulation.runner import Simulation

OUTSIDER = b"o" * 32
"""A key that is no validator's."""


class AmnesiacEngine(TendermintEngine):
    """The engine of an ``amnesia`` node: no locks, no valid values, and it stays at a height
    (not deciding) while ``holds_height(height)`` says an honest node is still there."""

    holds_height: Callable[[int], bool] = staticmethod(lambda height: False)

    def _lock_allows(self, value: bytes, pol_round: int) -> bool:
        return True

    def _rule_decide(self) -> bool:
        return not self.holds_height(self.height) and super()._rule_decide()

    def _start_round(self, round: int) -> None:
        self._valid_value = None
        self._valid_round = -1
        super()._start_round(round)


class ByzantineNode:
    honest = False

    def __init__(self, sim: Simulation, index: int, key: bytes, behaviour: str) -> None:
        self.sim = sim
        self.index = index
        self.key = key
        self.behaviour = behaviour
        self.alive = True
        self.epoch = 0
        self.built: set[bytes] = set()
        """Blocks this node built."""
        self.decided: dict[int, bytes] = {}
        """What its engine decided, by height."""
        if behaviour == "amnesia":
            amnesiac = AmnesiacEngine(sim.chain_id, key, sim.scenario.timeouts)
            amnesiac.holds_height = sim.has_honest_at
            self.engine: TendermintEngine = amnesiac
        else:
            self.engine = sim.make_byzantine_engine(key)

    def boot(self) -> None:
        self._run(deque(self.engine.start_height(1, self.sim.validators)))

    def feed(self, event: EngineInput) -> None:
        self._run(deque(self.engine.handle(event)))

    def receive(self, message: ConsensusMessage) -> None:
        if self.engine.knows(message):
            return
        self._run(deque(self.engine.handle(message)))

    def _run(self, actions: deque[EngineAction]) -> None:
        while actions:
            action = actions.popleft()
            match action:
                case SignVote():
                    sig = self.sim.sign(self.key, vote_sign_bytes(action.vote))
                    actions.extend(self.engine.on_signed(action.vote, sig))
                case SignProposal():
                    sig = self.sim.sign(self.key, proposal_sign_bytes(action.proposal))
                    actions.extend(self.engine.on_signed(action.proposal, sig))
                case BuildBlock():
                    valid = self.behaviour != "invalid"
                    future = self.behaviour == "future_time"
                    block_hash = self._new_block(action.height, action.round, valid, future)
                    self.built.add(block_hash)
                    actions.extend(self.engine.handle(BlockBuilt(action.height, action.round, block_hash)))
                case ScheduleTimeout():
                    self.sim.schedule_input(
                        self, TimeoutFired(action.height, action.round, action.step), action.delay_ms
                    )
                case FetchBlock():
                    block = self.sim.blocks.get(action.block_hash)
                    if block is not None:
                        answer = self.engine.on_block_data(block.height, action.block_hash, block.valid)
                        actions.extend(answer)
                case Decide():
                    self.decided[action.height] = action.block_hash
                    actions.extend(self.engine.start_height(action.height + 1, self.sim.validators))
                case Broadcast():
                    self._misbehave(action.message)
                case _:
                    pass

    def _new_block(self, height: int, round: int, valid: bool, future: bool = False) -> bytes:
        """A block dated as an honest proposer would (by virtual time), or in the future."""
        sim = self.sim
        parent = self.decided.get(height - 1) or sim.decided.get(height - 1)
        parent_time = sim.get_block_time(parent)
        time = compute_block_time(parent_time, sim.now)
        if future:
            fastest_clock = sim.now + sim.scenario.max_honest_skew_ms
            time = max(time, compute_future_time(sim.rng, sim.now, fastest_clock))
        return sim.new_block(height, round, self.index, valid, time)

    def _get_mode(self) -> str:
        return self.behaviour if self.behaviour != "mixed" else self.sim.rng.choice(SEND_MODES)

    def answer_fetch(self, block_hash: bytes, block: SimBlock) -> BlockCopy | None:
        """A peer fetches a block from us: no answer, a corrupted copy, or the block as it is."""
        mode = self._get_mode()
        if mode == "silent":
            return None
        if mode == "bad_fetch":
            return get_corrupted_copy(block_hash, block)
        return get_intact_copy(block_hash, block)

    def _misbehave(self, message: ConsensusMessage) -> None:
        rng = self.sim.rng
        mode = self._get_mode()
        peers = [j for j in range(len(self.sim.nodes)) if j != self.index]
        if mode == "silent":
            return
        if mode == "amnesia":
            self._send_amnesiac(message, peers)
        elif mode == "equivocate":
            other = self._conflicting(message, valid=True)
            for j in peers:
                self.sim.send(self.index, j, rng.choice((message, other)))
        elif mode == "double_vote":
            other = self._conflicting(message, valid=True)
            for j in peers:
                first, second = (message, other) if rng.random() < 0.5 else (other, message)
                self.sim.send(self.index, j, first)
                self.sim.send(self.index, j, second)
        elif mode == "invalid":
            bad = self._conflicting(message, valid=False)
            for j in peers:
                self.sim.send(self.index, j, bad)
        elif mode == "flood":
            for j in peers:
                self.sim.send(self.index, j, message)
                for junk in self._junk(message):
                    self.sim.send(self.index, j, junk)
        elif mode == "future_time" and self.behaviour == "mixed" and isinstance(message, SignedProposal):
            dated = self._conflicting(message, valid=True, future=True)
            for j in peers:
                self.sim.send(self.index, j, dated)
        else:
            # future_time (its blocks are dated at build), bad_fetch: the message as it is.
            for j in peers:
                self.sim.send(self.index, j, message)

    def _send_amnesiac(self, message: ConsensusMessage, peers: list[int]) -> None:
        """Back only our own blocks: every vote for another's block goes out as nil."""
        if isinstance(message, SignedVote) and message.vote.block_hash not in self.built:
            vote = message.vote
            message = self._sign_vote(Vote(vote.kind, vote.chain_id, vote.height, vote.round, b""))
        for j in peers:
            self.sim.send(self.index, j, message)

    def _sign_vote(self, vote: Vote, key: bytes | None = None) -> SignedVote:
        signer = key or self.key
        return SignedVote(vote, signer, self.sim.sign(signer, vote_sign_bytes(vote)))

    def _conflicting(self, message: ConsensusMessage, valid: bool, future: bool = False) -> ConsensusMessage:
        """A message of the same height, round and kind that says something else (a proposal's
        block dated in the future if ``future``)."""
        if isinstance(message, SignedProposal):
            p = message.proposal
            block_hash = self._new_block(p.height, p.round, valid, future)
            other = Proposal(p.chain_id, p.height, p.round, block_hash, p.pol_round, p.proposer)
            return SignedProposal(other, self.sim.sign(self.key, proposal_sign_bytes(other)))
        v = message.vote
        if not valid:
            block_hash = self._new_block(v.height, v.round, False)
        elif v.block_hash:
            block_hash = b""
        else:
            known = [h for h, b in self.sim.blocks.items() if b.height == v.height and b.valid]
            block_hash = self.sim.rng.choice(known) if known else self._new_block(v.height, v.round, True)
        return self._sign_vote(Vote(v.kind, v.chain_id, v.height, v.round, block_hash))

    def _junk(self, message: ConsensusMessage) -> list[ConsensusMessage | bytes]:
        rng = self.sim.rng
        if isinstance(message, SignedProposal):
            h, r, block_hash = message.proposal.height, message.proposal.round, message.proposal.block_hash
        else:
            h, r, block_hash = message.vote.height, message.vote.round, message.vote.block_hash
        chain = self.sim.chain_id
        victim = self.sim.nodes[rng.choice([j for j in range(len(self.sim.nodes)) if j != self.index])].key
        out_of_turn = Proposal(chain, h, r + 1, self._new_block(h, r + 1, True), -1, self.key)
        forged = Vote(PREVOTE, chain, h, r, block_hash)
        return [
            bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))),
            self._sign_vote(Vote(PREVOTE, chain, max(h - 1, 1), r, block_hash)),
            self._sign_vote(Vote(PREVOTE, chain, h, r + 1, b"")),
            self._sign_vote(Vote(PREVOTE, chain, h, r + 100_000, b"")),
            self._sign_vote(Vote(PREVOTE, "other-chain", h, r, block_hash)),
            self._sign_vote(Vote(PREVOTE, chain, h, r, block_hash), key=OUTSIDER),
            SignedVote(forged, victim, self.sim.sign(self.key, vote_sign_bytes(forged))),
            SignedProposal(out_of_turn, self.sim.sign(self.key, proposal_sign_bytes(out_of_turn))),
            message,
            message,
        ]
