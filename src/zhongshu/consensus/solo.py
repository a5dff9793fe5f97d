"""Single-validator consensus: the one validator proposes, precommits and commits.

It has the shape of the BFT engine (propose -> vote -> certificate -> commit) so the node
does not change when the network engine replaces it. Pure: no clock, no I/O.
"""

from __future__ import annotations

from zhongshu.consensus.boundary import Action, CommitBlock, ProposeBlock, SignVote
from zhongshu.ledger.types import (
    PRECOMMIT,
    Block,
    CommitCertificate,
    CommitSig,
    ValidatorSet,
    Vote,
)


class ConsensusError(RuntimeError):
    """An input that breaks the engine's protocol (a bug in the caller)."""


class SoloConsensus:
    """Decides one block per tick interval when the node has transactions to include."""

    def __init__(
        self,
        chain_id: str,
        validators: ValidatorSet,
        own_key: bytes,
        next_height: int,
        last_time: int,
        interval_ms: int,
    ) -> None:
        if validators.power_of(own_key) * 3 <= validators.total_power() * 2:
            raise ConsensusError("a single validator must hold more than 2/3 of the voting power")
        self.chain_id = chain_id
        self.validators = validators
        self.own_key = own_key
        self.height = next_height
        self.last_time = last_time
        self.interval_ms = interval_ms
        self._proposal: tuple[Block, bytes] | None = None
        self._waiting = False

    def on_tick(self, now_ms: int, has_txs: bool) -> list[Action]:
        """Propose when there is work and the interval since the last block has passed."""
        if self._waiting or not has_txs or now_ms < self.last_time + self.interval_ms:
            return []
        self._waiting = True
        # Block time strictly increases even if the clock steps back.
        return [ProposeBlock(self.height, 0, max(now_ms, self.last_time + 1))]

    def on_proposal(self, block: Block, block_hash: bytes) -> list[Action]:
        """Our own proposal is built: precommit it."""
        if not self._waiting or block.header.height != self.height:
            raise ConsensusError(f"unexpected proposal at height {block.header.height}")
        self._proposal = (block, block_hash)
        return [SignVote(Vote(PRECOMMIT, self.chain_id, self.height, 0, block_hash))]

    def on_proposal_empty(self) -> list[Action]:
        """The application had nothing to propose after all."""
        self._waiting = False
        return []

    def on_vote_signed(self, vote: Vote, signature: bytes) -> list[Action]:
        """Our precommit is signed: with more than 2/3 of the power, the block is committed."""
        if self._proposal is None or vote.block_hash != self._proposal[1]:
            raise ConsensusError("a signed vote for a block that was not proposed")
        block, block_hash = self._proposal
        commit = CommitCertificate(self.height, vote.round, block_hash, [CommitSig(self.own_key, signature)])
        return [CommitBlock(block, block_hash, commit)]

    def on_committed(self, height: int, time: int) -> None:
        """The application stored the block: move to the next height."""
        self.height = height + 1
        self.last_time = time
        self._proposal = None
        self._waiting = False
