"""``zhongshu bench``: committed TPS and latency of real node processes, against the verify bound.

Everything is measured in one run on this machine: the SM2/Ed25519 verify rate with every
core (the bound that signature checking sets), then the load. Clients pre-sign their load
before timing starts; the load goes through the HTTP API in batches with ``?wait=commit``.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import platform
import secrets
import signal
import socket
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

from zhongshu.crypto import get_suite
from zhongshu.gateway.access import new_nonce
from zhongshu.ledger.genesis import load_genesis
from zhongshu.ledger.hashing import compute_genesis_hash
from zhongshu.node.home import init_single_home
from zhongshu.sdk.app import AppCredentials
from zhongshu.sdk.transport import sign_app_request

VERIFY_SECONDS = 3.0
LOG_TAIL = 4000
"""Characters of a failed node's log shown before the bench stops."""


@dataclass
class BenchResult:
    nodes: int
    suite: str
    txs: int
    batch: int
    concurrency: int
    wire: str
    """How the load was sent: ``msgpack`` (binary submission route) or ``json``."""
    committed: int
    seconds: float
    tps: float
    p50_ms: float
    p99_ms: float
    verify_bound_tps: float
    """All-core signature verify rate of this machine, divided by the nodes (each verifies all)."""
    ratio: float
    machine: dict[str, Any]
    node_metrics: dict[str, Any]
    per_second: list[int] = field(default_factory=list)
    """Transactions committed in each second of the load (throughput over time)."""
    half_load: dict[str, float] = field(default_factory=dict)
    """Open-loop run at half the full-load TPS: offered_tps, tps, p50_ms, p99_ms."""
    profile: list[dict[str, Any]] = field(default_factory=list)
    """With --profile: the node's event-loop functions with the most own time."""
    verify_bound_samples: list[float] = field(default_factory=list)
    """The all-core verify rate measured before and after the load; the bound is the higher."""
    cpu_us_per_tx: dict[str, float] = field(default_factory=dict)
    """CPU microseconds per committed transaction over the full load, of node 0: ``node`` (its
    process and workers, less key and signature checks) = ``node_process`` (the node's own process)
    + ``workers_admission`` (the workers' other work); ``verify`` (key and signature checks);
    ``client`` (this process, the load generator)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


WIRES = ("msgpack", "json")


def _presign(job: tuple[str, str, str, bytes, int, int]) -> list[bytes]:
    """Sign ``count`` evidence deposits with a fresh client key (runs in a worker process); each
    comes back encoded for ``wire``: canonical MessagePack or the API's JSON object."""
    from zhongshu.codec import encode, encode_json
    from zhongshu.node.txcheck import tx_to_json
    from zhongshu.sdk.client import evidence_tx

    wire, suite_name, chain_id, genesis_hash, valid_until, count = job
    suite = get_suite(suite_name)
    key = suite.generate_private_key()
    out = []
    for _ in range(count):
        digest = suite.hash(secrets.token_bytes(32))
        tx = evidence_tx(key, chain_id, genesis_hash, digest, "bench.bin", valid_until)
        out.append(encode(tx) if wire == "msgpack" else encode_json(tx_to_json(tx)))
    return out


def msgpack_array(items: list[bytes]) -> bytes:
    """The MessagePack array of already encoded items: its header (fixarray, array 16 or
    array 32, the shortest that fits, as canonical encoding requires), then the items."""
    n = len(items)
    if n < 16:
        header = bytes([0x90 | n])
    elif n < 1 << 16:
        header = b"\xdc" + n.to_bytes(2, "big")
    else:
        header = b"\xdd" + n.to_bytes(4, "big")
    return header + b"".join(items)


def _batch_body(wire: str, items: list[bytes]) -> bytes:
    return msgpack_array(items) if wire == "msgpack" else b"[" + b",".join(items) + b"]"


