"""``zhongshu verify``: check a proof bundle offline, and start fast.

The entry (zhongshu.cli.main) runs ``zhongshu verify ARGS`` through ``run`` alone: argparse, the
verifier and the crypto suite the bundle names, and nothing else. Typer builds its parameters
with pydantic, and the gateway, the HTTP client and Rich are larger still; without them the
whole check takes a fraction of a second (docs/performance.md, *verify start-up*). ``--help``
goes to the full command tree, where ``verify`` is the same function (``check_bundle``).
Exit status (docs/proof-format.md §8): 0 valid, 1 invalid, 2 a file cannot be read.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from zhongshu.cli.exits import USAGE

if TYPE_CHECKING:
    from zhongshu.ledger.proof import VerifiedProof, VerifiedState

VERIFY_USAGE = "usage: zhongshu verify BUNDLE [--file FILE] [--trust GENESIS]"
VALID = 0
INVALID = 1

VERIFY_HELP = """Verify a proof bundle (of a transaction or of a state key) offline. Exit 0 only when it
is valid, 1 when it is not, 2 when a file cannot be read (or --trust is not a genesis document)."""
BUNDLE_HELP = "Proof bundle (JSON): zhongshu-proof/2 or zhongshu-state-proof/1."
FILE_HELP = (
    "The original file: its digest, by the hash the deposit names, must be the deposited one "
    "(for a state proof: the evidence key's digest)."
)
TRUST_HELP = "Trusted genesis.json of the chain."


class BadArguments(Exception):
    """A command line ``verify`` cannot run: exit status 2."""


def _usage(message: str) -> int:
    """A bad argument of ``verify`` (not an invalid proof): one line on stderr, exit status 2."""
    sys.stderr.write(f"error: {' '.join(message.split())} ({VERIFY_USAGE})\n")
    return USAGE


def _paint(text: str, colour: str) -> str:
    """``text`` in bold ANSI ``colour`` on a terminal (unless NO_COLOR is set), else as it is."""
    if not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        return text
    code = {"green": "32", "yellow": "33"}[colour]
    return f"\x1b[1;{code}m{text}\x1b[0m"


def check_bundle(bundle: Path, file: Path | None, trust: Path | None) -> int:
    """Verify ``bundle`` (against ``file`` and the genesis ``trust`` when given), print the
    verdict, and return the exit status: 0 valid, 1 invalid, 2 a file cannot be read."""
    from zhongshu.ledger.genesis import GenesisError, load_genesis
    from zhongshu.ledger.proof import (
        STATE_FORMAT,
        ProofInvalid,
        VerifiedProof,
        load_bundle,
        verify_bundle,
        verify_state_bundle,
    )

    try:
        text = bundle.read_bytes()
    except OSError as exc:
        return _usage(f"cannot read the bundle {bundle}: {exc.strerror or exc}")
    try:
        trusted = load_genesis(trust) if trust else None
    except GenesisError as exc:
        return _usage(f"--trust: {exc}")
    with contextlib.ExitStack() as files:
        try:
            stream = None if file is None else files.enter_context(file.open("rb"))
        except OSError as exc:
            return _usage(f"cannot read --file {file}: {exc.strerror or exc}")
        try:
            # The file, if any, is hashed as a stream in 1 MiB chunks (ledger.proof.digest).
            value = load_bundle(text)
            # The bundle's format says which kind it is; any other format is a tx bundle's error.
            is_state = isinstance(value, dict) and value.get("format") == STATE_FORMAT
            verify = verify_state_bundle if is_state else verify_bundle
            result = verify(value, trusted=trusted, file=stream)
        except ProofInvalid as exc:
            sys.stderr.write(f"INVALID: {' '.join(str(exc).split())}\n")
            return INVALID
        except OSError as exc:
            return _usage(f"cannot read --file {file}: {exc.strerror or exc}")
    if isinstance(result, VerifiedProof):
        lines = _proof_lines(result, file is not None)
    else:
        lines = _state_lines(result)
    if trusted is None:
        lines.append(
            f"{_paint('warning', 'yellow')}: no --trust genesis given; "
            "the validator set was taken from the bundle itself"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    return VALID


def _when(ms: int) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))
    except (OverflowError, OSError, ValueError):
        return f"time {ms} ms (beyond the calendar)"


def _proof_lines(result: VerifiedProof, with_file: bool) -> list[str]:
    """What a valid transaction bundle proves."""
    when = _when(result.time)
    lines = [
        f"{_paint('VALID', 'green')}: tx {result.tx_hash.hex()} committed on chain {result.chain_id} "
        f"at height {result.height}, {when}, signed by {result.signed_power}/{result.total_power} "
        "of the voting power"
    ]
    if result.digest is not None:
        matches = " matches the file" if with_file else ""
        lines.append(f"  evidence digest ({result.algorithm}) {result.digest.hex()}{matches}")
    return lines


def _show_key(key: bytes) -> str:
    """The key as text when it is printable ASCII, else as hex."""
    if key and all(0x20 <= b < 0x7F for b in key):
        return repr(key.decode("ascii"))
    return f"{key.hex()} (hex)"


def _state_lines(result: VerifiedState) -> list[str]:
    """What a valid state bundle proves."""
    at = f"height {result.height}, {_when(result.time)}"
    held = "absent" if result.value is None else f"present, {len(result.value)} bytes"
    lines = [
        f"{_paint('VALID', 'green')}: state of chain {result.chain_id} at {at}, signed by "
        f"{result.signed_power}/{result.total_power} of the voting power",
        f"  key {_show_key(result.key)}: {held}",
    ]
    record = result.evidence
    if record is not None:
        lines.append(
            f"  evidence digest {record.digest.hex()} name {record.name!r} deposited at height "
            f"{record.height}, {_when(record.time)}, by {record.owner.hex()}"
        )
    if result.file_checked:
        digest = f"the file's {result.algorithm} digest"
        if record is not None:
            lines.append(f"  {digest} matches: the file was deposited at height {record.height}")
        else:
            lines.append(
                f"  {digest} matches the key: the file was not deposited as of height {result.height}"
            )
    if result.anchor_height is not None:
        lines.append(f"  block {result.height} proven by the header at height {result.anchor_height}")
    return lines


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise BadArguments(message)


def run(args: list[str]) -> int:
    """``zhongshu verify ARGS``: parse them (one line and exit status 2 when they are wrong) and
    check the bundle; the exit status."""
    parser = _Parser(prog="zhongshu verify", add_help=False, allow_abbrev=False)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--file", type=Path)
    parser.add_argument("--trust", type=Path)
    try:
        options = parser.parse_args(args)
    except BadArguments as exc:
        return _usage(str(exc))
    return check_bundle(options.bundle, options.file, options.trust)
