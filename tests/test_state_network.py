"""Four real node processes killed with SIGKILL under load and restarted: the state map holds.

Every node builds its block headers' ``state_root`` from its own sparse Merkle tree
(docs/state-map.md). Deposits run from client threads; all four processes are killed with
SIGKILL while blocks are being made, then restarted on their homes. Once the chain has gone past
the kill, every node must hold the same state root and block hash at every height from 1 to the
tip, serve every deposit committed before the kill, and prove old heights: a digest deposited
before the kill is absent at its height - 1 and present at its height and at the tip, on every
node, and the bundles fetched before the kill still verify after the restart (in Python and with
``zhongshu verify``). Checked only through the API and the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import cli_env, genesis_hash_of, wait_for
from test_network import N, Network, all_connected, running_network
from zhongshu.codec import decode
from zhongshu.contracts.evidence import digest_key
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.ledger.evidence_args import EvidenceRecord
from zhongshu.ledger.genesis import load_genesis
from zhongshu.ledger.hashing import compute_tx_hash
from zhongshu.ledger.proof import verify_state_bundle
from zhongshu.ledger.types import Genesis
from zhongshu.node.txcheck import tx_to_json
from zhongshu.sdk.client import evidence_tx

pytestmark = pytest.mark.slow

FAR = 1_000_000
"""``valid_until`` of every deposit: never the reason one fails."""
CLIENTS = 3
"""Client threads depositing at once."""
BATCH = 8
"""Deposits per request."""
PROVEN = 3
"""Deposits made before the kill whose proofs at old heights are checked on every node."""


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


def _get(http: httpx.Client, url: str, **params: Any) -> dict[str, Any]:
    r = http.get(url, params=params)
    assert r.status_code == 200, (url, params, r.text)
    return dict(r.json())


def _evidence_at(http: httpx.Client, net: Network, i: int, digest: bytes, height: int) -> dict[str, Any]:
    """Node ``i``'s answer whether ``digest`` was deposited as of ``height``, with its bundle."""
    return _get(http, f"{net.url(i)}/evidence/{digest.hex()}", height=height, proof="true")


def _check_roots(net: Network, tip: int) -> None:
    """Every node holds the same state root and block hash at every height 1..tip."""
    with httpx.Client(timeout=5) as http:
        for height in range(1, tip + 1):
            blocks = [_get(http, f"{net.url(i)}/blocks/{height}") for i in range(N)]
            roots = {b["header"]["state_root"] for b in blocks}
            hashes = {b["hash"] for b in blocks}
            assert len(roots) == 1, f"state roots differ at height {height}: {roots}"
            assert len(hashes) == 1, f"block hashes differ at height {height}: {hashes}"


def _check_answer(
    answer: dict[str, Any], genesis: Genesis, digest: bytes, height: int, present: bool
) -> None:
    """An evidence answer at ``height`` says ``present`` and its bundle proves exactly that."""
    assert answer["height"] == height and answer["present"] is present, answer
    proven = verify_state_bundle(answer["proof"], trusted=genesis)
    assert proven.trusted and proven.height == height and proven.key == digest_key(digest)
    assert proven.signed_power * 3 > proven.total_power * 2
    if present:
        assert proven.evidence is not None and proven.evidence.digest == digest
        assert answer["record"]["height"] == proven.evidence.height <= height
    else:
        assert proven.value is None and proven.evidence is None and answer["record"] is None


def _verify_with_cli(bundle: dict[str, Any], path: Path, genesis_path: Path) -> None:
    path.write_text(json.dumps(bundle))
    run = subprocess.run(
        [sys.executable, "-m", "zhongshu", "verify", str(path), "--trust", str(genesis_path)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
        check=False,
    )
    assert run.returncode == 0 and "VALID" in run.stdout, run.stdout + run.stderr


def test_all_four_killed_under_load_agree_on_every_state_root_and_prove_old_heights(
    network: Network, tmp_path: Path
) -> None:
    net = network
    genesis_path = net.root / "node0" / "genesis.json"
    genesis = load_genesis(genesis_path)
    key = get_suite("sm").generate_private_key()
    with Deposits(net, key) as load:
        wait_for(lambda: load.count() >= 150, 40, "150 deposits before the kill", 0.05)
        with load.lock:
            before_kill = dict(load.committed)
        # A few deposits of different heights (past block 1, so that height - 1 is a block),
        # with their bundles at height - 1 (absent) and height (present) fetched now.
        by_height = {h: d for d, h in sorted(before_kill.items(), key=lambda item: item[1]) if h >= 2}
        proven = [by_height[h] for h in sorted(by_height)[:: max(1, len(by_height) // PROVEN)]][:PROVEN]
        assert proven, f"no deposit past block 1 among {len(before_kill)}"
        with httpx.Client(timeout=10) as http:
            saved = {
                (d, h): _evidence_at(http, net, 0, d, h)
                for d in proven
                for h in (before_kill[d] - 1, before_kill[d])
            }
        # SIGKILL all four while deposits are in flight.
        killed_at = max(net.height(i) for i in range(N))
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
    _check_roots(net, tip)
    with httpx.Client(timeout=10) as http:
        # Nothing committed before the kill is lost: every node serves each of those deposits.
        for digest, height in before_kill.items():
            for i in range(N):
                record = _get(http, f"{net.url(i)}/evidence/{digest.hex()}")
                assert record["height"] == height, (i, digest.hex(), record)
        # Old heights are proven on every node: absent before the deposit, present at it and at the tip.
        for digest in proven:
            height = before_kill[digest]
            for i in range(N):
                _check_answer(
                    _evidence_at(http, net, i, digest, height - 1), genesis, digest, height - 1, False
                )
                _check_answer(_evidence_at(http, net, i, digest, height), genesis, digest, height, True)
                _check_answer(_evidence_at(http, net, i, digest, tip), genesis, digest, tip, True)
            # The state route reads the same key: the value is the record's canonical bytes.
            state = _get(http, f"{net.url(1)}/state/{digest_key(digest).hex()}", height=height, proof="true")
            assert state["present"] and state["key"] == digest_key(digest).hex()
            stored = decode(bytes.fromhex(state["value"]), EvidenceRecord)
            assert stored.digest == digest and stored.height == height
            assert verify_state_bundle(state["proof"], trusted=genesis).value == bytes.fromhex(state["value"])
    # The bundles fetched before the kill still verify after it, and prove the same blocks the
    # restarted nodes serve.
    for (digest, height), answer in saved.items():
        _check_answer(answer, genesis, digest, height, height == before_kill[digest])
        assert (
            verify_state_bundle(answer["proof"], trusted=genesis).block_hash.hex()
            == (httpx.get(f"{net.url(2)}/blocks/{height}", timeout=5).json()["hash"])
        )
    first = proven[0]
    for height in (before_kill[first] - 1, before_kill[first]):
        _verify_with_cli(saved[(first, height)]["proof"], tmp_path / f"bundle-{height}.json", genesis_path)
