"""Reading a chain through its gateway: ``status``, ``tx get``, ``block get``, ``proof get``.

Each command uses the SDK's ``Client``; its failures become one ``error:`` line with the exit
status of zhongshu.cli.exits (1 refused, 2 bad argument or file, 3 node unreachable).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from zhongshu.cli.common import (
    api_option,
    chain_option,
    format_time,
    friendly,
    json_option,
    out,
    print_json,
)
from zhongshu.cli.exits import UsageProblem

if TYPE_CHECKING:
    from zhongshu.sdk import ChainStatus

TX_HASH = re.compile(r"[0-9a-fA-F]{64}")
"""A transaction hash: 32 bytes (SM3 or SHA-256) in hex."""


def check_tx_hash(value: str) -> str:
    """``value`` as a lowercase transaction hash; UsageProblem unless it is 64 hex digits."""
    # Both suites hash to 32 bytes: anything else cannot name a transaction.
    if not TX_HASH.fullmatch(value):
        raise UsageProblem(f"{value!r} is not a transaction hash (64 hex digits)")
    return value.lower()


def consensus_state(status: ChainStatus) -> str:
    """What consensus is doing, in a few words: single validator, idle, or its height and step."""
    consensus = status.consensus
    if consensus is None:
        return "single validator"
    if consensus.get("idle"):
        return "idle (no transactions waiting)"
    return f"height {consensus.get('height')} round {consensus.get('round')} step {consensus.get('step')}"


def connected_peers(status: ChainStatus) -> list[str] | None:
    """The names of the peers connected to the node; None for a single-validator node."""
    if status.consensus is None:
        return None
    return [str(p) for p in status.consensus.get("peers", [])]


def quorum_note(status: ChainStatus) -> str:
    """Whether the node and its connected peers hold a quorum, assuming equal voting power."""
    peers = connected_peers(status)
    if peers is None:
        return "single validator: always a quorum"
    connected = len(peers) + 1
    needed = 2 * status.validators // 3 + 1
    # A quorum is more than 2/3 of the validators (of the voting power, when powers are equal).
    if connected >= needed:
        return f"quorum: {connected} of {status.validators} validators connected"
    return (
        f"consensus lacks a quorum: {connected} of {status.validators} validators connected, {needed} needed"
    )


@friendly
def status(api: str = api_option(), chain: str = chain_option(), as_json: bool = json_option()) -> None:
    """The chain's height, latest block, validators, peers and consensus state."""
    from rich.markup import escape
    from rich.table import Table

    from zhongshu.sdk import Client

    with Client(api, chain) as client:
        current = client.status()
    if as_json:
        print_json(current)
        return
    peers = connected_peers(current)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    # Cells are Rich markup: names from the node are escaped.
    table.add_row("chain", f"{escape(current.chain_id)} (suite {current.suite})")
    table.add_row("height", str(current.height))
    table.add_row("latest block", current.latest_block_hash or "-")
    table.add_row("block time", format_time(current.latest_block_time))
    table.add_row("validators", str(current.validators))
    if peers is None:
        table.add_row("peers", "none (single validator)")
    else:
        names = escape(", ".join(peers))
        table.add_row("peers", f"{len(peers)} connected" + (f": {names}" if peers else ""))
    table.add_row("consensus", escape(consensus_state(current)))
    if peers is not None:
        table.add_row("quorum", quorum_note(current))
    table.add_row("mempool", f"{current.mempool_txs} transactions, {current.mempool_bytes} bytes")
    out.print(table, highlight=False)


@friendly
def tx_get(
    tx_hash: str = typer.Argument(..., help="Transaction hash (hex)."),
    api: str = api_option(),
    chain: str = chain_option(),
    as_json: bool = json_option(),
) -> None:
    """A transaction by hash: pending or committed, with its receipt."""
    from zhongshu.sdk import Client

    with Client(api, chain) as client:
        view = client.get_tx(check_tx_hash(tx_hash))
    if as_json:
        print_json(view)
        return
    lines = [("tx", view.hash)]
    if view.status == "committed":
        where = f"committed at height {view.height} (index {view.index}), {format_time(view.time)}"
        lines.append(("status", where))
    else:
        lines.append(("status", "pending (in the mempool)"))
    lines.append(("call", f"{view.tx.contract}.{view.tx.method}"))
    lines.append(("sender", view.tx.sender))
    if view.receipt is not None:
        outcome = view.receipt
        lines.append(("receipt", outcome.status + (f": {outcome.error}" if outcome.error else "")))
        if outcome.result is not None:
            lines.append(("result", _compact(outcome.result)))
    _print_fields(lines)


@friendly
def block_get(
    height: str = typer.Argument(..., help="Block height, or `latest`."),
    api: str = api_option(),
    chain: str = chain_option(),
    as_json: bool = json_option(),
) -> None:
    """A block by height: its hash, time, proposer, commit and transactions."""
    from zhongshu.sdk import Client

    at: int | str = height
    if height != "latest":
        # A height is a whole number from 1 (or `latest`).
        if not height.isdigit() or int(height) < 1:
            raise UsageProblem(f"{height!r} is not a block height (a whole number from 1, or latest)")
        at = int(height)
    with Client(api, chain) as client:
        block = client.get_block(at)
    if as_json:
        print_json(block)
        return
    _print_fields(
        [
            ("block", f"{block.height} {block.hash}"),
            ("time", format_time(block.time)),
            ("proposer", block.header.proposer),
            ("commit", f"round {block.commit.round}, {len(block.commit.signatures)} signatures"),
            ("txs", str(block.tx_count)),
        ]
    )
    for tx_hash in block.txs:
        out.print(f"  {tx_hash}", highlight=False)


@friendly
def proof_get(
    tx_hash: str = typer.Argument(..., help="Hash (hex) of a committed transaction."),
    out_file: Path = typer.Option(None, "--out", help="Write the bundle here (default: print it)."),
    anchor_latest: bool = typer.Option(
        False, "--anchor-latest", help="Prove the block through the newest header too."
    ),
    api: str = api_option(),
    chain: str = chain_option(),
) -> None:
    """The offline proof bundle of a committed transaction (check it with `zhongshu verify`)."""
    from zhongshu.sdk import Client, save_proof

    with Client(api, chain) as client:
        bundle = client.get_proof(check_tx_hash(tx_hash), anchor_latest=anchor_latest)
    if out_file is None:
        print_json(bundle.document)
        return
    save_proof(out_file, bundle)
    out.print(f"proof of tx {tx_hash.lower()} written to {out_file}", highlight=False, markup=False)


def _compact(value: Any) -> str:
    import msgspec

    return msgspec.json.encode(value).decode()


def _print_fields(lines: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        out.print(f"{name.ljust(width)}  {value}", highlight=False, markup=False)
