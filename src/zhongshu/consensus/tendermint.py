"""The Tendermint consensus algorithm as a pure state machine.

This is Algorithm 1 of Buchman, Kwon and Milosevic, "The latest gossip on BFT consensus"
(arXiv:1807.04938). Every rule carries a comment with its line number there. The engine has
no clock, randomness, disk or network: inputs come in as arguments, actions go out as values.

Inputs (each also a WAL record, see ``messages``; ``handle(input)`` dispatches):

- ``start_height(height, validators)``: begin a height (after ``Decide`` and applying the
  block, or at boot); runs StartRound(0).
- ``on_proposal(SignedProposal)``, ``on_vote(SignedVote)``: messages from peers whose
  signatures the caller has checked. The engine itself drops messages of other chains and
  heights, from non-validators, proposals not from proposer(h, r), malformed rounds, exact
  duplicates, and rounds more than ``max_rounds_ahead`` ahead; it reports equivocation.
- ``on_block_data(height, block_hash, valid)``: the node has the block and says whether it
  validates. A proposal's value counts as valid(v) only after this (or after ``BlockBuilt``).
- ``on_block_built(height, round, block_hash)``: the answer to ``BuildBlock`` (getValue()).
- ``on_signed(Proposal | Vote, signature)``: the signer signed our own message.
- ``on_timeout(height, round, step)``: the answer to ``ScheduleTimeout``.

Actions: ``BuildBlock``, ``FetchBlock`` (a proposal names a block whose validity is
unknown), ``SignProposal``, ``SignVote``, ``Broadcast`` (our own message, after
it is signed), ``ScheduleTimeout``, ``Decide`` (with a certificate of precommits holding more
than 2/3 of the power), ``Equivocation``.

Where this differs from the pseudo-code, and why:

- After ``Decide`` the engine waits for ``start_height(h+1, validators)`` instead of moving on
  by itself (line 52-54), because the next validator set comes from applying the block.
- The proposer also schedules OnTimeoutPropose (line 21 schedules it for the others only):
  building a block takes time here, and a proposer stuck in ``propose`` would never count
  the round's nil prevotes. Its prevote on timeout is nil, as every other validator's.
- Line 58 reads ``step_p = propose`` (the printed ``prevote`` is a known typo).
- valid(v) is an answer that comes later (``BlockData``): lines 22 and 28 wait for it unless
  the lock already forces nil.
- An equivocator's votes count for each value it voted for (the paper counts messages per
  value; see ``votes.VoteSet``), so a node that saw its nil first still sees a quorum for v.
- Several proposals from the proposer of one round (equivocation) are all kept, up to
  ``log.MAX_PROPOSALS_PER_ROUND`` and beyond it when 2f+1 voted for the value, so line 49 can
  still decide the value 2f+1 precommitted.
"""

from __future__ import annotations

from dataclasses import dataclass

from zhongshu.consensus.boundary import SignVote
from zhongshu.consensus.log import HeightLog
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
    Proposal,
    ProposalSigned,
    ScheduleTimeout,
    SignedProposal,
    SignedVote,
    SignProposal,
    StartHeight,
    Step,
    TimeoutFired,
    VoteSigned,
)
from zhongshu.consensus.votes import NIL
from zhongshu.ledger.types import (
    PRECOMMIT,
    PREVOTE,
    CommitCertificate,
    CommitSig,
    ValidatorSet,
    Vote,
)


class ConsensusError(RuntimeError):
    """An input that breaks the engine's protocol (a bug in the caller, not a peer's fault)."""


@dataclass(frozen=True)
class TimeoutConfig:
    """timeoutX(r) = X_ms + r * X_delta_ms: timeouts grow with the round, reset each height."""

    propose_ms: int = 3000
    propose_delta_ms: int = 500
    prevote_ms: int = 1000
    prevote_delta_ms: int = 500
    precommit_ms: int = 1000
    precommit_delta_ms: int = 500

    def get_timeout(self, step: Step, round: int) -> int:
        """The timeout of ``step`` in ``round``, in milliseconds."""
        if step == Step.PROPOSE:
            return self.propose_ms + round * self.propose_delta_ms
        if step == Step.PREVOTE:
            return self.prevote_ms + round * self.prevote_delta_ms
        return self.precommit_ms + round * self.precommit_delta_ms


