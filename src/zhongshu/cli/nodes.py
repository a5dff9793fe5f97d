"""The commands that run and prepare nodes: ``up``, ``node start``, ``network init``, ``backup``,
``restore``, ``bench``. Each exits 1 on any failure (zhongshu.cli.exits)."""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import typer

from zhongshu.cli.common import err, friendly, now_ms, out
from zhongshu.cli.exits import CliError
from zhongshu.crypto import get_suite
from zhongshu.node.home import DEFAULT_PORT, default_home, init_single_home

# -- running nodes ----------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _serve(home: Path, port: int | None, banner: Callable[[str], None], log_format: str | None) -> None:
    from zhongshu.cli.logs import configure_logging, resolve_log_format
    from zhongshu.node.lock import check_home_unlocked

    # Refuse a home in use before loading the server (the node takes the lock itself).
    check_home_unlocked(home)
    configure_logging(resolve_log_format(log_format))
    from zhongshu.gateway.server import NodeHalted, serve_home

    # Until the node installs its own handlers, SIGTERM stops it like Ctrl-C.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    profile_path = os.environ.get("ZHONGSHU_PROFILE")
    profiler = cProfile.Profile() if profile_path else None
    try:
        if profiler:
            profiler.enable()
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_home(home, port=port, on_ready=banner))
    except NodeHalted as exc:
        raise CliError(f"node halted: {exc}") from None
    finally:
        if profiler and profile_path:
            # The event-loop thread only: gateway, checks, execution and commit bookkeeping.
            profiler.disable()
            profiler.dump_stats(profile_path)
    out.print("[bold]stopped[/]; data kept in", str(home / "data"))
    sys.stdout.flush()


LOG_FORMAT_HELP = "Log lines as text or json (one object per line); default $ZHONGSHU_LOG_FORMAT or text."


@friendly
def up(
    nodes: int | None = typer.Option(
        None, help="Validator nodes to run on this machine (default 4; an existing home keeps its count)."
    ),
    suite: str = typer.Option("sm", help="Crypto suite of a new chain: sm or intl."),
    home: Path = typer.Option(None, help="Home directory (default ~/.zhongshu or $ZHONGSHU_HOME)."),
    port: int = typer.Option(DEFAULT_PORT, help="Gateway port."),
    log_format: str = typer.Option(None, help=LOG_FORMAT_HELP),
) -> None:
    """Start a local hub on this machine (creating it on first run) and print its URLs."""
    from zhongshu.cli.logs import LOG_FORMAT_ENV, resolve_log_format

    home = home or default_home()
    get_suite(suite)
    log_format = resolve_log_format(log_format)
    if nodes is None:
        from zhongshu.cli.network import node_homes

        existing = len(node_homes(home)) if home.exists() else 0
        nodes = 1 if (home / "genesis.json").exists() else existing or 4
    if nodes < 1:
        raise CliError("--nodes must be at least 1")
    if nodes > 1:
        from zhongshu.cli.network import NetworkError, ensure_network, run_network
        from zhongshu.hub.homes import is_hub_home
        from zhongshu.node.lock import acquire_home_lock, check_home_unlocked

        home.mkdir(parents=True, exist_ok=True)
        # The hub directory is this process's; each node process locks its own home.
        with acquire_home_lock(home):
            try:
                homes, created_net = ensure_network(home, nodes, suite, port, now_ms())
                for node_home in homes:
                    check_home_unlocked(node_home)
                os.environ[LOG_FORMAT_ENV] = log_format
                _stop_once_on_sigint()
                after = _hub_banner(home, suite) if is_hub_home(homes[0]) else None
                code = run_network(home, homes, created_net, out, after)
            except NetworkError as exc:
                raise CliError(str(exc)) from None
        if code:
            raise typer.Exit(code)
        return
    created = False
    if not (home / "genesis.json").exists():
        init_single_home(home, suite=suite, port=port, now_ms=now_ms())
        created = True

    def banner(url: str) -> None:
        from zhongshu.ledger.genesis import load_genesis

        genesis = load_genesis(home / "genesis.json")
        out.print(
            f"[bold green]zhongshu[/] {'created' if created else 'resumed'} chain "
            f"[bold]{genesis.chain_id}[/] (suite {genesis.suite}) in {home}"
        )
        out.print(f"  API      {url}/v1/chains/{genesis.chain_id}/status")
        out.print(f"  OpenAPI  {url}/docs")
        out.print(f"  genesis  {home / 'genesis.json'}")
        out.print("Press Ctrl-C to stop.")
        sys.stdout.flush()

    _serve(home, port, banner, log_format)


