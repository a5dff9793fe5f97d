"""What an operator reads in a node's log: one line per block, warnings when the chain is unwell.

``log_blocks`` writes one INFO line per committed block (height, hash prefix, transactions,
round, milliseconds since the previous block's time) from the node's block events.
``watch_health`` polls the node once a second and ``HealthWatch`` turns what it sees into
warnings: a peer lost, a quorum missing (this node's power plus its connected peers' at most
2/3 of the total) for ``QUORUM_GRACE_SECONDS``, a height without a commit for ``STALL_SECONDS``
while blocks are expected. Each condition is written when it starts, repeated at most every
``REPEAT_SECONDS`` while it lasts, and its end is written once: the volume stays bounded.
Time comes in as an argument (``HealthWatch.on_poll``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zhongshu.node.chain import ChainNode

block_log = logging.getLogger("zhongshu.node.blocks")
health_log = logging.getLogger("zhongshu.node.health")

POLL_SECONDS = 1.0
"""How often ``watch_health`` looks at the node."""
STALL_SECONDS = 10.0
"""A height that takes this long without a commit, while blocks are expected, is warned about."""
QUORUM_GRACE_SECONDS = 5.0
"""A missing quorum is warned about once it lasts this long (peers take a moment to connect)."""
REPEAT_SECONDS = 60.0
"""A condition that lasts is written again at most this often."""
HASH_PREFIX = 12
"""Hex digits of the block hash in a block line."""


@dataclass(frozen=True)
class HealthSample:
    """What ``HealthWatch`` needs from one look at the node."""

    height: int
    peers: dict[bytes, str]
    """Connected peers: validator key to name."""
    own_power: int
    """This node's voting power (0 if it is not a validator)."""
    peer_power: int
    """Voting power of the connected peers."""
    total_power: int
    blocks_expected: bool
    """True when a height should end soon: transactions are pending or consensus on it runs."""
    networked: bool
    consensus: str = ""
    """Round and step of the height in progress, for the stall warning (empty if unknown)."""


@dataclass
class _Condition:
    since: float | None = None
    """When the condition began (monotonic seconds), None while it does not hold."""
    written_at: float | None = None
    """When it was last written, None if not yet during this spell."""


@dataclass
class HealthWatch:
    """Turns samples into warnings; holds only what it saw last."""

    stall_seconds: float = STALL_SECONDS
    quorum_grace_seconds: float = QUORUM_GRACE_SECONDS
    repeat_seconds: float = REPEAT_SECONDS
    _peers: dict[bytes, str] | None = None
    _height: int = -1
    _due_since: float | None = None
    _quorum: _Condition = field(default_factory=_Condition)
    _stall: _Condition = field(default_factory=_Condition)

    def on_poll(self, now: float, sample: HealthSample) -> list[tuple[int, str, dict[str, Any]]]:
        """The lines to write for ``sample`` seen at ``now``: (level, message, fields)."""
        lines: list[tuple[int, str, dict[str, Any]]] = []
        lines += self._check_peers(sample)
        lines += self._check_quorum(now, sample)
        lines += self._check_stall(now, sample)
        return lines

    def _check_peers(self, sample: HealthSample) -> list[tuple[int, str, dict[str, Any]]]:
        lines: list[tuple[int, str, dict[str, Any]]] = []
        if self._peers is not None:
            # A peer that was connected at the last look and is not now has been lost.
            for key, name in sorted(self._peers.items()):
                if key not in sample.peers:
                    label = name or key.hex()[:16]
                    lines.append(
                        (
                            logging.WARNING,
                            f"peer {label} lost ({len(sample.peers)} peers connected)",
                            {"event": "peer_lost", "peer": label, "peers": len(sample.peers)},
                        )
                    )
        self._peers = dict(sample.peers)
        return lines

    def _check_quorum(self, now: float, sample: HealthSample) -> list[tuple[int, str, dict[str, Any]]]:
        if not sample.networked:
            return []
        reachable = sample.own_power + sample.peer_power
        # A quorum is more than 2/3 of the total voting power.
        missing = 3 * reachable <= 2 * sample.total_power
        fields = {"event": "no_quorum", "power": reachable, "total_power": sample.total_power}
        message = (
            f"no quorum: this node and its {len(sample.peers)} connected peers hold {reachable} of "
            f"{sample.total_power} voting power, more than 2/3 is needed to commit"
        )
        ended = f"quorum back: {reachable} of {sample.total_power} voting power connected"
        return self._condition(self._quorum, now, missing, self.quorum_grace_seconds, message, ended, fields)

    def _check_stall(self, now: float, sample: HealthSample) -> list[tuple[int, str, dict[str, Any]]]:
        # The wait counts from the first look at this height with blocks due.
        if sample.height != self._height or not sample.blocks_expected:
            self._height, self._due_since = sample.height, None
        elif self._due_since is None:
            self._due_since = now
        waited = now - self._due_since if self._due_since is not None else 0.0
        stalled = waited >= self.stall_seconds
        where = f" ({sample.consensus})" if sample.consensus else ""
        message = f"height {sample.height + 1}: no block committed for {waited:.0f} s{where}"
        fields = {"event": "stall", "height": sample.height + 1, "seconds": round(waited, 1)}
        ended = f"no longer stalled at height {sample.height}"
        return self._condition(self._stall, now, stalled, 0.0, message, ended, fields)

    def _condition(
        self,
        state: _Condition,
        now: float,
        holds: bool,
        grace: float,
        message: str,
        ended: str,
        fields: dict[str, Any],
    ) -> list[tuple[int, str, dict[str, Any]]]:
        if not holds:
            was_written = state.written_at is not None
            state.since = state.written_at = None
            return [(logging.INFO, ended, {"event": f"{fields['event']}_ended"})] if was_written else []
        if state.since is None:
            state.since = now
        if now - state.since < grace:
            return []
        if state.written_at is not None and now - state.written_at < self.repeat_seconds:
            return []
        state.written_at = now
        return [(logging.WARNING, message, fields)]


