"""Four real node processes killed with SIGKILL under load and restarted: the state map holds.

Every node builds its block headers' ``state_root`` from its own sparse Merkle tree
(docs/state-map.md). Deposits run from client threads; all four processes are killed with
SIGKILL while blocks are being made, then restarted on their homes. Once the chain has gone past
the kill, every node must hold the same state root and block hash at every height from 1 to the
tip. Checked only through the API.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import genesis_hash_of, wait_for
from test_network import N, Network, all_connected, running_network
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.ledger.hashing import compute_tx_hash
from zhongshu.node.txcheck import tx_to_json
from zhongshu.sdk.client import evidence_tx

pytestmark = pytest.mark.slow

FAR = 1_000_000
"""``valid_until`` of every deposit: never the reason one fails."""
CLIENTS = 3
"""Client threads depositing at once."""
BATCH = 8
"""Deposits per request."""


class Deposits:
    """Client threads that deposit random digests in batches through the live nodes, in turn,
    and record the height at which each digest committed."""

    def __init__(self, net: Network, key: PrivateKey) -> None:
        self.net = net
        self.key = key
        self.genesis_hash = genesis_hash_of(net.root / "node0" / "genesis.json")
        self.hasher = get_suite("sm").hasher()
        self.committed: dict[bytes, int] = {}
        """Digest -> height of its block, for every deposit with a committed receipt."""
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self.run, args=(c,), daemon=True) for c in range(CLIENTS)]

    def count(self) -> int:
        with self.lock:
            return len(self.committed)

    def run(self, client: int) -> None:
        n = 0
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                live = self.net.running()
                if not live:
                    # Every process is down (killed): wait for the restart without spinning.
                    self.stop.wait(0.05)
                    continue
                i = live[(client + n) % len(live)]
                n += 1
                digests = [os.urandom(32) for _ in range(BATCH)]
                txs = [
                    evidence_tx(self.key, "main", self.genesis_hash, d, f"load-{client}-{n}", FAR)
                    for d in digests
                ]
                try:
                    r = http.post(
                        f"{self.net.url(i)}/txs",
                        json=[tx_to_json(tx) for tx in txs],
                        params={"wait": "commit", "timeout": "5"},
                    )
                except httpx.HTTPError:
                    # A node killed mid-request, or not serving yet after its restart.
                    self.stop.wait(0.05)
                    continue
                if r.status_code == 200:
                    heights = {e["tx_hash"]: e["height"] for e in r.json()["receipts"]}
                    with self.lock:
                        for d, tx in zip(digests, txs, strict=True):
                            self.committed[d] = heights[compute_tx_hash(self.hasher, tx).hex()]
                elif r.status_code not in (503, 504):
                    self.errors.append(f"{r.status_code} {r.text[:200]}")

    def __enter__(self) -> Deposits:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(20)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    with running_network(tmp_path, stop="kill") as net:
        yield net


def _block(http: httpx.Client, net: Network, i: int, height: int) -> dict[str, Any]:
    r = http.get(f"{net.url(i)}/blocks/{height}")
    assert r.status_code == 200, (i, height, r.text)
    return dict(r.json())


def test_all_four_killed_under_load_agree_on_every_state_root(network: Network) -> None:
    net = network
    key = get_suite("sm").generate_private_key()
    with Deposits(net, key) as load:
        wait_for(lambda: load.count() >= 150, 40, "150 deposits before the kill", 0.05)
        # SIGKILL all four while deposits are in flight.
        killed_at = max(net.height(i) for i in range(N))
        with load.lock:
            before_kill = dict(load.committed)
        for i in range(N):
            net.kill(i)
        for i in range(N):
            net.start(i)
        wait_for(lambda: all_connected(net), 60, "four nodes back after SIGKILL", 0.1)
        # The load resumes and the chain goes past the kill on every node.
        wait_for(lambda: load.count() >= len(before_kill) + 100, 30, "100 deposits after the restart", 0.05)
        wait_for(
            lambda: min(net.height(i) for i in range(N)) > killed_at + 2,
            30,
            f"every node past the kill height {killed_at}",
            0.1,
        )
    assert not load.errors, load.errors
    tip = min(net.height(i) for i in range(N))
    print(f"{load.count()} deposits ({len(before_kill)} before the kill at height {killed_at}); tip {tip}")
    with httpx.Client(timeout=5) as http:
        for height in range(1, tip + 1):
            blocks = [_block(http, net, i, height) for i in range(N)]
            roots = {b["header"]["state_root"] for b in blocks}
            hashes = {b["hash"] for b in blocks}
            assert len(roots) == 1, f"state roots differ at height {height}: {roots}"
            assert len(hashes) == 1, f"block hashes differ at height {height}: {hashes}"
    # Nothing committed before the kill is lost: every node serves each of those deposits.
    with httpx.Client(timeout=5) as http:
        for digest, height in before_kill.items():
            for i in range(N):
                r = http.get(f"{net.url(i)}/evidence/{digest.hex()}")
                assert r.status_code == 200 and r.json()["height"] == height, (i, digest.hex(), r.text)
