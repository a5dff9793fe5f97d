"""proposer(h, r): a weighted round-robin that depends only on (validator set, height, round).

The schedule is the smooth weighted round-robin of Tendermint's proposer-priority algorithm
(also nginx's): start every priority at 0; each slot, add every validator's power to its
priority, pick the highest priority (ties: earliest in the set), subtract the total power from
the picked one. Over one cycle of ``total`` slots each validator is picked exactly ``power``
times, spread out rather than in runs, so a crashed heavy validator costs no long streak of
rounds. Unlike CometBFT, the priorities do not carry over from height to height: slot
``(height + round) mod total`` of the one cycle is the proposer, so anyone can compute it
from the set alone.

Powers are first divided by their greatest common divisor; if the cycle would still be longer
than ``MAX_CYCLE`` slots, powers are scaled down proportionally (each at least 1) to bound the
work, which keeps the order but rounds the shares.
"""

from __future__ import annotations

from functools import lru_cache, reduce
from math import gcd

from zhongshu.ledger.types import ValidatorSet

MAX_CYCLE = 10_000
"""Longest proposer cycle computed; larger power totals are scaled down to it."""


def get_proposer(validators: ValidatorSet, height: int, round: int) -> bytes:
    """The public key of the proposer of (height, round)."""
    cycle = compute_schedule(tuple(v.power for v in validators.validators))
    return validators.validators[cycle[(height + round) % len(cycle)]].public_key


@lru_cache(maxsize=64)
def compute_schedule(powers: tuple[int, ...]) -> tuple[int, ...]:
    """One full cycle of proposer indices for validators with these powers."""
    if not powers or min(powers) <= 0:
        raise ValueError("every validator needs a positive voting power")
    divisor = reduce(gcd, powers)
    weights = [p // divisor for p in powers]
    total = sum(weights)
    if total > MAX_CYCLE:
        weights = [max(1, w * MAX_CYCLE // total) for w in weights]
        total = sum(weights)
    priorities = [0] * len(weights)
    order: list[int] = []
    for _ in range(total):
        for i, w in enumerate(weights):
            priorities[i] += w
        best = max(range(len(weights)), key=lambda i: (priorities[i], -i))
        priorities[best] -= total
        order.append(best)
    return tuple(order)
