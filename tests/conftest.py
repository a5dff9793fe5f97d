"""Real node processes for the multi-process tests: start, wait until serving, stop, restart.

A node runs as ``python -m zhongshu`` in a fresh home under pytest's tmp directory, on a free
loopback port. Its stdout and stderr go to ``node.log`` beside the home; when a test fails, the
tail of the log of every node it used is added to the report. Nothing here sleeps to
synchronise: each wait polls a condition until a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from zhongshu.crypto import get_suite
from zhongshu.ledger.genesis import load_genesis
from zhongshu.ledger.hashing import compute_genesis_hash

READY_TIMEOUT = 30.0
"""Seconds a node may take from exec to answering its status route."""
STOP_TIMEOUT = 15.0
"""Seconds a node may take to exit after SIGINT before it is killed."""
CLI_TIMEOUT = 60.0
"""Seconds any one CLI command may run."""
LOG_TAIL = 6000
"""Characters of a node's log shown with a failed test."""


_RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\S+ (\w+) ")
"""The start of a node's log record: its time and level."""


def log_excerpt(text: str, tail: int) -> str:
    """A node log for a failure report: every ERROR or CRITICAL record with what follows it up
    to the next record (its traceback), wherever it is in the log, then the last ``tail``
    characters. A tail alone can miss the one error that explains the failure."""
    problems: list[str] = []
    keep = False
    cut = max(0, len(text) - tail)
    for line in text[:cut].splitlines():
        record = _RECORD.match(line)
        if record:
            keep = record.group(1) in ("ERROR", "CRITICAL")
        elif line.startswith("Traceback"):
            keep = True
        if keep:
            problems.append(line)
    head = "\n".join(problems)[-20_000:]
    if head:
        head = f"(errors earlier in the log)\n{head}\n(tail)\n"
    return head + text[cut:]


_LIVE: list[NodeProcess] = []
"""Nodes started and not yet torn down; their logs go with a failure report."""


PORT_LOW, PORT_HIGH = 20000, 32600
"""Ports handed to test nodes: below Linux's ephemeral range (32768-60999), from which every
outbound connection takes its local port, so none can take a port between check and bind."""
_HANDED: set[int] = set()
"""Ports already handed out in this test run (each goes to one node only)."""


