"""The mempool: verified transactions waiting for a block, bounded by count and bytes."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from zhongshu.ledger.types import Transaction
from zhongshu.node.errors import MempoolFull


@dataclass(frozen=True)
class PendingTx:
    tx: Transaction
    tx_hash: bytes
    size: int
    """Bytes of its canonical encoding."""


class Mempool:
    """First come, first served; a full pool refuses new transactions instead of evicting."""

    def __init__(self, max_txs: int, max_bytes: int) -> None:
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self._txs: OrderedDict[bytes, PendingTx] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._txs

    def get(self, tx_hash: bytes) -> Transaction | None:
        p = self._txs.get(tx_hash)
        return p.tx if p else None

    def check_room(self, count: int, size: int) -> None:
        """Raise MempoolFull unless ``count`` more transactions of ``size`` bytes fit."""
        if len(self._txs) + count > self.max_txs or self.bytes + size > self.max_bytes:
            raise MempoolFull(
                f"the mempool holds {len(self._txs)} transactions ({self.bytes} bytes); retry shortly",
                retry_after=1,
            )

    def add(self, items: list[PendingTx]) -> None:
        self.check_room(len(items), sum(p.size for p in items))
        for p in items:
            self._txs[p.tx_hash] = p
            self.bytes += p.size

    def reap(self, max_txs: int, max_bytes: int) -> list[PendingTx]:
        """The oldest transactions that fit in a block, without removing them."""
        out: list[PendingTx] = []
        size = 0
        for p in self._txs.values():
            if len(out) >= max_txs or size + p.size > max_bytes:
                break
            out.append(p)
            size += p.size
        return out

    def remove(self, tx_hashes: list[bytes]) -> None:
        for h in tx_hashes:
            p = self._txs.pop(h, None)
            if p is not None:
                self.bytes -= p.size

    def drop_expired(self, height: int) -> list[bytes]:
        """Remove transactions no longer valid at ``height``; return their hashes."""
        gone = [h for h, p in self._txs.items() if p.tx.valid_until < height]
        self.remove(gone)
        return gone