def _hub_banner(root: Path, suite: str) -> Callable[[list[str]], list[str]]:
    """Once the hub's nodes serve: set up (or find) the demo organization, chain and app
    (zhongshu.cli.hubdemo) and describe them for the banner."""

    def after_ready(urls: list[str]) -> list[str]:
        from zhongshu.cli.hubdemo import DemoError, ensure_demo
        from zhongshu.cli.network import NetworkError

        try:
            demo = ensure_demo(root, urls[0], suite)
        except DemoError as exc:
            raise NetworkError(str(exc)) from None
        created = (
            f" (created; first block {demo.first_block_seconds:.2f} s after its creation)"
            if demo.first_block_seconds is not None
            else ""
        )
        trust = root / "node0" / "chains" / demo.chain / "genesis.json"
        # The app's key is SM2: on an intl chain the deposit is signed by an Ed25519 key of its own.
        signer = "" if demo.suite == "sm" else " --key user.pem"
        return [
            f"  operator key  {demo.operator_key}",
            f"  demo chain    {demo.chain}  {urls[0]}/v1/chains/{demo.chain}/status{created}",
            f"  demo app      {demo.app_id}  credentials {demo.app_file}",
            f"  demo org admin key  {demo.admin_key}",
            "Try it:",
            *([] if demo.suite == "sm" else ["  zhongshu keys new --suite intl --out user.pem"]),
            f"  zhongshu evidence put FILE --app {demo.app_file}{signer} --proof-out bundle.json",
            f"  zhongshu verify bundle.json --file FILE --trust {trust}",
        ]

    return after_ready


@friendly
def node_start(
    home: Path = typer.Option(..., help="The node's home directory (holds genesis.json)."),
    port: int = typer.Option(None, help="Override the gateway port from config.json."),
    log_format: str = typer.Option(None, help=LOG_FORMAT_HELP),
) -> None:
    """Run the node whose files are in HOME."""

    def banner(url: str) -> None:
        out.print(f"[bold green]node up[/] {url}  (home {home})")
        sys.stdout.flush()

    _serve(home, port, banner, log_format)


def _stop_once_on_sigint() -> None:
    """The first SIGINT stops ``up`` (KeyboardInterrupt); more, while the nodes stop, are ignored."""

    def on_sigint(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)


