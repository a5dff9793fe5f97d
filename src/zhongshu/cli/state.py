"""Point-in-time state reads with proofs: ``state get`` and ``evidence check``.

Both ask the gateway's state routes (docs/access-spec.md) for a value, or its absence, after a
block, and with ``--proof-out`` write the offline state bundle that ``zhongshu verify`` checks
(docs/proof-format.md). State keys are listed in docs/state-layout.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from zhongshu.cli.common import api_option, chain_option, format_time, friendly, json_option, out, print_json
from zhongshu.cli.evidence import SUITE_HASH, _print_record, check_algorithm, hash_stream, open_input
from zhongshu.cli.exits import UsageProblem

if TYPE_CHECKING:
    from zhongshu.sdk import ProofBundle

HEIGHT_HELP = "Read the state after this block (default: the newest)."
PROOF_OUT_HELP = "Write the offline state bundle (JSON) here; check it with `zhongshu verify`."
ANCHOR_HELP = "Prove the block through the newest header too."


def key_bytes(key: str, text: bool) -> bytes:
    """The state key a command line names: hex digits, or with ``text`` the UTF-8 of the text."""
    if text:
        return key.encode()
    try:
        raw = bytes.fromhex(key)
    except ValueError:
        raw = b""
    # Hex digits only; give --text for a key such as hub/a/demo-app.
    if not raw:
        raise UsageProblem(f"key {key[:80]!r} is not hex; give --text to name a key by its text")
    return raw


def readable_key(key: bytes) -> str:
    """A key as printable text where its bytes are (``ev/d/`` then hex for the digest)."""
    for prefix in (b"ev/d/", b"ev/o/"):
        if key.startswith(prefix):
            return prefix.decode() + key[len(prefix) :].hex()
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return key.hex()
    return text if text.isprintable() else key.hex()


def save_bundle(path: Path | None, bundle: ProofBundle | None) -> None:
    if path is None or bundle is None:
        return
    from zhongshu.sdk import save_proof

    save_proof(path, bundle)


@friendly
def state_get(
    key: str = typer.Argument(..., help="The state key, hex (docs/state-layout.md); text with --text."),
    text: bool = typer.Option(False, "--text", help="KEY is text (UTF-8), e.g. hub/a/demo-app."),
    height: int = typer.Option(None, "--height", min=1, help=HEIGHT_HELP),
    proof_out: Path = typer.Option(None, help=PROOF_OUT_HELP),
    anchor_latest: bool = typer.Option(False, "--anchor-latest", help=ANCHOR_HELP),
    api: str = api_option(),
    chain: str = chain_option(),
    as_json: bool = json_option(),
) -> None:
    """A state key's value, or its absence, at a height; --proof-out writes its proof."""
    from zhongshu.sdk import Client

    raw = key_bytes(key, text)
    with Client(api, chain) as client:
        answer = client.get_state(
            raw, height=height, proof=proof_out is not None, anchor_latest=anchor_latest
        )
    save_bundle(proof_out, answer.proof)
    if as_json:
        print_json(_without_proof(answer))
        return
    lines = [("key", readable_key(raw)), ("height", str(answer.height))]
    if answer.value is None:
        lines.append(("value", "absent"))
    else:
        lines.append(("value", f"{len(answer.value) // 2} bytes"))
        lines.append(("", answer.value))
    if proof_out is not None:
        lines.append(("proof", f"written to {proof_out}"))
    _print_fields(lines)


@friendly
def evidence_check(
    file: Path = typer.Argument(..., help="The file to look for (hashed as a stream)."),
    at_height: int = typer.Option(None, "--at-height", min=1, help=HEIGHT_HELP),
    algorithm: str = typer.Option(
        None, help="Hash of the file's digest (default: the chain suite's, sm3 or sha256)."
    ),
    proof_out: Path = typer.Option(None, help=PROOF_OUT_HELP),
    anchor_latest: bool = typer.Option(False, "--anchor-latest", help=ANCHOR_HELP),
    api: str = api_option(),
    chain: str = chain_option(),
    as_json: bool = json_option(),
) -> None:
    """Whether a file was deposited as of a height: its record, or proof that there was none."""
    from zhongshu.sdk import Client

    check_algorithm(algorithm)
    with Client(api, chain) as client:
        chosen = algorithm or SUITE_HASH[client.status().suite]
        with open_input(file) as stream:
            digest = hash_stream(chosen, stream, file)
        answer = client.get_evidence_at(
            digest, height=at_height, proof=proof_out is not None, anchor_latest=anchor_latest
        )
    save_bundle(proof_out, answer.proof)
    if as_json:
        print_json(_without_proof(answer))
        return
    out.print(f"file    {file}  ({chosen} {digest.hex()})", highlight=False, markup=False)
    if answer.record is None:
        out.print(f"not deposited as of height {answer.height}", highlight=False, markup=False)
    else:
        out.print(
            f"deposited at height {answer.record.height}, {format_time(answer.record.time)} "
            f"(read at height {answer.height})",
            highlight=False,
            markup=False,
        )
        _print_record(answer.record)
    if proof_out is not None:
        out.print(f"proof written to {proof_out}", highlight=False, markup=False)


def _without_proof(answer: Any) -> Any:
    import msgspec

    return msgspec.structs.replace(answer, proof=None)


def _print_fields(lines: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        out.print(f"{name.ljust(width)}  {value}", highlight=False, markup=False)
