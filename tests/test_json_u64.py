"""Transactions whose nonce or valid_until is above 2^53 - 1, through the JSON API of a real node.

A reader of JSON numbers as IEEE doubles (JavaScript's ``JSON.parse``, many others) rounds an
integer above 2^53 - 1, and the SDK's default nonce is a random 63-bit one. The gateway takes
such a field as a number or as decimal text and writes it as text above 2^53 - 1
(docs/access-spec.md, *Transactions*). The transaction's hash is computed here from its
canonical encoding, not taken from the node.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest

from conftest import NodeProcess
from zhongshu.codec import encode
from zhongshu.crypto import get_suite
from zhongshu.gateway.views import decoded
from zhongshu.ledger.hashing import compute_tx_hash
from zhongshu.ledger.types import Transaction
from zhongshu.node.txcheck import MAX_SAFE_JSON_INT, tx_to_json, u64_to_json
from zhongshu.sdk import Client
from zhongshu.sdk.client import sign_tx

pytestmark = pytest.mark.slow

SM = get_suite("sm")
U64_MAX = 2**64 - 1


def _read_as_doubles(text: str) -> Any:
    """JSON as a reader that holds every number as a double holds it."""
    return json.loads(text, parse_int=float)


def test_the_double_reader_here_does_lose_integers_above_2_53() -> None:
    # What the tests below guard against is real in this reader.
    assert _read_as_doubles(str(2**53 + 1)) != 2**53 + 1
    assert _read_as_doubles(str(MAX_SAFE_JSON_INT)) == MAX_SAFE_JSON_INT


def test_u64_is_a_number_up_to_2_53_minus_1_and_text_above() -> None:
    assert u64_to_json(0) == 0
    assert u64_to_json(MAX_SAFE_JSON_INT) == MAX_SAFE_JSON_INT
    assert u64_to_json(MAX_SAFE_JSON_INT + 1) == "9007199254740992"
    assert u64_to_json(U64_MAX) == "18446744073709551615"


def _tx(node: NodeProcess, nonce: int, valid_until: int) -> Transaction:
    args = ["evidence.put", os.urandom(32), f"u64-{nonce}", {}, b""]
    return sign_tx(
        SM.generate_private_key(),
        "main",
        node.genesis_hash(),
        "evidence",
        "put",
        encode(args),
        valid_until,
        nonce,
    )


@pytest.mark.parametrize(
    ("nonce", "valid_until", "form"),
    [
        (MAX_SAFE_JSON_INT, 10**9, "number"),
        (MAX_SAFE_JSON_INT + 2, 10**9, "number"),
        (MAX_SAFE_JSON_INT + 2, 10**9, "text"),
        (U64_MAX, U64_MAX, "text"),
        (U64_MAX, U64_MAX, "number"),
        (7, 10**9, "text"),
    ],
)
def test_a_large_nonce_commits_and_reads_back_exactly(
    module_node: NodeProcess, nonce: int, valid_until: int, form: str
) -> None:
    tx = _tx(module_node, nonce, valid_until)
    expected_hash = compute_tx_hash(SM.hash, tx).hex()
    body = tx_to_json(tx)
    for field, value in (("nonce", nonce), ("valid_until", valid_until)):
        body[field] = str(value) if form == "text" else value
    with httpx.Client(base_url=module_node.api(), timeout=30) as http:
        answer = http.post("/txs", json=body, params={"wait": "commit", "timeout": "10"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["receipts"][0]["tx_hash"] == expected_hash
        view = http.get(f"/txs/{expected_hash}")
        assert view.status_code == 200, view.text
    # A reader of numbers as doubles gets the same nonce back.
    seen = _read_as_doubles(view.text)["tx"]
    for field, value in (("nonce", nonce), ("valid_until", valid_until)):
        if value > MAX_SAFE_JSON_INT:
            assert seen[field] == str(value), (field, seen[field])
        else:
            assert seen[field] == value and not isinstance(seen[field], str), (field, seen[field])
    # So does the SDK, as an integer.
    with Client(module_node.url) as client:
        got = client.get_tx(expected_hash)
    assert (got.tx.nonce, got.tx.valid_until) == (nonce, valid_until)


def test_decoded_views_write_integers_beyond_2_53_as_text() -> None:
    # args_decoded, a receipt's result: decoded MessagePack, written by the same rule.
    raw = encode({"big": 2**60, "negative": -(2**60), "edge": MAX_SAFE_JSON_INT, "flag": True, "n": [7]})
    assert decoded(raw) == {
        "big": str(2**60),
        "negative": str(-(2**60)),
        "edge": MAX_SAFE_JSON_INT,
        "flag": True,
        "n": [7],
    }
    assert decoded(encode(-MAX_SAFE_JSON_INT - 1)) == str(-MAX_SAFE_JSON_INT - 1)
