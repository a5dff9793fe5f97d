"""What a user does with the ``zhongshu`` command, against a real node: keys, deposit, verify, restart.

Every command runs as its own process (``python -m zhongshu``); the verifier is run offline on the
files the deposit wrote, with the node's genesis.json as the only trusted input.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import NodeProcess, free_port, run_cli, wait_for

pytestmark = pytest.mark.slow

ACCEPTED = re.compile(r"^accepted ([0-9a-f]{64})$")
COMMITTED = re.compile(r"^committed at height (\d+)$")
PUBLIC_KEY_HEX = {"sm": 130, "intl": 64}


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a command that must succeed."""
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], prefix: str) -> str:
    """A failure reported as exactly one line on stderr starting with ``prefix``, no traceback."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(prefix), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    reason = lines[0].removeprefix(prefix).strip()
    assert reason, result.stderr
    return reason


def deposit(node: NodeProcess, file: Path, key: Path, proof: Path | None = None) -> tuple[str, int, str]:
    """``evidence put``: ``accepted HASH`` first, ``committed at height H`` after; return the tx
    hash, the height and the whole stdout."""
    args: list[str | Path] = ["evidence", "put", file, "--key", key, "--api", node.url]
    if proof is not None:
        args += ["--proof-out", proof]
    stdout = ok(run_cli(*args))
    lines = [line.strip() for line in stdout.splitlines()]
    hashes = [m.group(1) for line in lines if (m := ACCEPTED.match(line))]
    heights = [int(m.group(1)) for line in lines if (m := COMMITTED.match(line))]
    assert len(hashes) == 1 and len(heights) == 1, stdout
    assert stdout.index("accepted") < stdout.index("committed at height"), stdout
    return hashes[0], heights[0], stdout


def verify(bundle: Path, *extra: str | Path) -> subprocess.CompletedProcess[str]:
    return run_cli("verify", bundle, *extra)


def assert_valid(result: subprocess.CompletedProcess[str]) -> str:
    stdout = ok(result)
    assert stdout.startswith("VALID"), stdout
    return stdout


def assert_invalid(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "VALID" not in result.stdout
    return one_line_error(result, "INVALID:")


def edited(bundle: Path, out: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    doc = json.loads(bundle.read_text())
    change(doc)
    out.write_text(json.dumps(doc, indent=2))
    return out


def flip_hex_digit(value: str, at: int = -1) -> str:
    digit = value[at]
    replacement = "0" if digit != "0" else "1"
    index = at % len(value)
    return value[:index] + replacement + value[index + 1 :]


# -- the flow a user is shown -------------------------------------------------------------


@pytest.mark.parametrize("suite", ["sm", "intl"])
def test_keys_deposit_verify_tamper(
    tmp_path: Path, node_factory: Callable[..., NodeProcess], suite: str
) -> None:
    node = node_factory(suite=suite)
    assert json.loads(node.genesis_path.read_text())["suite"] == suite
    banner = re.compile(rf"^\s*API\s+{re.escape(node.status_url)}\s*$", re.MULTILINE)
    wait_for(lambda: banner.search(node.log_path.read_text()), 10, "the API line of the banner")
    trust = node.genesis_path

    # keys new: a PEM file and the public key in hex.
    key = tmp_path / "alice.pem"
    public = ok(run_cli("keys", "new", "--out", key, "--suite", suite)).strip()
    assert re.fullmatch(f"[0-9a-f]{{{PUBLIC_KEY_HEX[suite]}}}", public), public
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")

    # evidence put: accepted with its tx hash, then the committed height; the proof bundle on disk.
    file = tmp_path / "contract-2024-001.pdf"
    file.write_bytes(b"%PDF-1.7 lease of shop 12, Nanjing Road\n" + bytes(range(256)) * 40)
    bundle = tmp_path / "b.json"
    tx_hash, height, _ = deposit(node, file, key, bundle)
    assert height >= 1
    doc = json.loads(bundle.read_text())
    assert doc["tx"]["hash"] == tx_hash and doc["block"]["height"] == height and doc["suite"] == suite

    # The node agrees: evidence get by digest names this deposit.
    digest = doc["evidence"]["digest"]
    record = json.loads(ok(run_cli("evidence", "get", digest, "--api", node.url, "--json")))
    assert (record["tx_hash"], record["height"], record["owner"]) == (tx_hash, height, public)

    # verify: with the file and the trusted genesis, without the file, without trust.
    stdout = assert_valid(verify(bundle, "--file", file, "--trust", trust))
    assert tx_hash in stdout and f"height {height}" in stdout and "matches the file" in stdout
    assert_valid(verify(bundle, "--trust", trust))
    assert "warning" in assert_valid(verify(bundle))

    # One byte of the file changed: its digest is not the deposited one.
    changed = tmp_path / "changed.pdf"
    data = bytearray(file.read_bytes())
    data[100] ^= 0x01
    changed.write_bytes(bytes(data))
    reason = assert_invalid(verify(bundle, "--file", changed, "--trust", trust))
    assert "digest" in reason

    # Edited bundles: each alteration is caught with a reason.
    def height_up(d: dict[str, Any]) -> None:
        d["block"]["height"] += 1

    def commit_signature(d: dict[str, Any]) -> None:
        sig = d["commit"]["signatures"][0]
        sig["signature"] = flip_hex_digit(sig["signature"], 20)

    def block_time(d: dict[str, Any]) -> None:
        d["block"]["time"] -= 1000

    def tx_hash_digit(d: dict[str, Any]) -> None:
        d["tx"]["hash"] = flip_hex_digit(d["tx"]["hash"])

    def evidence_digest(d: dict[str, Any]) -> None:
        d["evidence"]["digest"] = flip_hex_digit(d["evidence"]["digest"])

    def encoded_tx_byte(d: dict[str, Any]) -> None:
        d["tx"]["encoded"] = flip_hex_digit(d["tx"]["encoded"], 40)

    def header_byte(d: dict[str, Any]) -> None:
        d["block"]["header"] = flip_hex_digit(d["block"]["header"], -10)

    def dropped_signature(d: dict[str, Any]) -> None:
        d["commit"]["signatures"] = []

    for change in (
        height_up,
        commit_signature,
        block_time,
        tx_hash_digit,
        evidence_digest,
        encoded_tx_byte,
        header_byte,
        dropped_signature,
    ):
        altered = edited(bundle, tmp_path / f"{change.__name__}.json", change)
        assert_invalid(verify(altered, "--file", file, "--trust", trust))

    # Without --file and --trust the verifier still checks everything the bundle says.
    assert_invalid(verify(edited(bundle, tmp_path / "sig.json", commit_signature)))

    # A genesis naming another validator is not the trusted one for this bundle.
    other = json.loads(trust.read_text())
    other["validators"][0]["public_key"] = public
    foreign = tmp_path / "foreign-genesis.json"
    foreign.write_text(json.dumps(other))
    assert "validator set" in assert_invalid(verify(bundle, "--trust", foreign))

    # The same file deposited again: the original height is reported.
    again_hash, again_height, stdout = deposit(node, file, key)
    assert again_hash != tx_hash and again_height > height
    assert f"first deposited at height {height}" in stdout and tx_hash in stdout
    record = json.loads(ok(run_cli("evidence", "get", digest, "--api", node.url, "--json")))
    assert (record["tx_hash"], record["height"]) == (tx_hash, height)


def test_keys_new_refuses_to_overwrite(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    ok(run_cli("keys", "new", "--out", key))
    before = key.read_bytes()
    reason = one_line_error(run_cli("keys", "new", "--out", key), "error:")
    assert "exists" in reason
    assert key.read_bytes() == before


def test_keys_new_with_an_unknown_suite(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    assert "suite" in one_line_error(run_cli("keys", "new", "--out", key, "--suite", "rsa"), "error:")
    assert not key.exists()


def test_evidence_put_with_a_missing_key_file(tmp_path: Path) -> None:
    file = tmp_path / "f.txt"
    file.write_text("hello")
    result = run_cli("evidence", "put", file, "--key", tmp_path / "nope.pem", "--api", "http://127.0.0.1:9")
    assert "nope.pem" in one_line_error(result, "error:")


def test_evidence_put_with_a_file_that_is_not_a_key(tmp_path: Path) -> None:
    file = tmp_path / "f.txt"
    file.write_text("hello")
    result = run_cli("evidence", "put", file, "--key", file, "--api", "http://127.0.0.1:9")
    one_line_error(result, "error:")


def test_evidence_put_against_a_dead_port(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    ok(run_cli("keys", "new", "--out", key))
    file = tmp_path / "f.txt"
    file.write_text("hello")
    result = run_cli("evidence", "put", file, "--key", key, "--api", f"http://127.0.0.1:{free_port()}")
    assert "reach" in one_line_error(result, "error:")


def test_evidence_put_with_a_key_of_the_other_suite(tmp_path: Path, node: NodeProcess) -> None:
    key = tmp_path / "ed.pem"
    ok(run_cli("keys", "new", "--out", key, "--suite", "intl"))
    file = tmp_path / "f.txt"
    file.write_text("hello")
    result = run_cli("evidence", "put", file, "--key", key, "--api", node.url)
    assert "suite" in one_line_error(result, "error:")


def test_verify_a_file_that_is_not_a_bundle(tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    assert_invalid(verify(junk))
    junk.write_text('{"format": "something-else"}')
    assert "format" in assert_invalid(verify(junk))
    # A file that cannot be read is a usage error (2), not an invalid proof (1).
    missing = verify(tmp_path / "missing.json")
    assert missing.returncode == 2 and "usage:" in one_line_error(missing, "error:")


# -- stop and start again -----------------------------------------------------------------


def test_restart_keeps_the_chain_and_its_proofs(tmp_path: Path, node: NodeProcess) -> None:
    key = tmp_path / "k.pem"
    ok(run_cli("keys", "new", "--out", key))
    file = tmp_path / "deed.txt"
    file.write_text("deed of land parcel 7")
    bundle = tmp_path / "b.json"
    tx_hash, height, _ = deposit(node, file, key, bundle)
    before = node.status()
    proof_url = node.api(f"/txs/{tx_hash}/proof")
    proof_before = httpx.get(proof_url, timeout=30).content
    assert json.loads(proof_before) == json.loads(bundle.read_text())

    # SIGINT: a clean exit with status 0 that says where the data is.
    assert node.stop() == 0, node.log()
    assert "stopped" in node.log_path.read_text()

    node.restart()
    after = node.status()
    assert after["height"] == before["height"] >= height
    assert after["latest_block_hash"] == before["latest_block_hash"]
    assert after["genesis_hash"] == before["genesis_hash"]
    assert httpx.get(proof_url, timeout=30).content == proof_before
    assert_valid(verify(bundle, "--file", file, "--trust", node.genesis_path))

    file2 = tmp_path / "deed2.txt"
    file2.write_text("deed of land parcel 8")
    bundle2 = tmp_path / "b2.json"
    _, height2, _ = deposit(node, file2, key, bundle2)
    assert height2 > before["height"]
    assert_valid(verify(bundle2, "--file", file2, "--trust", node.genesis_path))
    # The new block follows the old tip.
    block = httpx.get(node.api(f"/blocks/{before['height'] + 1}"), timeout=30).json()
    assert block["header"]["prev_hash"] == before["latest_block_hash"]


def test_up_resumes_an_existing_home(tmp_path: Path, node: NodeProcess) -> None:
    key = tmp_path / "k.pem"
    ok(run_cli("keys", "new", "--out", key))
    file = tmp_path / "f.txt"
    file.write_text("resume me")
    _, height, _ = deposit(node, file, key)
    genesis = node.genesis_path.read_bytes()
    assert node.stop() == 0, node.log()
    # `up` on a home that has a chain resumes it rather than creating another.
    node.up()
    assert node.genesis_path.read_bytes() == genesis
    assert node.status()["height"] >= height
    # The banner follows the server's start; wait for it rather than race it.
    wait_for(lambda: "resumed chain main" in node.log_path.read_text(), 10, "the 'resumed' banner")
