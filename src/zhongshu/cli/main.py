"""``zhongshu``: run a hub, manage keys, deposit evidence, verify proofs, benchmark."""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import functools
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from zhongshu.crypto import CryptoError, get_suite, load_private_key_pem
from zhongshu.ledger.genesis import GenesisError, load_genesis
from zhongshu.node.home import DEFAULT_PORT, HomeError, default_home, init_single_home, save_key

app = typer.Typer(no_args_is_help=True, add_completion=True, help="Zhongshu (中枢) city blockchain hub.")
keys_app = typer.Typer(no_args_is_help=True, help="Key pairs (SM2 or Ed25519).")
node_app = typer.Typer(no_args_is_help=True, help="Run one node from its home directory.")
evidence_app = typer.Typer(no_args_is_help=True, help="Evidence deposit (存证).")
app.add_typer(keys_app, name="keys")
app.add_typer(node_app, name="node")
app.add_typer(evidence_app, name="evidence")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """A failure to report in one line with a non-zero exit."""


def friendly(fn: F) -> F:
    """Turn expected failures into one line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from zhongshu.sdk import ZhongshuError
        from zhongshu.store import StoreDamaged

        try:
            return fn(*args, **kwargs)
        except ZhongshuError as exc:
            err.print(f"error: {exc}", markup=False, highlight=False)
        except httpx.HTTPError as exc:
            err.print(f"error: cannot reach the gateway: {exc}", markup=False, highlight=False)
        except (CliError, HomeError, GenesisError, CryptoError, StoreDamaged, OSError, ValueError) as exc:
            err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(1)

    return wrapper  # type: ignore[return-value]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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


@app.command()
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
                code = run_network(home, homes, created_net, out)
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


@node_app.command("start")
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


network_app = typer.Typer(no_args_is_help=True, help="Multi-node networks.")
app.add_typer(network_app, name="network")


@network_app.command("init")
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
) -> None:
    """Create the homes of an N-node network: keys, CA and TLS certificates, one genesis."""
    from zhongshu.p2p.netinit import NetworkInitError, init_network, plan_addresses

    get_suite(suite)
    host_list = hosts.split(",") if hosts is not None else None
    try:
        addresses = plan_addresses(nodes, base_port, host_list, listen=listen, api_local=api_local)
        homes = init_network(
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


# -- backup and restore -----------------------------------------------------------------


@app.command()
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


@app.command()
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


# -- keys -------------------------------------------------------------------------------


@keys_app.command("new")
@friendly
def keys_new(
    out_file: Path = typer.Option(..., "--out", help="Where to write the PEM private key."),
    suite: str = typer.Option("sm", help="sm (SM2) or intl (Ed25519)."),
) -> None:
    """Create a key pair; print the public key (hex)."""
    if out_file.exists():
        raise CliError(f"{out_file} exists; refusing to overwrite a key")
    key = get_suite(suite).generate_private_key()
    save_key(out_file, key)
    out.print(key.public_hex(), highlight=False)


# -- evidence ---------------------------------------------------------------------------


def _load_key(path: Path) -> Any:
    try:
        return load_private_key_pem(path.read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read key {path}: {exc.strerror}") from None


@evidence_app.command("put")
@friendly
def evidence_put(
    file: Path = typer.Argument(..., help="The file whose digest to deposit."),
    key: Path = typer.Option(..., help="PEM private key that signs the deposit."),
    api: str = typer.Option(f"http://127.0.0.1:{DEFAULT_PORT}", help="Gateway URL."),
    chain: str = typer.Option("main", help="Chain id."),
    proof_out: Path = typer.Option(None, help="Write the proof bundle (JSON) here."),
    name: str = typer.Option(None, help="Name to record (default: the file name)."),
    algorithm: str = typer.Option(
        None,
        help="Hash of the digest: sm3, sha256, sha384, sha512, sha3-256, sha3-384 or sha3-512 "
        "(default: the chain suite's, sm3 or sha256). Recorded with the deposit.",
    ),
) -> None:
    """Deposit FILE's digest; print the transaction hash and committed height."""
    from zhongshu.ledger.evidence_args import DIGEST_ALGORITHMS
    from zhongshu.ledger.proof.digest import digest_file
    from zhongshu.sdk import Client, save_proof

    if algorithm is not None and algorithm not in DIGEST_ALGORITHMS:
        raise CliError(f"--algorithm {algorithm!r} is not one of {', '.join(DIGEST_ALGORITHMS)}")
    signer = _load_key(key)
    with file.open("rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        with Client(api, chain) as client:
            status = client.status()
            if status.suite != signer.suite.name:
                raise CliError(f"chain {chain!r} uses suite {status.suite}, the key is {signer.suite.name}")
            algorithm = algorithm or {"sm": "sm3", "intl": "sha256"}[signer.suite.name]
            digest = digest_file(algorithm, stream)
            receipt = client.put_evidence(
                signer, digest, name or file.name, {"size": str(size)}, algorithm=algorithm
            )
            if not receipt.ok:
                raise CliError(f"deposit failed: {receipt.receipt.error}")
            result = receipt.deposit()
            out.print(receipt.tx_hash, highlight=False)
            out.print(f"height {receipt.height}", highlight=False)
            if result.duplicate:
                out.print(
                    f"note: this digest was first deposited at height {result.height} (tx {result.tx_hash})",
                    highlight=False,
                )
            if proof_out:
                save_proof(proof_out, client.get_proof(receipt.tx_hash))
                err.print(f"proof written to {proof_out}", highlight=False)


@evidence_app.command("get")
@friendly
def evidence_get(
    digest: str = typer.Argument(None, help="Digest (hex); or give --file."),
    file: Path = typer.Option(None, help="Compute the digest of this file."),
    api: str = typer.Option(f"http://127.0.0.1:{DEFAULT_PORT}", help="Gateway URL."),
    chain: str = typer.Option("main", help="Chain id."),
) -> None:
    """Show the evidence record of a digest."""
    import msgspec

    from zhongshu.sdk import Client

    with Client(api, chain) as client:
        if file is not None:
            digest = get_suite(client.status().suite).hash(file.read_bytes()).hex()
        if not digest:
            raise CliError("give a digest or --file")
        out.print_json(msgspec.json.encode(client.get_evidence(digest)).decode())


# -- verify -----------------------------------------------------------------------------


VERIFY_USAGE = "usage: zhongshu verify BUNDLE [--file FILE] [--trust GENESIS]"


def _verify_usage(message: str) -> typer.Exit:
    """A bad argument of ``verify`` (not an invalid proof): one line on stderr, exit status 2."""
    err.print(f"error: {message} ({VERIFY_USAGE})", markup=False, highlight=False)
    return typer.Exit(2)


@app.command()
def verify(
    bundle: Path = typer.Argument(..., help="Proof bundle (JSON)."),
    file: Path = typer.Option(
        None, help="The original file: its digest, by the hash the deposit names, must be the deposited one."
    ),
    trust: Path = typer.Option(None, help="Trusted genesis.json of the chain."),
) -> None:
    """Verify a proof bundle offline. Exit 0 only when it is valid, 1 when it is not, 2 when a
    file cannot be read (or --trust is not a genesis document)."""
    from zhongshu.ledger.proof import ProofInvalid, load_bundle, verify_bundle

    try:
        text = bundle.read_bytes()
    except OSError as exc:
        raise _verify_usage(f"cannot read the bundle {bundle}: {exc.strerror or exc}") from None
    try:
        trusted = load_genesis(trust) if trust else None
    except GenesisError as exc:
        raise _verify_usage(f"--trust: {exc}") from None
    with contextlib.ExitStack() as files:
        try:
            stream = None if file is None else files.enter_context(file.open("rb"))
        except OSError as exc:
            raise _verify_usage(f"cannot read --file {file}: {exc.strerror or exc}") from None
        try:
            result = verify_bundle(load_bundle(text), trusted=trusted, file=stream)
        except ProofInvalid as exc:
            err.print(f"INVALID: {exc}", markup=False, highlight=False)
            raise typer.Exit(1) from None
        except OSError as exc:
            raise _verify_usage(f"cannot read --file {file}: {exc.strerror or exc}") from None
    try:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(result.time / 1000))
    except (OverflowError, OSError, ValueError):
        when = f"time {result.time} ms (beyond the calendar)"
    out.print(
        f"[bold green]VALID[/]: tx {result.tx_hash.hex()} committed on chain {escape(result.chain_id)} "
        f"at height {result.height}, {when}, signed by {result.signed_power}/{result.total_power} "
        "of the voting power",
        highlight=False,
    )
    if result.digest is not None:
        out.print(
            f"  evidence digest ({result.algorithm}) {result.digest.hex()}"
            + (" matches the file" if file is not None else ""),
            highlight=False,
        )
    if trusted is None:
        out.print(
            "[yellow]warning[/]: no --trust genesis given; the validator set was taken "
            "from the bundle itself",
            highlight=False,
        )


def main() -> None:
    app()


# -- bench ------------------------------------------------------------------------------


@app.command()
@friendly
def bench(
    nodes: int = typer.Option(1, help="Validator nodes (real processes)."),
    suite: str = typer.Option("sm", help="sm or intl."),
    txs: int = typer.Option(20_000, help="Pre-signed evidence transactions to commit."),
    batch: int = typer.Option(500, help="Transactions per HTTP request."),
    concurrency: int = typer.Option(4, help="Requests in flight."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON line (to stdout) at the end."),
    write_docs: bool | None = typer.Option(
        None,
        "--write-docs/--no-write-docs",
        help="Record the figures in docs/performance.md (default: when run where that file exists).",
    ),
    profile: bool = typer.Option(False, help="Run the node under cProfile and print where time goes."),
) -> None:
    """Measure committed TPS and latency against this machine's signature-verify bound."""
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
