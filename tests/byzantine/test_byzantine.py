"""One Byzantine validator of four, as a real process, cannot stop the three honest ones.

Four real node processes on loopback (mutual TLS, as ``network init`` makes them). Node 3's
files are then used by ``hostile.py``, which joins the network as that validator and runs one
attack at a time: future block times, bad block-sync replies, bad transaction-fetch replies, a
flood of far-future proposals, equivocation, silence, a polka shown to two validators only
and a vote flood. During each attack the
three honest nodes, under a steady load, must keep committing at at least half the block rate
measured with four honest nodes (for the attacks that cost the hostile validator its own turns:
at least half the rate with node 3 switched off, the best any attacker can be held to; see
``BASELINE``) and none may halt. At the end the honest nodes hold identical blocks at every height.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import cli_env, log_excerpt, wait_for
from test_network import Load, Network, _check_agreement, running_network
from zhongshu.node.replica import SYNC_BATCH

pytestmark = pytest.mark.slow

HOSTILE = Path(__file__).with_name("hostile.py")
WINDOW = 8.0
"""Seconds over which a block rate is measured."""
HONEST = [0, 1, 2]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Attacker:
    """The hostile process on node 3's home."""

    def __init__(self, net: Network, attack: str) -> None:
        self.net = net
        self.attack = attack
        self.log_path = net.root / f"hostile-{attack}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, str(HOSTILE), "--home", str(net.root / "node3"), "--attack", attack],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=cli_env(),
        )
        log.close()

    def stop(self) -> int:
        """Stop it and return how many hostile messages it says it sent."""
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        text = self.log_path.read_text(errors="replace")
        found = re.findall(r"(\d+) hostile sends", text)
        assert found, f"the hostile node did not report its sends:\n{text[-2000:]}"
        return int(found[-1])


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with running_network(tmp_path_factory.mktemp("byz"), stop="kill") as network:
        yield network


@pytest.fixture(scope="module")
def load(net: Network) -> Iterator[list[Load]]:
    from zhongshu.crypto import get_suite

    loads = [Load(net, get_suite("sm").generate_private_key()) for _ in range(3)]
    for one in loads:
        one.__enter__()
    yield loads
    for one in loads:
        one.__exit__()


def _heights(net: Network) -> list[int]:
    return [net.height(i) for i in HONEST]


def _block_rate(net: Network, seconds: float = WINDOW) -> float:
    """Blocks per second committed by node 0 over ``seconds`` (every honest node must advance)."""
    start = _heights(net)
    began = time.monotonic()
    time.sleep(seconds)
    end = _heights(net)
    elapsed = time.monotonic() - began
    for i, (a, b) in zip(HONEST, zip(start, end, strict=True), strict=True):
        assert b > a, f"node{i} made no progress ({a} -> {b}) over {elapsed:.1f} s\n" + _consensus_states(net)
    assert all(p.poll() is None for i, p in net.procs.items() if i in HONEST), "an honest node exited"
    return (end[0] - start[0]) / elapsed


def _consensus_states(net: Network) -> str:
    """Each honest node's consensus position and peers, for a failure message."""
    lines = []
    for i in HONEST:
        s = net.status(i)
        lines.append(f"node{i}: " + (json.dumps({"height": s["height"], **s["consensus"]}) if s else "down"))
    return "\n".join(lines)


def _wait_joined(net: Network) -> None:
    """Wait until node 0 reports four validators' worth of peers again (the hostile node joined)."""

    def joined() -> bool:
        s = net.status(0)
        return bool(s) and len(s["consensus"]["peers"]) == 3  # type: ignore[index]

    wait_for(joined, 30, "the hostile node to connect")


RATES: dict[str, float] = {}
SENT: dict[str, int] = {}


def test_baseline_rates(net: Network, load: list[Load]) -> None:
    """Four honest nodes, then three with node 3 off: the rates the attacks are compared with."""
    RATES["4 honest"] = _block_rate(net)
    assert net.stop(3) == 0
    RATES["3 honest, node3 off"] = _block_rate(net)
    assert RATES["4 honest"] > 0 and RATES["3 honest, node3 off"] > 0


def _baseline_now(net: Network, baseline: str) -> float:
    """The block rate of ``baseline`` measured now: with node 3 off, or with the real node 3
    started again on its home (the hostile process is stopped) and stopped after."""
    if baseline != "4 honest":
        return _block_rate(net)
    net.start(3)
    try:
        _wait_joined(net)
        wait_for(lambda: net.height(3) >= net.height(0) - 1, 60, "node 3 to catch up")
        return _block_rate(net)
    finally:
        assert net.stop(3) == 0


def _under_attack(net: Network, attack: str) -> float:
    attacker = Attacker(net, attack)
    try:
        _wait_joined(net)
        rate = _block_rate(net)
    finally:
        SENT[attack] = attacker.stop()
    RATES[attack] = rate
    print(f"\n{attack}: {rate:.2f} blocks/s (baselines {RATES})")
    return rate


