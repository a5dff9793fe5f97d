"""The rules of Algorithm 1 (Buchman, Kwon, Milosevic), one engine driven by hand.

Tests are written as consensus-specs writes them: generators that yield ("pre", state),
then ("input", event) and ("actions", actions) for each step, then ("post", state). The
``vector`` decorator runs them; with CONSENSUS_VECTORS_DIR set it also writes each test's
parts as a JSON vector file, so another implementation can replay them.

Setup unless a test says otherwise: four validators of power 1, the engine is validator 0,
height 1. The proposer of (1, r) is validator (1 + r) mod 4: round 0 -> 1, 1 -> 2, 2 -> 3,
3 -> 0.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from zhongshu.codec import decode, encode
from zhongshu.consensus.guard import LastSigned, SignCheck, check_signing
from zhongshu.consensus.messages import (
    BlockBuilt,
    BlockData,
    Broadcast,
    BuildBlock,
    ConsensusMessage,
    Decide,
    DuplicateProposalEvidence,
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
    SignVote,
    StartHeight,
    Step,
    TimeoutFired,
    VoteSigned,
    proposal_sign_bytes,
    vote_sign_bytes,
)
from zhongshu.consensus.proposer import MAX_CYCLE, compute_schedule, get_proposer
from zhongshu.consensus.tendermint import ConsensusError, EngineState, TendermintEngine, TimeoutConfig
from zhongshu.consensus.votes import HeightVotes, is_one_third, is_two_thirds
from zhongshu.ledger.types import PRECOMMIT, PREVOTE, Validator, ValidatorSet, Vote

CHAIN = "test"
KEYS = [bytes([i + 1]) * 32 for i in range(4)]
OUTSIDER = b"\xee" * 32
V = b"\xaa" * 32
W = b"\xbb" * 32
NIL = b""
TIMEOUTS = TimeoutConfig()

Vector = Iterator[tuple[str, Any]]


def vector(test: Callable[..., Vector]) -> Callable[..., None]:
    """Run a generator test; write its parts to $CONSENSUS_VECTORS_DIR/<name>.json if set."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        parts = list(test(*args, **kwargs))
        assert parts[0][0] == "pre" and parts[-1][0] == "post", "a vector starts with pre and ends with post"
        body = [[name, msgspec.to_builtins(value)] for name, value in parts]
        raw = msgspec.json.encode(body)
        out = os.environ.get("CONSENSUS_VECTORS_DIR")
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            path = Path(out) / f"{test.__name__}.json"
            path.write_bytes(raw)
            raw = path.read_bytes()
        # What was written reads back as the very values the test saw (another implementation
        # replays from these bytes alone).
        assert read_vector(raw, parts) == parts, f"vector {test.__name__} does not read back as written"

    return run


VECTOR_PART_TYPES: dict[str, Any] = {"pre": EngineState, "post": EngineState, "input": EngineInput}


