"""Block time: how a proposer dates a block and when a validator accepts that date.

The rule (docs/consensus.md, "Block time"):

- A proposer dates its block ``max(local_now, last_block_time + 1)`` (milliseconds) and never
  waits for its clock to reach a block time: the minimum interval between blocks is counted
  on the proposer's own monotonic clock from the moment it stored the previous block.
- A validator treats a proposed block dated more than ``MAX_FUTURE_MS`` beyond its own clock as
  not yet available: it gives no valid(v) answer for it, so its propose timeout fires and it
  prevotes nil. The answer is given once its clock reaches ``block_time - MAX_FUTURE_MS``, if
  the height is still undecided then. Being timely is monotone (a block that is timely stays
  timely as the clock advances), so a value some honest validator accepted is accepted by every
  honest validator once their clocks catch up, and liveness is kept under clock skew.
- A block that would become timely only after ``MAX_TIMELY_WAIT_MS`` is invalid at once, so the
  validator prevotes nil without waiting for its propose timeout. This one answer is final for
  the height; it cannot split honest validators as long as their clocks are within
  ``MAX_TIMELY_WAIT_MS`` of each other (minutes, against the seconds NTP keeps them within).
- With at most f Byzantine validators no block can be committed without precommits (hence
  prevotes) from honest validators holding more than 1/3 of the power, so every committed block
  time is at most ``MAX_FUTURE_MS`` ahead of some honest validator's clock. Committed blocks
  fetched by block sync are not checked against the clock: their commit certificate stands for
  them.

Pure functions: the caller passes its clock reading in.
"""

from __future__ import annotations

MAX_FUTURE_MS = 5_000
"""How far ahead of a validator's clock a proposed block may be dated and still be accepted."""

MAX_TIMELY_WAIT_MS = 60_000
"""A proposal that would become timely only later than this is invalid rather than waited for."""


def compute_block_time(last_block_time: int, local_now: int) -> int:
    """The time an honest proposer gives its block: its clock, strictly after the previous block."""
    return max(local_now, last_block_time + 1)


def is_timely(block_time: int, local_now: int, max_future_ms: int = MAX_FUTURE_MS) -> bool:
    """Whether a proposed block's time is acceptable at this local clock reading."""
    return block_time <= local_now + max_future_ms


def get_timely_delay(block_time: int, local_now: int, max_future_ms: int = MAX_FUTURE_MS) -> int:
    """Milliseconds until a proposed block becomes timely here (0 when it already is)."""
    return max(0, block_time - max_future_ms - local_now)


def is_too_far_ahead(block_time: int, local_now: int) -> bool:
    """Whether a proposed block is dated so far ahead that it is invalid rather than waited for."""
    return get_timely_delay(block_time, local_now) > MAX_TIMELY_WAIT_MS
