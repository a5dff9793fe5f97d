"""The state routes, SDK and CLI against a real node (issue 9): a file deposited at height h+1
is proven absent at h and present from h+1 on, each proof checked offline from the genesis by
``zhongshu verify`` as a separate process; bad reads get their problem documents."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from conftest import NodeProcess, run_cli
from zhongshu.contracts.evidence import digest_key
from zhongshu.crypto import get_suite
from zhongshu.ledger.proof import digest_file
from zhongshu.sdk import Client, load_genesis

CONTENT = b"bill of lading 2026-0417, Ningbo to Chongqing\n" * 200


@pytest.fixture(scope="module")
def deposited(module_node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A file deposited in a block of its own, with the heights before and of the deposit."""
    root = tmp_path_factory.mktemp("state")
    file = root / "lading.txt"
    file.write_bytes(CONTENT)
    with file.open("rb") as stream:
        digest = digest_file("sm3", stream)
    key = get_suite("sm").generate_private_key()
    with Client(module_node.url, "main") as client:
        # A first deposit, so that the chain has a block before the file's.
        client.put_evidence(key, os.urandom(32), "earlier.pdf")
        receipt = client.put_evidence(key, digest, "lading.txt")
    height = receipt.height
    return {"file": file, "digest": digest, "height": height, "root": root, "key": key}


def verify(bundle: Path, *extra: str | Path) -> str:
    result = run_cli("verify", bundle, *extra)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert result.stdout.startswith("VALID"), result.stdout
    return result.stdout


def test_a_file_absent_before_its_deposit_and_present_after(
    module_node: NodeProcess, deposited: dict[str, object]
) -> None:
    file, root, height = deposited["file"], deposited["root"], deposited["height"]
    assert isinstance(file, Path) and isinstance(root, Path) and isinstance(height, int)
    genesis = module_node.home / "genesis.json"
    with Client(module_node.url, "main") as client:
        # Another deposit after the file's, so that there is a height above it.
        client.put_evidence(get_suite("sm").generate_private_key(), os.urandom(32), "later.pdf")
        tip = client.status().height
    assert tip > height

    before = root / "before.json"
    result = run_cli(
        "evidence",
        "check",
        file,
        "--at-height",
        str(height - 1),
        "--proof-out",
        before,
        "--api",
        module_node.url,
    )
    assert result.returncode == 0, result.stderr
    assert f"not deposited as of height {height - 1}" in result.stdout
    out = verify(before, "--trust", genesis, "--file", file)
    assert "absent" in out.lower() or "not deposited" in out.lower(), out

    for at in (height, tip):
        after = root / f"after-{at}.json"
        result = run_cli(
            "evidence", "check", file, "--at-height", str(at), "--proof-out", after, "--api", module_node.url
        )
        assert result.returncode == 0, result.stderr
        assert f"deposited at height {height}" in result.stdout
        out = verify(after, "--trust", genesis, "--file", file)
        assert f"height {height}" in out, out

    # The bundle of the absence is not a proof of presence: its value changed to the record's
    # bytes, it fails.
    absent = json.loads(before.read_text())
    present = json.loads((root / f"after-{height}.json").read_text())
    absent["state"]["value"] = present["state"]["value"]
    forged = root / "forged.json"
    forged.write_text(json.dumps(absent))
    assert run_cli("verify", forged, "--trust", genesis).returncode == 1


