"""A seeded, deterministic simulation of a Tendermint network that tries hard to break it.

Virtual time; N nodes each running ``TendermintEngine``; a network that delays, drops,
duplicates and reorders messages and partitions nodes until GST; honest nodes with skewed
clocks that date blocks and judge their dates by ``consensus.timing``, fetch proposed blocks
from peers and check each copy against the header, and crash and restart from their WAL with
a double-sign guard; Byzantine nodes that equivocate, double-vote, vote for invalid blocks,
stay silent, flood junk, date blocks in the future or answer fetches with corrupted copies.
After every step it checks agreement, validity, that no honest node double-signs, block times
and that no honest node calls a valid block invalid; after GST, that all heights get decided
in bounded virtual time. See docs/consensus.md.

The package has no randomness of its own: the caller passes ``random.Random(seed)``.
"""

from zhongshu.consensus.simulation.runner import SimResult, Simulation, SimulationFailure, run_seed
from zhongshu.consensus.simulation.scenario import (
    BEHAVIOURS,
    Crash,
    Partition,
    Rng,
    Scenario,
    get_random_scenario,
)

__all__ = [
    "BEHAVIOURS",
    "Crash",
    "Partition",
    "Rng",
    "Scenario",
    "SimResult",
    "Simulation",
    "SimulationFailure",
    "get_random_scenario",
    "run_seed",
]
