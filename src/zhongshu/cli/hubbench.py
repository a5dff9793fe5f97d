"""``zhongshu bench --hub``: what the hub adds, measured on a local four-node hub.

1. **Chain creation.** ``creations`` business chains, one after the other: the time from
   submitting ``hub.chain.create`` to block 1 committed on every node (median and worst).
2. **One chain alone**, loaded through signed application requests (one signature per batch
   request, as an application sends them).
3. **Five chains at once**, each given the one chain's whole load (the same number of
   transactions and batch size), the one chain's requests in flight spread over them (at least
   one each; ``--chain-concurrency`` sets it):
   their summed TPS against the one chain's, the longest time any chain went without a commit
   while all were loaded, and how many of their blocks needed more than one round.
4. **Access overhead.** The same load on one chain, signed and unsigned in turn (five runs:
   signed, unsigned, signed, unsigned, signed), the nodes restarted before each with
   ``app_auth`` set accordingly: mean signed TPS / mean unsigned TPS.

Every figure comes from one run on one machine, so the ratios compare like with like.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from zhongshu.cli.bench import (
    _late_rounds,
    _load,
    _presign_all,
    _stop_nodes,
    _wait_ready,
    free_port_range,
)
from zhongshu.crypto import get_suite, load_private_key_pem
from zhongshu.hub.chains import ChainCreate
from zhongshu.hub.homes import OPERATOR_KEY_FILE, init_hub
from zhongshu.hub.registry import AppRegister, Grant, Quota
from zhongshu.hub.roles import OrgCreate
from zhongshu.ledger.types import ChainParams
from zhongshu.sdk import AppCredentials, Client

NODES = 4
ORG = "bench"
BENCH_QUOTA = Quota(requests_per_second=100_000, txs_per_day=1_000_000_000)
READY_SECONDS = 90.0
ACCESS_RUNS = (True, False, True, False, True)
"""Signed (True) and unsigned runs of the access overhead, in turn."""


@dataclass
class HubBenchResult:
    suite: str
    txs: int
    batch: int
    concurrency: int
    chains: int
    create_seconds: list[float]
    """Submit of each ``hub.chain.create`` to block 1 on every node, in order."""
    create_median: float
    create_worst: float
    single_tps: float
    """One chain alone, signed requests."""
    multi_tps: list[float]
    """Each chain's TPS while all were loaded at once."""
    multi_sum_tps: float
    multi_ratio: float
    """Summed TPS of the chains at once / TPS of one chain alone."""
    multi_longest_gap_s: float
    """The longest time, over all chains, between two commits while all were loaded."""
    multi_concurrency: int
    """Requests in flight per chain while all were loaded."""
    multi_blocks: list[int]
    """Blocks each chain made while all were loaded."""
    multi_late_rounds: list[int]
    """Of those, blocks decided after round 0 (a round timed out first)."""
    signed_tps: list[float]
    """The same load on one chain, signed, in the runs of ACCESS_RUNS (each after a restart)."""
    unsigned_tps: list[float]
    """... and unsigned (app_auth false), in between."""
    access_ratio: float
    """Mean signed TPS / mean unsigned TPS."""
    access_cpu_share: float
    """In the signed runs, the CPU the nodes' gateways spent checking app requests, as a share
    of all the nodes' CPU (their processes and workers)."""
    machine: dict[str, Any] = field(default_factory=dict)


def _start(tmp: Path, homes: list[Path], urls: list[str], chains: list[str]) -> list[subprocess.Popen[bytes]]:
    """One process per hub node; return once each serves the hub chain (peers connected) and ``chains``."""
    procs = []
    for i, home in enumerate(homes):
        with open(tmp / f"node{i}.log", "ab") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "zhongshu", "node", "start", "--home", str(home)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
    deadline = time.monotonic() + READY_SECONDS
    for url, proc in zip(urls, procs, strict=True):
        _wait_ready(url, "hub", proc, deadline, peers=NODES - 1)
        for chain in chains:
            _wait_ready(url, chain, proc, deadline)
    return procs


def _commit(client: Client, key: Any, contract: str, method: str, args: object) -> Any:
    receipt = client.submit(client.sign(key, contract, method, args)).receipts[0]
    if not receipt.ok:
        raise RuntimeError(f"{contract}.{method} failed: {receipt.receipt.error}")
    return receipt


