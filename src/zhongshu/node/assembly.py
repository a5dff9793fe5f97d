"""Compact proposals: a proposed block travels as its header and its transactions' hashes.

The proposer broadcasts ``ProposalGossip`` (the signed proposal, the block's header and its
transaction hashes), not the block: the other replicas hold most of its transactions already,
from transaction gossip. Each assembles the block from its mempool and asks the peer that sent
the proposal (``GetTxs``) only for the transactions no gossip brings; that peer answers from
the block it built, or its mempool (``TxsReply``).

Shape: ``Assembler`` is a part the ``Replica`` owns and calls, like ``BlockSync``. It holds the
proposals being gathered and the hashes of gossiped transactions whose signatures are being
verified (not asked for meanwhile: they are on their way to the mempool). The replica checks a
proposal's signature before handing it over, and judges a gathered block (its body against the
header, the fetched copies' signatures, re-execution) once ``take`` gives it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from zhongshu.codec import encode
from zhongshu.ledger.hashing import compute_tx_hash
from zhongshu.ledger.merkle import Hasher
from zhongshu.ledger.types import Block, Transaction
from zhongshu.node.chain import BuiltBlock
from zhongshu.node.mempool import Mempool
from zhongshu.node.peerbook import GOSSIP_CHUNK_BYTES, estimate_tx_bytes, split_by_bytes
from zhongshu.node.wire import GetTxs, ProposalGossip, TxsReply
from zhongshu.p2p.channels import Channel
from zhongshu.p2p.transport import Transport

MAX_ASSEMBLIES_PER_PROPOSER = 4
"""Compact proposals being gathered per proposer and height (an equivocator's extras are dropped)."""


@dataclass
class Assembly:
    """A compact proposal whose transactions are being gathered."""

    gossip: ProposalGossip
    txs: dict[bytes, Transaction]
    peer: bytes
    requested: bool = False
    """Whether the missing transactions were asked of the proposer."""
    fetched: set[bytes] = dataclasses.field(default_factory=set)
    """Hashes of transactions that came in a fetch reply (their signatures are not checked yet)."""


class Assembler:
    """Gathers the transactions of compact proposals, and answers peers gathering ours."""

    def __init__(
        self,
        hash_: Hasher,
        mempool: Mempool,
        transport: Transport | Channel,
        on_complete: Callable[[bytes], None],
    ) -> None:
        """``on_complete(block_hash)``: every transaction of that proposal is here (the replica
        then takes the block and judges it)."""
        self.hash = hash_
        self.mempool = mempool
        self.transport = transport
        self._on_complete = on_complete
        self._assembling: dict[bytes, Assembly] = {}
        self.gossip_pending: set[bytes] = set()
        """Hashes of gossiped transactions whose signatures are being verified right now."""

    def __contains__(self, block_hash: bytes) -> bool:
        return block_hash in self._assembling

    def add(self, peer: bytes, gossip: ProposalGossip) -> None:
        """Start gathering a proposal (its signature checked) that ``peer`` sent."""
        proposal = gossip.proposal.proposal
        # A proposer gets a few proposals gathered per height, not an unbounded number: its
        # lowest round makes room (a block dropped here can still be fetched whole).
        same = sorted(
            (a.gossip.proposal.proposal.round, h)
            for h, a in self._assembling.items()
            if a.gossip.header.height == proposal.height
            and a.gossip.proposal.proposal.proposer == proposal.proposer
        )
        for _, dropped in same[: max(0, len(same) - MAX_ASSEMBLIES_PER_PROPOSER + 1)]:
            del self._assembling[dropped]
        self._assembling[proposal.block_hash] = Assembly(gossip, {}, peer)
        self.fill()

    def fill(self) -> None:
        """Complete proposals from the mempool; ask the proposer only for what no gossip brings."""
        for block_hash, assembly in list(self._assembling.items()):
            missing = []
            for h in assembly.gossip.tx_hashes:
                if h not in assembly.txs:
                    tx = self.mempool.get(h)
                    if tx is None:
                        missing.append(h)
                    else:
                        assembly.txs[h] = tx
            if not missing:
                self._on_complete(block_hash)
            elif not assembly.requested and not any(h in self.gossip_pending for h in missing):
                assembly.requested = True
                self.transport.send(assembly.peer, encode(GetTxs(block_hash, missing)))

    def on_reply(self, peer: bytes, reply: TxsReply) -> None:
        """Transactions the proposer sent for a compact proposal (possibly in several messages)."""
        assembly = self._assembling.get(reply.block_hash)
        # Only the peer asked (the one that sent the proposal) answers; anyone else's copies are ignored.
        if assembly is None or peer != assembly.peer or not assembly.requested:
            return
        wanted = set(assembly.gossip.tx_hashes)
        for tx in reply.txs:
            h = compute_tx_hash(self.hash, tx)
            if h in wanted and h not in assembly.txs:
                assembly.txs[h] = tx
                assembly.fetched.add(h)
        self._on_complete(reply.block_hash)

    def take(self, block_hash: bytes, height: int) -> tuple[Block, list[Transaction]] | None:
        """The gathered block of ``block_hash`` and the transactions in it that came from a fetch
        (their signatures are not checked yet), once every transaction is here and the block is
        for the height after ``height`` (the stored tip). None while it is incomplete or for a
        later height; a proposal for a past height is dropped."""
        assembly = self._assembling.get(block_hash)
        if assembly is None or any(h not in assembly.txs for h in assembly.gossip.tx_hashes):
            return None
        header = assembly.gossip.header
        # A proposal for a later height waits until this node has stored the block before it.
        if header.height > height + 1:
            return None
        del self._assembling[block_hash]
        if header.height <= height:
            return None
        block = Block(header, [assembly.txs[h] for h in assembly.gossip.tx_hashes])
        fetched = [assembly.txs[h] for h in assembly.gossip.tx_hashes if h in assembly.fetched]
        return block, fetched

    def forget_through(self, height: int) -> None:
        """Height ``height`` is stored: proposals already gathered for later heights are kept;
        older ones are done with."""
        self._assembling = {h: a for h, a in self._assembling.items() if a.gossip.header.height > height}

    def answer(self, peer: bytes, request: GetTxs, built: BuiltBlock | None, max_txs: int) -> None:
        """Send the asked-for transactions of a proposed block (``built``, when this node built
        it; else from the mempool), at most ``max_txs``, in messages that fit a frame."""
        by_hash = dict(zip(built.tx_hashes, built.block.txs, strict=True)) if built else {}
        txs = []
        for h in request.tx_hashes[:max_txs]:
            tx = by_hash.get(h) or self.mempool.get(h)
            if tx is not None:
                txs.append(tx)
        for part in split_by_bytes(txs, GOSSIP_CHUNK_BYTES, estimate_tx_bytes):
            self.transport.send(peer, encode(TxsReply(request.block_hash, part)))