@dataclass(frozen=True)
class EngineState:
    """The process variables of Algorithm 1 (lines 2-9) for one height."""

    height: int
    round: int
    step: Step
    locked_value: bytes | None
    locked_round: int
    valid_value: bytes | None
    valid_round: int
    decision: bytes | None


class TendermintEngine:
    """One validator's (or follower's, with ``own_key=None``) consensus state machine."""

    def __init__(
        self,
        chain_id: str,
        own_key: bytes | None,
        timeouts: TimeoutConfig | None = None,
        max_rounds_ahead: int = 1000,
    ) -> None:
        self.chain_id = chain_id
        self.own_key = own_key
        self.timeouts = timeouts or TimeoutConfig()
        self.max_rounds_ahead = max_rounds_ahead
        self._started = False
        self._height = 0
        self._reset(ValidatorSet([]))

    def _reset(self, validators: ValidatorSet) -> None:
        # Lines 3-9: the per-height variables, and an empty message log (line 53).
        self._round = 0
        self._step = Step.PROPOSE
        self._locked_value: bytes | None = None
        self._locked_round = -1
        self._valid_value: bytes | None = None
        self._valid_round = -1
        self._decision: bytes | None = None
        self._log = HeightLog(self.chain_id, self._height, validators)
        self._votes = self._log.votes
        self._validity: dict[bytes, bool] = {}
        """valid(v) as the node answered it, by block hash."""
        self._fired: set[tuple[int, int]] = set()
        """(line, round) of the rules that fire "for the first time" only."""
        self._awaiting_build: int | None = None
        self._pending: set[Proposal | Vote] = set()
        self._out: list[EngineAction] = []

    # --- queries ------------------------------------------------------------------------------

    @property
    def height(self) -> int:
        return self._height

    @property
    def round(self) -> int:
        return self._round

    def get_state(self) -> EngineState:
        return EngineState(
            self._height,
            self._round,
            self._step,
            self._locked_value,
            self._locked_round,
            self._valid_value,
            self._valid_round,
            self._decision,
        )

    def get_proposer(self, round: int) -> bytes:
        """proposer(h_p, round) for the current height."""
        return self._log.get_proposer(round)

    def get_messages(self) -> list[ConsensusMessage]:
        """Every proposal and vote admitted at the current height."""
        return self._log.get_messages()

    def get_gossip(self) -> list[ConsensusMessage]:
        """What this node re-sends to its peers while the height makes no progress: its own
        messages and other validators' alike (Algorithm 1 assumes that a message one correct
        process received reaches every correct process), limited to the current and previous
        round, the polka behind its lock and valid value, and precommit quorums."""
        justified = [(self._locked_round, self._locked_value), (self._valid_round, self._valid_value)]
        return self._log.get_relayed(self._round, [(r, v) for r, v in justified if v is not None])

    def knows(self, message: ConsensusMessage) -> bool:
        """Whether ``message`` is already in the current height's log."""
        return self._log.knows(message)

    # --- inputs -------------------------------------------------------------------------------

    def handle(self, event: EngineInput) -> list[EngineAction]:
        """Dispatch one input (as read back from the WAL) to its ``on_*`` method."""
        match event:
            case StartHeight():
                return self.start_height(event.height, event.validators)
            case SignedProposal():
                return self.on_proposal(event)
            case SignedVote():
                return self.on_vote(event)
            case BlockData():
                return self.on_block_data(event.height, event.block_hash, event.valid)
            case BlockBuilt():
                return self.on_block_built(event.height, event.round, event.block_hash)
            case ProposalSigned():
                return self.on_signed(event.proposal, event.signature)
            case VoteSigned():
                return self.on_signed(event.vote, event.signature)
            case TimeoutFired():
                return self.on_timeout(event.height, event.round, Step(event.step))

    def start_height(self, height: int, validators: ValidatorSet) -> list[EngineAction]:
        """Begin ``height`` with ``validators``; heights only go up."""
        if self._started and height <= self._height:
            raise ConsensusError(f"height {height} does not follow {self._height}")
        powers = {v.public_key: v.power for v in validators.validators}
        # The set is usable: not empty, positive powers, no key twice.
        if not powers or len(powers) != len(validators.validators) or min(powers.values()) <= 0:
            raise ConsensusError("a validator set needs distinct keys with positive powers")
        self._started = True
        self._height = height
        self._reset(validators)
        # Line 10: upon start do StartRound(0).
        self._start_round(0)
        return self._run_rules()

    def on_proposal(self, signed: SignedProposal) -> list[EngineAction]:
        """A proposal from a peer (signature already checked)."""
        if not self._is_live():
            return []
        self._out = []
        self._accept_proposal(signed)
        return self._run_rules()

    def on_vote(self, signed: SignedVote) -> list[EngineAction]:
        """A prevote or precommit from a peer (signature already checked)."""
        if not self._is_live():
            return []
        self._out = []
        self._accept_vote(signed)
        return self._run_rules()

    def on_block_data(self, height: int, block_hash: bytes, valid: bool) -> list[EngineAction]:
        """The node has the block ``block_hash``; ``valid`` is valid(v). The first answer stands."""
        if not self._is_live() or height != self._height or block_hash in self._validity:
            return []
        self._out = []
        self._validity[block_hash] = valid
        return self._run_rules()

    def on_block_built(self, height: int, round: int, block_hash: bytes) -> list[EngineAction]:
        """getValue() returned: propose it if we are still waiting for it in that round."""
        waiting = self._awaiting_build == round and self._round == round and self._step == Step.PROPOSE
        if not self._is_live() or height != self._height or not waiting:
            return []
        self._out = []
        self._awaiting_build = None
        self._validity[block_hash] = True
        # Line 19: broadcast ⟨PROPOSAL, h_p, round_p, proposal, validRound_p⟩.
        self._sign_proposal(block_hash, self._valid_round)
        return self._run_rules()

    def on_signed(self, message: Proposal | Vote, signature: bytes) -> list[EngineAction]:
        """Our own message is signed: broadcast it and count it like any other."""
        if message not in self._pending or self.own_key is None:
            return []
        self._pending.discard(message)
        self._out = []
        signed: ConsensusMessage
        if isinstance(message, Proposal):
            signed = SignedProposal(message, signature)
            self._out.append(Broadcast(signed))
            self._accept_proposal(signed)
        else:
            signed = SignedVote(message, self.own_key, signature)
            self._out.append(Broadcast(signed))
            self._accept_vote(signed)
        return self._run_rules()

    def on_timeout(self, height: int, round: int, step: Step) -> list[EngineAction]:
        """Lines 57-67: a timeout counts only in the height, round (and step) it was set for."""
        if not self._is_live() or height != self._height or round != self._round:
            return []
        self._out = []
        if step == Step.PROPOSE and self._step == Step.PROPOSE:
            # Line 57: OnTimeoutPropose: prevote nil.
            self._vote(PREVOTE, NIL)
            self._step = Step.PREVOTE
        elif step == Step.PREVOTE and self._step == Step.PREVOTE:
            # Line 61: OnTimeoutPrevote: precommit nil.
            self._vote(PRECOMMIT, NIL)
            self._step = Step.PRECOMMIT
        elif step == Step.PRECOMMIT:
            # Line 65: OnTimeoutPrecommit: StartRound(round_p + 1).
            self._start_round(self._round + 1)
        return self._run_rules()

    # --- the rules ----------------------------------------------------------------------------

    def _lock_allows(self, value: bytes, pol_round: int) -> bool:
        """The locking rule: may we prevote ``value`` proposed with proof-of-lock round ``pol_round``?"""
        if pol_round == -1:
            # Line 23: lockedRound_p = −1 ∨ lockedValue_p = v.
            return self._locked_round == -1 or self._locked_value == value
        # Line 29: lockedRound_p ≤ vr ∨ lockedValue_p = v.
        return self._locked_round <= pol_round or self._locked_value == value

    def _run_rules(self) -> list[EngineAction]:
        """Fire every upon-rule whose condition holds until none does; return the actions."""
        while self._decision is None:
            if self._rule_decide() or self._rule_skip_round():
                continue
            if self._step == Step.PROPOSE and self._rule_prevote_proposal():
                continue
            if self._step >= Step.PREVOTE and self._rule_lock():
                continue
            if self._step == Step.PREVOTE and (self._rule_prevote_timeout() or self._rule_precommit_nil()):
                continue
            if self._rule_precommit_timeout():
                continue
            break
        out, self._out = self._out, []
        return out

    def _start_round(self, round: int) -> None:
        # Lines 12-13: round_p ← round; step_p ← propose.
        self._round = round
        self._step = Step.PROPOSE
        # Line 14: if proposer(h_p, round_p) = p.
        if self.own_key is not None and self.get_proposer(round) == self.own_key:
            if self._valid_value is not None:
                # Lines 15-16, 19: propose validValue_p with validRound_p.
                self._sign_proposal(self._valid_value, self._valid_round)
            else:
                # Line 18: proposal ← getValue(), answered by on_block_built.
                self._awaiting_build = round
                self._out.append(BuildBlock(self._height, round))
        # Line 21: schedule OnTimeoutPropose(h_p, round_p) (for the proposer too, see above).
        self._schedule(Step.PROPOSE)

    def _rule_prevote_proposal(self) -> bool:
        for signed in self._log.proposals.get(self._round, []):
            p = signed.proposal
            if p.pol_round == -1:
                # Line 22: upon ⟨PROPOSAL, h_p, round_p, v, −1⟩ while step_p = propose.
                choice = self._get_prevote(p.block_hash, -1)
            elif self._votes.prevotes(p.pol_round).has_two_thirds_for(p.block_hash):
                # Line 28: ... AND 2f+1 ⟨PREVOTE, h_p, vr, id(v)⟩ while step_p = propose ∧ 0 ≤ vr < round_p.
                choice = self._get_prevote(p.block_hash, p.pol_round)
            else:
                continue
            if choice is None:
                continue
            # Lines 24/26 and 30/32: prevote id(v) or nil; lines 27/33: step_p ← prevote.
            self._vote(PREVOTE, choice)
            self._step = Step.PREVOTE
            return True
        return False

    def _get_prevote(self, value: bytes, pol_round: int) -> bytes | None:
        """id(v) if valid(v) and the lock allows it, else nil; None while valid(v) is unknown."""
        if not self._lock_allows(value, pol_round):
            return NIL
        valid = self._validity.get(value)
        if valid is None:
            return None
        return value if valid else NIL

    def _rule_prevote_timeout(self) -> bool:
        # Line 34: upon 2f+1 ⟨PREVOTE, h_p, round_p, ∗⟩ while step_p = prevote for the first time.
        key = (34, self._round)
        if key in self._fired or not self._votes.prevotes(self._round).has_two_thirds_any():
            return False
        self._fired.add(key)
        # Line 35: schedule OnTimeoutPrevote(h_p, round_p).
        self._schedule(Step.PREVOTE)
        return True

    def _rule_lock(self) -> bool:
        # Line 36: upon PROPOSAL(v) AND 2f+1 ⟨PREVOTE, h_p, round_p, id(v)⟩ while valid(v) ∧ step_p ≥ prevote,
        # for the first time.
        key = (36, self._round)
        value = self._votes.prevotes(self._round).two_thirds_block()
        if key in self._fired or value is None or self._validity.get(value) is not True:
            return False
        if not self._log.has_proposal(self._round, value):
            return False
        self._fired.add(key)
        if self._step == Step.PREVOTE:
            # Lines 37-41: lock on v, precommit id(v), step_p ← precommit.
            self._locked_value = value
            self._locked_round = self._round
            self._vote(PRECOMMIT, value)
            self._step = Step.PRECOMMIT
        # Lines 42-43: validValue_p ← v; validRound_p ← round_p.
        self._valid_value = value
        self._valid_round = self._round
        return True

    def _rule_precommit_nil(self) -> bool:
        # Line 44: upon 2f+1 ⟨PREVOTE, h_p, round_p, nil⟩ while step_p = prevote.
        if not self._votes.prevotes(self._round).has_two_thirds_for(NIL):
            return False
        # Lines 45-46: precommit nil; step_p ← precommit.
        self._vote(PRECOMMIT, NIL)
        self._step = Step.PRECOMMIT
        return True

    def _rule_precommit_timeout(self) -> bool:
        # Line 47: upon 2f+1 ⟨PRECOMMIT, h_p, round_p, ∗⟩ for the first time.
        key = (47, self._round)
        if key in self._fired or not self._votes.precommits(self._round).has_two_thirds_any():
            return False
        self._fired.add(key)
        # Line 48: schedule OnTimeoutPrecommit(h_p, round_p).
        self._schedule(Step.PRECOMMIT)
        return True

    def _rule_decide(self) -> bool:
        # Line 49: upon PROPOSAL(h_p, r, v) AND 2f+1 ⟨PRECOMMIT, h_p, r, id(v)⟩ while decision_p[h_p] = nil.
        for round in self._votes.precommit_rounds():
            precommits = self._votes.precommits(round)
            value = precommits.two_thirds_block()
            if value is None or not self._log.has_proposal(round, value):
                continue
            # Line 50: if valid(v).
            if self._validity.get(value) is not True:
                continue
            # Line 51: decision_p[h_p] = v; lines 52-54 wait for start_height(h_p + 1).
            self._decision = value
            order = {key: i for i, key in enumerate(self._log.powers)}
            votes = sorted(precommits.votes_for(value), key=lambda s: order[s.validator])
            sigs = [CommitSig(s.validator, s.signature) for s in votes]
            certificate = CommitCertificate(self._height, round, value, sigs)
            self._out.append(Decide(self._height, round, value, certificate))
            return True
        return False

    def _rule_skip_round(self) -> bool:
        # Line 55: upon f+1 ⟨∗, h_p, round, ∗, ∗⟩ with round > round_p.
        round = self._votes.highest_round_with_one_third(self._round)
        if round is None:
            return False
        # Line 56: StartRound(round).
        self._start_round(round)
        return True

    # --- helpers ------------------------------------------------------------------------------

    def _is_live(self) -> bool:
        return self._started and self._decision is None

    def _schedule(self, step: Step) -> None:
        delay = self.timeouts.get_timeout(step, self._round)
        self._out.append(ScheduleTimeout(self._height, self._round, step, delay))

    def _sign_proposal(self, value: bytes, pol_round: int) -> None:
        assert self.own_key is not None
        proposal = Proposal(self.chain_id, self._height, self._round, value, pol_round, self.own_key)
        self._pending.add(proposal)
        self._out.append(SignProposal(proposal))

    def _vote(self, kind: int, block_hash: bytes) -> None:
        """Ask for our vote to be signed (validators only); it counts once ``on_signed`` returns it."""
        if self.own_key is None or self.own_key not in self._log.powers:
            return
        vote = Vote(kind, self.chain_id, self._height, self._round, block_hash)
        self._pending.add(vote)
        self._out.append(SignVote(vote))

    def _accept_proposal(self, signed: SignedProposal) -> None:
        new, evidence = self._log.add_proposal(signed, self._round + self.max_rounds_ahead)
        if evidence is not None:
            self._out.append(Equivocation(evidence))
        p = signed.proposal
        # A value we have not asked about yet: the node must fetch and check the block.
        if new and p.block_hash not in self._validity:
            self._out.append(FetchBlock(p.height, p.block_hash))

    def _accept_vote(self, signed: SignedVote) -> None:
        evidence = self._log.add_vote(signed, self._round + self.max_rounds_ahead)
        if evidence is not None:
            self._out.append(Equivocation(evidence))