def _height(url: str, chain: str) -> int:
    try:
        answer = httpx.get(f"{url}/v1/chains/{chain}/status", timeout=2)
    except httpx.HTTPError:
        return -1
    return int(answer.json()["height"]) if answer.status_code == 200 else -1


def _create_chain(client: Client, operator: Any, urls: list[str], name: str, suite: str) -> float:
    """Create chain ``name``; seconds from the submit to block 1 on every node."""
    started = time.monotonic()
    nodes = [f"node{i}" for i in range(NODES)]
    _commit(client, operator, "hub.chain", "create", ChainCreate(name, suite, nodes, ChainParams(), [ORG]))
    deadline = started + 60
    while not all(_height(url, name) >= 1 for url in urls):
        if time.monotonic() > deadline:
            raise RuntimeError(f"chain {name} made no block within 60 s")
        time.sleep(0.01)
    return time.monotonic() - started


def _longest_gap(records: list[tuple[float, float, int]], start: float, end: float) -> float:
    """The longest stretch of [start, end] with no batch committed."""
    times = sorted([start, *(done for _, done, _ in records), end])
    return max(b - a for a, b in zip(times, times[1:], strict=False))


def _tps(records: list[tuple[float, float, int]], start: float, end: float) -> float:
    return sum(n for _, _, n in records) / (end - start) if end > start else 0.0


