"""An idle BFT chain makes no blocks (only a heartbeat block per minute), and wakes for a transaction.

Four real node processes. With nothing submitted the height stays put over a window in which
the old behaviour (an empty block about every second) would have made several; one deposit is
committed within seconds, by whichever gateway takes it; then the chain is quiet again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import genesis_hash_of, wait_for
from test_network import Network, running_network
from zhongshu.crypto import get_suite
from zhongshu.node.txcheck import tx_to_json
from zhongshu.sdk.client import evidence_tx

pytestmark = pytest.mark.slow

QUIET = 6.0
"""Seconds watched for blocks on an idle chain (the old behaviour made about six)."""


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    with running_network(tmp_path, stop="kill") as network:
        yield network


def _quiet_heights(net: Network) -> tuple[list[int], list[int]]:
    before = [net.height(i) for i in range(4)]
    time.sleep(QUIET)
    return before, [net.height(i) for i in range(4)]


def test_idle_chain_makes_no_blocks_and_wakes_for_a_transaction(net: Network) -> None:
    before, after = _quiet_heights(net)
    assert before == after, f"blocks were made with nothing submitted: {before} -> {after}"
    assert all(net.status(i)["consensus"]["idle"] for i in range(4))  # type: ignore[index]
    key = get_suite("sm").generate_private_key()
    genesis_hash = genesis_hash_of(net.root / "node0" / "genesis.json")
    for gateway in (2, 0):
        tx = evidence_tx(key, "main", genesis_hash, os.urandom(32), f"wake-{gateway}", 1_000_000)
        started = time.monotonic()
        wait = {"wait": "commit", "timeout": "20"}
        r = httpx.post(f"{net.url(gateway)}/txs", json=tx_to_json(tx), params=wait, timeout=30)
        assert r.status_code == 200, r.text
        took = time.monotonic() - started
        assert took < 10, f"a deposit on an idle chain took {took:.1f} s"
        height = r.json()["receipts"][0]["height"]
        wait_for(lambda h=height: all(net.height(i) >= h for i in range(4)), 20, "every node at the deposit")
        # Quiet again once the deposit is in.
        before, after = _quiet_heights(net)
        assert before == after, f"blocks after the deposit with nothing pending: {before} -> {after}"


def test_heartbeat_blocks_keep_an_idle_chain_moving(tmp_path: Path) -> None:
    """With ``heartbeat_ms`` 2000 in every node's config.json, empty blocks come every ~2 s."""

    def heartbeat_2s(home: Path) -> None:
        doc = json.loads((home / "config.json").read_text())
        doc["heartbeat_ms"] = 2000
        (home / "config.json").write_text(json.dumps(doc))

    with running_network(tmp_path, heartbeat_2s, stop="kill") as network:
        wait_for(lambda: network.height(0) >= 3, 30, "three heartbeat blocks")
        times = [httpx.get(f"{network.url(0)}/blocks/{h}", timeout=5).json()["time"] for h in (2, 3)]
        # Heartbeat blocks are about heartbeat_ms apart (not one a second, not one a minute).
        assert 1500 <= times[1] - times[0] <= 6000, times
