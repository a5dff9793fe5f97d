"""What an operator relies on, against real processes: one process per home, logs with time and
level, clean stops on SIGTERM and SIGINT, backup of a running node and restore.

The log formatter and the health rules are checked directly; everything else goes through the
``zhongshu`` command and the public API. Nothing sleeps to synchronise: waits poll a condition
until a deadline.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import NodeProcess, cli_env, free_base, genesis_hash_of, run_cli, wait_for
from zhongshu.cli.logs import JsonFormatter, TextFormatter
from zhongshu.crypto import get_suite
from zhongshu.ledger.genesis import load_genesis
from zhongshu.node.lock import HomeLocked, acquire_home_lock
from zhongshu.node.monitor import HealthSample, HealthWatch, describe_block
from zhongshu.node.txcheck import tx_to_json
from zhongshu.sdk.client import evidence_tx

FAR = 1_000_000
N = 4
REFUSAL_SECONDS = 1.0
"""A second start on a home in use exits within this beyond the time ``zhongshu --help`` takes
(the interpreter and the CLI's imports; well under a second on an idle machine)."""
STOP_SECONDS = 10.0
"""Every process exits within this of a stop signal."""
LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) zhongshu\.\S+ "
)
BLOCK_LINE = re.compile(LINE.pattern + r"block (\d+) [0-9a-f]{12} txs \d+( round \d+)? \+\d+ ms$")


# -- helpers ------------------------------------------------------------------------------


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _status(url: str) -> dict[str, Any] | None:
    try:
        r = httpx.get(f"{url}/v1/chains/main/status", timeout=2)
    except httpx.HTTPError:
        return None
    return dict(r.json()) if r.status_code == 200 else None


