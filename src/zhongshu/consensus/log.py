"""The message log of one height: which proposals and votes get in, and equivocation found.

The engine trusts the caller to have checked signatures, and nothing else. A message is
admitted only if it is for this chain and height, in a round from 0 up to a bound the engine
gives (so a faulty validator cannot make us store unbounded future rounds), well formed, and
from a validator of the height; a proposal only from proposer(h, r). An exact duplicate
changes nothing. Two different votes of one validator for one (round, kind), or two
different proposals of one proposer for one round, are reported once as evidence.
"""

from __future__ import annotations

from zhongshu.consensus.messages import (
    ConsensusMessage,
    DuplicateProposalEvidence,
    Evidence,
    SignedProposal,
    SignedVote,
)
from zhongshu.consensus.proposer import get_proposer
from zhongshu.consensus.votes import HeightVotes
from zhongshu.ledger.types import HASH_SIZE, PRECOMMIT, PREVOTE, ValidatorSet

MAX_PROPOSALS_PER_ROUND = 4
"""Distinct proposals kept per round (more can only come from an equivocating proposer), except
that one whose value has 2f+1 prevotes or precommits in its round is always kept."""


class HeightLog:
    """Proposals and votes of one height, admitted by the rules of the module docstring."""

    def __init__(self, chain_id: str, height: int, validators: ValidatorSet) -> None:
        self.chain_id = chain_id
        self.height = height
        self.validators = validators
        self.powers = {v.public_key: v.power for v in validators.validators}
        self.votes = HeightVotes(self.powers)
        self.proposals: dict[int, list[SignedProposal]] = {}
        """Round -> admitted proposals of proposer(h, round), in arrival order."""
        self.proposed: set[bytes] = set()
        """Every value some admitted proposal of the height names."""
        self._reported: set[tuple[bytes, int, int]] = set()

    def get_proposer(self, round: int) -> bytes:
        return get_proposer(self.validators, self.height, round)

    def add_proposal(self, signed: SignedProposal, max_round: int) -> tuple[bool, Evidence | None]:
        """Admit a proposal; return (whether it names a value new to the height, evidence)."""
        p = signed.proposal
        # It is for this chain and height, in a round we keep.
        if p.chain_id != self.chain_id or p.height != self.height or not 0 <= p.round <= max_round:
            return False, None
        # The value is a block hash and the proof-of-lock round is -1 or an earlier round.
        if len(p.block_hash) != HASH_SIZE or not -1 <= p.pol_round < p.round:
            return False, None
        # Only proposer(h, r) may propose in round r.
        if p.proposer != self.get_proposer(p.round):
            return False, None
        kept = self.proposals.setdefault(p.round, [])
        # The same proposal again changes nothing.
        if any(s.proposal == p for s in kept):
            return False, None
        evidence: Evidence | None = None
        if kept and (p.proposer, p.round, -1) not in self._reported:
            self._reported.add((p.proposer, p.round, -1))
            evidence = DuplicateProposalEvidence(kept[0], signed)
        # Past the cap, only a proposal whose value 2f+1 already voted for in its round is kept.
        if len(kept) >= MAX_PROPOSALS_PER_ROUND and not self.has_quorum(p.round, p.block_hash):
            return False, evidence
        kept.append(signed)
        self.votes.note_speaker(p.round, p.proposer)
        new = p.block_hash not in self.proposed
        self.proposed.add(p.block_hash)
        return new, evidence

    def add_vote(self, signed: SignedVote, max_round: int) -> Evidence | None:
        """Admit a vote; return evidence if it is the first conflict of its validator seen here."""
        v = signed.vote
        # It is for this chain and height, a known kind, in a round we keep.
        if v.chain_id != self.chain_id or v.height != self.height or v.kind not in (PREVOTE, PRECOMMIT):
            return None
        if not 0 <= v.round <= max_round:
            return None
        # It is for a block hash or nil, by a validator of this height.
        if len(v.block_hash) not in (0, HASH_SIZE) or signed.validator not in self.powers:
            return None
        # An equivocator's second vote counts only for nil or a proposed value (see VoteSet).
        count_conflicting = not v.block_hash or v.block_hash in self.proposed
        _, evidence = self.votes.add(signed, count_conflicting)
        key = (signed.validator, v.round, v.kind)
        if evidence is None or key in self._reported:
            return None
        self._reported.add(key)
        return evidence

    def has_proposal(self, round: int, value: bytes) -> bool:
        """A proposal of ``value`` from proposer(h, round) is in the log."""
        return any(s.proposal.block_hash == value for s in self.proposals.get(round, []))

    def has_quorum(self, round: int, value: bytes) -> bool:
        """2f+1 prevotes or 2f+1 precommits for ``value`` in ``round``."""
        prevotes, precommits = self.votes.prevotes(round), self.votes.precommits(round)
        return prevotes.has_two_thirds_for(value) or precommits.has_two_thirds_for(value)

    def knows(self, message: ConsensusMessage) -> bool:
        """Whether ``message`` is already in the log."""
        if isinstance(message, SignedProposal):
            p = message.proposal
            return p.height == self.height and any(s.proposal == p for s in self.proposals.get(p.round, []))
        v = message.vote
        return v.height == self.height and self.votes.get(v.round, v.kind).knows(message)

    def get_messages(self) -> list[ConsensusMessage]:
        """Every admitted proposal and vote."""
        out: list[ConsensusMessage] = [p for ps in self.proposals.values() for p in ps]
        out.extend(self.votes.all_votes())
        return out

    def get_relayed(self, round: int, justified: list[tuple[int, bytes]]) -> list[ConsensusMessage]:
        """What a node passes on to its peers at ``round``, whoever signed it.

        - Every proposal and vote of ``round - 1`` and later: the messages that move a peer
          into this round (f+1 of a later round, line 55) or through it (2f+1 of any kind).
        - For each (round, value) of ``justified`` (the node's lock and valid value), the
          proposal of the value in that round and the prevotes for it: the polka a peer needs
          to prevote the value when it is proposed again (line 28), which a Byzantine voter
          may have sent to some validators only.
        - Every 2f+1 precommits for a value, in any round, with its proposal: a decision a
          peer can take (line 49).
        """
        out: list[ConsensusMessage] = []
        for r, ps in self.proposals.items():
            out.extend(p for p in ps if r >= round - 1)
        for signed in self.votes.all_votes():
            if signed.vote.round >= round - 1:
                out.append(signed)
        older = [(r, v) for r, v in justified if 0 <= r < round - 1]
        for r in self.votes.precommit_rounds():
            value = self.votes.precommits(r).two_thirds_block()
            if value is not None and r < round - 1:
                out.extend(self.votes.precommits(r).votes_for(value))
                older.append((r, value))
        for r, value in dict.fromkeys(older):
            out.extend(p for p in self.proposals.get(r, []) if p.proposal.block_hash == value)
            out.extend(self.votes.prevotes(r).votes_for(value))
        return list(dict.fromkeys(out))