@friendly
def network_init(
    nodes: int = typer.Option(4, help="Validator nodes."),
    out_dir: Path = typer.Option(..., "--out", help="Directory for the node homes (node0 ...)."),
    suite: str = typer.Option("sm", help="sm or intl."),
    base_port: int = typer.Option(
        DEFAULT_PORT,
        help="API port of the first node on a host; its p2p port is base-port + 100. "
        "The k-th node on the same host uses base-port + k and base-port + 100 + k.",
    ),
    hosts: str | None = typer.Option(
        None,
        help="Comma-separated address of each node (IPv4, IPv6 or DNS name), as its peers dial it. "
        "Default: every node on 127.0.0.1.",
    ),
    listen: str = typer.Option(
        "address",
        help="address: a node binds its IP address (a DNS-named node binds all); "
        "any: every node binds all addresses (NAT, cloud).",
    ),
    api_local: bool = typer.Option(
        False, "--api-local", help="Bind every node's API to 127.0.0.1 (a reverse proxy in front)."
    ),
    hub: bool = typer.Option(
        False,
        "--hub",
        help="Make a hub (as `up` does): the chain `hub` on every node, both suites' node keys, "
        "hub.json, and the operator key in --out (keep it off the nodes).",
    ),
) -> None:
    """Create the homes of an N-node network: keys, CA and TLS certificates, one genesis."""
    from zhongshu.hub.homes import OPERATOR_KEY_FILE, init_hub
    from zhongshu.p2p.netinit import NetworkInitError, init_network, plan_addresses

    get_suite(suite)
    host_list = hosts.split(",") if hosts is not None else None
    make = init_hub if hub else init_network
    try:
        addresses = plan_addresses(nodes, base_port, host_list, listen=listen, api_local=api_local)
        homes = make(
            out_dir, nodes, suite, base_port, now_ms(), hosts=host_list, listen=listen, api_local=api_local
        )
    except NetworkInitError as exc:
        raise CliError(str(exc)) from None
    for i, (h, a) in enumerate(zip(homes, addresses, strict=True)):
        out.print(
            f"node{i}  {h}  API {a.api_url()}  P2P {a.p2p_endpoint()} (binds {a.p2p_bind})",
            highlight=False,
            markup=False,
        )
    out.print(f"genesis {homes[0] / 'genesis.json'}", highlight=False)
    if hub:
        out.print(f"operator key {out_dir / OPERATOR_KEY_FILE}", highlight=False)


# -- backup and restore -----------------------------------------------------------------


@friendly
def backup(
    home: Path = typer.Option(..., help="The node's home directory (the node may be running)."),
    out_file: Path = typer.Option(..., "--out", help="The backup file to write (tar.gz)."),
    with_keys: bool = typer.Option(False, "--with-keys", help="Include the node's private keys."),
) -> None:
    """Copy a node's store, genesis and config into one file, consistent while the node runs."""
    from zhongshu.node.backup import save_backup

    manifest = save_backup(home, out_file, now_ms=now_ms(), with_keys=with_keys)
    tip = f" block {manifest.block_hash[:16]}" if manifest.block_hash else ""
    keys = "with" if manifest.with_keys else "without"
    out.print(
        f"backup of chain {manifest.chain_id} at height {manifest.height}{tip} ({keys} keys) "
        f"written to {out_file}",
        highlight=False,
        markup=False,
    )


@friendly
def restore(
    file: Path = typer.Argument(..., help="A file written by `zhongshu backup`."),
    home: Path = typer.Option(..., help="The node's home directory; the node must be stopped."),
    force: bool = typer.Option(False, "--force", help="Replace the store the home holds."),
) -> None:
    """Bring back a node's store from a backup into a home that is not running."""
    from zhongshu.node.backup import load_backup

    manifest = load_backup(file, home, force=force)
    out.print(
        f"restored chain {manifest.chain_id} at height {manifest.height} into {home / 'data'}; "
        "start the node to catch up with its peers",
        highlight=False,
        markup=False,
    )


# -- bench ------------------------------------------------------------------------------


def _bench_hub(
    suite: str,
    txs: int,
    batch: int,
    concurrency: int,
    chains: int,
    chain_concurrency: int,
    as_json: bool,
    write_docs: bool | None,
) -> None:
    from dataclasses import asdict

    from zhongshu.cli import hubbench

    console = err if as_json else out
    result = hubbench.run_hub_bench(
        suite=suite,
        txs=txs,
        batch=batch,
        concurrency=concurrency,
        chains=chains,
        creations=max(10, chains),
        console=console,
        multi_concurrency=chain_concurrency or None,
    )
    root = Path.cwd()
    saved = hubbench.save_result(result, root)
    hubbench.render(result, console)
    console.print(f"saved {saved}", highlight=False)
    if write_docs is None:
        write_docs = (root / "docs" / "performance.md").exists()
    if write_docs:
        doc = hubbench.update_performance_doc(root / "docs" / "performance.md", result)
        console.print(f"updated {doc}", highlight=False)
    if as_json:
        import json

        print(json.dumps(asdict(result)))


