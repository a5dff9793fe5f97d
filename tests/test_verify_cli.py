"""``zhongshu verify`` as a process, offline: exit 0 and VALID only for a valid proof, 1 for an invalid
one, 2 with a one-line usage message when a file cannot be read; ``--file`` is hashed with the hash
the deposit names."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import run_cli
from test_proof import Chain, roundtrip
from zhongshu.codec import encode
from zhongshu.ledger.evidence_args import EvidencePut
from zhongshu.ledger.genesis import save_genesis
from zhongshu.ledger.proof import digest_file

CONTENT = b"minutes of the 3rd city council meeting\n" * 500


def one_line(result: subprocess.CompletedProcess[str], code: int, prefix: str) -> str:
    """The single stderr line of a run that exited with ``code``; no VALID, no traceback."""
    assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "VALID" not in result.stdout and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A bundle of an ``intl`` chain depositing the SHA-512 of a file, the file and the genesis."""
    root = tmp_path_factory.mktemp("verify")
    file = root / "minutes.txt"
    file.write_bytes(CONTENT)
    with file.open("rb") as stream:
        digest = digest_file("sha512", stream)
    chain = Chain("intl")
    args = EvidencePut(digest, "minutes.txt", {"algorithm": "sha512"}, b"")
    chain.add_block([chain.tx("evidence", "put", encode(args))])
    bundle = root / "bundle.json"
    bundle.write_text(json.dumps(roundtrip(chain.bundle(1, 0)), indent=2))
    genesis = root / "genesis.json"
    save_genesis(genesis, chain.genesis)
    return {"file": file, "bundle": bundle, "genesis": genesis, "root": root}


def test_a_sha512_deposit_verifies_with_its_file(files: dict[str, Path]) -> None:
    result = run_cli("verify", files["bundle"], "--file", files["file"], "--trust", files["genesis"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("VALID")
    assert "(sha512)" in result.stdout and "matches the file" in result.stdout


def test_a_sm_deposit_of_a_sha256_digest_verifies_with_its_file(tmp_path: Path) -> None:
    file = tmp_path / "deed.txt"
    file.write_bytes(CONTENT)
    with file.open("rb") as stream:
        digest = digest_file("sha256", stream)
    chain = Chain("sm")
    chain.add_block(
        [chain.tx("evidence", "put", encode(EvidencePut(digest, "deed.txt", {"algorithm": "sha256"})))]
    )
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(roundtrip(chain.bundle(1, 0))))
    result = run_cli("verify", bundle, "--file", file)
    assert result.returncode == 0 and "(sha256)" in result.stdout, result.stderr
    file.write_bytes(CONTENT + b"!")
    assert "sha256 digest" in one_line(run_cli("verify", bundle, "--file", file), 1, "INVALID:")


@pytest.mark.parametrize("which", ["bundle", "--file", "--trust"])
@pytest.mark.parametrize("how", ["missing", "a directory"])
def test_an_unreadable_file_exits_2_with_usage(files: dict[str, Path], which: str, how: str) -> None:
    bad = files["root"] / "nowhere.json" if how == "missing" else files["root"]
    args = {"bundle": files["bundle"], "--file": files["file"], "--trust": files["genesis"]}
    args[which] = bad
    line = one_line(
        run_cli("verify", args["bundle"], "--file", args["--file"], "--trust", args["--trust"]), 2, "error:"
    )
    assert str(bad) in line and "usage: zhongshu verify BUNDLE" in line


def test_a_trust_file_that_is_not_a_genesis_exits_2(files: dict[str, Path]) -> None:
    junk = files["root"] / "junk-genesis.json"
    junk.write_text('{"chain_id": "x"}')
    line = one_line(run_cli("verify", files["bundle"], "--trust", junk), 2, "error:")
    assert "--trust" in line and "usage:" in line


def test_an_invalid_bundle_exits_1(files: dict[str, Path]) -> None:
    root = files["root"]
    text = files["bundle"].read_text()
    repeated = root / "repeated.json"
    repeated.write_text(text.replace('"format": ', '"format": "zhongshu-proof/2", "format": ', 1))
    assert "'format' appears twice" in one_line(run_cli("verify", repeated), 1, "INVALID:")
    not_utf8 = root / "latin1.json"
    not_utf8.write_bytes(b'{"format": "\xe9"}')
    assert "not UTF-8" in one_line(run_cli("verify", not_utf8), 1, "INVALID:")
    other = root / "other.txt"
    other.write_bytes(CONTENT + b"!")
    reason = one_line(
        run_cli("verify", files["bundle"], "--file", other, "--trust", files["genesis"]), 1, "INVALID:"
    )
    assert "sha512 digest" in reason
