"""The narrow boundary between consensus and the application (the node).

Consensus decides *which* block is next; the application builds candidate blocks, checks
proposed ones and applies decided ones. The single-validator engine and the BFT engine talk
to the node through these actions only.
"""

from __future__ import annotations

from dataclasses import dataclass

from zhongshu.ledger.types import Block, CommitCertificate, Vote


@dataclass(frozen=True)
class ProposeBlock:
    """Ask the application to build a block at ``height`` with header time ``time``."""

    height: int
    round: int
    time: int


@dataclass(frozen=True)
class SignVote:
    """Ask the signer (which guards against double-signing) to sign ``vote``."""

    vote: Vote


@dataclass(frozen=True)
class CommitBlock:
    """The block is decided: the application must apply and store it with its certificate."""

    block: Block
    block_hash: bytes
    commit: CommitCertificate


Action = ProposeBlock | SignVote | CommitBlock
