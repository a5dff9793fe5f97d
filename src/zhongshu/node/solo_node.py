"""A chain with one validator: it proposes, signs and commits its own blocks (SoloConsensus)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from zhongshu.codec import decode, encode
from zhongshu.consensus.boundary import Action, CommitBlock, ProposeBlock, SignVote
from zhongshu.consensus.solo import SoloConsensus
from zhongshu.ledger.hashing import compute_tx_hash
from zhongshu.ledger.types import Block, Genesis
from zhongshu.node.chain import PROPOSAL_KEY, BuiltBlock, ChainNode
from zhongshu.node.mempool import PendingTx
from zhongshu.node.signer import Signer


class SoloNode(ChainNode):
    """The single validator of its chain."""

    def __init__(self, genesis: Genesis, data_dir: Path, signer: Signer, **kwargs: Any) -> None:
        super().__init__(genesis, data_dir, signer, **kwargs)
        self.solo_signer = signer
        self._built: BuiltBlock | None = None
        self.consensus = SoloConsensus(
            self.chain_id,
            genesis.validators,
            signer.public_key,
            self.height + 1,
            self.last_time,
            genesis.params.block_interval_ms,
        )

    async def run(self) -> None:
        """Produce blocks until closed."""
        interval = self.genesis.params.block_interval_ms / 1000
        while not self._stopping:
            has_work = len(self.mempool) > 0 or self._saved_proposal() is not None
            actions = self.consensus.on_tick(self.clock(), has_work)
            if not actions:
                self._wake.clear()
                delay = (
                    interval
                    if len(self.mempool) == 0
                    else max(
                        0.001,
                        (self.consensus.last_time + self.genesis.params.block_interval_ms - self.clock())
                        / 1000,
                    )
                )
                # asyncio.timeout: a cancel is never lost to a wake-up in the same turn (wait_for
                # on Python 3.11 can return instead).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            await self._handle(actions)

    async def _handle(self, actions: list[Action]) -> None:
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            if isinstance(action, ProposeBlock):
                saved = self._saved_proposal()
                if saved is not None and saved.header.height == action.height:
                    # A proposal written before a crash is proposed again, unchanged: the signer
                    # may already have signed it, and must never sign another block here.
                    action = ProposeBlock(action.height, action.round, saved.header.time)
                    pending = [
                        PendingTx(tx, compute_tx_hash(self.hash, tx), len(encode(tx))) for tx in saved.txs
                    ]
                else:
                    params = self.genesis.params
                    self.mempool.drop_expired(action.height)
                    pending = self.mempool.reap(params.max_block_txs, params.max_block_bytes)
                if not pending:
                    queue.extend(self.consensus.on_proposal_empty())
                    continue
                started = time.perf_counter()
                built = await asyncio.to_thread(self._build_block, action, pending)
                self.metrics.execute_seconds += time.perf_counter() - started
                # Re-execution is deterministic: a replayed proposal rebuilds the same block.
                if saved is not None and saved.header.height == action.height and built.block != saved:
                    raise RuntimeError(f"replayed proposal at height {action.height} rebuilt differently")
                # The proposal is on disk before the signer may sign it (write-ahead).
                await asyncio.to_thread(self.store.save_meta, PROPOSAL_KEY, encode(built.block))
                self._built = built
                queue.extend(self.consensus.on_proposal(built.block, built.block_hash))
            elif isinstance(action, SignVote):
                signature = self.solo_signer.sign_vote(action.vote)
                if self.crash_point == "after-sign":
                    os._exit(70)
                queue.extend(self.consensus.on_vote_signed(action.vote, signature))
            elif isinstance(action, CommitBlock):
                await self._commit(action)

    def _saved_proposal(self) -> Block | None:
        """The proposal written ahead of signing, if its block was never stored."""
        raw = self.store.load_meta(PROPOSAL_KEY)
        if not raw:
            return None
        block = decode(raw, Block)
        return block if block.header.height == self.height + 1 else None

    def _build_block(self, action: ProposeBlock, pending: list[PendingTx]) -> BuiltBlock:
        """Execute the reaped transactions and assemble the next block (in a worker thread)."""
        return self.execute_block(
            action.height,
            action.time,
            [p.tx for p in pending],
            [p.tx_hash for p in pending],
            self.signer.public_key,
        )

    async def _commit(self, action: CommitBlock) -> None:
        built = self._built
        # The decided block is one this node built.
        if built is None or built.block_hash != action.block_hash:
            raise RuntimeError("consensus decided a block this node did not build")
        await self.store_block(built, action.commit)
        self.consensus.on_committed(built.block.header.height, built.block.header.time)
