"""``zhongshu bench --state-map-compare``: what the state map (issue 9) costs a node's throughput.

One node, the same pre-signed load, run after run on a fresh store, with the map and without it
(``state_map`` false in the node's config: a hash chain over each block's writes in
``state_root``, no state proofs), in an order that puts both kinds at the same mean position.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from zhongshu.cli.bench import LOG_TAIL, _init_homes, _load, _presign_all, _start_nodes, _stop_nodes
from zhongshu.crypto import get_suite
from zhongshu.ledger.genesis import load_genesis
from zhongshu.ledger.hashing import compute_genesis_hash

STATE_MAP_RUNS = (True, False, False, True) * 3
"""With the state map (True) and without it, each run a fresh node on a fresh store. The order
(ABBA, three times) puts both kinds at the same mean position, so a drift of the machine's speed
over the runs (seen: +60 % from the first run to the sixth) weighs on both alike. A slow spell
that hits one run (seen: one run at 0.6 of its neighbours' speed, every other figure per tx
slower alike) is what the number of runs is for; ``pair_ratios`` shows it."""


@dataclass
class StateMapCompareResult:
    """``zhongshu bench --state-map-compare``: the same load on one node, with and without the
    state map (STATE_MAP_RUNS), each run on a fresh store of the same genesis (the same pre-signed load)."""

    suite: str
    txs: int
    batch: int
    concurrency: int
    runs: list[dict[str, Any]]
    """Per run, in order: ``state_map``, ``committed``, ``seconds``, ``tps``, ``blocks``, and per
    committed transaction in µs: ``execute_us_per_tx`` (the node's block execution with every
    root, wall time in its thread), ``store_us_per_tx`` (LMDB commits), ``cpu_us_per_tx`` (the
    node's process and workers, less key and signature checks), ``all_cpu_us_per_tx`` (with them),
    ``map_worker_cpu_us_per_tx`` (the state map worker process alone); and ``worker_blocks``, the
    blocks whose map update ran in that worker."""
    tps_on: float
    """Mean TPS of the runs with the map."""
    tps_off: float
    """... and without it."""
    ratio: float
    """tps_on / tps_off: issue 9's target is at least 0.9."""
    pair_ratios: list[float]
    """TPS with the map / without it for each two neighbouring runs (1 and 2, 3 and 4, ...):
    how much the ratio moves with the machine's speed."""
    execute_us_per_tx_on: float
    """Mean over the runs of the node's execute time per committed transaction, with the map."""
    execute_us_per_tx_off: float
    store_us_per_tx_on: float
    """... and of its LMDB commits (the map's new nodes are written there)."""
    store_us_per_tx_off: float
    map_us_per_tx: float
    """The map's own time per transaction: (execute + store) with it - (execute + store) without."""
    map_cpu_us_per_tx: float
    """The node's CPU per transaction outside signature checks, with the map - without it."""
    map_cpu_share: float
    """map_cpu_us_per_tx over all the node's CPU per transaction in the runs with the map (its
    process and workers, signature checks included)."""
    machine: dict[str, Any]
    heights_kept: int = 0
    """``--state-heights-kept``: the runs with the map kept this many heights and pruned the
    rest (0: every height kept)."""


WARM_UP_TXS = 1_000
"""Transactions each run commits before it measures (two batches of 500 in one block): a fresh
node's one-time costs (the state map worker's start, about half a second of CPU; the first
touch of the store's pages) fall outside the measured load, as they would on a node that has
been up for a while. Runs without the map warm up alike."""


def _node_metrics(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/v1/chains/main/status", timeout=10).json()["metrics"])


def _copy_home(template: Path, home: Path, state_map: bool, heights_kept: int = 0) -> None:
    """A fresh home of the template's chain and key (no data, no signer state), ``state_map``
    set, and ``state_heights_kept`` when the map is on."""
    home.mkdir(parents=True)
    for name in ("genesis.json", "node_key.pem"):
        (home / name).write_bytes((template / name).read_bytes())
    (home / "node_key.pem").chmod(0o600)
    config = json.loads((template / "config.json").read_text())
    config["state_map"] = state_map
    if state_map and heights_kept:
        config["state_heights_kept"] = heights_kept
    (home / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def run_state_map_compare(
    *, suite: str, txs: int, batch: int, concurrency: int, console: Console, heights_kept: int = 0
) -> StateMapCompareResult:
    """The runs of STATE_MAP_RUNS on one node; the load is signed once, for the one genesis."""
    get_suite(suite)
    cores = os.cpu_count() or 1
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    runs: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="zhongshu-bench-map-") as tmp_name,
        Progress(*columns, console=console, transient=False) as progress,
    ):
        tmp = Path(tmp_name)
        (template,), (url,) = _init_homes(tmp, 1, suite)
        genesis = load_genesis(template / "genesis.json")
        genesis_hash = compute_genesis_hash(get_suite(suite).hasher(), genesis)
        signed = _presign_all(suite, genesis_hash, WARM_UP_TXS + txs, cores, progress, "pre-sign", "msgpack")
        warm_up, bodies = signed[:WARM_UP_TXS], signed[WARM_UP_TXS:]
        for i, state_map in enumerate(STATE_MAP_RUNS):
            home = tmp / f"run{i}"
            _copy_home(template, home, state_map, heights_kept)
            procs, _ = _start_nodes(tmp, [home], [url], profile=False)
            try:
                asyncio.run(_load([url], "main", warm_up, batch, 2, progress, label="warm-up"))
                before = _node_metrics(url)
                label = "map on" if state_map else "map off"
                records, start, end = asyncio.run(
                    _load([url], "main", bodies, batch, concurrency, progress, label=label)
                )
                after = _node_metrics(url)
            except Exception:
                # The node's log goes with the temporary directory: show why it failed first.
                _stop_nodes(procs)
                log_tail = (tmp / "node0.log").read_text(errors="replace")[-LOG_TAIL:]
                console.print(f"run {i + 1} failed; the node's log ends:\n{log_tail}", highlight=False)
                raise
            finally:
                _stop_nodes(procs)
            runs.append(_run_figures(state_map, records, start, end, before, after))
    on = [r for r in runs if r["state_map"]]
    off = [r for r in runs if not r["state_map"]]
    tps_on = statistics.mean(r["tps"] for r in on)
    tps_off = statistics.mean(r["tps"] for r in off)

    def mean(runs: list[dict[str, Any]], key: str) -> float:
        return float(statistics.mean(r[key] for r in runs))

    exec_on, exec_off = mean(on, "execute_us_per_tx"), mean(off, "execute_us_per_tx")
    store_on, store_off = mean(on, "store_us_per_tx"), mean(off, "store_us_per_tx")
    map_cpu = mean(on, "cpu_us_per_tx") - mean(off, "cpu_us_per_tx")
    all_cpu_on = mean(on, "all_cpu_us_per_tx")
    return StateMapCompareResult(
        suite=suite,
        txs=txs,
        batch=batch,
        concurrency=concurrency,
        runs=runs,
        tps_on=round(tps_on, 1),
        tps_off=round(tps_off, 1),
        ratio=round(tps_on / tps_off, 3) if tps_off else 0.0,
        pair_ratios=_pair_ratios(runs),
        execute_us_per_tx_on=round(exec_on, 1),
        execute_us_per_tx_off=round(exec_off, 1),
        store_us_per_tx_on=round(store_on, 1),
        store_us_per_tx_off=round(store_off, 1),
        map_us_per_tx=round(exec_on + store_on - exec_off - store_off, 1),
        map_cpu_us_per_tx=round(map_cpu, 1),
        map_cpu_share=round(map_cpu / all_cpu_on, 4) if all_cpu_on else 0.0,
        heights_kept=heights_kept,
        machine={
            "cores": cores,
            "machine": platform.machine(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
    )


def _pair_ratios(runs: list[dict[str, Any]]) -> list[float]:
    """TPS with the map over TPS without it, for runs 1 and 2, 3 and 4, and so on."""
    ratios = []
    for a, b in zip(runs[::2], runs[1::2], strict=False):
        on, off = (a, b) if a["state_map"] else (b, a)
        if on["state_map"] and not off["state_map"] and off["tps"]:
            ratios.append(round(on["tps"] / off["tps"], 3))
    return ratios


def _run_figures(
    state_map: bool,
    records: list[tuple[float, float, int]],
    start: float,
    end: float,
    before: dict[str, Any],
    after: dict[str, Any],
) -> dict[str, Any]:
    """One run's figures from its load records and the node's metrics before and after it."""
    committed = sum(n for _, _, n in records)

    def per_tx(name: str) -> float:
        return (float(after[name]) - float(before[name])) / committed * 1e6 if committed else 0.0

    return {
        "state_map": state_map,
        "committed": committed,
        "seconds": round(end - start, 3),
        "tps": round(committed / (end - start), 1) if end > start else 0.0,
        "blocks": int(after["blocks"]) - int(before["blocks"]),
        "execute_us_per_tx": round(per_tx("execute_seconds"), 1),
        "store_us_per_tx": round(per_tx("store_seconds"), 1),
        "cpu_us_per_tx": round(per_tx("process_cpu_seconds") - per_tx("verify_cpu_seconds"), 1),
        "all_cpu_us_per_tx": round(per_tx("process_cpu_seconds"), 1),
        "map_worker_cpu_us_per_tx": round(per_tx("map_worker_cpu_seconds"), 1),
        "worker_blocks": int(after["map_worker_blocks"]) - int(before["map_worker_blocks"]),
    }


def render_state_map_compare(result: StateMapCompareResult, console: Console) -> None:
    table = Table(title=f"zhongshu bench --state-map-compare: 1 node, suite {result.suite}")
    for col in ("run", "state map", "TPS", "blocks", "execute µs/tx", "LMDB µs/tx", "node CPU µs/tx"):
        table.add_column(col, justify="right")
    for i, r in enumerate(result.runs, 1):
        table.add_row(
            str(i),
            "on" if r["state_map"] else "off",
            f"{r['tps']:,.0f}",
            str(r["blocks"]),
            f"{r['execute_us_per_tx']:.1f}",
            f"{r['store_us_per_tx']:.1f}",
            f"{r['cpu_us_per_tx']:.0f}",
        )
    console.print(table)
    console.print(
        f"mean TPS with the map {result.tps_on:,.0f}, without {result.tps_off:,.0f}: "
        f"ratio {result.ratio:.3f} (target ≥ 0.9; neighbouring runs "
        f"{', '.join(f'{r:.2f}' for r in result.pair_ratios)}); "
        f"the map's own time {result.map_us_per_tx:.1f} µs "
        f"per tx (execute {result.execute_us_per_tx_on:.1f} on, {result.execute_us_per_tx_off:.1f} off; "
        f"LMDB {result.store_us_per_tx_on:.1f} on, {result.store_us_per_tx_off:.1f} off); its CPU "
        f"{result.map_cpu_us_per_tx:.1f} µs per tx, {result.map_cpu_share:.2%} of all the node's CPU",
        highlight=False,
    )


def save_state_map_compare(result: StateMapCompareResult, root: Path) -> Path:
    out_dir = root / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    kept = f"-kept{result.heights_kept}" if result.heights_kept else ""
    path = out_dir / f"statemap-{result.suite}-1n{kept}-{stamp}.json"
    path.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return path
