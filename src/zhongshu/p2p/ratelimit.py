"""Pacing of what one peer may make this node read: a token bucket of bytes.

A peer that sends faster than its allowance is not read from until it is back within it; TCP then
pushes back on the sender, whose own queue drops what it cannot send. So a hostile peer cannot
spend this node's CPU (TLS, framing, decoding) faster than the allowance, whatever it sends.
"""

from __future__ import annotations


class ByteRate:
    """``rate`` bytes per second on average, bursts up to ``burst`` bytes."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = now

    def get_delay(self, size: int, now: float) -> float:
        """Take ``size`` bytes from the allowance; the seconds to wait before reading more."""
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= size
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate
