"""A simulation scenario: the network, its faults and its Byzantine nodes, drawn from a seed.

Every fault ends before GST (global stabilisation time): after it no message between live
nodes is lost, delays are at most ``post_gst_delay_ms``, no partition holds and every crashed
node is back. Byzantine nodes stay Byzantine forever. Voting power of the Byzantine nodes is
always less than a third of the total: that is the model the algorithm is safe in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from zhongshu.consensus.tendermint import TimeoutConfig

T = TypeVar("T")

BEHAVIOURS = (
    "silent",
    "equivocate",
    "double_vote",
    "invalid",
    "flood",
    "amnesia",
    "future_time",
    "bad_fetch",
    "mixed",
)
"""What a Byzantine node does (see ``byzantine``)."""
SEND_MODES = BEHAVIOURS[:-1]
"""The behaviours ``mixed`` picks from for each message (and each block fetch it answers)."""

MAX_CLOCK_SKEW_MS = 400
"""An honest node's clock reads virtual time plus a fixed skew of at most this, either way."""

POWER_PROFILES: tuple[tuple[int, ...], ...] = (
    (1, 1, 1, 1),
    (1, 1, 1, 1),
    (2, 1, 1, 1),
    (3, 2, 2, 2),
    (1, 2, 3, 4),
)


class Rng(Protocol):
    """The randomness the simulator uses; a ``random.Random(seed)`` made by the caller fits."""

    def random(self) -> float: ...

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int: ...

    def choice(self, seq: Sequence[T]) -> T: ...


@dataclass(frozen=True)
class Partition:
    """From ``start_ms`` to ``end_ms`` nodes in different groups cannot reach each other;
    messages sent before and delivered during it between them are lost too."""

    start_ms: int
    end_ms: int
    groups: tuple[frozenset[int], ...]

    def splits(self, a: int, b: int) -> bool:
        return not any(a in g and b in g for g in self.groups)


@dataclass(frozen=True)
class Crash:
    """Node ``node`` dies at ``at_ms`` and restarts from its WAL at ``at_ms + down_ms``.

    With ``cut`` set it dies while handling its next input instead, after ``cut`` steps of it
    (steps: the input written to the WAL and handled, each action carried out, each answer
    such as a signature fed back), so the WAL and the signer's guard are tested mid-flight.
    """

    node: int
    at_ms: int
    down_ms: int
    cut: int | None


@dataclass(frozen=True)
class Scenario:
    seed: int
    powers: tuple[int, ...]
    byzantine: tuple[tuple[int, str], ...]
    """(node, behaviour) of each Byzantine node."""
    heights: int
    """Heights every honest node must decide."""
    drop_rate: float
    duplicate_rate: float
    max_delay_ms: int
    """Delays before GST are uniform in 1..max_delay_ms, which also reorders messages."""
    lossy_until_ms: int
    """Drops happen only before this time."""
    partitions: tuple[Partition, ...]
    crashes: tuple[Crash, ...]
    timeouts: TimeoutConfig
    gossip_ms: int = 250
    """Before GST, how often each node re-sends to each peer what that peer is missing."""
    post_gst_gossip_ms: int = 250
    """The same after GST."""
    build_delay_ms: int = 30
    """Building a block and fetching a proposed one take up to this long."""
    post_gst_delay_ms: int = 50
    isolate_decider_ms: int = 0
    """If set, the first honest node to decide a height before GST is cut off from all others
    for this long (ending by GST): the adversary's schedule that lets one node decide alone."""
    clock_skews_ms: tuple[int, ...] = ()
    """Per node, how far its clock reads ahead of virtual time (negative: behind); at most
    ``MAX_CLOCK_SKEW_MS`` either way. Empty: every clock reads virtual time."""

    @property
    def gst_ms(self) -> int:
        ends = [self.lossy_until_ms]
        ends += [p.end_ms for p in self.partitions]
        ends += [c.at_ms + c.down_ms for c in self.crashes]
        return max(ends)

    @property
    def honest(self) -> list[int]:
        bad = {n for n, _ in self.byzantine}
        return [i for i in range(len(self.powers)) if i not in bad]

    def get_skew(self, node: int) -> int:
        return self.clock_skews_ms[node] if self.clock_skews_ms else 0

    @property
    def max_honest_skew_ms(self) -> int:
        """How far the fastest honest clock reads ahead of virtual time."""
        return max(self.get_skew(i) for i in self.honest)

    @property
    def honest_skew_spread_ms(self) -> int:
        """How far the fastest honest clock reads ahead of the slowest."""
        return self.max_honest_skew_ms - min(self.get_skew(i) for i in self.honest)

    def describe(self) -> str:
        return (
            f"powers={self.powers} byzantine={self.byzantine} drop={self.drop_rate} "
            f"dup={self.duplicate_rate} delay<={self.max_delay_ms}ms gossip={self.gossip_ms}ms "
            f"partitions={[(p.start_ms, p.end_ms, sorted(p.groups[0])) for p in self.partitions]} "
            f"crashes={[(c.node, c.at_ms, c.down_ms, c.cut) for c in self.crashes]} "
            f"isolate_decider={self.isolate_decider_ms}ms skews={self.clock_skews_ms}ms gst={self.gst_ms}ms"
        )


SIM_TIMEOUTS = TimeoutConfig(
    propose_ms=300,
    propose_delta_ms=100,
    prevote_ms=200,
    prevote_delta_ms=100,
    precommit_ms=200,
    precommit_delta_ms=100,
)


def get_random_scenario(seed: int, rng: Rng, heights: int = 3, byzantine: str | None = None) -> Scenario:
    """A scenario mixing every fault kind, drawn from ``rng``; ``byzantine`` forces one such node."""
    powers = rng.choice(POWER_PROFILES)
    n = len(powers)
    total = sum(powers)
    bad: list[tuple[int, str]] = []
    if byzantine is not None or rng.random() < 0.6:
        # Byzantine power stays under a third of the total: f < n/3 by power.
        candidates = [i for i in range(n) if 3 * powers[i] < total]
        bad.append((rng.choice(candidates), byzantine or rng.choice(BEHAVIOURS)))
    honest = [i for i in range(n) if i not in {b for b, _ in bad}]
    partitions = []
    for _ in range(rng.choice((0, 0, 1, 2))):
        start = rng.randrange(0, 3000)
        side = set(rng.choice([[i] for i in range(n)] + [[0, 1], [0, 2], [1, 3], [0, 3]]))
        groups = (frozenset(side), frozenset(set(range(n)) - side))
        partitions.append(Partition(start, start + rng.randrange(200, 4000), groups))
    crashes = []
    for _ in range(rng.choice((0, 0, 1, 2))):
        cut = rng.choice((None, 0, 1, 2, 3, 5))
        crashes.append(Crash(rng.choice(honest), rng.randrange(0, 4000), rng.randrange(50, 3000), cut))
    return Scenario(
        seed=seed,
        powers=powers,
        byzantine=tuple(bad),
        heights=heights,
        drop_rate=rng.choice((0.0, 0.05, 0.2, 0.4)),
        duplicate_rate=rng.choice((0.0, 0.05, 0.2)),
        max_delay_ms=rng.choice((20, 100, 400, 1500)),
        lossy_until_ms=rng.choice((0, 1000, 3000, 6000)),
        partitions=tuple(partitions),
        crashes=tuple(crashes),
        timeouts=SIM_TIMEOUTS,
        gossip_ms=rng.choice((100, 250, 1000, 3000)),
        isolate_decider_ms=rng.choice((0, 0, 2000, 5000)),
        clock_skews_ms=tuple(
            rng.randrange(-MAX_CLOCK_SKEW_MS, MAX_CLOCK_SKEW_MS + 1) if i in honest else 0 for i in range(n)
        ),
    )
