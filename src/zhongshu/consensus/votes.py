"""The message log of one height: votes tallied by voting power, and who spoke in which round.

Thresholds are by power, never by head count. With total power ``T``:
``2f+1`` means more than two thirds (``3*p > 2*T``); ``f+1`` means more than one third
(``3*p > T``). Each validator counts once per (round, kind): its first vote is the one
counted; a different second vote is equivocation and comes back as evidence.
"""

from __future__ import annotations

from zhongshu.consensus.messages import DuplicateVoteEvidence, SignedVote
from zhongshu.ledger.types import PRECOMMIT, PREVOTE

NIL = b""
"""The block hash of a vote for no block."""


def is_two_thirds(power: int, total: int) -> bool:
    """2f+1: more than two thirds of the total voting power."""
    return 3 * power > 2 * total


def is_one_third(power: int, total: int) -> bool:
    """f+1: more than one third of the total voting power."""
    return 3 * power > total


class VoteSet:
    """Votes of one kind at one height and round.

    "2f+1 votes for id(v)" counts the distinct validators that sent a vote for ``v``; an
    equivocating validator may therefore count for two values. That is safe: two sets of more
    than 2/3 of the power share more than 1/3, so with less than 1/3 Byzantine an honest
    validator would have voted for both. It is also needed: a node that first saw an
    equivocator's vote for nil must still see the quorum the others saw for ``v``.
    "2f+1 votes for ∗" and "f+1 messages" count each validator once.
    """

    def __init__(self, total_power: int) -> None:
        self.total_power = total_power
        self.votes: dict[bytes, list[SignedVote]] = {}
        """Validator public key -> its distinct votes, the first one first."""
        self.power_for: dict[bytes, int] = {}
        """Block hash (``NIL`` for nil) -> power of the validators that voted for it."""
        self.power_any = 0
        """Power of the validators that voted at all."""

    def add(
        self, signed: SignedVote, power: int, count_conflicting: bool
    ) -> tuple[bool, DuplicateVoteEvidence | None]:
        """Count ``signed``; return (counted, evidence if it conflicts with an earlier vote).

        A vote that conflicts with an earlier one of the same validator is counted for its
        value only if ``count_conflicting`` (the caller allows it for nil and for proposed
        values, so junk hashes cannot grow the log).
        """
        earlier = self.votes.get(signed.validator)
        block_hash = signed.vote.block_hash
        if earlier is None:
            self.votes[signed.validator] = [signed]
            self.power_for[block_hash] = self.power_for.get(block_hash, 0) + power
            self.power_any += power
            return True, None
        # The same vote again is a harmless duplicate; a different one is equivocation.
        if any(e.vote == signed.vote for e in earlier):
            return False, None
        evidence = DuplicateVoteEvidence(earlier[0], signed)
        if not count_conflicting:
            return False, evidence
        earlier.append(signed)
        self.power_for[block_hash] = self.power_for.get(block_hash, 0) + power
        return True, evidence

    def has_two_thirds_for(self, block_hash: bytes) -> bool:
        """2f+1 votes for ``block_hash`` (``NIL`` for nil)."""
        return is_two_thirds(self.power_for.get(block_hash, 0), self.total_power)

    def has_two_thirds_any(self) -> bool:
        """2f+1 votes for anything (the ``∗`` of Algorithm 1)."""
        return is_two_thirds(self.power_any, self.total_power)

    def two_thirds_block(self) -> bytes | None:
        """The non-nil block hash with 2f+1 votes, if there is one (at most one without > f faults)."""
        for block_hash, power in self.power_for.items():
            if block_hash != NIL and is_two_thirds(power, self.total_power):
                return block_hash
        return None

    def votes_for(self, block_hash: bytes) -> list[SignedVote]:
        """The counted votes for ``block_hash``, one per validator."""
        return [s for mine in self.votes.values() for s in mine if s.vote.block_hash == block_hash]

    def knows(self, signed: SignedVote) -> bool:
        """Whether this exact vote is already counted here."""
        return any(e.vote == signed.vote for e in self.votes.get(signed.validator, ()))


class HeightVotes:
    """All prevotes and precommits of one height, and per round the power of those heard from."""

    def __init__(self, powers: dict[bytes, int]) -> None:
        self.powers = powers
        self.total_power = sum(powers.values())
        self._sets: dict[tuple[int, int], VoteSet] = {}
        self._empty = VoteSet(self.total_power)
        self._speakers: dict[int, dict[bytes, int]] = {}

    def get(self, round: int, kind: int) -> VoteSet:
        """The vote set of (round, kind); an empty one, not stored, if nothing arrived yet."""
        return self._sets.get((round, kind)) or self._empty

    def prevotes(self, round: int) -> VoteSet:
        return self.get(round, PREVOTE)

    def precommits(self, round: int) -> VoteSet:
        return self.get(round, PRECOMMIT)

    def add(self, signed: SignedVote, count_conflicting: bool) -> tuple[bool, DuplicateVoteEvidence | None]:
        """Count a vote of a known validator; see ``VoteSet.add``."""
        vote = signed.vote
        vote_set = self._sets.get((vote.round, vote.kind))
        if vote_set is None:
            vote_set = self._sets[(vote.round, vote.kind)] = VoteSet(self.total_power)
        added, evidence = vote_set.add(signed, self.powers[signed.validator], count_conflicting)
        if added:
            self.note_speaker(vote.round, signed.validator)
        return added, evidence

    def note_speaker(self, round: int, validator: bytes) -> None:
        """Record that ``validator`` sent some message (proposal or vote) in ``round``."""
        self._speakers.setdefault(round, {})[validator] = self.powers[validator]

    def highest_round_with_one_third(self, above: int) -> int | None:
        """The highest round above ``above`` from which f+1 of the power sent messages."""
        best: int | None = None
        for round, speakers in self._speakers.items():
            later = round > above and (best is None or round > best)
            if later and is_one_third(sum(speakers.values()), self.total_power):
                best = round
        return best

    def precommit_rounds(self) -> list[int]:
        """Rounds in which some precommit arrived, ascending."""
        return sorted(r for (r, kind) in self._sets if kind == PRECOMMIT)

    def all_votes(self) -> list[SignedVote]:
        """Every counted vote of the height."""
        return [s for vote_set in self._sets.values() for mine in vote_set.votes.values() for s in mine]
