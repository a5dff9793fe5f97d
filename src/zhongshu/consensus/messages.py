"""What the Tendermint engine reads and writes: wire messages, inputs and actions.

Wire messages (proposals, signed votes, equivocation evidence) are array-like, tagged msgspec
Structs, so ``zhongshu.codec.encode`` gives their one canonical encoding and the p2p layer can
decode any of them as ``ConsensusMessage``. Sign-bytes: ``encode(Proposal)`` for a proposal,
``encode(Vote)`` for a vote; the tags keep one kind from being read as another.

Inputs are Structs too, so the node can write each one to its write-ahead log before handing
it to ``TendermintEngine.handle`` and replay the log after a crash. Actions are frozen
dataclasses the node carries out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import msgspec

from zhongshu.codec import encode
from zhongshu.consensus.boundary import SignVote
from zhongshu.ledger.types import CommitCertificate, ValidatorSet, Vote


class Step(IntEnum):
    """The steps of a round; a vote's kind is the step it is signed in (PREVOTE=1, PRECOMMIT=2)."""

    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2


# --- wire messages ---------------------------------------------------------------------------


class Proposal(msgspec.Struct, array_like=True, frozen=True, tag="proposal"):
    """The sign-bytes of a proposal: ⟨PROPOSAL, h, r, v, vr⟩ of Algorithm 1."""

    chain_id: str
    """The chain; a signature for one chain is never valid on another."""
    height: int
    round: int
    block_hash: bytes
    """id(v): the hash of the proposed block; the block itself travels beside it."""
    pol_round: int
    """vr: the round of the proof-of-lock (2f+1 prevotes) for this value, or -1."""
    proposer: bytes
    """Public key of proposer(height, round)."""


class SignedProposal(msgspec.Struct, array_like=True, frozen=True, tag="signed_proposal"):
    proposal: Proposal
    signature: bytes
    """The proposer's signature over ``encode(proposal)``."""


class SignedVote(msgspec.Struct, array_like=True, frozen=True, tag="signed_vote"):
    vote: Vote
    validator: bytes
    """Public key of the voter."""
    signature: bytes
    """The voter's signature over ``encode(vote)``."""


class DuplicateVoteEvidence(msgspec.Struct, array_like=True, frozen=True, tag="duplicate_vote"):
    """One validator signed two different votes of one kind at one height and round."""

    first: SignedVote
    second: SignedVote


class DuplicateProposalEvidence(msgspec.Struct, array_like=True, frozen=True, tag="duplicate_proposal"):
    """One proposer signed two different proposals at one height and round."""

    first: SignedProposal
    second: SignedProposal


ConsensusMessage = SignedProposal | SignedVote
"""What peers send each other; decode with ``zhongshu.codec.decode(data, ConsensusMessage)``."""

Evidence = DuplicateVoteEvidence | DuplicateProposalEvidence


def proposal_sign_bytes(proposal: Proposal) -> bytes:
    """The bytes a proposer signs."""
    return encode(proposal)


def vote_sign_bytes(vote: Vote) -> bytes:
    """The bytes a voter signs."""
    return encode(vote)


# --- inputs (WAL records) --------------------------------------------------------------------


class StartHeight(msgspec.Struct, array_like=True, frozen=True, tag="start_height"):
    """Begin consensus on ``height`` with the validator set that signs it."""

    height: int
    validators: ValidatorSet


class BlockData(msgspec.Struct, array_like=True, frozen=True, tag="block_data"):
    """The node holds the block with this hash and says whether it validates: valid(v)."""

    height: int
    block_hash: bytes
    valid: bool


class BlockBuilt(msgspec.Struct, array_like=True, frozen=True, tag="block_built"):
    """The node built the block asked for by ``BuildBlock(height, round)``."""

    height: int
    round: int
    block_hash: bytes


class ProposalSigned(msgspec.Struct, array_like=True, frozen=True, tag="proposal_signed"):
    """The signer signed the engine's own proposal."""

    proposal: Proposal
    signature: bytes


class VoteSigned(msgspec.Struct, array_like=True, frozen=True, tag="vote_signed"):
    """The signer signed the engine's own vote."""

    vote: Vote
    signature: bytes


class TimeoutFired(msgspec.Struct, array_like=True, frozen=True, tag="timeout"):
    """A timeout scheduled by ``ScheduleTimeout`` expired."""

    height: int
    round: int
    step: int


EngineInput = (
    StartHeight
    | SignedProposal
    | SignedVote
    | BlockData
    | BlockBuilt
    | ProposalSigned
    | VoteSigned
    | TimeoutFired
)
"""Everything that can change the engine's state; each one is written to the WAL first."""


# --- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildBlock:
    """We propose at (height, round) and hold no valid value: build a block, answer ``BlockBuilt``."""

    height: int
    round: int


@dataclass(frozen=True)
class FetchBlock:
    """A proposal names a block whose validity we do not know: get it, answer ``BlockData``."""

    height: int
    block_hash: bytes


@dataclass(frozen=True)
class SignProposal:
    """Ask the signer (which guards against double-signing) to sign; answer ``ProposalSigned``."""

    proposal: Proposal


@dataclass(frozen=True)
class Broadcast:
    """Send a signed message of our own to every peer."""

    message: ConsensusMessage


@dataclass(frozen=True)
class ScheduleTimeout:
    """Deliver ``TimeoutFired(height, round, step)`` after ``delay_ms`` milliseconds."""

    height: int
    round: int
    step: Step
    delay_ms: int


@dataclass(frozen=True)
class Decide:
    """The block is decided: apply and store it with the certificate, then ``StartHeight(height+1)``."""

    height: int
    round: int
    block_hash: bytes
    certificate: CommitCertificate
    """Precommits for ``block_hash`` at ``round`` holding more than 2/3 of the voting power."""


@dataclass(frozen=True)
class Equivocation:
    """A validator signed two conflicting messages; ``evidence`` proves it to anyone."""

    evidence: Evidence


EngineAction = (
    BuildBlock | FetchBlock | SignProposal | SignVote | Broadcast | ScheduleTimeout | Decide | Equivocation
)
"""``SignVote`` is the boundary's action (ask the signer to sign a ``Vote``; answer ``VoteSigned``)."""

__all__ = [
    "BlockBuilt",
    "BlockData",
    "Broadcast",
    "BuildBlock",
    "ConsensusMessage",
    "Decide",
    "DuplicateProposalEvidence",
    "DuplicateVoteEvidence",
    "EngineAction",
    "EngineInput",
    "Equivocation",
    "Evidence",
    "FetchBlock",
    "Proposal",
    "ProposalSigned",
    "ScheduleTimeout",
    "SignProposal",
    "SignVote",
    "SignedProposal",
    "SignedVote",
    "StartHeight",
    "Step",
    "TimeoutFired",
    "VoteSigned",
    "proposal_sign_bytes",
    "vote_sign_bytes",
]
