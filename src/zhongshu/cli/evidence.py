"""Evidence deposit (存证) from the command line: ``evidence put``, ``get`` and ``list``.

``put`` hashes the file as a stream (1 MiB at a time, ledger.proof.digest), submits the signed
deposit without waiting, prints ``accepted <tx hash>`` at once, then waits for the commit by
looking the transaction up. If it is not seen committed in time it says what the node's status
shows (height, peers, quorum) and exits 4: the transaction may still commit.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import typer

from zhongshu.cli.chain import connected_peers, quorum_note
from zhongshu.cli.common import (
    api_option,
    chain_option,
    err,
    format_time,
    friendly,
    json_option,
    out,
    print_json,
)
from zhongshu.cli.exits import NotCommitted, Refused, UsageProblem

if TYPE_CHECKING:
    from zhongshu.sdk import ChainStatus, Client, TxView

COMMIT_WAIT = 30.0
"""Seconds ``evidence put`` waits for the commit by default."""
POLL_FIRST = 0.05
"""Seconds before the first look-up of a transaction being waited for; doubled up to POLL_MAX."""
POLL_MAX = 0.5
RESERVED_METADATA = {"algorithm": "--algorithm", "size": "the file's size, recorded by the command"}
"""Metadata keys the command sets itself, and what sets them."""

SUITE_HASH = {"sm": "sm3", "intl": "sha256"}
"""A chain suite's default digest hash."""


