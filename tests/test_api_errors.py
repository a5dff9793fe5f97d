"""The gateway against bad input, through a real node process.

Every refusal is an RFC 9457 problem document with the right status, type and a detail a person
can act on, and the node keeps serving: each check ends with a status request, and the module
ends by committing a valid transaction on the same node.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import NodeProcess
from zhongshu.codec import encode
from zhongshu.contracts.evidence import MAX_METADATA_BYTES, MAX_METADATA_ENTRIES, MAX_NAME, MAX_PAYLOAD
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.ledger.evidence_args import EvidencePut
from zhongshu.ledger.hashing import compute_tx_hash
from zhongshu.ledger.types import ChainParams, Transaction
from zhongshu.node.txcheck import tx_to_json
from zhongshu.sdk.client import evidence_tx, sign_tx

pytestmark = pytest.mark.slow

SM = get_suite("sm")
FAR = 10**9
"""A valid_until far above any height these tests reach."""
PROBLEM = "application/problem+json"
HTTP_TIMEOUT = 30.0
COMMIT_TIMEOUT = "10"


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return SM.generate_private_key()


@pytest.fixture(scope="module")
def genesis(module_node: NodeProcess) -> bytes:
    """The genesis hash of the module's chain, which every transaction signs."""
    return module_node.genesis_hash()


@pytest.fixture(scope="module")
def http(module_node: NodeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=module_node.api(), timeout=HTTP_TIMEOUT) as client:
        yield client


# -- helpers ------------------------------------------------------------------------------


def evidence(key: PrivateKey, genesis: bytes, **overrides: Any) -> Transaction:
    """A correctly signed evidence.put of a fresh random digest; ``overrides`` are signed too."""
    fields: dict[str, Any] = {
        "chain_id": "main",
        "genesis_hash": genesis,
        "contract": "evidence",
        "method": "put",
        "args": EvidencePut(os.urandom(32), "contract.pdf", {"dept": "court"}),
        "valid_until": FAR,
    }
    fields.update(overrides)
    return sign_tx(key, **fields)


def tx_hash(tx: Transaction) -> str:
    return compute_tx_hash(SM.hasher(), tx).hex()


def assert_serving(node: NodeProcess) -> None:
    """The node process lives and answers its status route."""
    assert node.proc is not None and node.proc.poll() is None, node.log()
    assert httpx.get(node.status_url, timeout=HTTP_TIMEOUT).status_code == 200


