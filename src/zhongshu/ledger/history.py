"""The history accumulator: an RFC 6962 tree over block hashes, kept as its right frontier.

Header ``n`` carries the root over the hashes of blocks 1 .. n-1, so any signed header proves
every older block with an inclusion path.
"""

from __future__ import annotations

from zhongshu.ledger.merkle import Hasher, hash_children, hash_leaf


class HistoryAccumulator:
    """Appends leaf data (block hashes) and gives the tree head in O(log n)."""

    def __init__(self, h: Hasher, size: int = 0, frontier: list[bytes] | None = None) -> None:
        self._h = h
        self.size = size
        # Roots of the perfect subtrees that make up the tree, largest (leftmost) first.
        self.frontier: list[bytes] = list(frontier or [])

    def append(self, data: bytes) -> None:
        node = hash_leaf(self._h, data)
        n = self.size
        # Merge equal-sized perfect subtrees, as binary addition carries.
        while n & 1:
            node = hash_children(self._h, self.frontier.pop(), node)
            n >>= 1
        self.frontier.append(node)
        self.size += 1

    def root(self) -> bytes:
        if not self.frontier:
            return self._h(b"")
        node = self.frontier[-1]
        for left in reversed(self.frontier[:-1]):
            node = hash_children(self._h, left, node)
        return node