@contextlib.contextmanager
def open_input(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for reading; UsageProblem (exit 2) when it cannot be."""
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise UsageProblem(f"cannot read {path}: {exc.strerror or exc}") from None
    with stream:
        yield stream


def hash_stream(algorithm: str, stream: BinaryIO, path: Path) -> bytes:
    """The digest of the whole stream, read 1 MiB at a time; UsageProblem on a read error."""
    from zhongshu.ledger.proof import digest_file

    try:
        return digest_file(algorithm, stream)
    except OSError as exc:
        raise UsageProblem(f"cannot read {path}: {exc.strerror or exc}") from None


def check_algorithm(algorithm: str | None) -> None:
    from zhongshu.ledger.evidence_args import DIGEST_ALGORITHMS

    # Only the hashes a verifier knows may name a digest (docs/proof-format.md §2).
    if algorithm is not None and algorithm not in DIGEST_ALGORITHMS:
        raise UsageProblem(f"--algorithm {algorithm!r} is not one of {', '.join(DIGEST_ALGORITHMS)}")


def parse_metadata(pairs: list[str]) -> dict[str, str]:
    """``--metadata k=v`` options as a dict; UsageProblem for a malformed, repeated or reserved key."""
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        # Each pair is KEY=VALUE with a non-empty key.
        if not sep or not key:
            raise UsageProblem(f"--metadata {pair!r} is not KEY=VALUE")
        # A key the command sets itself cannot be given.
        if key in RESERVED_METADATA:
            raise UsageProblem(f"--metadata {key}= is set by {RESERVED_METADATA[key]}")
        # A key given twice would silently lose a value.
        if key in metadata:
            raise UsageProblem(f"--metadata {key}= is given twice")
        metadata[key] = value
    return metadata


def wait_for_commit(
    client: Client,
    tx_hash: str,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> TxView | None:
    """The transaction once the node reports it committed; None when ``timeout`` seconds pass
    first. A hash the node does not know (yet, or any more) counts as not committed."""
    from zhongshu.sdk import ApiError

    deadline = clock() + timeout
    delay = POLL_FIRST
    while True:
        try:
            view = client.get_tx(tx_hash)
            if view.status == "committed":
                return view
        except ApiError as exc:
            if exc.status != 404:
                raise
        left = deadline - clock()
        if left <= 0:
            return None
        sleep(min(delay, left))
        delay = min(2 * delay, POLL_MAX)


def describe_stall(status: ChainStatus | None) -> str:
    """What a node's status says about why a transaction is not committed yet."""
    if status is None:
        return "the node no longer answers its status"
    parts = [f"node at height {status.height}"]
    peers = connected_peers(status)
    if peers is not None:
        parts.append(f"{len(peers)} peer{'' if len(peers) == 1 else 's'} connected")
    parts.append(quorum_note(status))
    parts.append(f"{status.mempool_txs} transactions waiting in its mempool")
    return ", ".join(parts)


def not_committed(client: Client, tx_hash: str, timeout: float) -> NotCommitted:
    """The error of a commit wait that timed out, with what the node's status knows."""
    from zhongshu.sdk import ZhongshuError

    try:
        status: ChainStatus | None = client.status()
    except ZhongshuError:
        status = None
    return NotCommitted(
        f"transaction {tx_hash} not committed within {timeout:g} s ({describe_stall(status)}); "
        f"it may still commit: look it up with `zhongshu tx get {tx_hash}`; submitting again is safe "
        "(a transaction is idempotent by hash, and a digest keeps its first deposit)"
    )


@friendly
def evidence_put(
    file: Path = typer.Argument(..., help="The file whose digest to deposit (hashed as a stream)."),
    key: Path = typer.Option(
        None, help="PEM private key that signs the deposit (default: the --app key, on an sm chain)."
    ),
    app: Path = typer.Option(
        None,
        envvar="ZHONGSHU_APP",
        help="Application credentials (app.json, written by `zhongshu app register` or `up`): a hub "
        "node takes deposits on a business chain only in requests its app signs.",
    ),
    api: str = api_option(),
    chain: str = chain_option(),
    proof_out: Path = typer.Option(None, help="Write the proof bundle (JSON) here."),
    name: str = typer.Option(None, help="Name to record (default: the file name)."),
    metadata: list[str] = typer.Option(
        [], "--metadata", "-m", help="KEY=VALUE to record with the deposit; repeat for more."
    ),
    algorithm: str = typer.Option(
        None,
        help="Hash of the digest: sm3, sha256, sha384, sha512, sha3-256, sha3-384 or sha3-512 "
        "(default: the chain suite's, sm3 or sha256). Recorded with the deposit.",
    ),
    timeout: float = typer.Option(COMMIT_WAIT, help="Seconds to wait for the commit."),
    as_json: bool = json_option(),
) -> None:
    """Deposit FILE's digest: print `accepted <tx hash>` once the node takes it, then `committed
    at height H`. Exit 4 when it is not committed within --timeout (it may still commit)."""
    from zhongshu.sdk import DEFAULT_VALIDITY, Client, Receipt, evidence_tx, load_app, load_key, save_proof

    check_algorithm(algorithm)
    credentials = load_app(app) if app is not None else None
    # Someone signs the deposit: the key given, or the app's own.
    if key is not None:
        signer = load_key(key)
    elif credentials is not None:
        signer = credentials.key
    else:
        raise UsageProblem("give --key (the signer's PEM key) or --app (an app's credentials file)")
    # The wait is a positive number of seconds.
    if not timeout > 0:
        raise UsageProblem(f"--timeout {timeout:g} is not a positive number of seconds")
    extra = parse_metadata(list(metadata or []))
    suite = signer.suite.name
    say = err if as_json else out
    with open_input(file) as stream, Client(api, chain, app=credentials) as client:
        status = client.status()
        # The key must be of the chain's suite, or the node refuses its signature.
        if status.suite != suite:
            hint = (
                f"; the app's key is SM2: give --key with a key of suite {status.suite} "
                f"(zhongshu keys new --suite {status.suite})"
                if key is None
                else ""
            )
            raise Refused(f"chain {chain!r} uses suite {status.suite}, the key is {suite}{hint}")
        algorithm = algorithm or SUITE_HASH[suite]
        size = os.fstat(stream.fileno()).st_size
        digest = hash_stream(algorithm, stream, file)
        tx = evidence_tx(
            signer,
            status.chain_id,
            bytes.fromhex(status.genesis_hash),
            digest,
            name or file.name,
            status.height + DEFAULT_VALIDITY,
            {"size": str(size), **extra},
            algorithm=algorithm,
        )
        tx_hash = client.submit(tx, wait=False).hashes[0]
        say.print(f"accepted {tx_hash}", highlight=False)
        sys.stdout.flush()
        if err.is_terminal:
            with err.status(f"waiting for the commit of {tx_hash[:16]}... (up to {timeout:g} s)"):
                view = wait_for_commit(client, tx_hash, timeout)
        else:
            if not as_json:
                out.print(f"waiting for the commit (up to {timeout:g} s)", highlight=False)
                sys.stdout.flush()
            view = wait_for_commit(client, tx_hash, timeout)
        if view is None:
            raise not_committed(client, tx_hash, timeout)
        assert view.height is not None and view.index is not None and view.time is not None
        assert view.receipt is not None
        receipt = Receipt(
            tx_hash=tx_hash, height=view.height, index=view.index, time=view.time, receipt=view.receipt
        )
        if not receipt.ok:
            raise Refused(f"deposit failed at height {receipt.height}: {receipt.receipt.error}")
        result = receipt.deposit()
        if proof_out:
            save_proof(proof_out, client.get_proof(tx_hash))
    if as_json:
        proof = None if proof_out is None else str(proof_out)
        print_json({"receipt": receipt, "deposit": result, "algorithm": algorithm, "proof": proof})
        return
    out.print(f"committed at height {receipt.height}", highlight=False)
    if result.duplicate:
        out.print(
            f"note: this digest was first deposited at height {result.height} (tx {result.tx_hash})",
            highlight=False,
        )
    if proof_out:
        out.print(f"proof written to {proof_out}", highlight=False, markup=False)


@friendly
def evidence_get(
    digest: str = typer.Argument(None, help="Digest (hex); or give --file."),
    file: Path = typer.Option(None, help="Compute the digest of this file (hashed as a stream)."),
    algorithm: str = typer.Option(
        None, help="Hash of --file's digest (default: the chain suite's, sm3 or sha256)."
    ),
    api: str = api_option(),
    chain: str = chain_option(),
    as_json: bool = json_option(),
) -> None:
    """Show the evidence record of a digest, or of a file's digest."""
    from zhongshu.sdk import Client

    check_algorithm(algorithm)
    # Exactly one of a digest and --file names the record.
    if (digest is None) == (file is None):
        raise UsageProblem("give a digest or --file (one of them)")
    with Client(api, chain) as client:
        if file is not None:
            with open_input(file) as stream:
                chosen = algorithm or SUITE_HASH[client.status().suite]
                digest = hash_stream(chosen, stream, file).hex()
        assert digest is not None
        record = client.get_evidence(digest)
    if as_json:
        print_json(record)
        return
    _print_record(record)


@friendly
def evidence_list(
    owner: str = typer.Option(None, help="The depositor's public key (hex)."),
    key: Path = typer.Option(None, help="Or the depositor's PEM key file (its public key is used)."),
    limit: int = typer.Option(None, min=1, help="List at most this many records (default: all)."),
    api: str = api_option(),
    chain: str = chain_option(),
    as_json: bool = json_option(),
) -> None:
    """The records a key deposited, oldest first, page after page."""
    from zhongshu.sdk import Client, EvidenceRecord, load_key

    # Exactly one of --owner and --key names the depositor.
    if (owner is None) == (key is None):
        raise UsageProblem("give --owner PUBKEY_HEX or --key FILE (one of them)")
    public = owner if owner is not None else load_key(key).public_hex()
    try:
        bytes.fromhex(public)
    except ValueError:
        raise UsageProblem(f"--owner {public!r} is not a public key in hex") from None
    records: list[EvidenceRecord] = []
    cursor: str | None = None
    with Client(api, chain) as client:
        while limit is None or len(records) < limit:
            page_size = None if limit is None else min(limit - len(records), 1000)
            page = client.evidence_page(public, cursor, page_size)
            records.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    records = records if limit is None else records[:limit]
    if as_json:
        print_json(records)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("height", "time", "name", "digest", "tx"):
        table.add_column(column)
    for record in records:
        # Cells are Rich markup: a name is the depositor's text, escaped.
        table.add_row(
            str(record.height), format_time(record.time), escape(record.name), record.digest, record.tx_hash
        )
    out.print(table, highlight=False)
    more = " (more remain: raise --limit)" if cursor is not None else ""
    out.print(f"{len(records)} record{'' if len(records) == 1 else 's'}{more}", highlight=False)


def _print_record(record: Any) -> None:
    lines = [
        ("digest", record.digest),
        ("name", record.name),
        ("owner", record.owner),
        ("height", f"{record.height}, {format_time(record.time)}"),
        ("tx", record.tx_hash),
    ]
    lines += [(f"  {k}", v) for k, v in sorted(record.metadata.items())]
    width = max(len(n) for n, _ in lines)
    for name, value in lines:
        out.print(f"{name.ljust(width)}  {value}", highlight=False, markup=False)