def read_vector(raw: bytes, parts: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """A vector file's parts, each decoded to its type (an action to the type of the one expected:
    actions are dataclasses, which no single msgspec union can tell apart)."""
    read: list[tuple[str, Any]] = []
    for (name, value), (_, expected) in zip(msgspec.json.decode(raw), parts, strict=True):
        if name == "actions":
            assert len(value) == len(expected), "a different number of actions"
            typed: Any = [
                msgspec.json.decode(msgspec.json.encode(a), type=type(e))
                for a, e in zip(value, expected, strict=True)
            ]
        else:
            typed = msgspec.json.decode(msgspec.json.encode(value), type=VECTOR_PART_TYPES[name])
        read.append((name, typed))
    return read


def validator_set(powers: tuple[int, ...] = (1, 1, 1, 1)) -> ValidatorSet:
    return ValidatorSet([Validator(KEYS[i], p, f"v{i}") for i, p in enumerate(powers)])


def sig(key: bytes) -> bytes:
    return b"sig-" + key[:1]


def proposal(
    round: int, value: bytes, pol: int = -1, *, height: int = 1, by: int | None = None, powers=(1, 1, 1, 1)
) -> SignedProposal:
    vs = validator_set(powers)
    key = KEYS[by] if by is not None else get_proposer(vs, height, round)
    return SignedProposal(Proposal(CHAIN, height, round, value, pol, key), sig(key))


def vote(
    kind: int, round: int, value: bytes, by: int | bytes, *, height: int = 1, chain: str = CHAIN
) -> SignedVote:
    key = KEYS[by] if isinstance(by, int) else by
    return SignedVote(Vote(kind, chain, height, round, value), key, sig(key))


def prevote(round: int, value: bytes, by: int | bytes, **kw: Any) -> SignedVote:
    return vote(PREVOTE, round, value, by, **kw)


def precommit(round: int, value: bytes, by: int | bytes, **kw: Any) -> SignedVote:
    return vote(PRECOMMIT, round, value, by, **kw)


class Node:
    """The engine under test plus a signer that signs whatever it is asked to at once."""

    def __init__(self, own: int = 0, powers: tuple[int, ...] = (1, 1, 1, 1), cls: type = TendermintEngine):
        self.engine: TendermintEngine = cls(CHAIN, KEYS[own], TIMEOUTS)
        self.validators = validator_set(powers)
        self.key = KEYS[own]
        self.log: list[EngineInput] = []
        """Every input the engine handled, in order (its WAL)."""
        self.outputs: list[list[EngineAction]] = []
        """The actions the engine returned for each input of ``log``."""

    def state(self) -> EngineState:
        return self.engine.get_state()

    def feed(self, event: EngineInput) -> list[EngineAction]:
        """Handle ``event``; answer the engine's signing requests as the signer would."""
        self.log.append(event)
        actions = list(self.engine.handle(event))
        self.outputs.append(list(actions))
        done: list[EngineAction] = []
        while actions:
            action = actions.pop(0)
            done.append(action)
            answer: EngineInput | None = None
            if isinstance(action, SignVote):
                answer = VoteSigned(action.vote, sig(self.key))
            elif isinstance(action, SignProposal):
                answer = ProposalSigned(action.proposal, sig(self.key))
            if answer is not None:
                self.log.append(answer)
                answered = self.engine.handle(answer)
                self.outputs.append(list(answered))
                actions[:0] = answered
        return done

    def feed_all(self, *events: EngineInput) -> list[EngineAction]:
        return [a for e in events for a in self.feed(e)]

    def start(self) -> list[EngineAction]:
        return self.feed(StartHeight(1, self.validators))


def signed_votes(actions: list[EngineAction]) -> list[Vote]:
    """The votes the engine asked to sign, in order."""
    return [a.vote for a in actions if isinstance(a, SignVote)]


def timeouts(actions: list[EngineAction]) -> list[ScheduleTimeout]:
    return [a for a in actions if isinstance(a, ScheduleTimeout)]


def pv(round: int, value: bytes) -> Vote:
    return Vote(PREVOTE, CHAIN, 1, round, value)


def pc(round: int, value: bytes) -> Vote:
    return Vote(PRECOMMIT, CHAIN, 1, round, value)


def lock_on_v_in_round_0(node: Node) -> None:
    """Proposal V, valid, prevotes of validators 1 and 2: the node precommits V and locks."""
    node.start()
    node.feed_all(proposal(0, V), BlockData(1, V, True), prevote(0, V, 1), prevote(0, V, 2))
    assert (node.state().locked_value, node.state().locked_round) == (V, 0)


def go_to_round(node: Node, round: int) -> None:
    """Precommits nil of validators 1 and 2 and the precommit timeout end each round up to ``round``."""
    while node.state().round < round:
        r = node.state().round
        node.feed_all(precommit(r, NIL, 1), precommit(r, NIL, 2))
        node.feed_all(TimeoutFired(1, r, Step.PROPOSE), TimeoutFired(1, r, Step.PREVOTE))
        node.feed(TimeoutFired(1, r, Step.PRECOMMIT))
    assert node.state().round == round


# --- StartRound (lines 10-21) ---------------------------------------------------------------


@vector
def test_proposer_without_valid_value_asks_for_a_block() -> Vector:
    node = Node(own=1)
    yield "pre", node.state()
    actions = node.start()
    yield "input", StartHeight(1, node.validators)
    yield "actions", actions
    # Line 18: getValue(), then line 21 (the proposer too, see the module docstring).
    assert actions == [BuildBlock(1, 0), ScheduleTimeout(1, 0, Step.PROPOSE, 3000)]
    actions = node.feed(BlockBuilt(1, 0, V))
    yield "input", BlockBuilt(1, 0, V)
    yield "actions", actions
    # Line 19: broadcast ⟨PROPOSAL, h, r, v, validRound = -1⟩; then line 22 prevotes it.
    own = Proposal(CHAIN, 1, 0, V, -1, KEYS[1])
    assert actions[0] == SignProposal(own)
    assert Broadcast(SignedProposal(own, sig(KEYS[1]))) in actions
    assert signed_votes(actions) == [Vote(PREVOTE, CHAIN, 1, 0, V)]
    yield "post", node.state()


@vector
def test_non_proposer_schedules_timeout_propose() -> Vector:
    node = Node(own=0)
    yield "pre", node.state()
    actions = node.start()
    yield "input", StartHeight(1, node.validators)
    yield "actions", actions
    assert actions == [ScheduleTimeout(1, 0, Step.PROPOSE, 3000)]
    yield "post", node.state()


def test_build_answer_for_another_round_is_ignored() -> None:
    node = Node(own=1)
    node.start()
    assert node.feed(BlockBuilt(1, 5, V)) == []
    assert node.feed(BlockBuilt(2, 0, V)) == []


# --- line 22 ------------------------------------------------------------------------------


@vector
def test_line22_prevote_for_a_valid_proposal_waits_for_block_data() -> Vector:
    node = Node()
    node.start()
    yield "pre", node.state()
    actions = node.feed(proposal(0, V))
    yield "input", proposal(0, V)
    yield "actions", actions
    # valid(v) is unknown: ask for the block, do not vote yet.
    assert actions == [FetchBlock(1, V)]
    actions = node.feed(BlockData(1, V, True))
    yield "input", BlockData(1, V, True)
    yield "actions", actions
    assert signed_votes(actions) == [pv(0, V)]
    assert node.state().step == Step.PREVOTE
    yield "post", node.state()


@vector
def test_line22_invalid_block_gets_a_nil_prevote() -> Vector:
    node = Node()
    node.start()
    yield "pre", node.state()
    actions = node.feed_all(proposal(0, V), BlockData(1, V, False))
    yield "actions", actions
    assert signed_votes(actions) == [pv(0, NIL)]
    yield "post", node.state()


# --- locking (lines 23, 29, 36-41) --------------------------------------------------------------


@vector
def test_line36_prevote_quorum_locks_and_precommits() -> Vector:
    node = Node()
    node.start()
    node.feed_all(proposal(0, V), BlockData(1, V, True), prevote(0, V, 1))
    yield "pre", node.state()
    actions = node.feed(prevote(0, V, 2))
    yield "input", prevote(0, V, 2)
    yield "actions", actions
    assert signed_votes(actions) == [pc(0, V)]
    post = node.state()
    assert (post.locked_value, post.locked_round, post.valid_value, post.valid_round) == (V, 0, V, 0)
    assert post.step == Step.PRECOMMIT
    yield "post", post


@vector
def test_line23_locked_node_prevotes_nil_for_another_value() -> Vector:
    node = Node()
    lock_on_v_in_round_0(node)
    go_to_round(node, 1)
    yield "pre", node.state()
    actions = node.feed_all(proposal(1, W), BlockData(1, W, True))
    yield "actions", actions
    assert signed_votes(actions) == [pv(1, NIL)]
    yield "post", node.state()


@vector
def test_line23_locked_node_prevotes_its_locked_value_again() -> Vector:
    node = Node()
    lock_on_v_in_round_0(node)
    go_to_round(node, 1)
    yield "pre", node.state()
    actions = node.feed(proposal(1, V))
    yield "input", proposal(1, V)
    yield "actions", actions
    assert signed_votes(actions) == [pv(1, V)]
    yield "post", node.state()


@vector
def test_line29_proof_of_lock_at_or_after_the_locked_round_unlocks() -> Vector:
    node = Node()
    lock_on_v_in_round_0(node)
    go_to_round(node, 1)
    # 2f+1 prevoted W in round 1 (>= lockedRound 0).
    node.feed_all(prevote(1, W, 1), prevote(1, W, 2), prevote(1, W, 3))
    go_to_round(node, 2)
    yield "pre", node.state()
    actions = node.feed_all(proposal(2, W, pol=1), BlockData(1, W, True))
    yield "actions", actions
    assert signed_votes(actions) == [Vote(PREVOTE, CHAIN, 1, 2, W)]
    yield "post", node.state()


@vector
def test_line29_proof_of_lock_older_than_the_lock_does_not_unlock() -> Vector:
    node = Node()
    node.start()
    # Round 0: 2f+1 prevote W, but the node sees no proposal and precommits nil.
    node.feed_all(prevote(0, W, 1), prevote(0, W, 2), prevote(0, W, 3))
    go_to_round(node, 1)
    # Round 1: it locks on V.
    node.feed_all(proposal(1, V), BlockData(1, V, True), prevote(1, V, 1), prevote(1, V, 2))
    assert (node.state().locked_value, node.state().locked_round) == (V, 1)
    go_to_round(node, 2)
    yield "pre", node.state()
    # A proposal of W with the round-0 proof of lock: 0 < lockedRound 1, and W is not V.
    actions = node.feed_all(proposal(2, W, pol=0), BlockData(1, W, True))
    yield "actions", actions
    assert signed_votes(actions) == [Vote(PREVOTE, CHAIN, 1, 2, NIL)]
    yield "post", node.state()


def test_line28_without_the_proof_of_lock_the_proposal_waits_for_the_timeout() -> None:
    node = Node()
    node.start()
    go_to_round(node, 1)
    # pol_round 0, but no 2f+1 prevotes for W in round 0: no rule fires.
    assert signed_votes(node.feed_all(proposal(1, W, pol=0), BlockData(1, W, True))) == []
    # Line 57: OnTimeoutPropose prevotes nil.
    assert signed_votes(node.feed(TimeoutFired(1, 1, Step.PROPOSE))) == [pv(1, NIL)]


def test_proposal_with_a_pol_round_not_below_its_round_is_ignored() -> None:
    node = Node()
    node.start()
    assert node.feed(proposal(0, V, pol=0)) == []
    assert not node.engine.knows(proposal(0, V, pol=0))


# --- valid value (lines 15-16, 36, 42-43) -------------------------------------------------------


@vector
def test_line36_after_precommit_only_valid_value_changes_and_is_proposed_next() -> Vector:
    node = Node(own=2)  # proposer of round 1
    node.start()
    # Round 0: no proposal in time, prevote nil; 2f+1 prevotes any; prevote timeout: precommit nil.
    node.feed(TimeoutFired(1, 0, Step.PROPOSE))
    node.feed_all(prevote(0, V, 0), prevote(0, V, 1), TimeoutFired(1, 0, Step.PREVOTE))
    assert node.state().step == Step.PRECOMMIT
    yield "pre", node.state()
    # Now the proposal and a third prevote for V arrive: 2f+1 prevotes for a proposed, valid V.
    actions = node.feed_all(proposal(0, V), BlockData(1, V, True), prevote(0, V, 3))
    yield "actions", actions
    mid = node.state()
    # Lines 37-41 need step = prevote; lines 42-43 apply anyway.
    assert (mid.locked_value, mid.locked_round, mid.valid_value, mid.valid_round) == (None, -1, V, 0)
    assert signed_votes(actions) == []
    # Round 1: the node proposes validValue with validRound, without building a block.
    actions = node.feed_all(precommit(0, NIL, 0), precommit(0, NIL, 1), TimeoutFired(1, 0, Step.PRECOMMIT))
    yield "actions", actions
    assert not any(isinstance(a, BuildBlock) for a in actions)
    assert SignProposal(Proposal(CHAIN, 1, 1, V, 0, KEYS[2])) in actions
    yield "post", node.state()


# --- lines 34, 44, 47, 57-67 ------------------------------------------------------------------


@vector
def test_line34_prevote_timeout_is_scheduled_once() -> Vector:
    node = Node()
    node.start()
    node.feed(TimeoutFired(1, 0, Step.PROPOSE))  # prevote nil
    yield "pre", node.state()
    actions = node.feed(prevote(0, V, 1))
    assert timeouts(actions) == []
    actions = node.feed(prevote(0, W, 2))
    yield "input", prevote(0, W, 2)
    yield "actions", actions
    assert timeouts(actions) == [ScheduleTimeout(1, 0, Step.PREVOTE, 1000)]
    assert timeouts(node.feed(prevote(0, V, 3))) == []
    # Line 61: the timeout precommits nil.
    actions = node.feed(TimeoutFired(1, 0, Step.PREVOTE))
    assert signed_votes(actions) == [pc(0, NIL)]
    yield "post", node.state()


@vector
def test_line44_nil_quorum_precommits_nil() -> Vector:
    node = Node()
    node.start()
    node.feed(TimeoutFired(1, 0, Step.PROPOSE))
    yield "pre", node.state()
    actions = node.feed_all(prevote(0, NIL, 1), prevote(0, NIL, 2))
    yield "actions", actions
    assert pc(0, NIL) in signed_votes(actions)
    assert node.state().step == Step.PRECOMMIT
    yield "post", node.state()


@vector
def test_line47_precommit_timeout_starts_the_next_round() -> Vector:
    node = Node()
    node.start()
    node.feed(TimeoutFired(1, 0, Step.PROPOSE))
    yield "pre", node.state()
    actions = node.feed_all(precommit(0, NIL, 1), precommit(0, W, 2), precommit(0, NIL, 3))
    yield "actions", actions
    assert timeouts(actions) == [ScheduleTimeout(1, 0, Step.PRECOMMIT, 1000)]
    actions = node.feed(TimeoutFired(1, 0, Step.PRECOMMIT))
    yield "input", TimeoutFired(1, 0, Step.PRECOMMIT)
    yield "actions", actions
    # Line 67: StartRound(1); its propose timeout has grown by one delta.
    assert node.state().round == 1 and node.state().step == Step.PROPOSE
    assert timeouts(actions) == [ScheduleTimeout(1, 1, Step.PROPOSE, 3500)]
    yield "post", node.state()


def test_timeouts_of_other_heights_rounds_and_steps_are_ignored() -> None:
    node = Node()
    node.start()
    before = node.state()
    for event in (
        TimeoutFired(1, 3, Step.PROPOSE),
        TimeoutFired(2, 0, Step.PROPOSE),
        TimeoutFired(1, 0, Step.PREVOTE),
        TimeoutFired(1, 1, Step.PRECOMMIT),
    ):
        assert node.feed(event) == []
    assert node.state() == before


def test_timeouts_grow_with_the_round() -> None:
    config = TimeoutConfig(propose_ms=100, propose_delta_ms=10, prevote_ms=50, prevote_delta_ms=5)
    assert [config.get_timeout(Step.PROPOSE, r) for r in range(4)] == [100, 110, 120, 130]
    assert [config.get_timeout(Step.PREVOTE, r) for r in range(3)] == [50, 55, 60]
    assert [config.get_timeout(Step.PRECOMMIT, r) for r in range(2)] == [1000, 1500]
    node = Node()
    node.start()
    go_to_round(node, 3)
    scheduled = timeouts(node.feed(TimeoutFired(1, 3, Step.PROPOSE)))
    assert scheduled == []  # the prevote timeout needs 2f+1 prevotes first
    steps = [timeouts(node.feed(prevote(3, NIL, i))) for i in (1, 2)]
    assert steps == [[], [ScheduleTimeout(1, 3, Step.PREVOTE, 1000 + 3 * 500)]]


# --- line 55 --------------------------------------------------------------------------------


@vector
def test_line55_f_plus_one_of_a_higher_round_skips_to_it() -> Vector:
    node = Node()
    node.start()
    yield "pre", node.state()
    # One validator of four is not more than a third.
    assert node.feed(prevote(3, NIL, 1)) == []
    assert node.state().round == 0
    actions = node.feed(precommit(3, NIL, 2))
    yield "input", precommit(3, NIL, 2)
    yield "actions", actions
    # StartRound(3): validator 0 proposes round 3.
    assert node.state().round == 3
    assert actions[:2] == [BuildBlock(1, 3), ScheduleTimeout(1, 3, Step.PROPOSE, 4500)]
    yield "post", node.state()


def test_line55_counts_power_not_heads() -> None:
    node = Node(powers=(1, 1, 1, 4))
    node.start()
    node.feed(prevote(2, NIL, 1))
    assert node.state().round == 0
    # Power 4 of 7 is more than a third on its own.
    node.feed(prevote(5, NIL, 3))
    assert node.state().round == 5


def test_line55_a_proposal_counts_as_a_message_of_its_round() -> None:
    node = Node()
    node.start()
    node.feed(proposal(2, V))  # from validator 3
    node.feed(prevote(2, NIL, 1))
    assert node.state().round == 2


# --- line 49: deciding --------------------------------------------------------------------


@vector
def test_line49_decides_with_a_certificate_of_more_than_two_thirds_of_the_power() -> Vector:
    powers = (1, 1, 1, 4)  # proposer of (1, 0) is validator 0; the engine is validator 2
    node = Node(own=2, powers=powers)
    node.start()
    node.feed_all(proposal(0, V, powers=powers), BlockData(1, V, True))
    yield "pre", node.state()
    # Validators 0 and 1 hold 2 of 7: not enough.
    actions = node.feed_all(precommit(0, V, 0), precommit(0, V, 1))
    assert not any(isinstance(a, Decide) for a in actions)
    actions = node.feed(precommit(0, V, 3))
    yield "input", precommit(0, V, 3)
    yield "actions", actions
    (decide,) = [a for a in actions if isinstance(a, Decide)]
    cert = decide.certificate
    assert (decide.height, decide.round, decide.block_hash) == (1, 0, V)
    assert (cert.height, cert.round, cert.block_hash) == (1, 0, V)
    signers = [s.validator for s in cert.signatures]
    assert signers == [KEYS[0], KEYS[1], KEYS[3]]
    power = sum(powers[KEYS.index(k)] for k in signers)
    assert 3 * power > 2 * sum(powers)
    assert all(s.signature == sig(s.validator) for s in cert.signatures)
    assert node.state().decision == V
    # Decided: the height is over until start_height(2).
    assert node.feed(precommit(0, V, 2)) == []
    yield "post", node.state()


def test_line49_decides_a_value_of_another_round() -> None:
    node = Node()
    node.start()
    node.feed_all(proposal(2, V), BlockData(1, V, True))
    actions = node.feed_all(precommit(2, V, 1), precommit(2, V, 2), precommit(2, V, 3))
    decisions = [a for a in actions if isinstance(a, Decide)]
    assert [(d.round, d.block_hash) for d in decisions] == [(2, V)]


def test_line50_no_decision_for_an_invalid_block() -> None:
    node = Node()
    node.start()
    node.feed_all(proposal(0, V), BlockData(1, V, False))
    actions = node.feed_all(precommit(0, V, 1), precommit(0, V, 2), precommit(0, V, 3))
    assert not any(isinstance(a, Decide) for a in actions)
    assert node.state().decision is None


def test_line49_needs_the_proposal() -> None:
    node = Node()
    node.start()
    node.feed(BlockData(1, V, True))
    actions = node.feed_all(precommit(0, V, 1), precommit(0, V, 2), precommit(0, V, 3))
    assert not any(isinstance(a, Decide) for a in actions)
    assert any(isinstance(a, Decide) for a in node.feed(proposal(0, V)))


def test_next_height_starts_fresh() -> None:
    node = Node()
    lock_on_v_in_round_0(node)
    node.feed_all(precommit(0, V, 1), precommit(0, V, 2))
    assert node.state().decision == V
    actions = node.feed(StartHeight(2, node.validators))
    state = node.state()
    assert (state.height, state.round, state.locked_value, state.valid_value, state.decision) == (
        2,
        0,
        None,
        None,
        None,
    )
    # Proposer of (2, 0) is validator 2.
    assert actions == [ScheduleTimeout(2, 0, Step.PROPOSE, 3000)]
    with pytest.raises(ConsensusError):
        node.feed(StartHeight(2, node.validators))


def test_start_height_rejects_a_bad_validator_set() -> None:
    engine = TendermintEngine(CHAIN, KEYS[0])
    with pytest.raises(ConsensusError):
        engine.start_height(1, ValidatorSet([]))
    with pytest.raises(ConsensusError):
        engine.start_height(1, ValidatorSet([Validator(KEYS[0], 1), Validator(KEYS[0], 1)]))
    with pytest.raises(ConsensusError):
        engine.start_height(1, ValidatorSet([Validator(KEYS[0], 0)]))


# --- what the engine refuses --------------------------------------------------------------


def test_duplicate_votes_count_once() -> None:
    node = Node()
    node.start()
    node.feed_all(proposal(0, V), BlockData(1, V, True))  # own prevote V
    actions = node.feed_all(prevote(0, V, 1), prevote(0, V, 1), prevote(0, V, 1))
    assert signed_votes(actions) == []  # 2 of 4, however often one of them repeats
    assert signed_votes(node.feed(prevote(0, V, 2))) == [pc(0, V)]


def test_votes_from_non_validators_other_heights_and_chains_are_ignored() -> None:
    node = Node()
    node.start()
    node.feed_all(proposal(0, V), BlockData(1, V, True))
    for junk in (
        prevote(0, V, OUTSIDER),
        prevote(0, V, 1, height=2),
        prevote(0, V, 2, chain="other"),
        SignedVote(Vote(7, CHAIN, 1, 0, V), KEYS[3], b"s"),
        SignedVote(Vote(PREVOTE, CHAIN, 1, 0, b"short"), KEYS[3], b"s"),
        SignedVote(Vote(PREVOTE, CHAIN, 1, -1, V), KEYS[3], b"s"),
    ):
        assert node.feed(junk) == []
        assert not node.engine.knows(junk)
    assert node.state().step == Step.PREVOTE
    # Far-future rounds are dropped (a bound on what a faulty validator can make us store).
    assert node.feed(prevote(10_000, NIL, 1)) == []


def test_proposals_not_from_the_rounds_proposer_are_ignored() -> None:
    node = Node()
    node.start()
    wrong = proposal(0, V, by=2)  # round 0 belongs to validator 1
    assert node.feed_all(wrong, BlockData(1, V, True)) == []
    assert not node.engine.knows(wrong)
    assert node.feed(proposal(0, V, height=2)) == []


@vector
def test_double_vote_is_reported_once_as_evidence() -> Vector:
    node = Node()
    node.start()
    first, second, third = prevote(0, V, 1), prevote(0, W, 1), prevote(0, NIL, 1)
    node.feed(first)
    yield "pre", node.state()
    actions = node.feed(second)
    yield "input", second
    yield "actions", actions
    assert actions == [Equivocation(DuplicateVoteEvidence(first, second))]
    assert node.feed(third) == []
    yield "post", node.state()


def test_double_proposal_is_reported_and_both_kept() -> None:
    node = Node()
    node.start()
    a, b = proposal(0, V), proposal(0, W)
    node.feed(a)
    actions = node.feed(b)
    assert Equivocation(DuplicateProposalEvidence(a, b)) in actions
    assert node.engine.knows(a) and node.engine.knows(b)


def test_an_equivocators_vote_counts_for_each_proposed_value() -> None:
    # Validator 3 precommitted nil to us first, V to the others: we must still see their quorum.
    node = Node()
    node.start()
    node.feed_all(proposal(0, V), BlockData(1, V, True))
    node.feed_all(precommit(0, NIL, 3), precommit(0, V, 1), precommit(0, V, 2))
    assert node.state().decision is None
    actions = node.feed(precommit(0, V, 3))
    assert any(isinstance(a, Equivocation) for a in actions)
    assert any(isinstance(a, Decide) for a in actions)


def test_an_equivocators_votes_for_unproposed_values_are_not_stored() -> None:
    node = Node()
    node.start()
    node.feed(prevote(0, V, 3))
    junk = prevote(0, b"\x01" * 32, 3)
    assert [type(a) for a in node.feed(junk)] == [Equivocation]
    assert not node.engine.knows(junk)


def test_an_equivocator_counts_once_towards_2f_plus_1_prevotes_for_anything() -> None:
    # Line 34: own nil prevote and validator 1's V and nil prevotes are two validators of four.
    node = Node()
    node.start()
    node.feed_all(proposal(0, V), TimeoutFired(1, 0, Step.PROPOSE))
    assert signed_votes(node.feed(prevote(0, V, 1))) == []
    actions = node.feed(prevote(0, NIL, 1))
    assert [type(a) for a in actions] == [Equivocation]
    assert node.engine.knows(prevote(0, NIL, 1)), "the nil prevote is counted, for nil"
    # A third validator makes it 2f+1 of anything: now the prevote timeout is scheduled.
    assert timeouts(node.feed(prevote(0, W, 2))) == [ScheduleTimeout(1, 0, Step.PREVOTE, 1000)]


def test_an_equivocator_counts_once_towards_2f_plus_1_precommits_for_anything() -> None:
    # Line 47: validator 1 precommits V and nil, validator 2 precommits V: two validators of four.
    node = Node()
    node.start()
    node.feed(proposal(0, V))
    node.feed_all(precommit(0, V, 1), precommit(0, NIL, 1), precommit(0, V, 2))
    assert node.engine.knows(precommit(0, NIL, 1))
    assert timeouts(node.feed(TimeoutFired(1, 0, Step.PROPOSE))) == []
    # A third validator: 2f+1 precommits of anything, the precommit timeout is scheduled.
    assert timeouts(node.feed(precommit(0, W, 3))) == [ScheduleTimeout(1, 0, Step.PRECOMMIT, 1000)]


def test_an_equivocator_counts_once_towards_f_plus_1_of_a_higher_round() -> None:
    # Line 55: one validator of four speaking in round 3 with several messages is still one.
    node = Node()
    node.start()
    node.feed(proposal(0, V))
    for message in (prevote(3, NIL, 1), precommit(3, NIL, 1), prevote(3, V, 1), precommit(3, V, 1)):
        node.feed(message)
    assert node.state().round == 0
    node.feed(prevote(3, NIL, 2))
    assert node.state().round == 3


def test_height_votes_count_an_equivocator_once_in_every_any_rule() -> None:
    votes = HeightVotes({k: p for k, p in zip(KEYS, (3, 1, 1, 1), strict=True)})
    # Validator 0 (power 3 of 6) prevotes and precommits V and nil in round 2.
    for message in (prevote(2, V, 0), prevote(2, NIL, 0), precommit(2, V, 0), precommit(2, NIL, 0)):
        votes.add(message, count_conflicting=True)
    for kind_set in (votes.prevotes(2), votes.precommits(2)):
        assert (kind_set.power_for[V], kind_set.power_for[NIL], kind_set.power_any) == (3, 3, 3)
        assert not kind_set.has_two_thirds_any()
    # Counted once, 3 of 6 is still more than a third on its own.
    assert votes.highest_round_with_one_third(above=0) == 2
    lone = HeightVotes({k: p for k, p in zip(KEYS, (1, 1, 1, 1), strict=True)})
    for message in (prevote(2, V, 0), prevote(2, NIL, 0), precommit(2, NIL, 0), precommit(2, V, 0)):
        lone.add(message, count_conflicting=True)
    assert lone.prevotes(2).power_any == lone.precommits(2).power_any == 1
    assert lone.highest_round_with_one_third(above=0) is None
    lone.add(prevote(2, W, 1), count_conflicting=True)
    assert lone.highest_round_with_one_third(above=0) == 2
    assert not lone.prevotes(2).has_two_thirds_any()
    lone.add(prevote(2, W, 2), count_conflicting=True)
    assert lone.prevotes(2).has_two_thirds_any()


def test_own_vote_counts_only_once_signed() -> None:
    engine = TendermintEngine(CHAIN, KEYS[0])
    engine.start_height(1, validator_set())
    engine.on_proposal(proposal(0, V))
    actions = engine.on_block_data(1, V, True)
    assert actions == [SignVote(pv(0, V))]
    engine.on_vote(prevote(0, V, 1))
    assert engine.on_vote(prevote(0, V, 2)) == []  # 2 of 4 counted: ours is not signed yet
    actions = engine.on_signed(pv(0, V), b"ours")
    assert actions[0] == Broadcast(SignedVote(pv(0, V), KEYS[0], b"ours"))
    assert SignVote(pc(0, V)) in actions
    # A signature for something not asked for is ignored.
    assert engine.on_signed(pv(0, W), b"x") == []


def test_a_follower_without_a_key_decides_without_voting() -> None:
    engine = TendermintEngine(CHAIN, None)
    engine.start_height(1, validator_set())
    engine.on_proposal(proposal(0, V))
    engine.on_block_data(1, V, True)
    actions = [a for i in (1, 2, 3) for a in engine.on_vote(precommit(0, V, i))]
    assert not any(isinstance(a, (SignVote, SignProposal, Broadcast)) for a in actions)
    assert any(isinstance(a, Decide) for a in actions)


# --- replay, encoding, guard ----------------------------------------------------------------


def test_replaying_the_input_log_rebuilds_the_same_state_and_actions() -> None:
    node = Node()
    lock_on_v_in_round_0(node)
    go_to_round(node, 2)
    node.feed_all(proposal(2, W, pol=0), prevote(2, NIL, 3), precommit(2, W, 1))
    # Round 3: split prevotes fire line 34, an action (a timeout) that leaves no trace in the state.
    go_to_round(node, 3)
    node.feed_all(TimeoutFired(1, 3, Step.PROPOSE), prevote(3, V, 1), prevote(3, W, 2))
    assert node.outputs[-1] == [ScheduleTimeout(1, 3, Step.PREVOTE, 1000 + 3 * 500)]
    fresh = TendermintEngine(CHAIN, KEYS[0], TIMEOUTS)
    replayed = [fresh.handle(event) for event in node.log]
    # Input by input, the same actions: the same votes to sign, timeouts, broadcasts, in order.
    assert len(replayed) == len(node.outputs) == len(node.log)
    for i, (again, before) in enumerate(zip(replayed, node.outputs, strict=True)):
        assert again == before, f"input {i} ({node.log[i]!r}) acted differently on replay"
    assert fresh.get_state() == node.state()
    assert fresh.get_messages() == node.engine.get_messages()
    # The log drove the engine through signing, rounds and the lock.
    assert sum(isinstance(a, SignVote) for out in replayed for a in out) >= 4
    assert fresh.get_state().round == 3


def test_gossip_passes_on_the_polka_behind_the_lock_quorums_and_recent_rounds() -> None:
    """What a stalled node re-sends: others' messages too, but not every old round's."""
    node = Node()
    lock_on_v_in_round_0(node)
    node.feed(prevote(0, NIL, 3))
    go_to_round(node, 1)
    # Round 1: 2f+1 precommits for W, whose proposal this node never saw (no decision here;
    # a peer holding the proposal can decide with them).
    node.feed_all(precommit(1, W, 1), precommit(1, W, 2), precommit(1, W, 3))
    node.feed_all(TimeoutFired(1, 1, Step.PROPOSE), TimeoutFired(1, 1, Step.PRECOMMIT))
    node.feed(proposal(2, W))
    go_to_round(node, 3)
    node.feed(prevote(3, NIL, 2))
    gossip = node.engine.get_gossip()
    assert len(gossip) == len(set(gossip)), "a message twice"
    sent = set(gossip)
    own_prevote = SignedVote(pv(0, V), KEYS[0], sig(KEYS[0]))
    # The polka of the lock, the proposal it is for, and the precommit quorum of round 1.
    for message in (proposal(0, V), prevote(0, V, 1), prevote(0, V, 2), own_prevote):
        assert message in sent, message
    for by in (1, 2, 3):
        assert precommit(1, W, by) in sent
    # Rounds 2 and 3 whole (rounds - 1 and later).
    assert {proposal(2, W), precommit(2, NIL, 1), precommit(2, NIL, 2), prevote(3, NIL, 2)} <= sent
    # Not the rest of rounds 0 and 1: nil prevotes and precommits.
    own_nil = SignedVote(pv(1, NIL), KEYS[0], sig(KEYS[0]))
    assert own_nil in node.engine.get_messages()
    for message in (prevote(0, NIL, 3), precommit(0, NIL, 1), precommit(0, NIL, 2), own_nil):
        assert message not in sent, message
    assert all(m.proposal.round in (0, 2, 3) for m in gossip if isinstance(m, SignedProposal))


def test_messages_and_inputs_round_trip_through_the_codec() -> None:
    events: list[EngineInput] = [
        StartHeight(1, validator_set()),
        proposal(0, V),
        prevote(0, V, 1),
        BlockData(1, V, True),
        BlockBuilt(1, 0, V),
        ProposalSigned(proposal(0, V).proposal, b"s"),
        VoteSigned(pv(0, V), b"s"),
        TimeoutFired(1, 0, Step.PREVOTE),
    ]
    for event in events:
        assert decode(encode(event), EngineInput) == event
    for message in (proposal(0, V), precommit(0, NIL, 2)):
        assert decode(encode(message), ConsensusMessage) == message
    # A proposal's and a vote's sign-bytes can never be confused.
    assert proposal_sign_bytes(proposal(0, V).proposal) != vote_sign_bytes(pv(0, V))


def test_guard_signs_forward_reuses_the_same_and_refuses_the_rest() -> None:
    vote_v, vote_w = pv(0, V), pv(0, W)
    data = vote_sign_bytes(vote_v)
    last = LastSigned(1, 0, PREVOTE, data, b"sig-v")
    assert check_signing(None, vote_v) == SignCheck.SIGN
    assert check_signing(last, vote_v) == SignCheck.REUSE
    assert check_signing(last, vote_w) == SignCheck.REFUSE_CONFLICT
    assert check_signing(last, pc(0, W)) == SignCheck.SIGN
    assert check_signing(last, Vote(PREVOTE, CHAIN, 1, 1, W)) == SignCheck.SIGN
    assert check_signing(last, Proposal(CHAIN, 1, 0, V, -1, KEYS[1])) == SignCheck.REFUSE_STALE
    assert check_signing(last, Proposal(CHAIN, 1, 1, V, -1, KEYS[1])) == SignCheck.SIGN


# --- proposer ------------------------------------------------------------------------------


def test_proposer_rotates_round_robin_with_equal_power() -> None:
    vs = validator_set()
    assert [KEYS.index(get_proposer(vs, 1, r)) for r in range(8)] == [1, 2, 3, 0, 1, 2, 3, 0]
    assert [KEYS.index(get_proposer(vs, h, 0)) for h in range(1, 5)] == [1, 2, 3, 0]
    assert compute_schedule((2, 2, 2, 2)) == compute_schedule((1, 1, 1, 1))


def test_proposer_turns_follow_voting_power_and_are_spread_out() -> None:
    assert compute_schedule((3, 1)) == (0, 0, 1, 0)
    powers = (5, 3, 1, 1)
    vs = validator_set(powers)
    turns = [KEYS.index(get_proposer(vs, 1, r)) for r in range(100)]
    assert [turns.count(i) for i in range(4)] == [50, 30, 10, 10]
    cycle = compute_schedule(powers)
    assert cycle == (0, 1, 0, 2, 0, 1, 3, 0, 1, 0)
    # The heaviest never proposes more than twice in a row, even around the cycle.
    doubled = cycle + cycle
    assert all(doubled[i : i + 3] != (0, 0, 0) for i in range(len(cycle)))
    # Only the set matters: the same inputs give the same proposer.
    assert get_proposer(validator_set(powers), 7, 3) == get_proposer(vs, 7, 3)


def test_huge_powers_keep_a_bounded_cycle_with_everyone_in_it() -> None:
    cycle = compute_schedule((10**12, 3 * 10**11, 1))
    assert len(cycle) <= MAX_CYCLE + 3
    assert {0, 1, 2} == set(cycle)


def test_thresholds_are_strict() -> None:
    assert (
        not is_two_thirds(2, 3) and is_two_thirds(3, 4) and not is_two_thirds(6, 9) and is_two_thirds(7, 10)
    )
    assert not is_one_third(1, 3) and is_one_third(2, 4) and not is_one_third(1, 4)