def test_state_get_reads_a_key_at_a_height_with_its_proof(
    module_node: NodeProcess, deposited: dict[str, object]
) -> None:
    digest, root, height = deposited["digest"], deposited["root"], deposited["height"]
    assert isinstance(digest, bytes) and isinstance(root, Path) and isinstance(height, int)
    key = digest_key(digest)
    genesis = load_genesis(module_node.home / "genesis.json")
    with Client(module_node.url, "main") as client:
        now = client.get_state(key, proof=True)
        earlier = client.get_state(key, height=height - 1, proof=True, anchor_latest=True)
        at_deposit = client.get_evidence_at(digest, height=height, proof=True)
    assert now.present and now.value is not None and now.proof is not None
    assert not earlier.present and earlier.value is None and earlier.height == height - 1
    assert at_deposit.present and at_deposit.record is not None
    assert at_deposit.record.height == height and at_deposit.record.name == "lading.txt"
    for answer in (now, earlier, at_deposit):
        assert answer.proof is not None
        Client.verify_proof(answer.proof, trusted=genesis)
    assert earlier.proof is not None and earlier.proof.document["anchor"] is not None

    bundle = root / "state.json"
    result = run_cli(
        "state", "get", key.hex(), "--height", str(height), "--proof-out", bundle, "--api", module_node.url
    )
    assert result.returncode == 0, result.stderr
    assert f"ev/d/{digest.hex()}" in result.stdout and str(height) in result.stdout
    verify(bundle, "--trust", module_node.home / "genesis.json")
    # A text key (nothing is stored under it): absent, and proven so.
    result = run_cli("state", "get", "--text", "no/such/key", "--json", "--api", module_node.url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["present"] is False


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/chains/main/state/zz", 400, "bad-request"),
        ("/v1/chains/main/state/" + "00" * 1025, 400, "bad-request"),
        ("/v1/chains/main/state/6162?height=0", 400, "invalid-request"),
        ("/v1/chains/main/state/6162?height=abc", 400, "invalid-request"),
        ("/v1/chains/main/state/6162?height=999999999", 404, "not-found"),
        ("/v1/chains/nope/state/6162", 404, "unknown-chain"),
        ("/v1/chains/main/evidence/" + "11" * 32 + "?height=999999999", 404, "not-found"),
        ("/v1/chains/main/evidence/xyz?height=1", 400, "bad-request"),
    ],
)
def test_bad_state_reads_are_problem_documents(
    module_node: NodeProcess, deposited: dict[str, object], path: str, status: int, code: str
) -> None:
    answer = httpx.get(module_node.url + path, timeout=10)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["type"].endswith(f"/problems/{code}")


def test_without_height_or_proof_the_evidence_route_answers_as_before(
    module_node: NodeProcess, deposited: dict[str, object]
) -> None:
    digest = deposited["digest"]
    assert isinstance(digest, bytes)
    record = httpx.get(f"{module_node.url}/v1/chains/main/evidence/{digest.hex()}", timeout=10).json()
    assert record["name"] == "lading.txt" and "present" not in record
    missing = httpx.get(f"{module_node.url}/v1/chains/main/evidence/{'22' * 32}", timeout=10)
    assert missing.status_code == 404
    with Client(module_node.url, "main") as client:
        absent = client.get_evidence_at("22" * 32)
    assert not absent.present and absent.record is None and absent.proof is None


def test_a_transaction_bundle_anchored_through_the_newest_header(
    module_node: NodeProcess, deposited: dict[str, object]
) -> None:
    key = deposited["key"]
    genesis = load_genesis(module_node.home / "genesis.json")
    with Client(module_node.url, "main") as client:
        receipt = client.put_evidence(key, os.urandom(32), "anchored.pdf")  # type: ignore[arg-type]
        client.put_evidence(key, os.urandom(32), "after.pdf")  # type: ignore[arg-type]
        tip = client.status().height
        plain = client.get_proof(receipt.tx_hash)
        anchored = client.get_proof(receipt.tx_hash, anchor_latest=True)
    assert tip > receipt.height
    assert plain.document["anchor"] is None
    # The newest header at the time of asking proves the block through its history root.
    anchor = anchored.document["anchor"]
    assert anchor is not None and anchor["height"] >= tip, anchor
    for bundle in (plain, anchored):
        proven = Client.verify_proof(bundle, trusted=genesis)
        assert proven.height == receipt.height  # type: ignore[union-attr]
