"""``kill -9`` under load: nothing a client was told is committed is ever lost or changed.

A client thread streams evidence transactions (batches and single ones, each with
``?wait=commit``) and records every committed receipt and the proof fetched right after. The
node is killed with SIGKILL mid-stream at three different moments, restarted each time with
``zhongshu node start`` on the same home, and then every recorded transaction must still be
there at the same place with a byte-for-byte equal proof that verifies against the genesis, the
blocks must still chain, and the chain must go on.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from conftest import NodeProcess, genesis_hash_of, wait_for
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.ledger.genesis import load_genesis
from zhongshu.ledger.hashing import compute_tx_hash
from zhongshu.ledger.proof import verify_bundle
from zhongshu.node.txcheck import tx_to_json
from zhongshu.sdk.client import evidence_tx

pytestmark = pytest.mark.slow

BATCH = 20
PER_ROUND = 40
"""Committed transactions each round needs before the kill."""
ROUND_TIMEOUT = 20.0
FAR = 10**9


@dataclass
class Record:
    """What the client was told about one transaction."""

    height: int
    index: int
    proof: bytes | None = None
    """The proof as served right after the commit (None if the kill came first)."""


@dataclass
class Stream:
    """A client thread that submits until told to stop or until the node goes away."""

    url: str
    key: PrivateKey
    genesis_hash: bytes
    committed: dict[str, Record] = field(default_factory=dict)
    phase: str = "idle"
    """What the client is doing right now: 'batch', 'single', 'proof' or 'idle'."""
    sent: int = 0
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.committed)

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=10.0) as http:
                while not self.stop.is_set():
                    size = BATCH if self.sent % 3 != 2 else 1
                    self.sent += 1
                    self._submit(http, size)
        except httpx.TransportError:
            pass  # the node was killed under us: what it had not answered is not recorded
        except BaseException as exc:  # handed to the test thread
            self.error = exc
        finally:
            self.phase = "idle"

    def _submit(self, http: httpx.Client, size: int) -> None:
        txs = [
            evidence_tx(
                self.key,
                "main",
                self.genesis_hash,
                os.urandom(32),
                f"scan-{self.sent}-{i}.jpg",
                FAR,
                {"n": str(i)},
            )
            for i in range(size)
        ]
        body = [tx_to_json(t) for t in txs] if size > 1 else tx_to_json(txs[0])
        self.phase = "batch" if size > 1 else "single"
        response = http.post("/txs", json=body, params={"wait": "commit", "timeout": "10"})
        assert response.status_code == 200, response.text
        receipts = response.json()["receipts"]
        assert len(receipts) == size
        with self.lock:
            for r in receipts:
                assert r["receipt"]["status"] == "ok", r
                self.committed[r["tx_hash"]] = Record(r["height"], r["index"])
        self.phase = "proof"
        for r in receipts:
            proof = http.get(f"/txs/{r['tx_hash']}/proof")
            assert proof.status_code == 200, proof.text
            self.committed[r["tx_hash"]].proof = proof.content
        self.phase = "idle"


def check_recovered(node: NodeProcess, committed: dict[str, Record], genesis: Any) -> int:
    """Everything recorded is intact; the blocks chain; return the tip."""
    tip = node.status()["height"]
    assert tip >= max(r.height for r in committed.values())
    with httpx.Client(base_url=node.api(), timeout=30.0) as http:
        for tx_hash, record in committed.items():
            view = http.get(f"/txs/{tx_hash}").json()
            assert view["status"] == "committed", view
            assert (view["height"], view["index"]) == (record.height, record.index), tx_hash
            proof = http.get(f"/txs/{tx_hash}/proof")
            assert proof.status_code == 200, proof.text
            if record.proof is not None:
                assert proof.content == record.proof, f"proof of {tx_hash} changed"
            result = verify_bundle(json.loads(proof.content), trusted=genesis)
            assert (result.tx_hash.hex(), result.height) == (tx_hash, record.height)

        status = http.get("/status").json()
        prev_hash = status["genesis_hash"]
        for height in range(1, tip + 1):
            block = http.get(f"/blocks/{height}").json()
            assert block["height"] == height
            assert block["header"]["prev_hash"] == prev_hash, f"block {height} does not follow {height - 1}"
            assert block["tx_count"] == len(block["txs"]) >= 1
            prev_hash = block["hash"]
        assert prev_hash == status["latest_block_hash"]
    return tip


def commit_one(node: NodeProcess, key: PrivateKey, timeout: float = 10.0) -> int:
    """Commit one fresh transaction; return its height."""
    tx = evidence_tx(
        key, "main", genesis_hash_of(node.genesis_path), os.urandom(32), "after-restart.txt", FAR
    )
    params = {"wait": "commit", "timeout": str(timeout)}
    response = httpx.post(node.api("/txs"), json=tx_to_json(tx), params=params, timeout=timeout + 20)
    assert response.status_code == 200, response.text
    return int(response.json()["receipts"][0]["height"])


@pytest.mark.parametrize("suite", ["sm"])
def test_kill_9_mid_stream_loses_nothing_committed(node_factory: Any, suite: str) -> None:
    node = node_factory(suite=suite)
    genesis = load_genesis(node.genesis_path)
    key = get_suite(suite).generate_private_key()
    committed: dict[str, Record] = {}
    # Three moments: a batch in flight, a single transaction in flight, proofs being fetched.
    for round_no, moment in enumerate(("batch", "single", "proof")):
        stream = Stream(node.api(), key, genesis_hash_of(node.genesis_path))
        client = threading.Thread(target=stream.run, name=f"client-{round_no}", daemon=True)
        client.start()
        wait_for(
            lambda s=stream, m=moment, c=client: (
                (s.count() >= PER_ROUND and s.phase == m) or s.error or not c.is_alive()
            ),
            ROUND_TIMEOUT,
            f"{PER_ROUND} commits and the client in phase {moment!r}",
            interval=0.001,
        )
        assert stream.error is None, stream.error
        assert client.is_alive(), "the client stopped before the kill"
        node.kill()
        stream.stop.set()
        client.join(15)
        assert not client.is_alive()
        assert stream.error is None, f"{stream.error!r}\n{node.log()}"
        with stream.lock:
            committed.update(stream.committed)
        assert len(committed) >= PER_ROUND * (round_no + 1)

        node.restart()
        tip = check_recovered(node, committed, genesis)
        assert commit_one(node, key) > tip


def test_restart_after_a_crash_between_signing_and_storing(node: NodeProcess) -> None:
    """The crash window a kill -9 hits now and then, made certain by the node's fault point.

    The proposal is written ahead of the signature, and the signer persists its precommit
    before the block is stored. Dying right after signing leaves signer_state.json one height
    above the store; on restart the node must re-propose the very block it signed (never sign
    another one at that height) and commit it, with the transaction the client sent.
    """
    key = get_suite("sm").generate_private_key()
    tip = commit_one(node, key)
    assert node.stop() == 0, node.log()
    node.restart({"ZHONGSHU_CRASH_POINT": "after-sign"})
    tx = evidence_tx(
        key, "main", genesis_hash_of(node.genesis_path), os.urandom(32), "in-the-window.txt", FAR
    )
    tx_hash = compute_tx_hash(get_suite("sm").hasher(), tx).hex()
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(node.api("/txs"), json=tx_to_json(tx), params={"wait": "commit"}, timeout=10)
    assert node.proc is not None
    assert node.proc.wait(10) == 70, node.log()
    signed = json.loads((node.home / "signer_state.json").read_text())
    assert signed["height"] == tip + 1

    node.restart()
    found = wait_for(
        lambda: (
            (r := httpx.get(node.api(f"/txs/{tx_hash}"), timeout=5)).status_code == 200
            and r.json()["status"] == "committed"
            and r.json()
        ),
        10,
        "the signed-but-unstored block to be committed after restart",
    )
    assert found["height"] == tip + 1
    block = httpx.get(node.api(f"/blocks/{tip + 1}"), timeout=5).json()
    assert block["hash"] == signed["block_hash"], "the node committed a block other than the one it signed"
    assert commit_one(node, key, timeout=5.0) == tip + 2
    assert node.stop() == 0, node.log()
