"""What a replica remembers of its peers for fetching data: their heights and their faults.

A reply that does not match what it claims (a block body that is not the certified header's,
transaction copies that are not the proposal's) is the sending peer's fault, never a reason to
judge the block or to halt: the fault is counted here and the next request goes to another
peer. Also the byte budgets that keep every message inside one frame (docs/p2p.md, "Limits").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from zhongshu.ledger.hashing import compute_tx_root
from zhongshu.ledger.merkle import Hasher
from zhongshu.ledger.types import Block, ChainParams, Header, Transaction

T = TypeVar("T")

GOSSIP_CHUNK_BYTES = 1024 * 1024
"""Transactions gossiped or sent in reply are split into messages of at most about this size."""


def compute_sync_budget(params: ChainParams) -> int:
    """Bytes of blocks one block-sync reply may carry: one frame less the margin."""
    return params.max_block_bytes


def split_by_bytes(items: Iterable[T], budget: int, size_of: Callable[[T], int]) -> Iterator[list[T]]:
    """Group ``items`` in order into lists of at most ``budget`` bytes (a larger item goes alone)."""
    group: list[T] = []
    used = 0
    for item in items:
        size = size_of(item)
        if group and used + size > budget:
            yield group
            group, used = [], 0
        group.append(item)
        used += size
    if group:
        yield group


def check_body(h: Hasher, header: Header, block: Block) -> str | None:
    """Why ``block``'s transactions are not the ones ``header`` commits to, or None if they are."""
    # The body is the header's: same header, same transaction count, same transaction root.
    if block.header != header:
        return "the body carries another header"
    if len(block.txs) != header.tx_count:
        return f"{len(block.txs)} transactions where the header says {header.tx_count}"
    if compute_tx_root(h, block.txs) != header.tx_root:
        return "the transactions do not match the header's transaction root"
    return None


class PeerBook:
    """Heights peers announced and faults they made; picks whom to ask for blocks."""

    def __init__(self) -> None:
        self.heights: dict[bytes, int] = {}
        self.faults: dict[bytes, int] = {}

    def note_height(self, peer: bytes, height: int) -> None:
        self.heights[peer] = height

    def note_fault(self, peer: bytes) -> int:
        """Count one fault against ``peer``; return its total."""
        self.faults[peer] = self.faults.get(peer, 0) + 1
        return self.faults[peer]

    def pick_ahead(self, height: int, connected: Iterable[bytes]) -> bytes | None:
        """A connected peer that announced a height above ``height``, fewest faults first."""
        ahead = [p for p in connected if self.heights.get(p, 0) > height]
        if not ahead:
            return None
        return min(ahead, key=lambda p: (self.faults.get(p, 0), -self.heights[p], p))

    def summary(self) -> dict[str, int]:
        return {peer.hex()[:16]: count for peer, count in sorted(self.faults.items())}


def estimate_tx_bytes(tx: Transaction) -> int:
    """An upper estimate of a transaction's encoded size, without encoding it (for splitting only)."""
    return (
        128
        + len(tx.chain_id)
        + len(tx.sender)
        + len(tx.contract)
        + len(tx.method)
        + len(tx.args)
        + len(tx.signature)
    )
