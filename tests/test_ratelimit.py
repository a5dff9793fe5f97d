"""The per-peer inbound byte allowance (p2p/ratelimit.py): a token bucket with a burst."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zhongshu.p2p.ratelimit import ByteRate


def test_within_the_burst_nothing_waits_beyond_it_the_excess_waits_at_the_rate() -> None:
    bucket = ByteRate(rate=1000, burst=3000, now=0.0)
    assert bucket.get_delay(3000, now=0.0) == 0.0
    # 500 bytes over an empty bucket: half a second at 1000 bytes/s.
    assert bucket.get_delay(500, now=0.0) == pytest.approx(0.5)
    # After waiting that half second the debt is paid; one more second refills 1000 bytes.
    assert bucket.get_delay(1000, now=1.5) == 0.0


def test_the_bucket_never_holds_more_than_the_burst() -> None:
    bucket = ByteRate(rate=1000, burst=2000, now=0.0)
    # An hour idle still allows only the burst at once.
    assert bucket.get_delay(2000, now=3600.0) == 0.0
    assert bucket.get_delay(1000, now=3600.0) == pytest.approx(1.0)


@given(st.lists(st.tuples(st.integers(1, 50_000), st.floats(0, 2)), min_size=1, max_size=50))
def test_a_sender_that_waits_as_told_averages_at_most_the_rate_plus_the_burst(
    sends: list[tuple[int, float]],
) -> None:
    rate, burst = 10_000.0, 20_000.0
    bucket = ByteRate(rate, burst, now=0.0)
    now = 0.0
    total = 0
    for size, gap in sends:
        now += gap
        now += bucket.get_delay(size, now)
        total += size
    assert total <= burst + rate * now + 1e-6