def _verify_for(job: tuple[str, float]) -> tuple[int, float]:
    """Verify one signature over and over for ``seconds`` (runs in a worker process)."""
    suite_name, seconds = job
    suite = get_suite(suite_name)
    key = suite.generate_private_key()
    message = secrets.token_bytes(300)
    signature = key.sign(message)
    public = key.public_bytes()
    n = 0
    start = time.perf_counter()
    while True:
        for _ in range(50):
            if not suite.verify(public, message, signature):
                raise RuntimeError("benchmark signature failed to verify")
        n += 50
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n, elapsed


def measure_verify_bound(suite: str, cores: int, seconds: float = VERIFY_SECONDS) -> float:
    """Signatures verified per second with every core busy."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(cores) as pool:
        parts = pool.map(_verify_for, [(suite, seconds)] * cores)
    return sum(n / t for n, t in parts)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


async def _load(
    urls: list[str],
    chain: str,
    bodies: list[bytes],
    batch: int,
    concurrency: int,
    progress: Progress,
    *,
    rate: float | None = None,
    label: str = "load",
    wire: str = "msgpack",
    app: AppCredentials | None = None,
) -> tuple[list[tuple[float, float, int]], float, float]:
    """Send the batches round-robin to the nodes' gateways, each with ``?wait=commit``.

    Closed loop (``concurrency`` requests in flight) or, with ``rate``, open loop: batch i is
    sent at start + i * batch / rate, so latency is measured at that offered load. With ``app``
    each request is signed by that application (docs/access-spec.md), as a hub node requires.
    """
    task = progress.add_task(label, total=len(bodies))
    from zhongshu.gateway.binary import MSGPACK, decode_answer

    batches = [_batch_body(wire, bodies[i : i + batch]) for i in range(0, len(bodies), batch)]
    media = MSGPACK if wire == "msgpack" else "application/json"
    sizes = [min(batch, len(bodies) - i) for i in range(0, len(bodies), batch)]
    records: list[tuple[float, float, int]] = []
    workers = concurrency if rate is None else max(concurrency, 64)
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        next_index = 0
        start = time.perf_counter()

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(batches):
                index = next_index
                next_index += 1
                if rate is not None:
                    due = start + index * batch / rate
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                url = urls[index % len(urls)]
                sent = time.perf_counter()
                while True:
                    request = client.build_request(
                        "POST",
                        f"{url}/v1/chains/{chain}/txs",
                        content=batches[index],
                        params={"wait": "commit", "timeout": "60"},
                        headers={"content-type": media, "accept": media},
                    )
                    if app is not None:
                        sign_app_request(request, app, new_nonce(), time.time_ns() // 1_000_000)
                    r = await client.send(request)
                    if r.status_code == 503:  # mempool full: back off and retry the batch
                        await asyncio.sleep(0.05)
                        continue
                    break
                if r.status_code != 200:
                    raise RuntimeError(f"load batch refused: {r.status_code} {r.text[:300]}")
                answered = (
                    len(decode_answer(r.content).receipts) if wire == "msgpack" else len(r.json()["receipts"])
                )
                if answered != sizes[index]:
                    raise RuntimeError(f"{answered} receipts for a batch of {sizes[index]}")
                records.append((sent, time.perf_counter(), sizes[index]))
                progress.advance(task, sizes[index])

        await asyncio.gather(*(worker() for _ in range(workers)))
        end = time.perf_counter()
    return records, start, end


def free_port_range(nodes: int) -> int:
    """A base port whose API ports (base+i) and P2P ports (base+100+i) are free now."""
    for _ in range(100):
        base = free_port()
        if base + 100 + nodes > 65535:
            continue
        ports = [base + i for i in range(nodes)] + [base + 100 + i for i in range(nodes)]
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free range of ports")


def _wait_ready(url: str, chain: str, proc: subprocess.Popen[bytes], deadline: float, peers: int = 0) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the node exited with status {proc.returncode}")
        try:
            r = httpx.get(f"{url}/v1/chains/{chain}/status", timeout=1)
            if r.status_code == 200 and len(r.json().get("consensus", {}).get("peers", [])) >= peers:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the node did not become ready in time")


def _init_homes(tmp: Path, nodes: int, suite: str) -> tuple[list[Path], list[str]]:
    """Create a chain of ``nodes`` validators in ``tmp``: their homes and API URLs."""
    now_ms = time.time_ns() // 1_000_000
    if nodes == 1:
        port = free_port()
        homes = [tmp / "node0"]
        init_single_home(homes[0], suite=suite, port=port, now_ms=now_ms)
        urls = [f"http://127.0.0.1:{port}"]
    else:
        from zhongshu.p2p.netinit import init_network

        base = free_port_range(nodes)
        homes = init_network(tmp / "net", nodes, suite, base, now_ms)
        urls = [f"http://127.0.0.1:{base + i}" for i in range(nodes)]
        # init_network gives each node its share of this machine's cores (verify_workers).
    return homes, urls


def _start_nodes(
    tmp: Path, homes: list[Path], urls: list[str], profile: bool
) -> tuple[list[subprocess.Popen[bytes]], Path]:
    """Start one process per node home; return once every node serves and sees its peers."""
    nodes = len(homes)
    profile_path = tmp / "node0.prof"
    procs = []
    for i, home in enumerate(homes):
        env = dict(os.environ)
        if profile and i == 0:
            env["ZHONGSHU_PROFILE"] = str(profile_path)
        with open(tmp / f"node{i}.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "zhongshu", "node", "start", "--home", str(home)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
    deadline = time.monotonic() + 90
    for url, proc in zip(urls, procs, strict=True):
        _wait_ready(url, "main", proc, deadline, peers=nodes - 1)
    return procs, profile_path


def _stop_nodes(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _presign_all(
    suite: str,
    genesis_hash: bytes,
    count: int,
    cores: int,
    progress: Progress,
    label: str,
    wire: str,
    chain: str = "main",
) -> list[bytes]:
    ptask = progress.add_task(label, total=count)
    per_job = 500
    jobs = [
        (wire, suite, chain, genesis_hash, 1_000_000, min(per_job, count - i))
        for i in range(0, count, per_job)
    ]
    bodies: list[bytes] = []
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(cores) as pool:
        for part in pool.imap_unordered(_presign, jobs):
            bodies.extend(part)
            progress.advance(ptask, len(part))
    return bodies


def _late_rounds(url: str, height: int, chain: str = "main", first: int = 1) -> int:
    """Blocks from ``first`` to ``height`` decided after round 0 (a proposal that did not
    gather 2/3 prevotes in time)."""
    late = 0
    with httpx.Client(timeout=10) as client:
        for h in range(first, height + 1):
            if client.get(f"{url}/v1/chains/{chain}/blocks/{h}").json()["commit"]["round"] > 0:
                late += 1
    return late


def _node_cpu(url: str) -> tuple[float, float, float]:
    """The node's CPU seconds (process and workers), its workers' and its key and signature checks'."""
    metrics = httpx.get(f"{url}/v1/chains/main/status", timeout=10).json()["metrics"]
    return (
        float(metrics["process_cpu_seconds"]),
        float(metrics["workers_cpu_seconds"]),
        float(metrics["verify_cpu_seconds"]),
    )


