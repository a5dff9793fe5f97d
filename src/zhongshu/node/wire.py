"""What replicas of one chain send each other over the P2P transport.

Every message is a tagged, array-like msgspec Struct, encoded with the canonical codec; a frame
carries exactly one. Consensus messages (``SignedProposal``, ``SignedVote``) travel inside
``ProposalGossip`` and ``VoteGossip`` so one union decodes everything.
"""

from __future__ import annotations

import msgspec

from zhongshu.consensus.messages import SignedProposal, SignedVote
from zhongshu.ledger.types import Block, CommitCertificate, Header, Transaction


class TxsGossip(msgspec.Struct, array_like=True, frozen=True, tag="w.txs"):
    """Transactions a client submitted to the sender's gateway."""

    txs: list[Transaction]


class ProposalGossip(msgspec.Struct, array_like=True, frozen=True, tag="w.proposal"):
    """A compact proposal: the signed proposal, the block header and its transaction hashes.

    Followers rebuild the block from their mempool and ask the sender for what they miss.
    """

    proposal: SignedProposal
    header: Header
    tx_hashes: list[bytes]


class ProposalHead(msgspec.Struct, array_like=True, frozen=True, tag="w.proposal"):
    """The first field of a ``ProposalGossip``: read alone (the rest skipped) to judge it cheaply."""

    proposal: SignedProposal


def peek_proposal(payload: bytes) -> SignedProposal | None:
    """The signed proposal of a ProposalGossip payload without decoding its header and hashes;
    None when the payload is another message or malformed."""
    try:
        return _PROPOSAL_HEAD.decode(payload).proposal
    # msgspec raises UnicodeDecodeError, not DecodeError, for a string that is not UTF-8.
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


class VoteGossip(msgspec.Struct, array_like=True, frozen=True, tag="w.vote"):
    vote: SignedVote


class GetTxs(msgspec.Struct, array_like=True, frozen=True, tag="w.get-txs"):
    """Ask for the transactions of a proposed block that the asker does not hold."""

    block_hash: bytes
    tx_hashes: list[bytes]


class TxsReply(msgspec.Struct, array_like=True, frozen=True, tag="w.txs-reply"):
    block_hash: bytes
    txs: list[Transaction]


class GetBlock(msgspec.Struct, array_like=True, frozen=True, tag="w.get-block"):
    """Ask for a proposed (not yet committed) block by hash."""

    block_hash: bytes


class BlockBody(msgspec.Struct, array_like=True, frozen=True, tag="w.block"):
    """A proposed block, whole: the answer to ``GetBlock``."""

    block: Block


class Status(msgspec.Struct, array_like=True, frozen=True, tag="w.status"):
    """The sender's committed height; a peer behind it asks for blocks."""

    height: int


class GetBlocks(msgspec.Struct, array_like=True, frozen=True, tag="w.get-blocks"):
    start: int
    count: int


class SyncedBlock(msgspec.Struct, array_like=True, frozen=True):
    block: Block
    commit: CommitCertificate


class BlocksReply(msgspec.Struct, array_like=True, frozen=True, tag="w.blocks"):
    blocks: list[SyncedBlock]


WireMessage = (
    TxsGossip
    | ProposalGossip
    | VoteGossip
    | GetTxs
    | TxsReply
    | GetBlock
    | BlockBody
    | Status
    | GetBlocks
    | BlocksReply
)
"""Every message replicas send each other; ``decode(payload, WireMessage)`` reads any of them."""

_PROPOSAL_HEAD = msgspec.msgpack.Decoder(ProposalHead)
