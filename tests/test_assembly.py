"""Compact proposals gathered from the mempool and the proposer (``node/assembly.py``).

The network tests run this path between real replicas; here each rule is checked on its own:
what is asked of whom, what a reply from anyone else does, when a block is handed over, and
how many proposals one proposer may have gathered at a height. The messages the assembler
sends are decoded from their wire bytes.
"""

from __future__ import annotations

from typing import Any

from zhongshu.codec import decode
from zhongshu.consensus.messages import Proposal, SignedProposal
from zhongshu.crypto import get_suite
from zhongshu.ledger.hashing import compute_tx_hash
from zhongshu.ledger.types import Block, Header, Transaction
from zhongshu.node.assembly import MAX_ASSEMBLIES_PER_PROPOSER, Assembler
from zhongshu.node.chain import BuiltBlock
from zhongshu.node.mempool import Mempool, PendingTx
from zhongshu.node.wire import GetTxs, ProposalGossip, TxsReply, WireMessage

HASH = get_suite("sm").hasher()
PROPOSER = b"\x04" + bytes(64)
PEER = b"peer-that-sent-the-proposal"
OTHER = b"another-peer"


class Sent:
    """A transport that keeps what it is asked to send, decoded from the bytes."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, Any]] = []

    def send(self, peer: bytes, payload: bytes) -> bool:
        self.messages.append((peer, decode(payload, WireMessage)))  # type: ignore[arg-type]
        return True


def _tx(n: int) -> Transaction:
    return Transaction("main", bytes(32), PROPOSER, "evidence", "put", b"\x90", 100, n, b"\x30\x06")


def _gossip(txs: list[Transaction], height: int = 1, round_: int = 0) -> ProposalGossip:
    header = Header("main", height, 0, bytes(32), len(txs), *(bytes(32),) * 5, PROPOSER)
    block_hash = HASH(b"block %d %d" % (height, round_))
    proposal = SignedProposal(Proposal("main", height, round_, block_hash, -1, PROPOSER), b"sig")
    return ProposalGossip(proposal, header, [compute_tx_hash(HASH, tx) for tx in txs])


def _pool(txs: list[Transaction]) -> Mempool:
    pool = Mempool(1_000, 10**6)
    pool.add([PendingTx(tx, compute_tx_hash(HASH, tx), 100) for tx in txs])
    return pool


def _assembler(pool: Mempool) -> tuple[Assembler, Sent, list[bytes]]:
    sent = Sent()
    complete: list[bytes] = []
    return Assembler(HASH, pool, sent, complete.append), sent, complete  # type: ignore[arg-type]


def test_a_proposal_whose_transactions_are_all_pooled_is_complete_at_once() -> None:
    txs = [_tx(i) for i in range(3)]
    assembler, sent, complete = _assembler(_pool(txs))
    gossip = _gossip(txs)
    assembler.add(PEER, gossip)
    block_hash = gossip.proposal.proposal.block_hash
    assert complete == [block_hash] and sent.messages == []
    taken = assembler.take(block_hash, height=0)
    assert taken is not None
    block, fetched = taken
    assert block == Block(gossip.header, txs) and fetched == []
    # Taken once: it is no longer being gathered.
    assert block_hash not in assembler and assembler.take(block_hash, height=0) is None


def test_only_the_missing_transactions_are_asked_of_the_peer_that_sent_the_proposal() -> None:
    txs = [_tx(i) for i in range(4)]
    assembler, sent, complete = _assembler(_pool(txs[:2]))
    gossip = _gossip(txs)
    block_hash = gossip.proposal.proposal.block_hash
    assembler.add(PEER, gossip)
    missing = [compute_tx_hash(HASH, tx) for tx in txs[2:]]
    assert sent.messages == [(PEER, GetTxs(block_hash, missing))] and complete == []
    assert assembler.take(block_hash, height=0) is None
    # Asked once, however often the mempool is looked at again.
    assembler.fill()
    assert len(sent.messages) == 1
    # A reply from a peer that was not asked is ignored; the asked peer's completes the block.
    assembler.on_reply(OTHER, TxsReply(block_hash, txs[2:]))
    assert assembler.take(block_hash, height=0) is None
    assembler.on_reply(PEER, TxsReply(block_hash, [txs[2]]))
    assert assembler.take(block_hash, height=0) is None
    assembler.on_reply(PEER, TxsReply(block_hash, [txs[3], _tx(99)]))
    taken = assembler.take(block_hash, height=0)
    assert taken is not None
    block, fetched = taken
    # The fetched copies are named, so their signatures are checked before the block is judged.
    assert block.txs == txs and fetched == txs[2:]


def test_transactions_whose_gossip_is_being_verified_are_not_asked_for() -> None:
    txs = [_tx(i) for i in range(2)]
    assembler, sent, complete = _assembler(_pool([]))
    assembler.gossip_pending.update(compute_tx_hash(HASH, tx) for tx in txs)
    gossip = _gossip(txs)
    assembler.add(PEER, gossip)
    assert sent.messages == []
    # The gossip pooled: the next look at the mempool completes the block.
    assembler.gossip_pending.clear()
    assembler.mempool.add([PendingTx(tx, compute_tx_hash(HASH, tx), 100) for tx in txs])
    assembler.fill()
    assert complete == [gossip.proposal.proposal.block_hash] and sent.messages == []


def test_a_proposer_has_at_most_a_few_proposals_gathered_per_height() -> None:
    assembler, _, _ = _assembler(_pool([]))
    gossips = [_gossip([_tx(r)], round_=r) for r in range(MAX_ASSEMBLIES_PER_PROPOSER + 2)]
    for gossip in gossips:
        assembler.add(PEER, gossip)
    held = [g.proposal.proposal.round for g in gossips if g.proposal.proposal.block_hash in assembler]
    # The lowest rounds made room.
    assert held == list(range(2, MAX_ASSEMBLIES_PER_PROPOSER + 2))
    # Another height's proposals do not count against this one.
    later = _gossip([_tx(50)], height=2)
    assembler.add(PEER, later)
    assert later.proposal.proposal.block_hash in assembler and len(held) == MAX_ASSEMBLIES_PER_PROPOSER


def test_a_block_for_a_later_height_waits_and_one_for_a_past_height_is_dropped() -> None:
    txs = [_tx(1)]
    assembler, _, _ = _assembler(_pool(txs))
    ahead = _gossip(txs, height=3)
    assembler.add(PEER, ahead)
    ahead_hash = ahead.proposal.proposal.block_hash
    assert assembler.take(ahead_hash, height=1) is None and ahead_hash in assembler
    assert assembler.take(ahead_hash, height=2) is not None
    past = _gossip(txs, height=2)
    assembler.add(PEER, past)
    past_hash = past.proposal.proposal.block_hash
    assert assembler.take(past_hash, height=2) is None and past_hash not in assembler
    # A stored height forgets what was gathered for it and before, not after.
    kept, gone = _gossip(txs, height=5), _gossip(txs, height=4)
    assembler.add(PEER, kept)
    assembler.add(PEER, gone)
    assembler.forget_through(4)
    assert (
        kept.proposal.proposal.block_hash in assembler and gone.proposal.proposal.block_hash not in assembler
    )


def test_a_peer_asking_gets_the_transactions_from_the_built_block_or_the_mempool() -> None:
    txs = [_tx(i) for i in range(5)]
    hashes = [compute_tx_hash(HASH, tx) for tx in txs]
    assembler, sent, _ = _assembler(_pool([txs[4]]))
    header = Header("main", 1, 0, bytes(32), 3, *(bytes(32),) * 5, PROPOSER)
    built = BuiltBlock(Block(header, txs[:3]), b"h" * 32, [], {}, hashes[:3], bytes(32), None, {})
    request = GetTxs(b"h" * 32, [hashes[1], hashes[3], hashes[4], hashes[0]])
    assembler.answer(OTHER, request, built, max_txs=10)
    # The one this node does not hold (txs[3]) is left out; the order asked is kept.
    assert sent.messages == [(OTHER, TxsReply(b"h" * 32, [txs[1], txs[4], txs[0]]))]
    sent.messages.clear()
    assembler.answer(OTHER, request, built, max_txs=2)
    assert sent.messages == [(OTHER, TxsReply(b"h" * 32, [txs[1]]))]
