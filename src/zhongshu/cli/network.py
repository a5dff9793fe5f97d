"""Several node processes on this machine: ``zhongshu up --nodes N`` and ``network init``."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from rich.console import Console

from zhongshu.hub.homes import init_hub
from zhongshu.ledger.genesis import load_genesis
from zhongshu.node.home import load_home


class NetworkError(RuntimeError):
    """The network's homes are missing, inconsistent, or a node failed to start."""


def node_homes(root: Path) -> list[Path]:
    homes = sorted(
        (p for p in root.glob("node*") if (p / "genesis.json").exists()),
        key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else 1 << 30,
    )
    return homes


def ensure_network(
    root: Path, nodes: int, suite: str, base_port: int, now_ms: int
) -> tuple[list[Path], bool]:
    """The homes of an N-node network under ``root``, created on first use (as a hub: the
    hub chain on every node, ``zhongshu.hub.homes``); an existing network is resumed as it is."""
    if (root / "genesis.json").exists():
        raise NetworkError(f"{root} holds a single-node chain; pick another --home for {nodes} nodes")
    homes = node_homes(root)
    if not homes:
        return init_hub(root, nodes, suite, base_port, now_ms), True
    if len(homes) != nodes:
        raise NetworkError(f"{root} holds a network of {len(homes)} nodes, not {nodes}")
    return homes, False


def _ready(url: str, chain_id: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/chains/{chain_id}/status", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


AfterReady = Callable[[list[str]], list[str]]
"""Run once every node serves, with their API URLs; returns more lines for the banner."""


def run_network(
    root: Path,
    homes: list[Path],
    created: bool,
    console: Console,
    after_ready: AfterReady | None = None,
) -> int:
    """Start one process per home, print the URLs, stop them all on Ctrl-C; return the exit code."""
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM stops the network like Ctrl-C: every node gets SIGINT and is waited for.
    signal.signal(signal.SIGTERM, on_term)
    logs = []
    code = 0
    try:
        for home in homes:
            config, _, _ = load_home(home)
            urls.append(f"http://{config.api_host}:{config.api_port}")
            log = open(home / "node.log", "ab")  # noqa: SIM115
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "zhongshu", "node", "start", "--home", str(home)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
        genesis = load_genesis(homes[0] / "genesis.json")
        deadline = time.monotonic() + 60
        pending = set(range(len(homes)))
        while pending:
            for i in list(pending):
                if procs[i].poll() is not None:
                    raise NetworkError(
                        f"node{i} exited with {procs[i].returncode}; see {homes[i] / 'node.log'}"
                    )
                if _ready(urls[i], genesis.chain_id):
                    pending.discard(i)
            if time.monotonic() > deadline:
                raise NetworkError(f"nodes {sorted(pending)} not serving after 60 s")
            time.sleep(0.1)
        extra = after_ready(urls) if after_ready is not None else []
        console.print(
            f"[bold green]zhongshu[/] {'created' if created else 'resumed'} chain "
            f"[bold]{genesis.chain_id}[/] (suite {genesis.suite}) on {len(homes)} validator nodes in {root}"
        )
        for i, url in enumerate(urls):
            console.print(f"  node{i}  API {url}/v1/chains/{genesis.chain_id}/status   OpenAPI {url}/docs")
        console.print(f"  genesis  {homes[0] / 'genesis.json'}")
        for line in extra:
            console.print(line, highlight=False)
        console.print("Press Ctrl-C to stop.")
        sys.stdout.flush()
        while True:
            for i, p in enumerate(procs):
                if p.poll() is not None:
                    console.print(f"node{i} exited with {p.returncode}; see {homes[i] / 'node.log'}")
                    code = 1
                    raise KeyboardInterrupt
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        # One stop is enough: further signals while the nodes stop must not cut the cleanup short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()
    console.print("[bold]stopped[/]; data kept in", str(root))
    return code
