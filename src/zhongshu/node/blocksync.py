"""Block sync: a replica that is behind fetches committed blocks, with their commits, from peers.

Every replica announces its stored height (``Status``) each second. A peer behind asks one
peer ahead, the one with the fewest faults, for up to SYNC_BATCH blocks from its next height
(``GetBlocks``); the answer (``BlocksReply``) holds as many as fit in one frame. Each block is
checked before it is stored: more than 2/3 of the validator set signed its commit, its body is
the certified header's, its transactions' signatures verify, and it re-executes on this node's
state. A reply that fails the commit or body check is the sending peer's fault: it is counted
against the peer (``PeerBook``) and the block is asked of another peer at once.

Shape: ``BlockSync`` is a part the ``Replica`` owns and calls, not a mixin. It needs few things
of the replica: the chain (height, store, validator set, re-execution), the transport, the peer
book and the replica's ``blame``; it holds one piece of state of its own (when blocks were last
asked for). Storing a checked block stays with the replica, in its one consumer task, beside
storing a block consensus decided: both end the height the engine runs, which is the replica's
state. Fetching a decided block's body whole (``GetBlock``) also stays there: it is the path
that fetches proposed blocks for the engine (``FetchBlock``), and sync only starts it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from zhongshu.codec import encode
from zhongshu.ledger.commit import InvalidCommit, check_commit
from zhongshu.ledger.hashing import compute_block_hash
from zhongshu.node.chain import BuiltBlock, ChainNode, InvalidBlock
from zhongshu.node.peerbook import PeerBook, check_body, compute_sync_budget
from zhongshu.node.wire import BlocksReply, GetBlocks, Status, SyncedBlock
from zhongshu.p2p.channels import Channel
from zhongshu.p2p.transport import Transport

# The replica's logger: the lines of block sync read as they did when it lived in the replica.
log = logging.getLogger("zhongshu.replica")

SYNC_BATCH = 20
"""Blocks asked for in one request, and the most one reply may carry."""


class BlockSync:
    """Fetches the blocks a replica is missing from peers ahead, and answers peers behind."""

    def __init__(
        self,
        node: ChainNode,
        transport: Transport | Channel,
        peerbook: PeerBook,
        blame: Callable[[bytes, str], None],
    ) -> None:
        """``blame``: counts a fault against a peer and says so (the replica's, shared with
        fetching proposed blocks)."""
        self.node = node
        self.transport = transport
        self.peerbook = peerbook
        self._blame = blame
        self._requested_at = 0.0
        """When blocks were last asked for (monotonic): at most one request every half second."""

    def announce(self) -> None:
        """Tell every peer this node's stored height."""
        self.transport.broadcast(encode(Status(self.node.height)))

    def on_status(self, peer: bytes, status: Status) -> None:
        """Note a peer's height; if it is ahead, ask a peer ahead for blocks."""
        self.peerbook.note_height(peer, status.height)
        if status.height > self.node.height:
            self.request_blocks(self.peerbook.pick_ahead(self.node.height, self._connected()))

    def request_blocks(self, peer: bytes | None) -> None:
        """Ask ``peer`` (every peer when None) for the blocks after the stored tip."""
        now = time.monotonic()
        if now - self._requested_at < 0.5:
            return
        self._requested_at = now
        request = encode(GetBlocks(self.node.height + 1, SYNC_BATCH))
        if peer is None:
            self.transport.broadcast(request)
        else:
            self.transport.send(peer, request)

    def note_stored(self) -> None:
        """A synced block was stored: the next request may go at once."""
        self._requested_at = 0.0

    def reply_blocks(self, peer: bytes, request: GetBlocks) -> None:
        """Send committed blocks from ``request.start``: at most SYNC_BATCH, within one frame's budget."""
        node = self.node
        budget = compute_sync_budget(node.genesis.params)
        items: list[SyncedBlock] = []
        used = 0
        for height in range(
            request.start, min(request.start + min(request.count, SYNC_BATCH), node.height + 1)
        ):
            record = node.store.load_block(height)
            if record is None:
                break
            item = SyncedBlock(record.block, record.commit)
            size = len(encode(item))
            # The first block always goes (the frame has room for the largest block); later ones if they fit.
            if items and used + size > budget:
                break
            items.append(item)
            used += size
        if items:
            self.transport.send(peer, encode(BlocksReply(items)))

    async def check_synced(self, item: SyncedBlock, peer: bytes) -> BuiltBlock | None:
        """A block fetched from a peer, re-executed after checking its commit and its body, or
        None when it is not the next height's or is dropped.

        A reply that fails the commit or body check is the peer's fault: it is dropped, counted
        against the peer, and the block is asked of another peer. Only a block that is certified,
        is the header's and still does not re-execute here stops the node: that is this node's
        own state gone wrong (or more than f validators signed a wrong block).
        """
        node = self.node
        header = item.block.header
        if header.height != node.height + 1:
            return None
        block_hash = compute_block_hash(node.hash, header)
        try:
            # More than 2/3 of the validator set precommitted this block.
            check_commit(
                node.suite, node.chain_id, node.genesis.validators, item.commit, block_hash, header.height
            )
        except InvalidCommit as exc:
            self._blame(peer, f"block {header.height} with a commit that does not verify: {exc}")
            self._retry()
            return None
        # The body is the certified header's.
        reason = check_body(node.hash, header, item.block)
        if reason is not None:
            self._blame(peer, f"block {header.height} whose body is not its certified header's: {reason}")
            self._retry()
            return None
        # Its transactions carry valid signatures.
        if await node._verify_senders(item.block.txs):
            log.error("certified block %d carries transactions that do not verify", header.height)
            return None
        try:
            return await asyncio.to_thread(node.validate_block, item.block)
        except InvalidBlock as exc:
            log.critical(
                "certified block %d does not re-execute on this node's state: %s", header.height, exc
            )
            raise RuntimeError(f"block {header.height} with a valid commit fails validation: {exc}") from exc

    def _retry(self) -> None:
        """Ask again at once, of the peer ahead with the fewest faults."""
        self._requested_at = 0.0
        self.request_blocks(self.peerbook.pick_ahead(self.node.height, self._connected()))

    def _connected(self) -> list[bytes]:
        return [p.validator for p in self.transport.peers()]