def assert_problem(response: httpx.Response, status: int, code: str, node: NodeProcess) -> dict[str, Any]:
    """An RFC 9457 problem document of ``status`` and type ``/problems/code``; the node still serves."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    problem = response.json()
    assert problem["type"] == "/problems/" + code, problem
    assert problem["status"] == status, problem
    assert isinstance(problem["title"], str) and problem["title"], problem
    assert isinstance(problem["detail"], str) and problem["detail"].strip(), problem
    assert_serving(node)
    return dict(problem)


def post(http: httpx.Client, body: Any, **params: str) -> httpx.Response:
    """POST a JSON value (or raw bytes) to /txs."""
    if isinstance(body, bytes):
        return http.post("/txs", content=body, params=params, headers={"content-type": "application/json"})
    return http.post("/txs", json=body, params=params)


def commit(http: httpx.Client, txs: list[Transaction]) -> list[dict[str, Any]]:
    """Submit with ?wait=commit; return the receipts."""
    response = post(http, [tx_to_json(t) for t in txs], wait="commit", timeout=COMMIT_TIMEOUT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "committed"
    return list(body["receipts"])


def assert_not_committed(http: httpx.Client, key: PrivateKey, genesis: bytes, hashes: list[str]) -> None:
    """After one more block, none of ``hashes`` is known to the node (neither pending nor committed)."""
    commit(http, [evidence(key, genesis)])
    for h in hashes:
        response = http.get(f"/txs/{h}")
        assert response.status_code == 404, f"{h}: {response.text}"


# -- the body -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b'{"chain_id": "main", ', b"not json at all", b"", b"\xff\xfe{}", b"[{}"],
    ids=["truncated", "text", "empty", "not-utf8", "unclosed-array"],
)
def test_malformed_json_body(module_node: NodeProcess, http: httpx.Client, body: bytes) -> None:
    assert_problem(post(http, body), 400, "malformed-transaction", module_node)


def _missing_field(key: PrivateKey, genesis: bytes) -> dict[str, Any]:
    doc = tx_to_json(evidence(key, genesis))
    del doc["nonce"]
    return doc


def _extra_field(key: PrivateKey, genesis: bytes) -> dict[str, Any]:
    return {**tx_to_json(evidence(key, genesis)), "fee": 1}


def _float_height(key: PrivateKey, genesis: bytes) -> dict[str, Any]:
    return {**tx_to_json(evidence(key, genesis)), "valid_until": 1000.5}


def _negative_nonce(key: PrivateKey, genesis: bytes) -> dict[str, Any]:
    return {**tx_to_json(evidence(key, genesis)), "nonce": -1}


def _nonce_over_64_bits(key: PrivateKey, genesis: bytes) -> dict[str, Any]:
    return {**tx_to_json(evidence(key, genesis)), "nonce": 2**64}


def _bad_hex_field(key: PrivateKey, genesis: bytes) -> dict[str, Any]:
    return {**tx_to_json(evidence(key, genesis)), "args": "not-hex"}


@pytest.mark.parametrize(
    "make",
    [
        lambda key, genesis: {"foo": 1},
        lambda key, genesis: [1, 2],
        lambda key, genesis: "a string",
        lambda key, genesis: None,
        lambda key, genesis: 42,
        lambda key, genesis: [],
        _missing_field,
        _extra_field,
        _float_height,
        _negative_nonce,
        _nonce_over_64_bits,
        _bad_hex_field,
    ],
    ids=[
        "unknown-object",
        "list-of-numbers",
        "string",
        "null",
        "number",
        "empty-batch",
        "missing-field",
        "extra-field",
        "float-height",
        "negative-nonce",
        "nonce-over-64-bits",
        "bad-hex-field",
    ],
)
def test_json_of_the_wrong_shape(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes, make: Any
) -> None:
    assert_problem(post(http, make(key, genesis)), 400, "malformed-transaction", module_node)


@pytest.mark.parametrize(
    "text",
    ["1e3", "01000", " 1000", "1000 ", "+1000", "-1", "0x3e8", "1000.0", "", "1_000", "١٠٠٠",
     str(2**64), "9" * 21],
)  # fmt: skip
def test_u64_text_that_is_not_plain_decimal_digits(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes, text: str
) -> None:
    # valid_until and nonce may come as decimal text (for readers of numbers as doubles), but
    # only as the digits of an unsigned 64-bit integer: no sign, exponent, spaces or leading zero.
    for field in ("valid_until", "nonce"):
        problem = assert_problem(
            post(http, {**tx_to_json(evidence(key, genesis)), field: text}),
            400,
            "malformed-transaction",
            module_node,
        )
        assert field in problem["detail"], problem


# -- signatures and keys ------------------------------------------------------------------


def test_signature_by_another_key(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    other = SM.generate_private_key()
    doc = tx_to_json(evidence(other, genesis))
    doc["sender"] = key.public_hex()
    problem = assert_problem(post(http, doc), 400, "invalid-signature", module_node)
    assert "signature" in problem["detail"]


def test_truncated_der_signature(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    tx = evidence(key, genesis)
    # An SM2 signature is DER: SEQUENCE { INTEGER r, INTEGER s }; cutting it breaks the encoding.
    assert tx.signature[0] == 0x30
    for cut in (1, 8, len(tx.signature) - 2):
        doc = {**tx_to_json(tx), "signature": tx.signature[:-cut].hex()}
        assert_problem(post(http, doc), 400, "invalid-signature", module_node)


@pytest.mark.parametrize(
    "signature",
    ["", "00", "30", "00" * 72, "ff" * 64, "3006020101020101", os.urandom(71).hex()],
    ids=["empty", "zero-byte", "bare-sequence-tag", "zeros", "ones", "r-s-one", "random"],
)
def test_garbage_signature(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes, signature: str
) -> None:
    doc = {**tx_to_json(evidence(key, genesis)), "signature": signature}
    assert_problem(post(http, doc), 400, "invalid-signature", module_node)


def test_non_hex_signature(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    doc = {**tx_to_json(evidence(key, genesis)), "signature": "zz" * 70}
    assert_problem(post(http, doc), 400, "malformed-transaction", module_node)


def _off_curve_point() -> bytes:
    # (1, 1) does not satisfy y^2 = x^3 + ax + b on the SM2 curve; the encoding is well-formed.
    return b"\x04" + (1).to_bytes(32, "big") + (1).to_bytes(32, "big")


@pytest.mark.parametrize(
    "sender",
    [
        _off_curve_point(),
        b"\x04" + b"\xff" * 64,
        b"\x02" + b"\x11" * 32,
        b"\x04" + b"\x01" * 40,
        b"",
        b"\x04",
    ],
    ids=["off-curve", "coordinates-over-p", "33-bytes", "41-bytes", "empty", "prefix-only"],
)
def test_garbage_public_key(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes, sender: bytes
) -> None:
    doc = {**tx_to_json(evidence(key, genesis)), "sender": sender.hex()}
    assert_problem(post(http, doc), 400, "invalid-public-key", module_node)


# -- what the transaction names -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/status"),
        ("POST", "/txs"),
        ("GET", "/blocks/1"),
        ("GET", "/txs/" + "ab" * 32),
        ("GET", "/genesis"),
    ],
)
def test_unknown_chain_in_the_url(
    module_node: NodeProcess, key: PrivateKey, genesis: bytes, method: str, path: str
) -> None:
    body = tx_to_json(evidence(key, genesis, chain_id="nochain")) if method == "POST" else None
    response = httpx.request(
        method, f"{module_node.url}/v1/chains/nochain{path}", json=body, timeout=HTTP_TIMEOUT
    )
    problem = assert_problem(response, 404, "unknown-chain", module_node)
    assert "nochain" in problem["detail"] and "main" in problem["detail"]


def test_unknown_contract(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    problem = assert_problem(
        post(http, tx_to_json(evidence(key, genesis, contract="nosuch"))),
        400,
        "unknown-contract",
        module_node,
    )
    assert "nosuch" in problem["detail"]


def test_unknown_method(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    problem = assert_problem(
        post(http, tx_to_json(evidence(key, genesis, method="erase"))), 400, "unknown-method", module_node
    )
    assert "erase" in problem["detail"]


@pytest.mark.parametrize(
    "args",
    [
        b"",
        b"\xc1",
        b"\x93\x01\x02\x03",
        encode(["evidence.other", b"\x00" * 32, "x", {}, b""]),
        encode(["evidence.put", "not-bytes", "x", {}, b""]),
        encode(["evidence.put", b"\x00" * 32, "x", {}, b""]) + b"\x00",
    ],
    ids=["empty", "reserved-byte", "numbers", "wrong-tag", "wrong-field-type", "trailing-byte"],
)
def test_arguments_that_do_not_decode(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes, args: bytes
) -> None:
    assert_problem(
        post(http, tx_to_json(evidence(key, genesis, args=args))), 400, "invalid-arguments", module_node
    )


def test_expired(module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes) -> None:
    height = module_node.status()["height"]
    for valid_until in (0, height):
        problem = assert_problem(
            post(http, tx_to_json(evidence(key, genesis, valid_until=valid_until))),
            400,
            "expired",
            module_node,
        )
        assert str(valid_until) in problem["detail"]


def test_wrong_chain_id_inside_the_tx(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    problem = assert_problem(
        post(http, tx_to_json(evidence(key, genesis, chain_id="other"))), 400, "wrong-chain-id", module_node
    )
    assert "other" in problem["detail"]


# -- duplicates ---------------------------------------------------------------------------


def test_duplicate_of_a_committed_tx(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    tx = evidence(key, genesis)
    commit(http, [tx])
    problem = assert_problem(post(http, tx_to_json(tx)), 409, "duplicate", module_node)
    assert tx_hash(tx) in problem["detail"]
    # A fresh signature over the same body is the same transaction.
    again = sign_tx(
        key, tx.chain_id, tx.genesis_hash, tx.contract, tx.method, tx.args, tx.valid_until, tx.nonce
    )
    assert again.signature != tx.signature
    assert_problem(post(http, tx_to_json(again)), 409, "duplicate", module_node)


def test_duplicate_of_a_pending_tx(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    tx = evidence(key, genesis)
    first = post(http, tx_to_json(tx))
    assert first.status_code == 202, first.text
    # Pending or already committed by now: a duplicate either way.
    assert_problem(post(http, tx_to_json(tx)), 409, "duplicate", module_node)


def test_batch_holding_the_same_tx_twice(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    tx = evidence(key, genesis)
    problem = assert_problem(post(http, [tx_to_json(tx), tx_to_json(tx)]), 409, "batch-refused", module_node)
    assert [(e["index"], e["type"]) for e in problem["errors"]] == [(1, "duplicate")]
    assert_not_committed(http, key, genesis, [tx_hash(tx)])


# -- sizes --------------------------------------------------------------------------------

BODY_LIMIT = 16 * 1024 * 1024


def test_oversized_body_with_content_length(module_node: NodeProcess, http: httpx.Client) -> None:
    response = http.post("/txs", content=b"[" + b" " * BODY_LIMIT + b"]")
    assert response.request.headers["content-length"] == str(BODY_LIMIT + 2)
    assert_problem(response, 413, "body-too-large", module_node)


def test_oversized_streamed_body(module_node: NodeProcess, http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"["
        chunk = b" " * 65536
        for _ in range(BODY_LIMIT // len(chunk) + 1):
            yield chunk

    response = http.post("/txs", content=chunks())
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_problem(response, 413, "body-too-large", module_node)


def test_oversized_single_transaction(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    limit = ChainParams().max_tx_bytes
    assert limit == 96 * 1024
    tx = evidence_tx(key, "main", genesis, os.urandom(32), "big.bin", FAR, payload=os.urandom(limit))
    assert len(encode(tx)) > limit
    problem = assert_problem(post(http, tx_to_json(tx)), 413, "too-large", module_node)
    assert str(limit) in problem["detail"]


# Each stated limit of evidence.put, broken by one unit: (arguments, the word the detail names).
LIMIT_BREACHES = [
    (EvidencePut(b"\x01" * 31, "short.pdf"), "digest"),
    (EvidencePut(b"\x02" * 65, "long.pdf"), "digest"),
    (EvidencePut(os.urandom(32), "n" * (MAX_NAME + 1)), "name"),
    (EvidencePut(os.urandom(32), "名" * (MAX_NAME // 3 + 1)), "name"),
    (
        EvidencePut(os.urandom(32), "m.pdf", {f"k{i:02}": "" for i in range(MAX_METADATA_ENTRIES + 1)}),
        "metadata",
    ),
    (EvidencePut(os.urandom(32), "m.pdf", {"k": "v" * MAX_METADATA_BYTES}), "metadata"),
    (EvidencePut(os.urandom(32), "big.bin", {}, b"\x00" * (MAX_PAYLOAD + 1)), "payload"),
]
LIMIT_IDS = [
    "digest-31",
    "digest-65",
    "name-bytes",
    "name-multibyte",
    "metadata-entries",
    "metadata-bytes",
    "payload",
]


@pytest.mark.parametrize(("args", "named"), LIMIT_BREACHES, ids=LIMIT_IDS)
def test_arguments_over_the_contract_limits_are_refused_at_admission(
    module_node: NodeProcess,
    http: httpx.Client,
    key: PrivateKey,
    genesis: bytes,
    args: EvidencePut,
    named: str,
) -> None:
    tx = evidence(key, genesis, args=args)
    assert len(encode(tx)) <= ChainParams().max_tx_bytes
    problem = assert_problem(post(http, tx_to_json(tx)), 400, "argument-limit", module_node)
    assert named in problem["detail"] and "evidence.put" in problem["detail"]
    # The arguments are checked before the signature: a bad signature does not change the answer.
    unsigned = {**tx_to_json(tx), "signature": "00" * 70}
    assert_problem(post(http, unsigned), 400, "argument-limit", module_node)
    # Refused, not committed as a failed transaction that takes block space.
    assert_not_committed(http, key, genesis, [tx_hash(tx)])


def test_arguments_at_the_contract_limits_commit(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    metadata = {f"k{i:02}": "" for i in range(MAX_METADATA_ENTRIES)}
    at_limits = [
        EvidencePut(os.urandom(48), "n" * MAX_NAME, metadata, b"\x00" * MAX_PAYLOAD),
        EvidencePut(os.urandom(64), "m.pdf", {"k": "v" * (MAX_METADATA_BYTES - 1)}),
    ]
    receipts = commit(http, [evidence(key, genesis, args=args) for args in at_limits])
    assert [r["receipt"]["status"] for r in receipts] == ["ok", "ok"], receipts


# -- batches ------------------------------------------------------------------------------


def _bad_hex(key: PrivateKey, genesis: bytes) -> dict[str, Any]:
    return {**tx_to_json(evidence(key, genesis)), "sender": "xyz"}


def _bad_chain(key: PrivateKey, genesis: bytes) -> dict[str, Any]:
    return tx_to_json(evidence(key, genesis, chain_id="other"))


def _bad_signature(key: PrivateKey, genesis: bytes) -> dict[str, Any]:
    return {**tx_to_json(evidence(key, genesis)), "signature": "00" * 70}


def _expired(key: PrivateKey, genesis: bytes) -> dict[str, Any]:
    return tx_to_json(evidence(key, genesis, valid_until=0))


def _over_limit(key: PrivateKey, genesis: bytes) -> dict[str, Any]:
    return tx_to_json(evidence(key, genesis, args=EvidencePut(os.urandom(33), "x.pdf")))


@pytest.mark.parametrize(
    ("make_bad", "code"),
    [
        (_bad_hex, "malformed-transaction"),
        (_bad_chain, "wrong-chain-id"),
        (_expired, "expired"),
        (_bad_signature, "invalid-signature"),
        (_over_limit, "argument-limit"),
    ],
    ids=["bad-hex", "wrong-chain", "expired", "bad-signature", "over-limit"],
)
def test_batch_with_one_bad_tx_is_refused_whole(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes, make_bad: Any, code: str
) -> None:
    good = [evidence(key, genesis) for _ in range(4)]
    body = [
        tx_to_json(good[0]),
        tx_to_json(good[1]),
        make_bad(key, genesis),
        tx_to_json(good[2]),
        tx_to_json(good[3]),
    ]
    problem = assert_problem(
        post(http, body, wait="commit", timeout=COMMIT_TIMEOUT), 400, "batch-refused", module_node
    )
    assert [(e["index"], e["type"]) for e in problem["errors"]] == [(2, code)]
    assert all(e["detail"] for e in problem["errors"])
    assert "index 2" in problem["detail"]
    assert_not_committed(http, key, genesis, [tx_hash(t) for t in good])


def test_bad_wait_parameter_refuses_without_pooling(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    tx = evidence(key, genesis)
    assert_problem(post(http, tx_to_json(tx), wait="soon"), 400, "malformed-transaction", module_node)
    # A refused request must not have admitted its transaction.
    assert_not_committed(http, key, genesis, [tx_hash(tx)])


# -- queries ------------------------------------------------------------------------------


def test_unknown_tx_hash(module_node: NodeProcess, http: httpx.Client) -> None:
    unknown = os.urandom(32).hex()
    for path in (f"/txs/{unknown}", f"/txs/{unknown}/proof"):
        problem = assert_problem(http.get(path), 404, "not-found", module_node)
        assert unknown in problem["detail"]


@pytest.mark.parametrize("value", ["zz" * 32, "abc", "0x" + "ab" * 32, "g"], ids=["zz", "odd", "0x", "g"])
def test_non_hex_tx_hash(module_node: NodeProcess, http: httpx.Client, value: str) -> None:
    assert_problem(http.get(f"/txs/{value}"), 400, "bad-request", module_node)
    assert_problem(http.get(f"/txs/{value}/proof"), 400, "bad-request", module_node)


@pytest.mark.parametrize("value", ["ten", "1.5", "0x10"])
def test_non_numeric_block_height(module_node: NodeProcess, http: httpx.Client, value: str) -> None:
    problem = assert_problem(http.get(f"/blocks/{value}"), 400, "bad-request", module_node)
    assert value in problem["detail"]


def test_block_beyond_the_tip(module_node: NodeProcess, http: httpx.Client) -> None:
    tip = module_node.status()["height"]
    for height in (tip + 1, tip + 10_000, 0, -1):
        problem = assert_problem(http.get(f"/blocks/{height}"), 404, "not-found", module_node)
        assert str(height) in problem["detail"]


def test_block_height_beyond_64_bits(module_node: NodeProcess, http: httpx.Client) -> None:
    # Heights are stored as unsigned 64-bit keys; a larger number is just another absent block.
    for height in (2**64, 10**30):
        problem = assert_problem(http.get(f"/blocks/{height}"), 404, "not-found", module_node)
        assert str(height) in problem["detail"]


def test_wait_commit_receipts_then_tx_and_block_views(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    txs = [evidence(key, genesis) for _ in range(3)]
    receipts = commit(http, txs)
    assert [r["tx_hash"] for r in receipts] == [tx_hash(t) for t in txs]
    for r in receipts:
        assert r["receipt"]["status"] == "ok", r
        assert r["receipt"]["error"] in ("", None)
        assert r["height"] >= 1 and r["time"] > 0
    # Each transaction has its own place in the chain.
    assert len({(r["height"], r["index"]) for r in receipts}) == len(receipts)

    for tx, r in zip(txs, receipts, strict=True):
        view = http.get(f"/txs/{r['tx_hash']}").json()
        assert view["status"] == "committed"
        assert (view["hash"], view["height"], view["index"]) == (r["tx_hash"], r["height"], r["index"])
        assert view["tx"] == tx_to_json(tx)
        assert view["receipt"]["status"] == "ok"

        block = http.get(f"/blocks/{r['height']}").json()
        assert block["height"] == r["height"]
        assert re.fullmatch("[0-9a-f]{64}", block["hash"]), block["hash"]
        assert block["time"] == r["time"]
        assert block["tx_count"] == len(block["txs"]) >= 1
        assert block["txs"][r["index"]] == r["tx_hash"]
        assert block["commit"]["block_hash"] == block["hash"]
    height = max(r["height"] for r in receipts)
    status = module_node.status()
    assert status["height"] >= height
    latest = http.get("/blocks/latest").json()
    assert latest["hash"] == status["latest_block_hash"] or latest["height"] > status["height"]


def test_submit_without_wait_is_accepted_then_commits(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    tx = evidence(key, genesis)
    response = post(http, tx_to_json(tx))
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "pending", "tx_hashes": [tx_hash(tx)]}
    deadline = time.monotonic() + 10
    while http.get(f"/txs/{tx_hash(tx)}").json()["status"] != "committed":
        assert time.monotonic() < deadline, "not committed within 10 s"
        time.sleep(0.02)


def test_events_stream_a_block_after_a_submit(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    tx = evidence(key, genesis)
    found: dict[str, Any] = {}
    blocks: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    submitter = threading.Thread(target=lambda: found.update(receipts=commit(http, [tx])))
    with (
        httpx.Client(timeout=httpx.Timeout(10.0)) as sse,
        sse.stream("GET", module_node.api("/events")) as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        # Subscribed before the submit, so the block cannot be missed.
        assert next(lines) == ": subscribed"
        submitter.start()
        event = None
        for line in lines:
            assert time.monotonic() < deadline, f"no block event for the tx within 20 s: {blocks}"
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "block":
                blocks.append(json.loads(line.removeprefix("data: ")))
                if blocks[-1]["tx_count"] == 0:
                    continue
                # A block with transactions: once the receipt is in, is it the tx's block?
                submitter.join(15)
                if blocks[-1]["height"] >= found["receipts"][0]["height"]:
                    break
    submitter.join(15)
    assert not submitter.is_alive()
    (receipt,) = found["receipts"]
    block = next(b for b in blocks if b["height"] == receipt["height"])
    assert block["type"] == "block"
    assert block["tx_count"] >= 1
    assert len(block["hash"]) == 64
    assert http.get(f"/blocks/{block['height']}").json()["hash"] == block["hash"]


# -- and after all of it ------------------------------------------------------------------


def test_zz_node_still_serves_and_commits(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, genesis: bytes
) -> None:
    """Runs last in this module: after every refusal above, a valid transaction still commits."""
    assert_serving(module_node)
    receipts = commit(http, [evidence(key, genesis), evidence(key, genesis)])
    assert all(r["receipt"]["status"] == "ok" for r in receipts)
    assert module_node.status()["height"] >= receipts[0]["height"]
