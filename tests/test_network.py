"""Four real node processes on loopback, mutual TLS between them, checked only through the API.

Perturbations: kill -9 the proposer under load, kill -9 a node and restart it, stop two of
four. At the end every transaction that got a committed receipt is on every node, and all
nodes hold identical block hashes at every height.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import cli_env, free_base, genesis_hash_of, log_excerpt, wait_for
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.ledger.genesis import load_genesis
from zhongshu.ledger.proof import verify_bundle
from zhongshu.node.txcheck import tx_to_json
from zhongshu.sdk.client import evidence_tx

FAR = 1_000_000
N = 4


class Network:
    def __init__(self, root: Path, base: int) -> None:
        self.root = root
        self.base = base
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.base + i}/v1/chains/main"

    def start(self, i: int) -> None:
        log = open(self.root / f"node{i}.log", "ab")  # noqa: SIM115
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "zhongshu", "node", "start", "--home", str(self.root / f"node{i}")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=cli_env(),
        )
        log.close()

    def kill(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(10)

    def stop(self, i: int) -> int:
        self.procs[i].send_signal(signal.SIGINT)
        return self.procs[i].wait(20)

    def status(self, i: int) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"{self.url(i)}/status", timeout=2)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def height(self, i: int) -> int:
        s = self.status(i)
        return int(s["height"]) if s else -1

    def running(self) -> list[int]:
        return [i for i, p in self.procs.items() if p.poll() is None]

    def logs(self) -> str:
        return "\n".join(
            f"--- node{i} ---\n" + log_excerpt((self.root / f"node{i}.log").read_text(errors="replace"), 3000)
            for i in range(N)
            if (self.root / f"node{i}.log").exists()
        )


def all_connected(net: Network) -> bool:
    """Every node answers its status and is connected to every other node."""
    for i in range(N):
        s = net.status(i)
        if s is None or len(s.get("consensus", {}).get("peers", [])) != N - 1:
            return False
    return True


@contextmanager
def running_network(
    root: Path, configure: Callable[[Path], None] | None = None, *, stop: str = "sigint"
) -> Iterator[Network]:
    """``network init`` N homes under ``root``, start one process each, wait until every node
    serves and is connected to every other; stop them at the end (SIGINT and wait, or ``kill``).

    ``configure`` may edit each home before its node starts. A setup that fails prints the logs.
    """
    base = free_base(N)
    subprocess.run(
        [sys.executable, "-m", "zhongshu", "network", "init", "--nodes", str(N)]
        + ["--out", str(root / "net"), "--base-port", str(base)],
        check=True,
        capture_output=True,
        env=cli_env(),
    )
    net = Network(root / "net", base)
    for i in range(N):
        if configure is not None:
            configure(root / "net" / f"node{i}")
        net.start(i)
    try:
        try:
            wait_for(lambda: all_connected(net), 60, "four nodes serving and connected to each other")
        except BaseException:
            # Shown with the failed setup (the test's own failures get them from conftest's hook).
            print(net.logs())
            raise
        yield net
    finally:
        if stop == "kill":
            for i in net.running():
                net.kill(i)
        for i in net.running():
            net.procs[i].send_signal(signal.SIGINT)
        for p in net.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    with running_network(tmp_path) as net:
        yield net


class Load:
    """A client thread that deposits evidence through random live nodes and records receipts."""

    def __init__(self, net: Network, key: PrivateKey) -> None:
        self.net = net
        self.key = key
        self.genesis_hash = genesis_hash_of(net.root / "node0" / "genesis.json")
        self.committed: dict[str, int] = {}
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        n = 0
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                live = self.net.running()
                if not live:
                    return
                i = live[n % len(live)]
                n += 1
                tx = evidence_tx(self.key, "main", self.genesis_hash, os.urandom(32), f"load-{n}", FAR)
                try:
                    r = http.post(
                        f"{self.net.url(i)}/txs",
                        json=tx_to_json(tx),
                        params={"wait": "commit", "timeout": "5"},
                    )
                except httpx.HTTPError:
                    continue
                if r.status_code == 200:
                    receipt = r.json()["receipts"][0]
                    self.committed[receipt["tx_hash"]] = receipt["height"]
                elif r.status_code not in (503, 504):
                    self.errors.append(f"{r.status_code} {r.text[:200]}")

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(20)


def _check_agreement(net: Network, committed: dict[str, int], nodes: list[int]) -> None:
    """Every committed transaction is on every node; block hashes are identical at every height."""
    tip = min(net.height(i) for i in nodes)
    # One kept-alive connection per node: the same reads, without a TCP handshake each.
    clients = {i: httpx.Client(base_url=net.url(i), timeout=5) for i in nodes}
    try:
        for height in range(1, tip + 1):
            hashes = {clients[i].get(f"/blocks/{height}").json()["hash"] for i in nodes}
            assert len(hashes) == 1, f"fork at height {height}: {hashes}"
        for tx_hash, height in committed.items():
            for i in nodes:
                r = clients[i].get(f"/txs/{tx_hash}").json()
                assert r["status"] == "committed" and r["height"] == height, (i, tx_hash, r)
    finally:
        for client in clients.values():
            client.close()


def test_kill_proposer_and_restart_a_node(network: Network) -> None:
    net = network
    key = get_suite("sm").generate_private_key()
    with Load(net, key) as load:
        wait_for(lambda: len(load.committed) >= 10, 30, "10 commits under load")
        # kill -9 the proposer of the current round; the others go on.
        status = net.status(0)
        assert status is not None
        proposer = status["consensus"]["proposer"]
        genesis = load_genesis(net.root / "node0" / "genesis.json")
        victim = next(
            i for i, v in enumerate(genesis.validators.validators) if v.public_key.hex() == proposer
        )
        net.kill(victim)
        before = len(load.committed)
        wait_for(lambda: len(load.committed) >= before + 10, 40, "progress after killing the proposer", 0.1)
        # Restart it: it catches up with the others.
        net.start(victim)
        wait_for(
            lambda: net.height(victim) >= min(net.height(i) for i in range(N) if i != victim) > 0,
            40,
            "the restarted node to catch up",
            0.1,
        )
        before = len(load.committed)
        wait_for(lambda: len(load.committed) >= before + 5, 30, "progress with all four again", 0.1)
    assert not load.errors, load.errors
    wait_for(lambda: len({net.height(i) for i in range(N)}) == 1, 20, "all nodes at one height", 0.1)
    _check_agreement(net, load.committed, list(range(N)))
    # A proof from the network carries at least three signatures and verifies against the genesis.
    tx_hash = next(iter(load.committed))
    bundle = httpx.get(f"{net.url(victim)}/txs/{tx_hash}/proof", timeout=5).json()
    assert len(bundle["commit"]["signatures"]) >= 3
    result = verify_bundle(bundle, trusted=genesis)
    assert result.signed_power >= 3 and result.total_power == 4


def test_two_of_four_stopped_halts_without_fork(network: Network) -> None:
    net = network
    key = get_suite("sm").generate_private_key()
    with Load(net, key) as load:
        wait_for(lambda: len(load.committed) >= 5, 30, "5 commits")
    assert net.stop(2) == 0 and net.stop(3) == 0
    stalled = max(net.height(0), net.height(1))
    # With half the power gone no block can gather more than 2/3: a deposit does not commit.
    genesis_hash = genesis_hash_of(net.root / "node0" / "genesis.json")
    tx = evidence_tx(key, "main", genesis_hash, os.urandom(32), "while-halted", FAR)
    r = httpx.post(
        f"{net.url(0)}/txs", json=tx_to_json(tx), params={"wait": "commit", "timeout": "3"}, timeout=15
    )
    assert r.status_code == 504, r.text
    assert max(net.height(0), net.height(1)) <= stalled + 1
    _a_stop_ends_a_commit_wait_with_node_stopping(net, key, genesis_hash)
    # One returns: 3 of 4 is more than 2/3 again, and the pending deposit commits.
    net.start(3)
    tx_hash = _hash_of(tx)
    wait_for(
        lambda: _is_committed(net, 3, tx_hash),
        40,
        "the held deposit to commit once three nodes run",
        0.1,
    )
    _check_agreement(net, load.committed, [0, 1, 3])


def _a_stop_ends_a_commit_wait_with_node_stopping(net: Network, key: PrivateKey, genesis_hash: bytes) -> None:
    """Node 1 is stopped while a client waits for a commit that cannot come: the client gets a
    503 node-stopping problem naming its transaction (not a bare 500 when the stop's grace ends)."""
    tx = evidence_tx(key, "main", genesis_hash, os.urandom(32), "waiting-at-stop", FAR)
    answers: list[httpx.Response] = []

    def wait_for_commit() -> None:
        answers.append(
            httpx.post(
                f"{net.url(1)}/txs",
                json=tx_to_json(tx),
                params={"wait": "commit", "timeout": "30"},
                timeout=40,
            )
        )

    waiter = threading.Thread(target=wait_for_commit)
    waiter.start()
    wait_for(lambda: _is_pending(net, 1, _hash_of(tx)), 10, "the deposit pooled on node 1", 0.05)
    assert net.stop(1) == 0
    waiter.join(20)
    [answer] = answers
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.headers
    problem = answer.json()
    assert problem["type"] == "/problems/node-stopping" and problem["tx_hashes"] == [_hash_of(tx)], problem
    net.start(1)


def _tx_status(net: Network, i: int, tx_hash: str) -> str | None:
    """``pending`` or ``committed`` on node ``i``; None when it does not know it or does not answer."""
    try:
        r = httpx.get(f"{net.url(i)}/txs/{tx_hash}", timeout=2)
    except httpx.HTTPError:
        return None
    return str(r.json()["status"]) if r.status_code == 200 else None


def _is_pending(net: Network, i: int, tx_hash: str) -> bool:
    return _tx_status(net, i, tx_hash) == "pending"


def _is_committed(net: Network, i: int, tx_hash: str) -> bool:
    return _tx_status(net, i, tx_hash) == "committed"


def _hash_of(tx: Any) -> str:
    from zhongshu.ledger.hashing import compute_tx_hash

    return compute_tx_hash(get_suite("sm").hasher(), tx).hex()


def test_up_four_nodes_deposit_and_verify_through_the_cli(tmp_path: Path) -> None:
    """What `make run` does, then the README's next two commands: a four-node hub with the demo
    organization, chain and app; the app deposits through any node; the proof verifies offline
    against the chain's genesis file the node derived from the hub."""
    base = free_base(N)
    home = tmp_path / "hub"
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "zhongshu",
                "up",
                "--nodes",
                "4",
                "--home",
                str(home),
                "--port",
                str(base),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=cli_env(),
        )
    try:
        wait_for(lambda: "Press Ctrl-C" in log_path.read_text() or up.poll() is not None, 90, "the up banner")
        banner = log_path.read_text()
        assert up.poll() is None, banner
        for i in range(4):
            assert f"http://127.0.0.1:{base + i}/v1/chains/hub/status" in banner
        # The banner names the operator key, the demo chain and the demo app's credentials.
        app_file = home / "demo" / "app.json"
        assert f"operator key  {home / 'operator_key.pem'}" in banner
        assert f"http://127.0.0.1:{base}/v1/chains/main/status" in banner
        assert str(app_file) in banner and json.loads(app_file.read_text())["app_id"] in banner
        assert (home / "operator_key.pem").stat().st_mode & 0o077 == 0
        doc = tmp_path / "contract.txt"
        doc.write_text("a contract deposited on a four-node chain\n")
        run = [sys.executable, "-m", "zhongshu"]
        put = subprocess.run(
            [
                *run,
                "evidence",
                "put",
                str(doc),
                "--app",
                str(app_file),
                "--api",
                f"http://127.0.0.1:{base + 2}",
                "--proof-out",
                str(tmp_path / "b.json"),
            ],
            env=cli_env(),
            capture_output=True,
            text=True,
        )
        assert put.returncode == 0, put.stderr
        bundle = json.loads((tmp_path / "b.json").read_text())
        assert len(bundle["commit"]["signatures"]) >= 3
        # Without the app's signature a hub node refuses the deposit on a business chain.
        key = tmp_path / "k.pem"
        assert subprocess.run([*run, "keys", "new", "--out", str(key)], env=cli_env()).returncode == 0
        unsigned = subprocess.run(
            [*run, "evidence", "put", str(doc), "--key", str(key), "--api", f"http://127.0.0.1:{base}"],
            env=cli_env(),
            capture_output=True,
            text=True,
        )
        assert unsigned.returncode == 1 and "app-auth-required" in unsigned.stderr, unsigned.stderr
        verify = subprocess.run(
            [
                *run,
                "verify",
                str(tmp_path / "b.json"),
                "--file",
                str(doc),
                "--trust",
                str(home / "node0" / "chains" / "main" / "genesis.json"),
            ],
            env=cli_env(),
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 0 and "VALID" in verify.stdout, verify.stdout + verify.stderr
        # The README's state proof: the deposit as of the newest block, checked offline.
        check = subprocess.run(
            [
                *run,
                "evidence",
                "check",
                str(doc),
                "--proof-out",
                str(tmp_path / "s.json"),
                "--api",
                f"http://127.0.0.1:{base + 1}",
            ],
            env=cli_env(),
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0 and "deposited at height" in check.stdout, check.stdout + check.stderr
        verify = subprocess.run(
            [
                *run,
                "verify",
                str(tmp_path / "s.json"),
                "--file",
                str(doc),
                "--trust",
                str(home / "node0" / "chains" / "main" / "genesis.json"),
            ],
            env=cli_env(),
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 0 and "VALID" in verify.stdout, verify.stdout + verify.stderr
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(60)
    assert code == 0, log_path.read_text()
    # Ctrl-C on `up` stops every node it started.
    for i in range(4):
        with socket.socket() as s:
            s.bind(("127.0.0.1", base + i))
