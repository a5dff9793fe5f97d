"""Simulated blocks, the copies peers send of them, and how far ahead a Byzantine node dates one.

A block is a header the whole network can see (height, whether its transactions validate,
its time, its transaction root) named by its hash. The hash covers the header, not the
transactions' signatures, so a copy of the body can carry broken signatures and still
"match" by hash. The transaction root covers the full transactions: a copy is intact exactly
when its own root equals the header's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from zhongshu.consensus.simulation.scenario import Rng
from zhongshu.consensus.timing import MAX_FUTURE_MS, MAX_TIMELY_WAIT_MS

GENESIS_TIME_MS = 0
"""The time of height 0, the block every chain starts after (virtual time starts there too)."""

TEN_YEARS_MS = 10 * 365 * 24 * 3600 * 1000
"""How far ahead the date of the block in issue 6 was."""

FETCH_TIMEOUT_MS = 100
"""How long a node waits for a peer's answer to a block fetch before asking another peer."""


@dataclass(frozen=True)
class SimBlock:
    """A block as its proposer built it."""

    height: int
    """The height it was built for."""
    valid: bool
    """Whether its transactions validate."""
    time: int
    """Its block time (ms), set by the proposer."""
    tx_root: bytes
    """The header's commitment to the full transactions, signatures included."""


@dataclass(frozen=True)
class BlockCopy:
    """A copy of a block as a peer sent it in answer to a fetch."""

    block_hash: bytes
    """The hash asked for; a corrupted copy still carries it."""
    tx_root: bytes
    """The root of the copy's own transactions."""
    validates: bool
    """Whether the copy's transactions validate (a corrupted copy's signatures do not)."""


def compute_tx_root(block_hash: bytes) -> bytes:
    """The transaction root of the block named ``block_hash`` (a stand-in, bound to the block)."""
    return hashlib.sha256(b"txs|" + block_hash).digest()


def get_intact_copy(block_hash: bytes, block: SimBlock) -> BlockCopy:
    """What an honest peer sends: the block's own transactions."""
    return BlockCopy(block_hash, block.tx_root, block.valid)


def get_corrupted_copy(block_hash: bytes, block: SimBlock) -> BlockCopy:
    """What a ``bad_fetch`` peer sends: the transactions with broken signatures."""
    return BlockCopy(block_hash, hashlib.sha256(b"corrupt|" + block.tx_root).digest(), False)


def compute_future_time(rng: Rng, now: int, fastest_honest_clock: int) -> int:
    """A date a ``future_time`` proposer gives its block, one of three kinds:

    - ten years ahead (issue 6): honest validators drop it;
    - at the edge, timely only at the fastest honest clocks: they accept it at once, the
      slower ones after a short wait, and it can be decided (the tight case of the block-time
      check);
    - beyond the edge by up to twice ``MAX_TIMELY_WAIT_MS``: waited for, or dropped.
    """
    kind = rng.randrange(0, 3)
    if kind == 0:
        return now + TEN_YEARS_MS
    if kind == 1:
        return fastest_honest_clock + MAX_FUTURE_MS - rng.randrange(0, 100)
    return now + MAX_FUTURE_MS + rng.randrange(1, 2 * MAX_TIMELY_WAIT_MS)