# What each attack is compared with. The hostile validator keeps voting for honest blocks in
# "bad-fetch" and "vote-flood": half the four-honest rate. In the others it loses its own turns:
# its proposals are refused ("future-time"), split ("equivocate", "lock-split"), never sent
# ("silence"), or its messages wait behind its own flood, which honest nodes read at no more
# than their per-peer allowance ("future-flood"); nothing can beat a validator that does not
# take part, so these are held to half the rate with node 3 switched off.
BASELINE = {
    "bad-fetch": "4 honest",
    "vote-flood": "4 honest",
    "future-flood": "3 honest, node3 off",
    "future-time": "3 honest, node3 off",
    "equivocate": "3 honest, node3 off",
    "silence": "3 honest, node3 off",
    "lock-split": "3 honest, node3 off",
}


@pytest.mark.parametrize("attack", list(BASELINE))
def test_one_hostile_validator_keeps_half_the_rate(net: Network, load: list[Load], attack: str) -> None:
    baseline = BASELINE[attack]
    assert baseline in RATES, "the baseline runs first"
    pids = {i: net.procs[i].pid for i in HONEST}
    before = {i: _rss_mb(pid) for i, pid in pids.items()}
    rate = _under_attack(net, attack)
    after = {i: _rss_mb(pid) for i, pid in pids.items()}
    limit = 0.5 * RATES[baseline]
    if rate < limit:
        # The baseline was measured minutes before, and this machine's speed moves (in one CI
        # run a slow spell cut the rate with node 3 off to a fifth of its usual): measure it
        # again now, beside the attack, and hold the attack to half the lower of the two.
        fresh = _baseline_now(net, baseline)
        print(f"\n{attack}: {rate:.2f} blocks/s under {limit:.2f}; {baseline} again: {fresh:.2f}")
        limit = 0.5 * min(RATES[baseline], fresh)
    assert rate >= limit, (attack, rate, limit, RATES)
    # The attack really ran (a silent or future-dating node sends nothing unusual to count).
    if attack not in ("silence", "future-time"):
        assert SENT[attack] > 0, "the attack never fired"
    # What peers send is bounded in memory: no honest node grows by more than 100 MB.
    for i in HONEST:
        assert after[i] - before[i] < 100, f"node{i} grew from {before[i]:.0f} to {after[i]:.0f} MB"
    # No committed block is dated beyond the honest nodes' clocks plus the bound (5 s).
    tip = net.height(0)
    block = httpx.get(f"{net.url(0)}/blocks/{tip}", timeout=5).json()
    assert block["time"] <= time.time() * 1000 + 5_000, block


def test_bad_sync_replies_do_not_stop_a_catching_up_node(net: Network, load: list[Load]) -> None:
    """Node 2 stops while blocks commit (the hostile node votes honestly), then catches up from
    peers among which the hostile one answers block requests with other transaction lists."""
    attacker = Attacker(net, "bad-sync")
    try:
        _wait_joined(net)
        assert net.stop(2) == 0
        behind = net.height(0)
        # More blocks than one sync reply carries: node 2 asks at least twice, so it asks the
        # peer announcing the highest height (the attacker) even if its first request, sent on
        # the first Status it hears, went to an honest peer.
        wanted = behind + SYNC_BATCH + 5
        wait_for(lambda: net.height(0) >= wanted, 90, "a sync batch and more while node 2 is stopped")
        log_path = net.root / "node2.log"
        log_start = log_path.stat().st_size
        net.start(2)
        started = time.monotonic()
        target = net.height(0)
        wait_for(lambda: net.height(2) >= target, 60, "node 2 to catch up past the hostile replies")
        assert net.procs[2].poll() is None, "node 2 halted"
        status = net.status(2)
        assert status is not None
        faults = status["consensus"]["peer_faults"]
        # The hostile replies reached node 2 and were counted against the hostile peer only.
        assert len(faults) == 1 and sum(faults.values()) >= 1, faults
        # Each is counted, but a peer's faults are logged once per kind every 10 s, not per
        # message (docs/operations.md): a hostile peer cannot flood the log.
        text = log_path.read_bytes()[log_start:].decode(errors="replace")
        lines = text.count("is not its certified header's")
        assert lines <= 2 + (time.monotonic() - started) / 10, (lines, faults)
        RATES["bad-sync"] = _block_rate(net, 6.0)
    finally:
        SENT["bad-sync"] = attacker.stop()
    assert SENT["bad-sync"] > 0


def test_no_fork_and_every_commit_everywhere(net: Network, load: list[Load]) -> None:
    committed: dict[str, int] = {}
    for one in load:
        committed.update(one.committed)
        assert not one.errors, one.errors[:5]
    # Every height's block hash agrees on the honest nodes; a sample of the committed
    # transactions (every tenth) is on each of them at the height its receipt named.
    sample = dict(sorted(committed.items())[::10])
    assert len(sample) >= 10, f"only {len(committed)} transactions committed under attack"
    _check_agreement(net, sample, HONEST)
    # Nothing the hostile node sent raised past an honest node's readers, or broke its work.
    for i in HONEST:
        text = (net.root / f"node{i}.log").read_text(errors="replace")
        assert "Traceback" not in text and " ERROR " not in text, log_excerpt(text, 0)[:3000]
    print("\nblock rates (blocks/s): " + json.dumps({k: round(v, 2) for k, v in RATES.items()}))
    print("hostile sends: " + json.dumps(SENT))
