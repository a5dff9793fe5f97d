"""Keep docs/performance.md's latest-figures table true after a benchmark run."""

from __future__ import annotations

import time
from pathlib import Path

from zhongshu.cli.bench import BenchResult
from zhongshu.cli.mapbench import StateMapCompareResult

BEGIN = "<!-- bench:latest:{key} -->"
END = "<!-- /bench:latest:{key} -->"


def render_section(result: BenchResult) -> str:
    m = result.node_metrics
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"Measured {when} on {result.machine['cores']} cores ({result.machine['machine']}, "
        f"Python {result.machine['python']}), command: "
        f"`zhongshu bench --nodes {result.nodes} --suite {result.suite} --txs {result.txs}"
        f"{'' if result.wire == 'msgpack' else ' --wire ' + result.wire}` "
        f"(batch {result.batch}, {result.concurrency} requests in flight).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| committed TPS | {result.tps:,.0f} |",
        f"| p50 submit→commit | {result.p50_ms:,.0f} ms |",
        f"| p99 submit→commit | {result.p99_ms:,.0f} ms |",
        f"| verify bound (all cores{', / nodes' if result.nodes > 1 else ''}; the higher of "
        f"{' and '.join(f'{b:,.0f}' for b in result.verify_bound_samples)}) "
        f"| {result.verify_bound_tps:,.0f} /s |",
        f"| **ratio TPS / bound** | **{result.ratio:.2f}** |",
        *(
            [
                f"| half load ({result.half_load['offered_tps']:,.0f} TPS offered): committed TPS "
                f"| {result.half_load['tps']:,.0f} |",
                f"| half load: p50 / p99 | {result.half_load['p50_ms']:,.0f} / "
                f"{result.half_load['p99_ms']:,.0f} ms |",
            ]
            if result.half_load
            else []
        ),
        f"| blocks | {m.get('blocks', 0)} |",
        f"| node: verify wall time | {m.get('verify_seconds', 0):.2f} s |",
        f"| node: execute + roots | {m.get('execute_seconds', 0):.2f} s |",
        f"| node: LMDB commit | {m.get('store_seconds', 0):.2f} s |",
        f"| load duration | {result.seconds:.1f} s |",
        *(
            [
                f"| CPU per tx: node outside verification | {c['node']:.0f} µs |",
                f"| … of which the node's process | {c['node_process']:.0f} µs |",
                f"| … of which the workers' admission checks | {c['workers_admission']:.0f} µs |",
                f"| CPU per tx: key and signature checks | {c['verify']:.0f} µs |",
                f"| CPU per tx: load client | {c['client']:.0f} µs |",
            ]
            if (c := result.cpu_us_per_tx)
            else []
        ),
    ]
    return "\n".join(lines)


def update_performance_doc(path: Path, result: BenchResult) -> Path:
    """Replace (or append) the marked section for this node count and suite."""
    key = f"{result.nodes}n-{result.suite}" + ("" if result.wire == "msgpack" else f"-{result.wire}")
    route = "" if result.wire == "msgpack" else f", {result.wire} route"
    heading = f"### {result.nodes} node(s), suite `{result.suite}`{route}"
    return _replace_section(path, key, heading, render_section(result))


def render_state_map_section(result: StateMapCompareResult) -> str:
    m = result.machine
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    on_runs = ", ".join(str(i) for i, r in enumerate(result.runs, 1) if r["state_map"])
    off_runs = ", ".join(str(i) for i, r in enumerate(result.runs, 1) if not r["state_map"])

    def figures(on: bool, key: str, fmt: str) -> str:
        return " / ".join(format(r[key], fmt) for r in result.runs if r["state_map"] is on)

    return "\n".join(
        [
            f"Measured {when} on {m['cores']} cores ({m['machine']}, Python {m['python']}), command: "
            f"`zhongshu bench --nodes 1 --suite {result.suite} --txs {result.txs} --state-map-compare` "
            f"(batch {result.batch}, {result.concurrency} requests in flight; each run a fresh node on "
            "a fresh store of the same genesis, the same pre-signed load).",
            "",
            "| measure | value | target |",
            "|---|---|---|",
            f"| with the state map, runs {on_runs} | {figures(True, 'tps', ',.0f')} TPS | |",
            f"| without it (`state_map` false), runs {off_runs} | {figures(False, 'tps', ',.0f')} TPS | |",
            f"| **mean TPS with / without** | **{result.ratio:.2f}** | ≥ 0.9 |",
            "| … the same for each two neighbouring runs (1 and 2, 3 and 4, …) "
            f"| {' / '.join(f'{r:.2f}' for r in result.pair_ratios)} | |",
            f"| node: execute + roots per tx, with the map | {figures(True, 'execute_us_per_tx', '.1f')} µs "
            "| |",
            f"| … without it | {figures(False, 'execute_us_per_tx', '.1f')} µs | |",
            f"| node: LMDB commit per tx, with the map | {figures(True, 'store_us_per_tx', '.1f')} µs | |",
            f"| … without it | {figures(False, 'store_us_per_tx', '.1f')} µs | |",
            "| **the map's own time per tx (mean execute + LMDB commit, with - without)** "
            f"| **{result.map_us_per_tx:.1f} µs** | |",
            "| node CPU per tx outside signature checks, with the map "
            f"| {figures(True, 'cpu_us_per_tx', '.0f')} µs | |",
            f"| … without it | {figures(False, 'cpu_us_per_tx', '.0f')} µs | |",
            f"| **the map's CPU per tx (mean with - without)** | **{result.map_cpu_us_per_tx:.0f} µs** | |",
            f"| … its share of all the node's CPU, signature checks included (runs with the map) "
            f"| {result.map_cpu_share:.1%} | |",
            "| of it in the map worker process (outside the node's interpreter lock), per tx "
            f"| {figures(True, 'map_worker_cpu_us_per_tx', '.0f')} µs | |",
            "| blocks whose map update ran in the worker / all blocks, with the map "
            f"| {figures(True, 'worker_blocks', 'd')} / {figures(True, 'blocks', 'd')} | |",
        ]
    )


def update_state_map_doc(path: Path, result: StateMapCompareResult) -> Path:
    """Replace (or append) the marked section of ``--state-map-compare`` for this suite."""
    heading = f"### 1 node, suite `{result.suite}`, with and without the state map"
    return _replace_section(path, f"1n-{result.suite}-state-map", heading, render_state_map_section(result))


def _replace_section(path: Path, key: str, heading: str, body: str) -> Path:
    """Replace the text between the markers of ``key``, or append it under ``heading``."""
    begin, end = BEGIN.format(key=key), END.format(key=key)
    text = path.read_text() if path.exists() else "# Performance\n"
    block = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + f"\n\n{heading}\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