def free_ports(offsets: Sequence[int]) -> int:
    """A base port such that base+o is free for every offset o (and not handed out before)."""
    for _ in range(500):
        base = PORT_LOW + int.from_bytes(os.urandom(2), "big") % (PORT_HIGH - PORT_LOW)
        ports = [base + o for o in offsets]
        if any(p in _HANDED or p >= 32768 for p in ports):
            continue
        if all(_is_free(p) for p in ports):
            _HANDED.update(ports)
            return base
    raise RuntimeError("no free port range below the ephemeral ports")


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (outside the ephemeral range)."""
    return free_ports([0])


def free_base(nodes: int) -> int:
    """A base port P whose API ports P+i and P2P ports P+100+i of ``nodes`` nodes are free."""
    return free_ports([*range(nodes), *(100 + i for i in range(nodes))])


def cli_env() -> dict[str, str]:
    """The environment of every child process: unbuffered, wide, no colours, no stray home."""
    env = dict(os.environ)
    env.update({"PYTHONUNBUFFERED": "1", "COLUMNS": "240", "NO_COLOR": "1", "TERM": "dumb"})
    env.pop("ZHONGSHU_HOME", None)
    return env


def run_cli(
    *args: str | Path, timeout: float = CLI_TIMEOUT, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m zhongshu ARGS`` to completion and return its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "zhongshu", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
        cwd=cwd,
        check=False,
    )


def genesis_hash_of(path: Path) -> bytes:
    """The genesis hash of the chain a genesis.json describes: what its transactions sign."""
    genesis = load_genesis(path)
    return compute_genesis_hash(get_suite(genesis.suite).hasher(), genesis)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``condition`` until it returns a truthy value; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class NodeProcess:
    """One node home and the process currently serving it (restartable on the same home)."""

    def __init__(self, home: Path, port: int, *, suite: str = "sm") -> None:
        self.home = home
        self.port = port
        self.suite = suite
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = home.parent / f"{home.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    # -- lifecycle ---------------------------------------------------------------------

    def up(self) -> NodeProcess:
        """First start: ``zhongshu up`` creates the chain in the empty home."""
        return self._spawn(
            ["up", "--nodes", "1", "--home", str(self.home), "--port", str(self.port), "--suite", self.suite]
        )

    def restart(self, extra_env: dict[str, str] | None = None) -> NodeProcess:
        """Start again on the same home with ``zhongshu node start`` (the process must be gone)."""
        assert self.proc is None or self.proc.poll() is not None, "the node is still running"
        args = ["node", "start", "--home", str(self.home), "--port", str(self.port)]
        return self._spawn(args, extra_env)

    def _spawn(self, args: list[str], extra_env: dict[str, str] | None = None) -> NodeProcess:
        self.runs += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== run {self.runs}: zhongshu {' '.join(args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "zhongshu", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=cli_env() | (extra_env or {}),
            )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until GET status answers 200; fail with the log if the process dies first."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as http:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    pytest.fail(f"node exited with {self.proc.returncode} before serving\n{self.log()}")
                try:
                    if http.get(self.status_url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"node not serving after {timeout:g} s\n{self.log()}")
                time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGINT, then wait for the exit (SIGKILL if it hangs); return the exit code."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else 0
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
            pytest.fail(f"node did not stop within {timeout:g} s of SIGINT; killed\n{self.log()}")

    def kill(self) -> None:
        """``kill -9``: no chance to flush or close anything."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)

    def teardown(self) -> None:
        """Stop whatever still runs, never failing: used by fixture finalizers."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)

    # -- access ------------------------------------------------------------------------

    @property
    def status_url(self) -> str:
        return f"{self.url}/v1/chains/main/status"

    @property
    def genesis_path(self) -> Path:
        return self.home / "genesis.json"

    def api(self, path: str = "") -> str:
        """The URL of ``/v1/chains/main`` + ``path``."""
        return f"{self.url}/v1/chains/main{path}"

    def status(self) -> dict[str, Any]:
        response = httpx.get(self.status_url, timeout=10.0)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def genesis_hash(self) -> bytes:
        """The chain's genesis hash from its status: every transaction for it signs this."""
        return bytes.fromhex(self.status()["genesis_hash"])

    def log(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no node log)"
        return f"--- {self.log_path} ---\n{log_excerpt(text, LOG_TAIL)}"


def start_node(base: Path, *, suite: str = "sm", name: str = "home") -> NodeProcess:
    """A node serving a new chain in ``base/name``, ready; registered for failure reports."""
    node = NodeProcess(base / name, free_port(), suite=suite)
    _LIVE.append(node)
    try:
        node.up()
    except BaseException:
        _release(node)
        raise
    return node


def _release(node: NodeProcess) -> None:
    node.teardown()
    if node in _LIVE:
        _LIVE.remove(node)


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """Start any number of fresh nodes in a test; all are stopped at its end."""
    started: list[NodeProcess] = []

    def factory(*, suite: str = "sm") -> NodeProcess:
        node = start_node(tmp_path, suite=suite, name=f"home{len(started)}")
        started.append(node)
        return node

    yield factory
    for node in started:
        _release(node)


@pytest.fixture
def node(node_factory: Callable[..., NodeProcess]) -> NodeProcess:
    """A fresh single-validator node (suite sm) for one test."""
    return node_factory()


@pytest.fixture(scope="module")
def module_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node shared by a module's tests (fast error tests that leave it serving)."""
    node = start_node(tmp_path_factory.mktemp("module-node"))
    yield node
    _release(node)


@pytest.fixture(scope="module")
def module_twins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """Two networks of one node each whose chains share the name ``main``, with two geneses."""
    base = tmp_path_factory.mktemp("twins")
    first = start_node(base, name="network-a")
    try:
        second = start_node(base, name="network-b")
    except BaseException:
        _release(first)
        raise
    yield first, second
    _release(second)
    _release(first)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Attach the tails of the nodes' logs to a failed test's report.

    The nodes are the live ones started here, and any fixture value with a ``logs()`` method
    (a network of processes a test module starts itself).
    """
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for node in _LIVE:
            report.sections.append((f"node log {node.home}", node.log()))
        for name, value in getattr(item, "funcargs", {}).items():
            logs = getattr(value, "logs", None)
            if callable(logs):
                report.sections.append((f"logs of {name}", str(logs())))
