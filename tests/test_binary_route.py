"""The binary submission route (application/msgpack), through a real node process.

Good batches commit and answer in MessagePack (or JSON when not asked for MessagePack); every
bad body is a JSON problem document and the node keeps serving.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from conftest import NodeProcess
from zhongshu.codec import encode
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.gateway.binary import MSGPACK, SubmitAnswer, decode_answer
from zhongshu.ledger.evidence_args import EvidencePut
from zhongshu.ledger.types import Receipt, Transaction
from zhongshu.sdk.client import sign_tx

pytestmark = pytest.mark.slow

SM = get_suite("sm")
FAR = 10**9
PROBLEM = "application/problem+json"
BINARY = {"content-type": MSGPACK, "accept": MSGPACK}


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return SM.generate_private_key()


@pytest.fixture(scope="module")
def genesis(module_node: NodeProcess) -> bytes:
    return module_node.genesis_hash()


@pytest.fixture(scope="module")
def http(module_node: NodeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=module_node.api(), timeout=30) as client:
        yield client


def deposit(key: PrivateKey, genesis: bytes, **overrides: Any) -> Transaction:
    fields: dict[str, Any] = {
        "chain_id": "main",
        "genesis_hash": genesis,
        "contract": "evidence",
        "method": "put",
        "args": EvidencePut(os.urandom(32), "minutes.pdf", {}),
        "valid_until": FAR,
    }
    fields.update(overrides)
    return sign_tx(key, **fields)


def post(http: httpx.Client, body: bytes, headers: dict[str, str] = BINARY, **params: str) -> httpx.Response:
    return http.post("/txs", content=body, headers=headers, params=params)


def assert_problem(response: httpx.Response, status: int, code: str, node: NodeProcess) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    problem = response.json()
    assert problem["type"] == "/problems/" + code, problem
    assert problem["detail"].strip(), problem
    assert node.proc is not None and node.proc.poll() is None, node.log()
    assert httpx.get(node.status_url, timeout=30).status_code == 200
    return dict(problem)


def test_batch_commits_with_ledger_receipts(http: httpx.Client, key: PrivateKey, genesis: bytes) -> None:
    txs = [deposit(key, genesis) for _ in range(3)]
    response = post(http, encode(txs), wait="commit", timeout="20")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == MSGPACK
    answer = decode_answer(response.content)
    assert answer.status == "committed" and len(answer.receipts) == 3
    for tx, entry in zip(txs, answer.receipts, strict=True):
        # The tx hash is the suite hash of the encoded body, i.e. the sign-bytes.
        assert entry.tx_hash == SM.hash(tx.sign_bytes())
        assert isinstance(entry.receipt, Receipt) and entry.receipt.status == 0
        # The JSON view of the same transaction agrees on where it is and what it gave.
        view = http.get(f"/txs/{entry.tx_hash.hex()}").json()
        assert (view["height"], view["index"], view["time"]) == (entry.height, entry.index, entry.time)
        assert view["receipt"]["status"] == "ok"
        assert view["tx"]["signature"] == tx.signature.hex()


def test_pending_answer_names_the_hashes(http: httpx.Client, key: PrivateKey, genesis: bytes) -> None:
    txs = [deposit(key, genesis) for _ in range(2)]
    response = post(http, encode(txs))
    assert response.status_code == 202, response.text
    answer = decode_answer(response.content)
    assert answer == SubmitAnswer("pending", tx_hashes=[SM.hash(t.sign_bytes()) for t in txs])


def test_json_answer_unless_msgpack_is_accepted(http: httpx.Client, key: PrivateKey, genesis: bytes) -> None:
    tx = deposit(key, genesis)
    response = post(http, encode([tx]), headers={"content-type": MSGPACK}, wait="commit", timeout="20")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "committed"
    assert body["receipts"][0]["tx_hash"] == SM.hash(tx.sign_bytes()).hex()


def test_non_canonical_encoding_is_refused(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    # The MessagePack spec allows an array of one in 3 bytes (dc 00 01); canonical form is 91.
    canonical = encode([deposit(key, genesis)])
    assert canonical[0] == 0x91
    problem = assert_problem(
        post(http, b"\xdc\x00\x01" + canonical[1:]), 400, "malformed-transaction", module_node
    )
    assert "canonical" in problem["detail"]


@pytest.mark.parametrize(
    "body",
    [b"", b"\xc1", b"\x92\x01", msgspec.msgpack.encode({"chain_id": "main"}), b"[]"],
    ids=["empty", "never-used-byte", "array-of-ints", "map", "json"],
)
def test_malformed_bodies(module_node: NodeProcess, http: httpx.Client, body: bytes) -> None:
    assert_problem(post(http, body), 400, "malformed-transaction", module_node)


def test_empty_batch(module_node: NodeProcess, http: httpx.Client) -> None:
    problem = assert_problem(post(http, b"\x90"), 400, "malformed-transaction", module_node)
    assert "empty" in problem["detail"]


def test_out_of_range_integer(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    tx = deposit(key, genesis, nonce=-5)
    assert_problem(post(http, encode([tx])), 400, "malformed-transaction", module_node)


def test_bad_signature_in_batch_names_its_index(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    good = deposit(key, genesis)
    other = deposit(key, genesis)
    forged = msgspec.structs.replace(other, signature=good.signature)
    problem = assert_problem(post(http, encode([good, forged])), 400, "batch-refused", module_node)
    assert [e["index"] for e in problem["errors"]] == [1]
    assert problem["errors"][0]["type"] == "invalid-signature"
    # All or nothing: the good one was not pooled either.
    assert http.get(f"/txs/{SM.hash(good.sign_bytes()).hex()}").status_code == 404


def test_replay_is_a_duplicate(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    tx = deposit(key, genesis)
    assert post(http, encode([tx]), wait="commit", timeout="20").status_code == 200
    assert_problem(post(http, encode([tx])), 409, "duplicate", module_node)


def test_unknown_chain(module_node: NodeProcess, key: PrivateKey, genesis: bytes) -> None:
    response = httpx.post(
        module_node.api().replace("/chains/main", "/chains/nowhere") + "/txs",
        content=encode([deposit(key, genesis)]),
        headers=BINARY,
        timeout=30,
    )
    assert_problem(response, 404, "unknown-chain", module_node)


def test_oversized_body(module_node: NodeProcess, http: httpx.Client) -> None:
    body = b"\xdd" + (100_000).to_bytes(4, "big") + b"\xc0" * (17 * 1024 * 1024)
    assert_problem(post(http, body), 413, "body-too-large", module_node)