def _bench_state_map(
    suite: str,
    txs: int,
    batch: int,
    concurrency: int,
    as_json: bool,
    write_docs: bool | None,
    heights_kept: int,
) -> None:
    from dataclasses import asdict

    from zhongshu.cli import mapbench
    from zhongshu.cli.perfdoc import update_state_map_doc

    console = err if as_json else out
    result = mapbench.run_state_map_compare(
        suite=suite, txs=txs, batch=batch, concurrency=concurrency, console=console, heights_kept=heights_kept
    )
    root = Path.cwd()
    saved = mapbench.save_state_map_compare(result, root)
    mapbench.render_state_map_compare(result, console)
    console.print(f"saved {saved}", highlight=False)
    if write_docs is None:
        write_docs = (root / "docs" / "performance.md").exists() and not heights_kept
    if write_docs:
        doc = update_state_map_doc(root / "docs" / "performance.md", result)
        console.print(f"updated {doc}", highlight=False)
    if as_json:
        import json

        print(json.dumps(asdict(result)))


@friendly
def bench(
    nodes: int = typer.Option(1, help="Validator nodes (real processes)."),
    suite: str = typer.Option("sm", help="sm or intl."),
    txs: int = typer.Option(20_000, help="Pre-signed evidence transactions to commit."),
    batch: int = typer.Option(500, help="Transactions per HTTP request."),
    concurrency: int = typer.Option(8, help="Requests in flight (each waits for its commit)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON line (to stdout) at the end."),
    write_docs: bool | None = typer.Option(
        None,
        "--write-docs/--no-write-docs",
        help="Record the figures in docs/performance.md (default: when run where that file exists).",
    ),
    profile: bool = typer.Option(False, help="Run the node under cProfile and print where time goes."),
    wire: str = typer.Option(
        "msgpack", help="msgpack: the binary submission route (the SDK's); json: the JSON route."
    ),
    hub: bool = typer.Option(
        False,
        "--hub",
        help="Measure the hub instead (4 nodes): chain creation time, access overhead, several "
        "chains at once (--chains).",
    ),
    chains: int = typer.Option(5, help="With --hub: chains loaded at once."),
    chain_concurrency: int = typer.Option(
        0,
        help="With --hub: requests in flight per chain while all are loaded (0: --concurrency spread "
        "over the chains, at least one each).",
    ),
    state_map_compare: bool = typer.Option(
        False,
        "--state-map-compare",
        help="With --nodes 1: the same load with the state map on and off (twelve runs, each on "
        "a fresh node): the TPS ratio and the map's own time per transaction.",
    ),
    state_heights_kept: int = typer.Option(
        0,
        "--state-heights-kept",
        min=0,
        help="With --state-map-compare: the runs with the map keep only this many heights "
        "provable and prune the rest (what pruning costs; docs/performance.md is not rewritten).",
    ),
) -> None:
    """Measure committed TPS and latency against this machine's signature-verify bound."""
    if hub:
        _bench_hub(suite, txs, batch, concurrency, chains, chain_concurrency, as_json, write_docs)
        return
    if state_map_compare:
        if nodes != 1:
            raise CliError("--state-map-compare measures one node: use it with --nodes 1")
        _bench_state_map(suite, txs, batch, concurrency, as_json, write_docs, state_heights_kept)
        return
    from zhongshu.cli.bench import render, run_bench, save_result, summary_json
    from zhongshu.cli.perfdoc import update_performance_doc

    console = err if as_json else out
    result = run_bench(
        nodes=nodes,
        suite=suite,
        txs=txs,
        batch=batch,
        concurrency=concurrency,
        console=console,
        profile=profile,
        wire=wire,
    )
    render(result, console)
    root = Path.cwd()
    saved = save_result(result, root)
    console.print(f"saved {saved}", highlight=False)
    if write_docs is None:
        write_docs = (root / "docs" / "performance.md").exists()
    if write_docs:
        doc = update_performance_doc(root / "docs" / "performance.md", result)
        console.print(f"updated {doc}", highlight=False)
    if as_json:
        print(summary_json(result))
