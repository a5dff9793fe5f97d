"""The bounded outbound queue of one peer connection.

Outbound messages wait in one queue per connected peer, bounded by a number of messages and a
number of (framed) bytes. When either bound would be exceeded, the *oldest* queued messages are
dropped and counted: the transport is best-effort, and consensus re-sends what matters.
"""

from __future__ import annotations

import asyncio
from collections import deque


class OutboundQueue:
    """Framed messages for one peer, bounded in count and bytes; overflow drops the oldest."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.items: deque[bytes] = deque()
        self.nbytes = 0
        self.dropped = 0
        self._ready = asyncio.Event()

    def put(self, frame: bytes) -> int:
        """Append ``frame``; drop the oldest until both bounds hold; return how many were dropped."""
        self.items.append(frame)
        self.nbytes += len(frame)
        dropped = 0
        while len(self.items) > self.max_messages or self.nbytes > self.max_bytes:
            self.nbytes -= len(self.items.popleft())
            dropped += 1
        self.dropped += dropped
        self._ready.set()
        return dropped

    async def take(self, max_bytes: int) -> list[bytes]:
        """Wait for at least one frame; return the oldest frames up to ``max_bytes`` (at least one)."""
        while not self.items:
            self._ready.clear()
            await self._ready.wait()
        batch = [self.items.popleft()]
        total = len(batch[0])
        while self.items and total + len(self.items[0]) <= max_bytes:
            frame = self.items.popleft()
            total += len(frame)
            batch.append(frame)
        self.nbytes -= total
        return batch