def _latencies(records: list[tuple[float, float, int]]) -> list[float]:
    return [(done - sent) * 1000 for sent, done, n in records for _ in range(n)]


def run_bench(
    *,
    nodes: int,
    suite: str,
    txs: int,
    batch: int,
    concurrency: int,
    console: Console,
    profile: bool = False,
    half_load: bool | None = None,
    wire: str = "msgpack",
) -> BenchResult:
    """Full load (closed loop), then with ``half_load`` an open-loop run at half that rate."""
    if nodes < 1:
        raise ValueError("--nodes must be at least 1")
    get_suite(suite)
    if wire not in WIRES:
        raise ValueError(f"--wire must be one of {', '.join(WIRES)}, not {wire!r}")
    half_load = nodes > 1 if half_load is None else half_load
    cores = os.cpu_count() or 1
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    half: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="zhongshu-bench-") as tmp_name:
        tmp = Path(tmp_name)
        homes, urls = _init_homes(tmp, nodes, suite)
        # Transactions sign the genesis hash, so the chain is created before they are pre-signed.
        genesis = load_genesis(homes[0] / "genesis.json")
        genesis_hash = compute_genesis_hash(get_suite(suite).hasher(), genesis)
        with Progress(*columns, console=console, transient=False) as progress:
            bodies = _presign_all(suite, genesis_hash, txs, cores, progress, "pre-sign", wire)
            half_bodies = (
                _presign_all(suite, genesis_hash, txs // 2, cores, progress, "pre-sign", wire)
                if half_load
                else []
            )
            vtask = progress.add_task("verify", total=None)
            bound = measure_verify_bound(suite, cores)
            progress.update(vtask, total=1, completed=1, description="verify")
            procs, profile_path = _start_nodes(tmp, homes, urls, profile)
            try:
                before = _node_cpu(urls[0])
                client_before = time.process_time()
                records, start, end = asyncio.run(
                    _load(urls, "main", bodies, batch, concurrency, progress, label="full load", wire=wire)
                )
                client_cpu = time.process_time() - client_before
                after = _node_cpu(urls[0])
                if half_load:
                    rate = sum(n for _, _, n in records) / (end - start) / 2
                    half_records, h_start, h_end = asyncio.run(
                        _load(
                            urls,
                            "main",
                            half_bodies,
                            batch,
                            concurrency,
                            progress,
                            rate=rate,
                            label="half load",
                            wire=wire,
                        )
                    )
                    h_lat = _latencies(half_records)
                    half = {
                        "offered_tps": round(rate, 1),
                        "tps": round(sum(n for _, _, n in half_records) / (h_end - h_start), 1),
                        "p50_ms": round(statistics.median(h_lat), 1),
                        "p99_ms": round(_percentile(h_lat, 0.99), 1),
                    }
                status = httpx.get(f"{urls[0]}/v1/chains/main/status", timeout=10).json()
                if nodes > 1:
                    status.setdefault("metrics", {})["late_rounds"] = _late_rounds(urls[0], status["height"])
            finally:
                _stop_nodes(procs)
            # Measured again once the nodes are gone: the ratio uses the higher of the two, so a
            # moment of noise during one measurement cannot flatter it.
            vtask = progress.add_task("verify", total=None)
            bound_after = measure_verify_bound(suite, cores)
            progress.update(vtask, total=1, completed=1, description="verify")
            profile_top = _profile_summary(profile_path) if profile else []
    latencies = _latencies(records)
    committed = sum(n for _, _, n in records)
    node_cpu, workers_cpu, verify_cpu = (a - b for a, b in zip(after, before, strict=True))
    cpu_us_per_tx = {
        "node": round((node_cpu - verify_cpu) / committed * 1e6, 1),
        "node_process": round((node_cpu - workers_cpu) / committed * 1e6, 1),
        "workers_admission": round((workers_cpu - verify_cpu) / committed * 1e6, 1),
        "verify": round(verify_cpu / committed * 1e6, 1),
        "client": round(client_cpu / committed * 1e6, 1),
    }
    seconds = end - start
    per_second = [0] * (int(seconds) + 1)
    for _, done, n in records:
        per_second[min(len(per_second) - 1, int(done - start))] += n
    tps = committed / seconds if seconds > 0 else 0.0
    bound_samples = [round(bound, 1), round(bound_after, 1)]
    bound_per_node = max(bound_samples) / nodes
    return BenchResult(
        nodes=nodes,
        suite=suite,
        txs=txs,
        batch=batch,
        concurrency=concurrency,
        wire=wire,
        committed=committed,
        seconds=round(seconds, 3),
        tps=round(tps, 1),
        p50_ms=round(statistics.median(latencies), 1) if latencies else 0.0,
        p99_ms=round(_percentile(latencies, 0.99), 1),
        verify_bound_tps=round(bound_per_node, 1),
        ratio=round(tps / bound_per_node, 3) if bound_per_node else 0.0,
        machine={
            "cores": cores,
            "machine": platform.machine(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        node_metrics=status.get("metrics", {}),
        per_second=per_second,
        profile=profile_top,
        half_load=half,
        cpu_us_per_tx=cpu_us_per_tx,
        verify_bound_samples=bound_samples,
    )


def _profile_summary(path: Path, top: int = 20) -> list[dict[str, Any]]:
    """The functions of the node's event-loop thread with the most own time."""
    import pstats

    if not path.exists():
        return []
    stats = pstats.Stats(str(path))
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = "/".join(Path(filename).parts[-2:])
        rows.append(
            {"function": f"{short}:{line}({name})", "calls": calls, "own_s": own, "cum_s": cumulative}
        )
    rows.sort(key=lambda r: r["own_s"], reverse=True)
    total = sum(r["own_s"] for r in rows) or 1.0
    for r in rows:
        r["share"] = round(r["own_s"] / total, 3)
        r["own_s"] = round(r["own_s"], 3)
        r["cum_s"] = round(r["cum_s"], 3)
    return rows[:top]


def render(result: BenchResult, console: Console) -> None:
    table = Table(title=f"zhongshu bench: {result.nodes} node(s), suite {result.suite}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("committed transactions", f"{result.committed}")
    table.add_row("committed TPS", f"{result.tps:,.0f}")
    table.add_row("p50 submit→commit", f"{result.p50_ms:,.0f} ms")
    table.add_row("p99 submit→commit", f"{result.p99_ms:,.0f} ms")
    per = f" / {result.nodes} nodes" if result.nodes > 1 else ""
    table.add_row(f"verify bound ({result.machine['cores']} cores{per})", f"{result.verify_bound_tps:,.0f}/s")
    table.add_row("ratio TPS / bound", f"{result.ratio:.2f}")
    if result.half_load:
        h = result.half_load
        table.add_row("half load: offered / committed", f"{h['offered_tps']:,.0f} / {h['tps']:,.0f} TPS")
        table.add_row("half load: p50 / p99", f"{h['p50_ms']:,.0f} / {h['p99_ms']:,.0f} ms")
    console.print(table)
    peak = max(result.per_second) if result.per_second else 0
    if peak:
        console.print("throughput per second of load:")
        for i, n in enumerate(result.per_second):
            bar = "█" * max(1, round(40 * n / peak)) if n else ""
            console.print(f"  {i:>3}s {bar} {n}", highlight=False)
    if result.profile:
        ptable = Table(title="node event-loop thread, by own time (cProfile; slows the node)")
        for col in ("function", "calls", "own s", "share"):
            ptable.add_column(col, justify="left" if col == "function" else "right")
        for r in result.profile:
            ptable.add_row(r["function"], str(r["calls"]), f"{r['own_s']:.3f}", f"{r['share']:.1%}")
        console.print(ptable)
    c = result.cpu_us_per_tx
    if c:
        console.print(
            f"CPU per committed transaction: node {c['node']:.0f} µs outside verification "
            f"(process {c['node_process']:.0f}, workers {c['workers_admission']:.0f}), "
            f"key and signature checks {c['verify']:.0f} µs, load client {c['client']:.0f} µs",
            highlight=False,
        )
    m = result.node_metrics
    if m:
        console.print(
            f"node time: verify {m.get('verify_seconds', 0):.2f} s (wall, batches in threads), "
            f"execute {m.get('execute_seconds', 0):.2f} s, store {m.get('store_seconds', 0):.2f} s, "
            f"{m.get('blocks', 0)} blocks"
            + (f", {m['late_rounds']} decided after round 0" if "late_rounds" in m else ""),
            highlight=False,
        )


def save_result(result: BenchResult, root: Path) -> Path:
    out_dir = root / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    wire = "" if result.wire == "msgpack" else f"-{result.wire}"
    path = out_dir / f"bench-{result.suite}-{result.nodes}n{wire}-{stamp}.json"
    path.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return path


def summary_json(result: BenchResult) -> str:
    keys = (
        "nodes",
        "suite",
        "wire",
        "txs",
        "committed",
        "tps",
        "p50_ms",
        "p99_ms",
        "verify_bound_tps",
        "ratio",
    )
    extra = {
        "half_load": result.half_load,
        "cpu_us_per_tx": result.cpu_us_per_tx,
        "node_metrics": result.node_metrics,
    }
    return json.dumps({k: getattr(result, k) for k in keys} | extra)