def sample_node(node: ChainNode) -> HealthSample:
    """One look at ``node``: height, connected peers and their power, whether blocks are due."""
    from zhongshu.node.replica import Replica

    validators = node.genesis.validators
    own = validators.power_of(node.signer.public_key)
    if not isinstance(node, Replica):
        return HealthSample(
            node.height, {}, own, 0, validators.total_power(), len(node.mempool) > 0, networked=False
        )
    peers = {p.validator: p.name for p in node.transport.peers()}
    state = node.engine.get_state()
    # Consensus on the next height runs (an idle replica does not start it), or work is pending.
    in_progress = state.height == node.height + 1
    return HealthSample(
        node.height,
        peers,
        own,
        sum(validators.power_of(key) for key in peers),
        validators.total_power(),
        blocks_expected=in_progress or len(node.mempool) > 0,
        networked=True,
        consensus=f"round {state.round}, step {state.step.name.lower()}",
    )


async def watch_health(
    node: ChainNode, clock: Callable[[], float] = time.monotonic, poll_seconds: float = POLL_SECONDS
) -> None:
    """Write ``HealthWatch``'s warnings about ``node`` until cancelled."""
    watch = HealthWatch()
    while True:
        for level, message, fields in watch.on_poll(clock(), sample_node(node)):
            health_log.log(level, message, extra={"fields": fields})
        await asyncio.sleep(poll_seconds)


def describe_block(event: dict[str, Any], previous_time: int | None) -> tuple[str, dict[str, Any]]:
    """The line of one block event: message and fields."""
    interval = event["time"] - previous_time if previous_time is not None else None
    fields: dict[str, Any] = {
        "event": "block",
        "height": event["height"],
        "hash": event["hash"],
        "txs": event["tx_count"],
        "round": event.get("round"),
        "interval_ms": interval,
    }
    parts = [f"block {event['height']} {event['hash'][:HASH_PREFIX]} txs {event['tx_count']}"]
    if event.get("round") is not None:
        parts.append(f"round {event['round']}")
    if interval is not None:
        parts.append(f"+{interval} ms")
    return " ".join(parts), fields


async def log_blocks(node: ChainNode) -> None:
    """Write one line per block ``node`` commits, until cancelled."""
    previous_time: int | None = node.last_time
    while True:
        queue = node.subscribe(events=False)
        try:
            while (event := await queue.get()) is not None:
                if event.get("type") != "block":
                    continue
                message, fields = describe_block(event, previous_time)
                block_log.info(message, extra={"fields": fields})
                previous_time = event["time"]
        finally:
            node.unsubscribe(queue)
        # The node cut this subscriber off (it fell behind) or is closing: subscribe again.
        previous_time = None