def run_hub_bench(
    *,
    suite: str,
    txs: int,
    batch: int,
    concurrency: int,
    chains: int,
    creations: int,
    console: Console,
    multi_concurrency: int | None = None,
) -> HubBenchResult:
    """The four measures of the module docstring, on a hub started in a temporary directory."""
    get_suite(suite)
    if not 1 <= chains <= creations:
        raise ValueError("--chains must be from 1 to the number of chains created")
    cores = os.cpu_count() or 1
    columns = (TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    names = [f"bench-{i}" for i in range(creations)]
    # The same requests in flight in all, the one chain's spread over the chains (at least one
    # each): on two cores, four nodes under more requests than that do less, not more
    # (docs/performance.md).
    multi_concurrency = multi_concurrency or max(1, concurrency // chains)
    with (
        tempfile.TemporaryDirectory(prefix="zhongshu-hubbench-") as tmp_name,
        Progress(*columns, console=console) as progress,
    ):
        tmp = Path(tmp_name)
        base = free_port_range(NODES)
        homes = init_hub(tmp / "hub", NODES, suite, base, time.time_ns() // 1_000_000)
        urls = [f"http://127.0.0.1:{base + i}" for i in range(NODES)]
        operator = load_private_key_pem((tmp / "hub" / OPERATOR_KEY_FILE).read_bytes())
        admin = get_suite(suite).generate_private_key()
        app_key = get_suite("sm").generate_private_key()
        procs = _start(tmp, homes, urls, [])
        try:
            with Client(urls[0], "hub") as client:
                _initialise(client, operator, admin)
                ctask = progress.add_task("create chain", total=creations)
                create_seconds = []
                for name in names:
                    create_seconds.append(_create_chain(client, operator, urls, name, suite))
                    progress.advance(ctask)
                grants = [Grant(name, "evidence", ["*"]) for name in names[:chains]]
                register = AppRegister(ORG, "bench", app_key.public_bytes(), grants, BENCH_QUOTA)
                app_id = str(_commit(client, admin, "hub.app", "register", register).receipt.result[1])
            app = AppCredentials(app_id, app_key)
            hashes = {name: _genesis_hash(urls[0], name) for name in names[:chains]}

            def presign(name: str, count: int) -> list[bytes]:
                return _presign_all(suite, hashes[name], count, cores, progress, "pre-sign", "msgpack", name)

            alone = presign(names[0], txs)
            together = {name: presign(name, txs) for name in names[:chains]}
            records, start, end = asyncio.run(
                _load(urls, names[0], alone, batch, concurrency, progress, label="one chain", app=app)
            )
            single_tps = _tps(records, start, end)
            heights = {name: _height(urls[0], name) for name in together}
            multi = asyncio.run(_load_all(urls, together, batch, multi_concurrency, progress, app))
            blocks = [_height(urls[0], name) - heights[name] for name in together]
            late = [
                _late_rounds(urls[0], _height(urls[0], name), name, heights[name] + 1) for name in together
            ]
        finally:
            _stop_nodes(procs)
        # The access overhead: the same load on one chain, signed and unsigned in turn, each after
        # a restart (app_auth is read at start), so drift over the run weighs on both sides alike.
        signed_tps: list[float] = []
        unsigned_tps: list[float] = []
        access_share: list[float] = []
        for signed in ACCESS_RUNS:
            bodies = presign(names[0], txs)
            _set_app_auth(homes, signed)
            procs = _start(tmp, homes, urls, [names[0]])
            try:
                label = "signed" if signed else "unsigned"
                records, start, end = asyncio.run(
                    _load(
                        urls,
                        names[0],
                        bodies,
                        batch,
                        concurrency,
                        progress,
                        label=label,
                        app=app if signed else None,
                    )
                )
                if signed:
                    access_share.append(_access_share(urls))
            finally:
                _stop_nodes(procs)
            (signed_tps if signed else unsigned_tps).append(_tps(records, start, end))
    signed_mean = statistics.mean(signed_tps)
    unsigned_mean = statistics.mean(unsigned_tps)
    multi_start = min(s for _, s, _ in multi)
    multi_end = max(e for _, _, e in multi)
    multi_tps = [_tps(r, s, e) for r, s, e in multi]
    multi_sum = sum(sum(n for _, _, n in r) for r, _, _ in multi) / (multi_end - multi_start)
    return HubBenchResult(
        suite=suite,
        txs=txs,
        batch=batch,
        concurrency=concurrency,
        chains=chains,
        create_seconds=[round(s, 3) for s in create_seconds],
        create_median=round(statistics.median(create_seconds), 3),
        create_worst=round(max(create_seconds), 3),
        single_tps=round(single_tps, 1),
        multi_tps=[round(t, 1) for t in multi_tps],
        multi_sum_tps=round(multi_sum, 1),
        multi_ratio=round(multi_sum / single_tps, 3) if single_tps else 0.0,
        multi_longest_gap_s=round(max(_longest_gap(r, multi_start, multi_end) for r, _, _ in multi), 3),
        multi_concurrency=multi_concurrency,
        multi_blocks=blocks,
        multi_late_rounds=late,
        unsigned_tps=[round(t, 1) for t in unsigned_tps],
        signed_tps=[round(t, 1) for t in signed_tps],
        access_ratio=round(signed_mean / unsigned_mean, 3) if unsigned_mean else 0.0,
        access_cpu_share=round(statistics.mean(access_share), 4),
        machine={
            "cores": cores,
            "machine": platform.machine(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
    )


def _access_share(urls: list[str]) -> float:
    """The CPU the nodes spent checking signed app requests, over all their CPU, since they started."""
    checks = cpu = 0.0
    for url in urls:
        metrics = httpx.get(f"{url}/v1/chains/hub/status", timeout=10).json()["metrics"]
        checks += float(metrics["access_check_seconds"])
        cpu += float(metrics["process_cpu_seconds"])
    return checks / cpu if cpu else 0.0


def _set_app_auth(homes: list[Path], on: bool) -> None:
    """Set ``app_auth`` in every node's config.json (read when the node starts)."""
    for home in homes:
        config = json.loads((home / "config.json").read_text())
        config["app_auth"] = on
        (home / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def _initialise(client: Client, operator: Any, admin: Any) -> None:
    """Create the bench organization once the first node has committed ``hub.init``."""
    deadline = time.monotonic() + READY_SECONDS
    org = OrgCreate(ORG, "Benchmark", [admin.public_bytes()])
    while True:
        receipt = client.submit(client.sign(operator, "hub.org", "create", org)).receipts[0]
        if receipt.ok:
            return
        # Until hub.init is committed there is no operator yet.
        if time.monotonic() > deadline:
            raise RuntimeError(f"the hub refused the bench organization: {receipt.receipt.error}")
        time.sleep(0.2)


def _genesis_hash(url: str, chain: str) -> bytes:
    return bytes.fromhex(httpx.get(f"{url}/v1/chains/{chain}/status", timeout=10).json()["genesis_hash"])


async def _load_all(
    urls: list[str],
    bodies: dict[str, list[bytes]],
    batch: int,
    concurrency: int,
    progress: Progress,
    app: AppCredentials,
) -> list[tuple[list[tuple[float, float, int]], float, float]]:
    """Load every chain of ``bodies`` at once, each as ``_load`` loads one."""
    return list(
        await asyncio.gather(
            *(
                _load(urls, name, items, batch, concurrency, progress, label=name, app=app)
                for name, items in bodies.items()
            )
        )
    )


def render(result: HubBenchResult, console: Console) -> None:
    table = Table(title=f"hub bench: 4 nodes, suite {result.suite}, {result.machine.get('cores')} cores")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("chain create → block 1 on every node, median", f"{result.create_median:.2f} s")
    table.add_row(f"… worst of {len(result.create_seconds)}", f"{result.create_worst:.2f} s")
    table.add_row("one chain alone, signed app requests", f"{result.single_tps:,.0f} TPS")
    table.add_row("same load, signed, runs 1, 3, 5", " / ".join(f"{t:,.0f}" for t in result.signed_tps))
    table.add_row("same load unsigned, runs 2, 4", " / ".join(f"{t:,.0f}" for t in result.unsigned_tps))
    table.add_row("access overhead: mean signed / mean unsigned", f"{result.access_ratio:.2f}")
    table.add_row("… CPU of the access checks / all node CPU", f"{result.access_cpu_share:.2%}")
    table.add_row(f"{result.chains} chains at once: summed", f"{result.multi_sum_tps:,.0f} TPS")
    table.add_row("… each", ", ".join(f"{t:,.0f}" for t in result.multi_tps))
    table.add_row(f"{result.chains} chains summed / one chain alone", f"{result.multi_ratio:.2f}")
    table.add_row("longest time a chain went without a commit", f"{result.multi_longest_gap_s:.2f} s")
    table.add_row(
        "… blocks each (after round 0)",
        ", ".join(
            f"{b} ({late})" for b, late in zip(result.multi_blocks, result.multi_late_rounds, strict=True)
        ),
    )
    console.print(table)


def save_result(result: HubBenchResult, root: Path) -> Path:
    out = root / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"hub-{result.suite}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return path


BEGIN = "<!-- bench:latest:hub -->"
END = "<!-- /bench:latest:hub -->"


def update_performance_doc(path: Path, result: HubBenchResult) -> Path:
    """Replace (or append) the hub section of docs/performance.md."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = "\n".join(
        [
            f"Measured {when} on {result.machine['cores']} cores ({result.machine['machine']}, Python "
            f"{result.machine['python']}), command: `zhongshu bench --hub --suite {result.suite} --txs "
            f"{result.txs}` (4 nodes, batch {result.batch}, {result.concurrency} requests in flight "
            "per chain).",
            "",
            "| measure | value | target |",
            "|---|---|---|",
            f"| chain create → block 1 on every node, median of {len(result.create_seconds)} "
            f"| {result.create_median:.2f} s | < 5 s |",
            f"| … worst of {len(result.create_seconds)} | {result.create_worst:.2f} s | < 5 s |",
            f"| one chain alone, signed app requests | {result.single_tps:,.0f} TPS | |",
            "| the same load on one chain, signed, runs 1, 3, 5 (each after a restart) "
            f"| {' / '.join(f'{t:,.0f}' for t in result.signed_tps)} TPS | |",
            "| the same load with app authentication off, runs 2, 4 "
            f"| {' / '.join(f'{t:,.0f}' for t in result.unsigned_tps)} TPS | |",
            f"| **access overhead: mean signed / unsigned** | **{result.access_ratio:.2f}** | ≥ 0.9 |",
            "| CPU the gateways spent checking app requests, share of all node CPU (signed runs) "
            f"| {result.access_cpu_share:.2%} | |",
            f"| {result.chains} chains loaded at once ({result.multi_concurrency} requests in flight each), "
            f"summed | {result.multi_sum_tps:,.0f} TPS "
            f"({', '.join(f'{t:,.0f}' for t in result.multi_tps)}) | |",
            f"| **{result.chains} chains summed / one chain alone** | **{result.multi_ratio:.2f}** "
            "| ≥ 0.85 |",
            "| longest time any chain went without a commit meanwhile "
            f"| {result.multi_longest_gap_s:.2f} s | |",
            "| blocks each chain made meanwhile (of them decided after round 0) | "
            + ", ".join(
                f"{b} ({n})" for b, n in zip(result.multi_blocks, result.multi_late_rounds, strict=True)
            )
            + " | |",
        ]
    )
    text = path.read_text() if path.exists() else "# Performance\n"
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + f"\n\n### The hub: chains on demand, access, many chains\n\n{block}\n"
    path.write_text(text)
    return path
