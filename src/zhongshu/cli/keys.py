"""``zhongshu keys new`` and ``keys show``: key pairs in PEM files (SM2 or Ed25519)."""

from __future__ import annotations

from pathlib import Path

import typer

from zhongshu.cli.common import friendly, json_option, out, print_json
from zhongshu.cli.exits import UsageProblem


@friendly
def keys_new(
    out_file: Path = typer.Option(..., "--out", help="Where to write the PEM private key."),
    suite: str = typer.Option("sm", help="sm (SM2) or intl (Ed25519)."),
) -> None:
    """Create a key pair; print the public key (hex)."""
    from zhongshu.crypto import CryptoError, get_suite
    from zhongshu.sdk import save_key

    if out_file.exists():
        raise UsageProblem(f"{out_file} exists; refusing to overwrite a key")
    try:
        key = get_suite(suite).generate_private_key()
    except CryptoError as exc:
        raise UsageProblem(f"--suite: {exc}") from None
    save_key(out_file, key)
    out.print(key.public_hex(), highlight=False)


@friendly
def keys_show(
    key: Path = typer.Option(..., "--key", help="PEM private key (as `keys new` writes it)."),
    as_json: bool = json_option(),
) -> None:
    """Show a key's suite and public key (hex); the private key is not printed."""
    from zhongshu.sdk import load_key

    signer = load_key(key)
    if as_json:
        print_json({"suite": signer.suite.name, "public_key": signer.public_hex()})
        return
    out.print(f"suite       {signer.suite.name}", highlight=False)
    out.print(f"public key  {signer.public_hex()}", highlight=False)