def _fingerprint(home: Path) -> dict[str, tuple[int, int, str]]:
    """Size, mtime and SHA-256 of every file in a home, the lock file aside."""
    out = {}
    for path in sorted(home.rglob("*")):
        if path.is_file() and path.name != "LOCK":
            st = path.stat()
            out[str(path.relative_to(home))] = (
                st.st_size,
                st.st_mtime_ns,
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
    return out


def _timed_cli(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = run_cli(*args, timeout=30)
    return result, time.monotonic() - started


def _assert_refused_fast(args: list[str], what: str) -> None:
    baseline = _timed_cli("--help")[1]
    result, elapsed = _timed_cli(*args)
    assert result.returncode == 1, f"{what}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "is in use by another process (pid " in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert elapsed < baseline + REFUSAL_SECONDS, (
        f"{what} took {elapsed:.2f} s to refuse (--help {baseline:.2f} s)"
    )


class Load:
    """A client thread that deposits evidence through the given APIs, one commit wait at a time."""

    def __init__(self, urls: list[str], genesis: Path) -> None:
        """Load the chain of ``genesis`` (on a hub: the hub chain, which takes evidence from any
        signer without an application's signature)."""
        self.urls = urls
        self.key = get_suite("sm").generate_private_key()
        self.genesis_hash = genesis_hash_of(genesis)
        self.chain = load_genesis(genesis).chain_id
        self.committed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        n = 0
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                n += 1
                tx = evidence_tx(self.key, self.chain, self.genesis_hash, os.urandom(32), f"load-{n}", FAR)
                try:
                    r = http.post(
                        f"{self.urls[n % len(self.urls)]}/v1/chains/{self.chain}/txs",
                        json=tx_to_json(tx),
                        params={"wait": "commit", "timeout": "5"},
                    )
                except httpx.HTTPError:
                    self.stop.wait(0.05)
                    continue
                if r.status_code == 200:
                    self.committed += 1

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(20)


class Nodes:
    """Four ``node start`` processes of one network, each logging to ``nodeI.log`` beside it."""

    def __init__(self, root: Path, base: int) -> None:
        self.root = root
        self.base = base
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def home(self, i: int) -> Path:
        return self.root / f"node{i}"

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.base + i}"

    def start(self, i: int) -> None:
        with open(self.root / f"node{i}.log", "ab") as log:
            self.procs[i] = subprocess.Popen(
                [sys.executable, "-m", "zhongshu", "node", "start", "--home", str(self.home(i))],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=cli_env(),
            )

    def stop(self, i: int, sig: signal.Signals) -> int:
        """Send ``sig``; the exit status, which must come within STOP_SECONDS."""
        self.procs[i].send_signal(sig)
        return self.procs[i].wait(STOP_SECONDS)

    def height(self, i: int) -> int:
        s = _status(self.url(i))
        return int(s["height"]) if s else -1

    def block_hash(self, i: int, height: int) -> str:
        return str(httpx.get(f"{self.url(i)}/v1/chains/main/blocks/{height}", timeout=5).json()["hash"])

    def log(self, i: int) -> str:
        return (self.root / f"node{i}.log").read_text(errors="replace")

    def teardown(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    base = free_base(N)
    init = run_cli("network", "init", "--nodes", str(N), "--out", tmp_path / "net", "--base-port", str(base))
    assert init.returncode == 0, init.stderr
    net = Nodes(tmp_path / "net", base)
    for i in range(N):
        net.start(i)
    try:
        wait_for(
            lambda: all(
                (s := _status(net.url(i))) and len(s["consensus"]["peers"]) == N - 1 for i in range(N)
            ),
            90,
            "four nodes serving and connected to each other",
        )
        yield net
    finally:
        net.teardown()


# -- the lock -----------------------------------------------------------------------------


def test_a_home_lock_is_exclusive_and_dies_with_its_process(tmp_path: Path) -> None:
    with acquire_home_lock(tmp_path) as held:
        # Another open of the lock file (as another process would) is refused, naming the holder.
        with pytest.raises(HomeLocked) as refused:
            acquire_home_lock(tmp_path)
        assert refused.value.pid == os.getpid()
        assert str(tmp_path) in str(refused.value)
        assert held.home == tmp_path
    acquire_home_lock(tmp_path).release()
    # A holder killed with SIGKILL leaves the lock file, and the lock free.
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from zhongshu.node.lock import acquire_home_lock;"
            "lock = acquire_home_lock(Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=cli_env(),
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
            with pytest.raises(HomeLocked) as refused:
                acquire_home_lock(tmp_path)
            assert refused.value.pid == holder.pid
        finally:
            holder.kill()
            holder.wait(10)
    acquire_home_lock(tmp_path).release()


@pytest.mark.slow
def test_a_second_start_on_a_home_in_use_is_refused_at_once(node: NodeProcess) -> None:
    key = get_suite("sm").generate_private_key()
    genesis_hash = genesis_hash_of(node.genesis_path)
    tx = evidence_tx(key, "main", genesis_hash, os.urandom(32), "before", FAR)
    r = httpx.post(
        node.api("/txs"), json=tx_to_json(tx), params={"wait": "commit", "timeout": "30"}, timeout=40
    )
    assert r.status_code == 200, r.text
    before = _fingerprint(node.home)
    log_before = node.log_path.read_bytes()
    assert "data/data.mdb" in before and "signer_state.json" in before, before
    for args, what in [
        (["node", "start", "--home", node.home, "--port", str(node.port)], "node start"),
        (["up", "--nodes", "1", "--home", node.home, "--port", str(node.port)], "up"),
        (["restore", node.home / "none.tgz", "--home", node.home], "restore"),
    ]:
        _assert_refused_fast([str(a) for a in args], what)
    # The running node's files are as they were, its log has nothing new, and it serves on.
    assert _fingerprint(node.home) == before
    assert node.log_path.read_bytes() == log_before
    tx = evidence_tx(key, "main", genesis_hash, os.urandom(32), "after", FAR)
    r = httpx.post(
        node.api("/txs"), json=tx_to_json(tx), params={"wait": "commit", "timeout": "30"}, timeout=40
    )
    assert r.status_code == 200, r.text
    # One line per block, with time, level, logger, height, hash prefix, transactions and interval.
    blocks = wait_for(
        lambda: [m for line in node.log_path.read_text().splitlines() if (m := BLOCK_LINE.match(line))],
        10,
        "two block lines in the log",
    )
    assert [int(m.group(2)) for m in blocks][-2:] == [1, 2], node.log()


# -- log format ---------------------------------------------------------------------------


def _record(msg: str, level: int = logging.INFO, fields: dict[str, Any] | None = None) -> logging.LogRecord:
    record = logging.LogRecord("zhongshu.node.blocks", level, __file__, 1, msg, (), None)
    record.created = 1796155989.123456  # 2026-12-01T20:13:09.123Z
    if fields is not None:
        record.fields = fields
    return record


def test_log_lines_carry_time_level_and_logger() -> None:
    message, fields = describe_block(
        {"height": 7, "hash": "ab" * 32, "time": 5200, "tx_count": 3, "round": 1}, 4200
    )
    assert message == "block 7 abababababab txs 3 round 1 +1000 ms"
    text = TextFormatter().format(_record(message, fields=fields))
    assert (
        text
        == "2026-12-01T20:13:09.123Z INFO zhongshu.node.blocks block 7 abababababab txs 3 round 1 +1000 ms"
    )
    doc = json.loads(JsonFormatter().format(_record(message, logging.WARNING, fields)))
    assert doc == {
        "time": "2026-12-01T20:13:09.123Z",
        "level": "WARNING",
        "logger": "zhongshu.node.blocks",
        "message": message,
        "event": "block",
        "height": 7,
        "hash": "ab" * 32,
        "txs": 3,
        "round": 1,
        "interval_ms": 1000,
    }
    # A block event without a round (an older node) leaves it out of the line.
    assert describe_block({"height": 1, "hash": "cd" * 32, "time": 10, "tx_count": 0}, 5)[0] == (
        "block 1 cdcdcdcdcdcd txs 0 +5 ms"
    )


# -- health warnings ----------------------------------------------------------------------

A, B, C = b"a" * 32, b"b" * 32, b"c" * 32


def _sample(height: int, peers: dict[bytes, str], *, expected: bool = True) -> HealthSample:
    return HealthSample(
        height, peers, 1, len(peers), 4, expected, networked=True, consensus="round 0, step propose"
    )


def _messages(lines: list[tuple[int, str, dict[str, Any]]]) -> list[str]:
    return [f"{logging.getLevelName(level)} {message}" for level, message, _ in lines]


def test_a_lost_peer_and_a_missing_quorum_are_warned_about_once_and_their_end_told() -> None:
    watch = HealthWatch()
    peers = {A: "node1", B: "node2", C: "node3"}
    assert watch.on_poll(0.0, _sample(1, peers)) == []
    # node3 goes: 3 of 4 power is still a quorum.
    assert _messages(watch.on_poll(1.0, _sample(2, {A: "node1", B: "node2"}))) == [
        "WARNING peer node3 lost (2 peers connected)"
    ]
    # node2 goes too: 2 of 4 is no quorum; the warning waits out the grace, then is written once.
    assert _messages(watch.on_poll(2.0, _sample(2, {A: "node1"}, expected=False))) == [
        "WARNING peer node2 lost (1 peers connected)"
    ]
    assert watch.on_poll(3.0, _sample(2, {A: "node1"}, expected=False)) == []
    lines = watch.on_poll(7.5, _sample(2, {A: "node1"}, expected=False))
    assert _messages(lines) == [
        "WARNING no quorum: this node and its 1 connected peers hold 2 of 4 voting power, "
        "more than 2/3 is needed to commit"
    ]
    assert lines[0][2] == {"event": "no_quorum", "power": 2, "total_power": 4}
    assert watch.on_poll(30.0, _sample(2, {A: "node1"}, expected=False)) == []
    # A minute on, it is written again; when the peers are back, that is written once.
    assert len(watch.on_poll(68.0, _sample(2, {A: "node1"}, expected=False))) == 1
    assert _messages(watch.on_poll(69.0, _sample(2, peers, expected=False))) == [
        "INFO quorum back: 4 of 4 voting power connected"
    ]
    assert watch.on_poll(70.0, _sample(2, peers, expected=False)) == []


def test_a_height_without_a_commit_is_warned_about_only_while_blocks_are_due() -> None:
    watch = HealthWatch()
    peers = {A: "node1", B: "node2", C: "node3"}
    # Idle (nothing pending, no height running) for a long time: no warning.
    for t in range(0, 100, 10):
        assert watch.on_poll(float(t), _sample(5, peers, expected=False)) == []
    # Work arrives: the wait counts from then.
    assert watch.on_poll(100.0, _sample(5, peers)) == []
    assert watch.on_poll(109.0, _sample(5, peers)) == []
    lines = watch.on_poll(110.0, _sample(5, peers))
    assert _messages(lines) == ["WARNING height 6: no block committed for 10 s (round 0, step propose)"]
    assert watch.on_poll(111.0, _sample(5, peers)) == []
    assert _messages(watch.on_poll(112.0, _sample(6, peers))) == ["INFO no longer stalled at height 6"]
    assert watch.on_poll(113.0, _sample(6, peers)) == []


# -- stopping -----------------------------------------------------------------------------


@pytest.mark.slow
def test_up_with_four_nodes_stops_cleanly_on_every_sigterm_and_sigint(tmp_path: Path) -> None:
    """Each signal goes to the process group, as Ctrl-C in a terminal or a service manager sends it."""
    base = free_base(N)
    hub = tmp_path / "hub"
    out_path = tmp_path / "up.log"
    for run, sig in enumerate([signal.SIGTERM, signal.SIGINT] * 2):
        logs_at = {i: (hub / f"node{i}" / "node.log").stat().st_size if run else 0 for i in range(N)}
        out_at = out_path.stat().st_size if run else 0
        with open(out_path, "ab") as out:
            up = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "zhongshu",
                    "up",
                    "--nodes",
                    str(N),
                    "--home",
                    str(hub),
                    "--port",
                    str(base),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=cli_env(),
                start_new_session=True,
            )
        try:
            wait_for(
                lambda up=up, out_at=out_at: (
                    "Press Ctrl-C" in out_path.read_text()[out_at:] or up.poll() is not None
                ),
                90,
                "the up banner",
            )
            assert up.poll() is None, out_path.read_text()
            if run == 0:
                # While `up` runs, its hub and each node home are taken.
                _assert_refused_fast(["up", "--home", str(hub), "--port", str(base)], "a second up")
                _assert_refused_fast(["node", "start", "--home", str(hub / "node1")], "node start in the hub")
            with Load(
                [f"http://127.0.0.1:{base + i}" for i in range(N)], hub / "node0" / "genesis.json"
            ) as load:
                wait_for(lambda: load.committed >= 3, 60, "three commits under load")
                os.killpg(up.pid, sig)
                code = up.wait(STOP_SECONDS)
        finally:
            if up.poll() is None:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait(10)
        printed = out_path.read_text()[out_at:]
        assert code == 0, f"run {run} ({sig.name}): exit {code}\n{printed}"
        assert f"stopped; data kept in {hub}" in printed, printed
        for i in range(N):
            log = (hub / f"node{i}" / "node.log").read_text(errors="replace")[logs_at[i] :]
            assert "Traceback" not in log, log
            assert re.search(r"INFO zhongshu\.node SIG(TERM|INT) received: stopping", log), log
            assert "INFO zhongshu.node node stopped at height" in log, log
            assert f"stopped; data kept in {hub / f'node{i}' / 'data'}" in log, log
        # No node process is left: nothing listens on the API ports.
        wait_for(
            lambda: not any(_listening(base + i) for i in range(N)), STOP_SECONDS, "the API ports to close"
        )


# -- backup and restore -------------------------------------------------------------------


@pytest.mark.slow
def test_backup_a_running_node_wipe_restore_and_catch_up(nodes: Nodes, tmp_path: Path) -> None:
    net = nodes
    backup = tmp_path / "node2.tgz"
    with Load([net.url(i) for i in (0, 1, 3)], net.home(0) / "genesis.json") as load:
        wait_for(lambda: load.committed >= 10, 60, "ten commits under load")
        made = run_cli("backup", "--home", net.home(2), "--out", backup)
        assert made.returncode == 0, made.stderr
        assert "without keys" in made.stdout, made.stdout
        with tarfile.open(backup) as tar:
            names = tar.getnames()
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert names[0] == "manifest.json" and "data/data.mdb" in names and "genesis.json" in names
        assert not {"node_key.pem", "tls_key.pem", "consensus_signer.bin"} & set(names), names
        assert manifest["height"] >= 1 and manifest["block_hash"]
        wait_for(lambda: net.height(0) >= manifest["height"] + 5, 60, "five blocks past the backup")
        assert net.stop(2, signal.SIGTERM) == 0, net.log(2)
        signer_state = (net.home(2) / "consensus_signer.bin").read_bytes()
        for path in (net.home(2) / "data").iterdir():
            path.unlink()
        # A damaged backup is refused in one line, and leaves the home as it was.
        damaged = tmp_path / "damaged.tgz"
        raw = bytearray(backup.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        damaged.write_bytes(bytes(raw))
        truncated = tmp_path / "truncated.tgz"
        truncated.write_bytes(backup.read_bytes()[: len(raw) // 2])
        for bad in (damaged, truncated):
            refused = run_cli("restore", bad, "--home", net.home(2))
            assert refused.returncode == 1
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0], refused.stderr
            assert list((net.home(2) / "data").iterdir()) == []
        restored = run_cli("restore", backup, "--home", net.home(2))
        assert restored.returncode == 0, restored.stderr
        # A second restore does not overwrite the store without --force.
        again = run_cli("restore", backup, "--home", net.home(2))
        assert again.returncode == 1 and "--force" in again.stderr, again.stderr
        assert (net.home(2) / "consensus_signer.bin").read_bytes() == signer_state
        net.start(2)
        # It catches up with the others while they go on under load.
        target = net.height(0)
        wait_for(lambda: net.height(2) >= target, 90, f"node2 to catch up to height {target}")
        committed = load.committed
        wait_for(lambda: load.committed >= committed + 5, 60, "five more commits with node2 back")
    tip = min(net.height(i) for i in range(N))
    for height in range(1, tip + 1):
        hashes = {net.block_hash(i, height) for i in range(N)}
        assert len(hashes) == 1, f"fork at height {height}: {hashes}"
    for i, sig in enumerate([signal.SIGINT, signal.SIGTERM, signal.SIGINT, signal.SIGTERM]):
        assert net.stop(i, sig) == 0, net.log(i)
        assert "stopped; data kept in" in net.log(i)
