"""A hostile validator: a real node process that joins with a real validator's files and misbehaves.

Run as ``python tests/byzantine/hostile.py --home NODE_HOME --attack NAME``. It is the node's
own Replica with the misbehaviour of one attack layered on; it signs with the raw validator key
(no double-sign guard) where the attack needs it. Attacks:

- ``future-time``: proposes blocks dated ten years ahead (issue 6, item 1).
- ``bad-sync``: answers block-sync requests with the real header and commit but another
  transaction list, and announces a height above its own so syncing peers ask it (item 2).
- ``bad-fetch``: answers every proposal of the others, unasked, with copies of its
  transactions whose signatures are broken, and block requests with such bodies (item 5).
- ``future-flood``: sends signed proposals for far-ahead and next heights, each listing up to
  100,000 transaction hashes (item 6).
- ``equivocate``: as proposer, sends two different proposals to two halves of the network;
  every vote goes to half the peers as signed and to the other half for a random block.
- ``silence``: connects and then says nothing and answers nothing.
- ``lock-split``: as proposer of round 0, sends its proposal and its prevote for it to two of
  the three peers only, then says nothing more at that height and serves no block sync for it;
  those two lock on the block and the third never hears the polka unless they pass the
  prevote on. Honest elsewhere.
- ``vote-flood``: thousands of votes a second, validly signed for random rounds and blocks,
  and as many with garbage signatures.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from zhongshu.codec import encode
from zhongshu.consensus.messages import Proposal, SignedProposal, SignedVote
from zhongshu.ledger.hashing import compute_block_hash
from zhongshu.ledger.types import PRECOMMIT, PREVOTE, Block, Vote
from zhongshu.node.consensus_signer import ConsensusSigner
from zhongshu.node.home import load_home
from zhongshu.node.replica import Replica
from zhongshu.node.wire import (
    BlockBody,
    BlocksReply,
    GetBlock,
    GetBlocks,
    ProposalGossip,
    Status,
    SyncedBlock,
    TxsReply,
    VoteGossip,
)
from zhongshu.p2p.netinit import load_transport_config

ATTACKS = (
    "future-time",
    "bad-sync",
    "bad-fetch",
    "future-flood",
    "equivocate",
    "silence",
    "lock-split",
    "vote-flood",
)
TEN_YEARS_MS = 10 * 365 * 24 * 3600 * 1000

log = logging.getLogger("hostile")


def _break_signature(tx: Any) -> Any:
    """The same transaction (same hash: the hash covers the body only) with a broken signature."""
    sig = bytes(tx.signature)
    return msgspec.structs.replace(tx, signature=sig[:-1] + bytes([sig[-1] ^ 0xFF]) if sig else b"\x00")


class HostileReplica(Replica):
    def __init__(self, *args: Any, attack: str, private_key: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attack = attack
        self._private_key = private_key
        self.sent = 0
        """Hostile messages sent (printed at exit, so a test can tell the attack happened)."""
        self._split_heights: set[int] = set()
        """Heights at which "lock-split" proposed to two peers (it says nothing more there)."""
        if attack == "future-time":
            wall = self.clock
            self.clock = lambda: wall() + TEN_YEARS_MS

    # -- raw signing, no guard -------------------------------------------------------------

    def _raw_sign(self, data: bytes) -> bytes:
        return self._private_key.sign(data)

    def _vote(self, kind: int, height: int, round: int, block_hash: bytes) -> SignedVote:
        vote = Vote(kind, self.chain_id, height, round, block_hash)
        return SignedVote(vote, self.csigner.public_key, self._raw_sign(encode(vote)))

    # -- the attacks -----------------------------------------------------------------------

    async def run(self) -> None:
        self._spawn(self._report())
        if self.attack in ("future-flood", "vote-flood"):
            self._spawn(self._flood())
        if self.attack == "bad-sync":
            self._spawn(self._announce_ahead())
        await super().run()

    async def _report(self) -> None:
        """Say how many hostile messages went out, every second (the process may be killed)."""
        while True:
            await asyncio.sleep(1.0)
            print(f"{self.sent} hostile sends", flush=True)

    async def _announce_ahead(self) -> None:
        # Three above its own: an honest peer a block ahead of this busy node must not tie with
        # it, or a syncing node might ask only honest peers (ties go by key) and never meet the lie.
        while True:
            await asyncio.sleep(0.1)
            self.transport.broadcast(encode(Status(self.height + 3)))

    async def _flood(self) -> None:
        """Bursts every 2 s: paced so the hostile node's own CPU (shared with the honest nodes on
        one test machine) goes to the attack's effect, not to generating it."""
        many = os.urandom(32 * 100_000)
        hashes = [many[i : i + 32] for i in range(0, len(many), 32)]
        while True:
            h = self.height + 1
            if self.attack == "future-flood":
                # Forty signed proposals: a few for the next heights (5,000 hashes, the most a block
                # may hold) and the rest far ahead with 100,000 hashes each.
                for i in range(40):
                    height = h + 1 + i % 2 if i < 4 else h + 1000 + i
                    listed = hashes[:5_000] if i < 4 else hashes
                    self.transport.broadcast(encode(self._fake_proposal(height, i, listed)))
                    self.sent += 1
                    await asyncio.sleep(0.01)
            else:
                for i in range(200):
                    kind = PREVOTE if i % 2 else PRECOMMIT
                    signed = self._vote(kind, h, i % 900, hashes[i])
                    self.transport.broadcast(encode(VoteGossip(signed)))
                    for _ in range(4):
                        junk = SignedVote(signed.vote, signed.validator, os.urandom(len(signed.signature)))
                        self.transport.broadcast(encode(VoteGossip(junk)))
                    self.sent += 5
                    await asyncio.sleep(0)
            await asyncio.sleep(2.0)

    def _fake_proposal(self, height: int, round: int, hashes: list[bytes]) -> ProposalGossip:
        last = self.store.load_header(self.height)
        assert last is not None
        header = msgspec.structs.replace(
            last, height=height, tx_count=len(hashes), proposer=self.csigner.public_key, time=last.time + 1
        )
        block_hash = compute_block_hash(self.hash, header)
        proposal = Proposal(self.chain_id, height, round, block_hash, -1, self.csigner.public_key)
        signed = SignedProposal(proposal, self._raw_sign(encode(proposal)))
        return ProposalGossip(signed, header, hashes)

    def _relay(self, message: SignedProposal | SignedVote) -> None:
        if self.attack == "silence" or self._height_of(message) in self._split_heights:
            return
        super()._relay(message)

    @staticmethod
    def _height_of(message: SignedProposal | SignedVote) -> int:
        return message.proposal.height if isinstance(message, SignedProposal) else message.vote.height

    def _split_lock(self, message: SignedProposal | SignedVote) -> None:
        """Round 0's proposal and its prevote to the first two peers (by key) only; nothing else
        at that height; every other height as an honest node."""
        two = sorted(p.validator for p in self.transport.peers())[:2]
        if isinstance(message, SignedProposal) and message.proposal.round == 0:
            built = self._blocks.get(message.proposal.block_hash)
            if built is not None and len(two) == 2:
                self._split_heights.add(message.proposal.height)
                gossip = ProposalGossip(message, built.block.header, built.tx_hashes)
                for p in two:
                    self.transport.send(p, encode(gossip))
                self.sent += 1
                return
        if self._height_of(message) not in self._split_heights:
            super()._broadcast_own(message)
            return
        vote = message.vote if isinstance(message, SignedVote) else None
        if vote is not None and vote.kind == PREVOTE and vote.round == 0 and vote.block_hash:
            for p in two:
                self.transport.send(p, encode(VoteGossip(message)))
            self.sent += 1

    def _broadcast_own(self, message: SignedProposal | SignedVote) -> None:
        if self.attack == "silence":
            return
        if self.attack == "lock-split":
            self._split_lock(message)
            return
        if self.attack != "equivocate":
            super()._broadcast_own(message)
            return
        peers = [p.validator for p in self.transport.peers()]
        half = peers[: len(peers) // 2 + 1]
        rest = peers[len(half) :]
        if isinstance(message, SignedVote):
            vote = message.vote
            other = self._vote(vote.kind, vote.height, vote.round, os.urandom(32))
            for p in half:
                self.transport.send(p, encode(VoteGossip(message)))
            for p in rest:
                self.transport.send(p, encode(VoteGossip(other)))
            self.sent += 1
            return
        built = self._blocks.get(message.proposal.block_hash)
        if built is None:
            return
        # A second block: same transactions, another time, so another hash.
        twin = self.execute_block(
            built.block.header.height,
            built.block.header.time + 1,
            list(built.block.txs),
            list(built.tx_hashes),
            self.csigner.public_key,
        )
        self._blocks[twin.block_hash] = twin
        p2 = msgspec.structs.replace(message.proposal, block_hash=twin.block_hash)
        second = SignedProposal(p2, self._raw_sign(encode(p2)))
        for p in half:
            self.transport.send(p, encode(ProposalGossip(message, built.block.header, built.tx_hashes)))
        for p in rest:
            self.transport.send(p, encode(ProposalGossip(second, twin.block.header, twin.tx_hashes)))
        self.sent += 1

    async def _on_wire(self, peer: bytes, payload: bytes) -> None:
        if self.attack == "silence":
            return
        if self.attack == "bad-sync":
            message = self._peek(payload)
            if isinstance(message, GetBlocks):
                self._reply_bad_blocks(peer, message)
                return
        if self.attack == "lock-split":
            # It decides its split blocks itself (it hears the two precommits); it keeps them
            # to itself, so the others must finish those heights on their own.
            message = self._peek(payload)
            if isinstance(message, GetBlocks) and any(
                message.start <= h < message.start + message.count for h in self._split_heights
            ):
                return
        if self.attack == "bad-fetch":
            message = self._peek(payload)
            if isinstance(message, ProposalGossip):
                self._answer_unasked(message)
            elif isinstance(message, GetBlock):
                self._answer_bad_body(peer, message)
                return
        await super()._on_wire(peer, payload)

    @staticmethod
    def _peek(payload: bytes) -> Any:
        from zhongshu.codec import decode
        from zhongshu.node.wire import WireMessage

        try:
            return decode(payload, WireMessage)  # type: ignore[arg-type]
        except Exception:
            return None

    def _reply_bad_blocks(self, peer: bytes, request: GetBlocks) -> None:
        items = []
        for height in range(request.start, min(request.start + 20, self.height + 1)):
            record = self.store.load_block(height)
            if record is None:
                break
            txs = list(record.block.txs)
            # Another transaction list under the real header and commit.
            txs = txs[:-1] if txs else [self._any_tx()]
            body = Block(record.block.header, [t for t in txs if t is not None])
            items.append(SyncedBlock(body, record.commit))
        if items:
            self.transport.send(peer, encode(BlocksReply(items)))
            self.sent += 1

    def _any_tx(self) -> Any:
        for h in range(self.height, 0, -1):
            record = self.store.load_block(h)
            if record is not None and record.block.txs:
                return record.block.txs[0]
        return None

    def _answer_unasked(self, gossip: ProposalGossip) -> None:
        txs = [self.mempool.get(h) for h in gossip.tx_hashes]
        bad = [_break_signature(tx) for tx in txs if tx is not None]
        if bad:
            self.transport.broadcast(encode(TxsReply(gossip.proposal.proposal.block_hash, bad)))
            self.sent += 1

    def _answer_bad_body(self, peer: bytes, request: GetBlock) -> None:
        built = self._blocks.get(request.block_hash)
        if built is None:
            return
        block = Block(built.block.header, [_break_signature(tx) for tx in built.block.txs])
        self.transport.send(peer, encode(BlockBody(block)))
        self.sent += 1


async def _main(home: Path, attack: str) -> None:
    config, genesis, key = load_home(home)
    node = HostileReplica(
        genesis,
        config.data_dir,
        ConsensusSigner(key, home / "consensus_signer.bin"),
        load_transport_config(home),
        attack=attack,
        private_key=key,
    )
    started = time.monotonic()

    def leave() -> None:
        # No clean shutdown: the attacker just goes, after saying what it did.
        took = time.monotonic() - started
        print(f"hostile node down after {took:.1f} s, {node.sent} hostile sends", flush=True)
        os._exit(0)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, leave)
    print(f"hostile node up: attack {attack}", flush=True)
    await node.run()


def main() -> None:
    # On a real network the attacker runs on its own machine; here it shares two cores with the
    # honest nodes, so it yields the CPU to them: what is measured is what its messages cost
    # the honest nodes, not what generating them costs this machine.
    os.nice(10)
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--attack", choices=ATTACKS, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(_main(args.home, args.attack))


if __name__ == "__main__":
    main()
