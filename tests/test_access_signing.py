"""Signed application access (docs/access-spec.md, *Signed requests*): the canonical strings,
request and response signatures, refusals, the nonce window, and the worked example.

The worked example (tests/vectors/access/worked-example.json) is checked with our code and with
gmssl, an independent pure-Python SM2/SM3; ``regenerate_worked_example`` wrote it once (run
``python tests/test_access_signing.py --regenerate`` to write it again: the SM2 signature will
differ, it is randomized, and the docs must then be updated with it).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from gmssl import func as gmssl_func
from gmssl import sm3 as gmssl_sm3
from gmssl.sm2 import CryptSM2
from hypothesis import given, settings
from hypothesis import strategies as st

from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.crypto.intl import Ed25519PrivateKey, IntlSuite
from zhongshu.crypto.sm import SM2PrivateKey, SMSuite
from zhongshu.gateway import access
from zhongshu.gateway.access import (
    MAX_SKEW_MS,
    AccessRefused,
    BadResponseSignature,
    BadSignature,
    MalformedAuth,
    NonceWindow,
    NonceWindowFull,
    ReplayedNonce,
    StaleRequest,
    canonical_query,
    canonical_request,
    canonical_response,
    parse_auth_headers,
    parse_query,
    sign_request,
    sign_response,
    verify_request,
    verify_response,
)

ROOT = Path(__file__).resolve().parents[1]
VECTOR = ROOT / "tests" / "vectors" / "access" / "worked-example.json"
SPEC = ROOT / "docs" / "access-spec.md"
SPEC_ZH = ROOT / "docs" / "zh" / "access-spec-signing.md"

# GB/T 32918.5 Annex A private key (the standard's worked-example key; never use it for real).
ANNEX_A_D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
# RFC 8032 section 7.1 TEST 1 secret key (Ed25519 signatures are deterministic).
RFC8032_TEST1_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"

T0 = 1767225600000
NONCE = "00112233445566778899aabbccddeeff"


# -- helpers ---------------------------------------------------------------------------------


def load_vector() -> dict[str, Any]:
    return dict(json.loads(VECTOR.read_text(encoding="utf-8")))


def ed25519_key(seed_hex: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey(
        IntlSuite(), ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))
    )


def gmssl_sm2(public_key: bytes, private_value: int | None = None) -> CryptSM2:
    """A gmssl SM2 context for our 65-byte key (x || y set directly: see test_sm2_interop.py)."""
    ctx = CryptSM2(
        private_key=None if private_value is None else f"{private_value:064x}",
        public_key=public_key[1:].hex(),
    )
    ctx.public_key = public_key[1:].hex()
    return ctx


def gmssl_verify(public_key: bytes, message: bytes, der_signature: bytes) -> bool:
    r, s = decode_dss_signature(der_signature)
    return bool(gmssl_sm2(public_key).verify_with_sm3(f"{r:064x}{s:064x}", message))


def gmssl_sm3_hex(data: bytes) -> str:
    return str(gmssl_sm3.sm3_hash(gmssl_func.bytes_to_list(data)))


def request_args(vector: dict[str, Any]) -> dict[str, Any]:
    """The canonical_request arguments of the vector's request."""
    req = vector["request"]
    return {
        "method": req["method"],
        "host": req["host"],
        "path": req["path"],
        "query_pairs": [tuple(p) for p in req["query_pairs"]],
        "timestamp_ms": req["timestamp_ms"],
        "nonce": req["nonce"],
        "app_id": req["app_id"],
        "body": bytes.fromhex(req["body_hex"]),
    }


@pytest.fixture(scope="module")
def app_key() -> SM2PrivateKey:
    return SMSuite().generate_private_key()


def signed(key: PrivateKey, **over: Any) -> tuple[dict[str, str], dict[str, Any]]:
    """Headers for a sample request (fields overridable) and the request as the gateway sees it."""
    req: dict[str, Any] = {
        "method": "POST",
        "host": "127.0.0.1:7700",
        "path": "/v1/chains/main/txs",
        "query_pairs": [("wait", "commit"), ("timeout", "30")],
        "timestamp_ms": T0,
        "nonce": NONCE,
        "app_id": "demo-app",
        "body": b'{"k":"v"}',
    }
    req.update(over)
    headers = sign_request(key, **req)
    seen = {k: req[k] for k in ("method", "host", "path", "query_pairs", "body")}
    return headers, seen


# -- the worked example ----------------------------------------------------------------------


def regenerate_worked_example() -> None:
    """Write tests/vectors/access/worked-example.json (run by hand, never by the tests)."""
    key = SMSuite().private_key_from_int(ANNEX_A_D)
    body = b'{"example":"signed request"}'
    query = "wait=commit&timeout=30"
    args: dict[str, Any] = {
        "method": "POST",
        "host": "127.0.0.1:7700",
        "path": "/v1/chains/main/txs",
        "query_pairs": parse_query(query),
        "timestamp_ms": T0,
        "nonce": NONCE,
        "app_id": "demo-app",
        "body": body,
    }
    message = canonical_request(**args)
    headers = sign_request(key, **args)
    assert gmssl_verify(key.public_bytes(), message, bytes.fromhex(headers[access.SIGNATURE_HEADER]))
    responses = []
    node_keys: list[tuple[str, str, PrivateKey]] = [
        ("sm", f"{ANNEX_A_D:064x}", key),
        ("intl", RFC8032_TEST1_SEED, ed25519_key(RFC8032_TEST1_SEED)),
    ]
    answer = b'{"status":"pending","tx_hashes":[]}'
    for suite, private, node_key in node_keys:
        responses.append(
            {
                "suite": suite,
                "node_private_key": private,
                "node_public_key": node_key.public_hex(),
                "status": 202,
                "request_nonce": NONCE,
                "body": answer.decode(),
                "body_hex": answer.hex(),
                "body_sm3": access.compute_body_hash(answer),
                "canonical_response": canonical_response(202, NONCE, answer).decode(),
                "headers": sign_response(node_key, 202, NONCE, answer),
            }
        )
    vector = {
        "description": "docs/access-spec.md, Signed requests: the worked example",
        "scheme": access.SCHEME,
        "private_key": f"{ANNEX_A_D:064x}",
        "public_key": key.public_hex(),
        "request": {
            "method": args["method"],
            "host": args["host"],
            "path": args["path"],
            "query": query,
            "query_pairs": [list(p) for p in args["query_pairs"]],
            "timestamp_ms": args["timestamp_ms"],
            "nonce": args["nonce"],
            "app_id": args["app_id"],
            "body": body.decode(),
            "body_hex": body.hex(),
        },
        "body_sm3": access.compute_body_hash(body),
        "canonical_request": message.decode(),
        "canonical_request_hex": message.hex(),
        "signature": headers[access.SIGNATURE_HEADER],
        "headers": headers,
        "responses": responses,
    }
    VECTOR.parent.mkdir(parents=True, exist_ok=True)
    VECTOR.write_text(json.dumps(vector, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def test_vector_canonical_string_is_recomputed_from_its_inputs() -> None:
    vector = load_vector()
    args = request_args(vector)
    message = canonical_request(**args)
    assert message == bytes.fromhex(vector["canonical_request_hex"])
    assert message == vector["canonical_request"].encode("utf-8")
    assert parse_query(vector["request"]["query"]) == args["query_pairs"]
    assert args["body"] == vector["request"]["body"].encode("utf-8")


def test_vector_canonical_string_written_out_by_hand() -> None:
    """The nine lines, spelled out here from the rule, not from the code."""
    vector = load_vector()
    body_sm3 = gmssl_sm3_hex(bytes.fromhex(vector["request"]["body_hex"]))
    assert body_sm3 == vector["body_sm3"]
    expected = (
        "ZHONGSHU-SM2-SM3\nPOST\n127.0.0.1:7700\n/v1/chains/main/txs\ntimeout=30&wait=commit\n"
        f"1767225600000\n00112233445566778899aabbccddeeff\ndemo-app\n{body_sm3}"
    )
    assert vector["canonical_request"] == expected


def test_vector_public_key_is_the_scalars_by_ours_and_gmssl() -> None:
    vector = load_vector()
    d = int(vector["private_key"], 16)
    assert SMSuite().private_key_from_int(d).public_hex() == vector["public_key"]
    g = CryptSM2(private_key=vector["private_key"], public_key="")
    assert "04" + g._kg(d, g.ecc_table["g"]) == vector["public_key"]


def test_vector_signature_verifies_with_ours() -> None:
    vector = load_vector()
    args = request_args(vector)
    public = bytes.fromhex(vector["public_key"])
    assert vector["headers"][access.SIGNATURE_HEADER] == vector["signature"]
    seen = {k: args[k] for k in ("method", "host", "path", "query_pairs", "body")}
    verify_request(public, vector["headers"], now_ms=args["timestamp_ms"], **seen)
    assert SMSuite().verify(
        public, bytes.fromhex(vector["canonical_request_hex"]), bytes.fromhex(vector["signature"])
    )


def test_vector_signature_verifies_with_gmssl() -> None:
    vector = load_vector()
    public = bytes.fromhex(vector["public_key"])
    message = bytes.fromhex(vector["canonical_request_hex"])
    signature = bytes.fromhex(vector["signature"])
    assert gmssl_verify(public, message, signature) is True
    assert gmssl_verify(public, message + b"\n", signature) is False


def test_vector_responses_verify() -> None:
    for response in load_vector()["responses"]:
        public = bytes.fromhex(response["node_public_key"])
        body = bytes.fromhex(response["body_hex"])
        message = canonical_response(response["status"], response["request_nonce"], body)
        assert message == response["canonical_response"].encode()
        assert response["body_sm3"] == gmssl_sm3_hex(body)
        verify_response(public, response["status"], response["request_nonce"], body, response["headers"])
        signature = bytes.fromhex(response["headers"][access.RESPONSE_SIGNATURE_HEADER])
        if response["suite"] == "sm":
            assert gmssl_verify(public, message, signature)
        else:
            # Ed25519 is deterministic: the same key signs the same bytes the same way.
            key = ed25519_key(response["node_private_key"])
            assert key.public_hex() == response["node_public_key"]
            assert (
                sign_response(key, response["status"], response["request_nonce"], body) == response["headers"]
            )


# -- interoperability with gmssl -------------------------------------------------------------


def test_our_signed_request_verifies_with_gmssl(app_key: SM2PrivateKey) -> None:
    body = "中枢 evidence".encode()
    headers, _ = signed(app_key, body=body, query_pairs=[("q", "a b")])
    message = canonical_request(
        "POST", "127.0.0.1:7700", "/v1/chains/main/txs", [("q", "a b")], T0, NONCE, "demo-app", body
    )
    signature = bytes.fromhex(headers[access.SIGNATURE_HEADER])
    assert gmssl_verify(app_key.public_bytes(), message, signature) is True
    assert gmssl_verify(app_key.public_bytes(), message.replace(b"POST", b"PUT"), signature) is False


def test_gmssl_signed_request_verifies_with_ours(app_key: SM2PrivateKey) -> None:
    body = b'{"x":1}'
    args: dict[str, Any] = {
        "method": "PUT",
        "host": "node0.example:443",
        "path": "/v1/chains/main/txs",
        "query_pairs": [],
        "body": body,
    }
    message = canonical_request(args["method"], args["host"], args["path"], [], T0, NONCE, "gm-app", body)
    raw = gmssl_sm2(app_key.public_bytes(), app_key.private_value()).sign_with_sm3(message)
    der = encode_dss_signature(int(raw[:64], 16), int(raw[64:], 16))
    headers = {
        "X-Zhongshu-App": "gm-app",
        "X-Zhongshu-Timestamp": str(T0),
        "X-Zhongshu-Nonce": NONCE,
        "X-Zhongshu-Signature": der.hex(),
    }
    verify_request(app_key.public_bytes(), headers, now_ms=T0, **args)
    with pytest.raises(BadSignature):
        verify_request(app_key.public_bytes(), headers, now_ms=T0, **{**args, "body": body + b" "})


# -- what breaks a signature -----------------------------------------------------------------

TAMPERED_REQUEST = {
    "method": {"method": "PUT"},
    "host": {"host": "127.0.0.1:7701"},
    "host-without-port": {"host": "127.0.0.1"},
    "path": {"path": "/v1/chains/other/txs"},
    "path-encoding": {"path": "/v1/chains/m%61in/txs"},
    "query-value": {"query_pairs": [("wait", "commit"), ("timeout", "31")]},
    "query-dropped": {"query_pairs": [("wait", "commit")]},
    "query-added": {"query_pairs": [("wait", "commit"), ("timeout", "30"), ("x", "")]},
    "body": {"body": b'{"k":"w"}'},
    "body-empty": {"body": b""},
}


@pytest.mark.parametrize("case", sorted(TAMPERED_REQUEST))
def test_a_changed_request_breaks_the_signature(app_key: SM2PrivateKey, case: str) -> None:
    headers, seen = signed(app_key)
    verify_request(app_key.public_bytes(), headers, now_ms=T0, **seen)
    with pytest.raises(BadSignature) as info:
        verify_request(app_key.public_bytes(), headers, now_ms=T0, **{**seen, **TAMPERED_REQUEST[case]})
    assert info.value.code == "bad-signature" and info.value.http_status == 401


TAMPERED_HEADERS = {
    "timestamp": {"X-Zhongshu-Timestamp": str(T0 + 1)},
    "nonce": {"X-Zhongshu-Nonce": "00112233445566778899aabbccddeefe"},
    "app-id": {"X-Zhongshu-App": "demo-app2"},
}


@pytest.mark.parametrize("case", sorted(TAMPERED_HEADERS))
def test_a_changed_header_breaks_the_signature(app_key: SM2PrivateKey, case: str) -> None:
    headers, seen = signed(app_key)
    with pytest.raises(BadSignature):
        verify_request(app_key.public_bytes(), {**headers, **TAMPERED_HEADERS[case]}, now_ms=T0, **seen)


def test_another_key_or_garbage_der_is_a_bad_signature(app_key: SM2PrivateKey) -> None:
    headers, seen = signed(app_key)
    other = SMSuite().generate_private_key()
    with pytest.raises(BadSignature):
        verify_request(other.public_bytes(), headers, now_ms=T0, **seen)
    for garbage in ("00", "3006020101020101", headers[access.SIGNATURE_HEADER][:-2]):
        with pytest.raises(BadSignature):
            verify_request(
                app_key.public_bytes(), {**headers, "X-Zhongshu-Signature": garbage}, now_ms=T0, **seen
            )


def test_method_and_host_case_and_header_spelling_do_not_matter(app_key: SM2PrivateKey) -> None:
    headers, seen = signed(app_key, method="post", host="LOCALHOST:7700")
    lower = {name.lower(): value for name, value in headers.items()}
    verify_request(
        app_key.public_bytes(), lower, now_ms=T0, **{**seen, "method": "POST", "host": "localhost:7700"}
    )


def test_query_order_does_not_matter(app_key: SM2PrivateKey) -> None:
    headers, seen = signed(app_key, query_pairs=[("b", "2"), ("a", "1"), ("a", "0")])
    verify_request(
        app_key.public_bytes(),
        headers,
        now_ms=T0,
        **{**seen, "query_pairs": [("a", "0"), ("b", "2"), ("a", "1")]},
    )


def test_only_sm2_keys_sign_requests() -> None:
    with pytest.raises(ValueError, match="SM2"):
        signed(IntlSuite().generate_private_key())
    headers, seen = signed(SMSuite().generate_private_key())
    with pytest.raises(ValueError, match="SM2"):
        verify_request(IntlSuite().generate_private_key().public_bytes(), headers, now_ms=T0, **seen)


# -- time ------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [MAX_SKEW_MS, -MAX_SKEW_MS, 0])
def test_exactly_five_minutes_either_way_is_accepted(app_key: SM2PrivateKey, offset: int) -> None:
    headers, seen = signed(app_key)
    verify_request(app_key.public_bytes(), headers, now_ms=T0 + offset, **seen)
    NonceWindow().check_and_remember("demo-app", NONCE, T0, T0 + offset)


@pytest.mark.parametrize("offset", [MAX_SKEW_MS + 1, -MAX_SKEW_MS - 1])
def test_five_minutes_and_one_ms_either_way_is_stale(app_key: SM2PrivateKey, offset: int) -> None:
    headers, seen = signed(app_key)
    with pytest.raises(StaleRequest) as info:
        verify_request(app_key.public_bytes(), headers, now_ms=T0 + offset, **seen)
    assert info.value.code == "stale-request" and info.value.http_status == 401
    assert (info.value.timestamp_ms, info.value.now_ms) == (T0, T0 + offset)
    with pytest.raises(StaleRequest):
        NonceWindow().check_and_remember("demo-app", NONCE, T0, T0 + offset)


# -- nonces ----------------------------------------------------------------------------------


def test_a_replayed_nonce_is_refused() -> None:
    window = NonceWindow()
    window.check_and_remember("demo-app", NONCE, T0, T0)
    with pytest.raises(ReplayedNonce) as info:
        window.check_and_remember("demo-app", NONCE, T0 + 10, T0 + 1000)
    assert info.value.code == "replayed-nonce" and info.value.http_status == 401
    assert (info.value.app_id, info.value.nonce) == ("demo-app", NONCE)
    # The same nonce from another app is that app's own.
    window.check_and_remember("other-app", NONCE, T0, T0 + 1000)
    assert len(window) == 2


def test_the_window_forgets_a_nonce_once_a_replay_would_be_stale() -> None:
    window = NonceWindow()
    window.check_and_remember("demo-app", NONCE, T0, T0)
    window.check_and_remember("demo-app", "ff" * 16, T0 + 1, T0)
    # At the edge of the window the pair is still held.
    with pytest.raises(ReplayedNonce):
        window.check_and_remember("demo-app", NONCE, T0, T0 + MAX_SKEW_MS)
    assert len(window) == 2
    # One ms later the first pair is evicted (a replay of it is now stale), the second is not.
    with pytest.raises(StaleRequest):
        window.check_and_remember("demo-app", NONCE, T0, T0 + MAX_SKEW_MS + 1)
    assert len(window) == 1
    with pytest.raises(ReplayedNonce):
        window.check_and_remember("demo-app", "ff" * 16, T0 + 1, T0 + MAX_SKEW_MS + 1)
    window.check_and_remember("demo-app", "ee" * 16, T0 + 10 * MAX_SKEW_MS, T0 + 10 * MAX_SKEW_MS)
    assert len(window) == 1


def test_a_clock_stepping_back_does_not_reopen_the_window() -> None:
    window = NonceWindow()
    window.check_and_remember("demo-app", NONCE, T0, T0)
    window.check_and_remember("demo-app", "ff" * 16, T0 + 2 * MAX_SKEW_MS, T0 + 2 * MAX_SKEW_MS)
    assert len(window) == 1
    # The node's clock goes back to T0: the forgotten pair must not be accepted again.
    with pytest.raises(StaleRequest):
        window.check_and_remember("demo-app", NONCE, T0, T0)


def test_a_full_window_refuses_rather_than_forgets() -> None:
    window = NonceWindow(max_entries=2)
    window.check_and_remember("a", "00" * 16, T0, T0)
    window.check_and_remember("a", "01" * 16, T0 + 1, T0)
    with pytest.raises(NonceWindowFull) as info:
        window.check_and_remember("a", "02" * 16, T0 + 2, T0)
    assert info.value.code == "nonce-window-full" and info.value.http_status == 503
    # Once the oldest pair's replay is stale there is room again.
    window.check_and_remember("a", "02" * 16, T0 + 2, T0 + MAX_SKEW_MS + 1)
    assert len(window) == 2


# -- malformed headers -----------------------------------------------------------------------

MALFORMED = {
    "missing-app": ("X-Zhongshu-App", None),
    "missing-timestamp": ("X-Zhongshu-Timestamp", None),
    "missing-nonce": ("X-Zhongshu-Nonce", None),
    "missing-signature": ("X-Zhongshu-Signature", None),
    "app-empty": ("X-Zhongshu-App", ""),
    "app-space": ("X-Zhongshu-App", "demo app"),
    "app-newline": ("X-Zhongshu-App", "demo\napp"),
    "app-65-chars": ("X-Zhongshu-App", "a" * 65),
    "timestamp-float": ("X-Zhongshu-Timestamp", "1767225600000.0"),
    "timestamp-exponent": ("X-Zhongshu-Timestamp", "1.7672256e12"),
    "timestamp-negative": ("X-Zhongshu-Timestamp", "-1"),
    "timestamp-leading-zero": ("X-Zhongshu-Timestamp", "01767225600000"),
    "timestamp-space": ("X-Zhongshu-Timestamp", " 1767225600000"),
    "timestamp-word": ("X-Zhongshu-Timestamp", "now"),
    "timestamp-17-digits": ("X-Zhongshu-Timestamp", "1" * 17),
    "nonce-31": ("X-Zhongshu-Nonce", NONCE[:-1]),
    "nonce-33": ("X-Zhongshu-Nonce", NONCE + "0"),
    "nonce-uppercase": ("X-Zhongshu-Nonce", NONCE.upper()),
    "nonce-not-hex": ("X-Zhongshu-Nonce", "zz" * 16),
    "signature-not-hex": ("X-Zhongshu-Signature", "zz" * 70),
    "signature-odd": ("X-Zhongshu-Signature", "abc"),
    "signature-uppercase": ("X-Zhongshu-Signature", "AB" * 70),
    "signature-empty": ("X-Zhongshu-Signature", ""),
    "signature-81-bytes": ("X-Zhongshu-Signature", "00" * 81),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_headers_are_refused(app_key: SM2PrivateKey, case: str) -> None:
    headers, seen = signed(app_key)
    name, value = MALFORMED[case]
    bad = {k: v for k, v in headers.items() if k != name}
    if value is not None:
        bad[name] = value
    with pytest.raises(MalformedAuth) as info:
        verify_request(app_key.public_bytes(), bad, now_ms=T0, **seen)
    assert info.value.code == "malformed-auth" and info.value.http_status == 401
    assert info.value.header == name


def test_a_header_given_twice_is_refused(app_key: SM2PrivateKey) -> None:
    headers, seen = signed(app_key)
    twice = {**headers, "x-zhongshu-nonce": headers["X-Zhongshu-Nonce"]}
    with pytest.raises(MalformedAuth, match="more than once"):
        verify_request(app_key.public_bytes(), twice, now_ms=T0, **seen)


def test_parse_auth_headers_reads_the_four(app_key: SM2PrivateKey) -> None:
    headers, _ = signed(app_key)
    auth = parse_auth_headers({**headers, "Content-Type": "application/json"})
    assert (auth.app_id, auth.timestamp_ms, auth.nonce) == ("demo-app", T0, NONCE)
    assert auth.signature.hex() == headers["X-Zhongshu-Signature"]


REQUEST_PARTS_REFUSED = {
    "method-space": {"method": "PO ST"},
    "method-empty": {"method": ""},
    "host-newline": {"host": "127.0.0.1\n7700"},
    "host-empty": {"host": ""},
    "host-non-ascii": {"host": "中枢.example"},
    "path-relative": {"path": "v1/chains"},
    "path-empty": {"path": ""},
    "path-with-query": {"path": "/v1/chains?wait=commit"},
    "path-with-space": {"path": "/v1/chains main"},
    "path-non-ascii": {"path": "/v1/链"},
    "query-surrogate": {"query_pairs": [("q", "\udc80")]},
    "timestamp-negative": {"timestamp_ms": -1},
    "timestamp-bool": {"timestamp_ms": True},
    "nonce-short": {"nonce": "00"},
    "app-id-newline": {"app_id": "demo\napp"},
}


@pytest.mark.parametrize("case", sorted(REQUEST_PARTS_REFUSED))
def test_request_parts_that_could_shift_lines_are_refused(case: str) -> None:
    args: dict[str, Any] = {
        "method": "GET",
        "host": "h",
        "path": "/",
        "query_pairs": [],
        "timestamp_ms": T0,
        "nonce": NONCE,
        "app_id": "a",
        "body": b"",
    }
    canonical_request(**args)
    with pytest.raises(MalformedAuth):
        canonical_request(**{**args, **REQUEST_PARTS_REFUSED[case]})


# -- the canonical query ---------------------------------------------------------------------


def test_canonical_query_by_hand() -> None:
    pairs = [
        ("b", "2"),
        ("a", "2"),
        ("a", "1"),
        ("n", "9"),
        ("n", "10"),
        ("a b", "x y"),
        ("é", "~"),
        ("~t", "*"),
        ("chain", "中枢"),
        ("q", "a+b/c?d=e&f"),
        ("empty", ""),
        ("r", ":/?#[]@!$&'()*+,;="),
        ("u", "AZaz09-._~"),
    ]
    # RFC 3986 section 2.3: only ALPHA DIGIT - . _ ~ stay; everything else is %XX of its UTF-8
    # bytes, uppercase hex (section 2.1). Sorted by encoded name, then encoded value, as ASCII:
    # "%" (0x25) < digits < uppercase < lowercase < "~" (0x7E); "10" < "9".
    expected = (
        "%C3%A9=~"
        "&a=1&a=2"
        "&a%20b=x%20y"
        "&b=2"
        "&chain=%E4%B8%AD%E6%9E%A2"
        "&empty="
        "&n=10&n=9"
        "&q=a%2Bb%2Fc%3Fd%3De%26f"
        "&r=%3A%2F%3F%23%5B%5D%40%21%24%26%27%28%29%2A%2B%2C%3B%3D"
        "&u=AZaz09-._~"
        "&~t=%2A"
    )
    assert canonical_query(pairs) == expected
    assert canonical_query([]) == ""


def test_parse_query_decodes_as_web_forms() -> None:
    assert parse_query("wait=commit&timeout=30") == [("wait", "commit"), ("timeout", "30")]
    assert parse_query(b"q=a+b&r=a%2Bb&flag&&s=%E4%B8%AD") == [
        ("q", "a b"),
        ("r", "a+b"),
        ("flag", ""),
        ("s", "中"),
    ]
    assert parse_query("") == []
    for bad in ("q=%ff", b"q=\xe4\xb8\xad"):
        with pytest.raises(MalformedAuth):
            parse_query(bad)


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(_text, _text), max_size=6))
def test_the_canonical_query_is_a_query_that_reads_back(pairs: list[tuple[str, str]]) -> None:
    """Sending the canonical query itself gives the gateway the same pairs, hence the same string."""
    text = canonical_query(pairs)
    back = parse_query(text)
    assert sorted(back) == sorted(pairs)
    assert canonical_query(back) == text


# -- signed answers --------------------------------------------------------------------------


def node_keys() -> list[PrivateKey]:
    return [get_suite("sm").generate_private_key(), get_suite("intl").generate_private_key()]


@pytest.mark.parametrize("suite", ["sm", "intl"])
def test_signed_answers_verify_and_changes_are_refused(suite: str) -> None:
    key = get_suite(suite).generate_private_key()
    public = key.public_bytes()
    body = b'{"status":"pending","tx_hashes":[]}'
    headers = sign_response(key, 202, NONCE, body)
    assert headers[access.NODE_HEADER] == public.hex()
    verify_response(public, 202, NONCE, body, headers)
    verify_response(public, 202, NONCE, body, {k.lower(): v for k, v in headers.items()})
    if suite == "sm":
        message = canonical_response(202, NONCE, body)
        assert gmssl_verify(public, message, bytes.fromhex(headers[access.RESPONSE_SIGNATURE_HEADER]))
    other = get_suite(suite).generate_private_key()
    refused: list[tuple[bytes, int, str, bytes, dict[str, str]]] = [
        (public, 200, NONCE, body, headers),
        (public, 202, NONCE, body + b" ", headers),
        (public, 202, "ff" * 16, body, headers),
        (public, 202, "", body, headers),
        (other.public_bytes(), 202, NONCE, body, headers),
        (public, 202, NONCE, body, {access.NODE_HEADER: public.hex()}),
        (
            public,
            202,
            NONCE,
            body,
            {access.RESPONSE_SIGNATURE_HEADER: headers[access.RESPONSE_SIGNATURE_HEADER]},
        ),
        (public, 202, NONCE, body, {**headers, access.RESPONSE_SIGNATURE_HEADER: "not hex"}),
        (public, 202, NONCE, body, {**headers, access.RESPONSE_SIGNATURE_HEADER: "00" * 64}),
        (public, 202, NONCE, body, sign_response(other, 202, NONCE, body)),
        (
            public,
            202,
            NONCE,
            body,
            {**sign_response(other, 202, NONCE, body), access.NODE_HEADER: public.hex()},
        ),
    ]
    for case in refused:
        with pytest.raises(BadResponseSignature) as info:
            verify_response(*case)
        assert info.value.code == "bad-response-signature"
    # The right signature under another node's name is refused for the name alone.
    with pytest.raises(BadResponseSignature, match="not the trusted"):
        verify_response(public, 202, NONCE, body, {**headers, access.NODE_HEADER: other.public_hex()})


def test_an_answer_without_a_request_nonce_signs_an_empty_line() -> None:
    key = get_suite("intl").generate_private_key()
    assert (
        canonical_response(401, "", b"")
        == b"ZHONGSHU-RESPONSE\n401\n\n" + access.compute_body_hash(b"").encode()
    )
    verify_response(key.public_bytes(), 401, "", b"", sign_response(key, 401, "", b""))
    for status, nonce in ((99, NONCE), (600, NONCE), (200, "xyz")):
        with pytest.raises(ValueError):
            canonical_response(status, nonce, b"")


def test_every_refusal_is_an_access_refused_with_its_code() -> None:
    codes = {cls.code: cls.http_status for cls in access.AccessRefused.__subclasses__()}
    assert codes == {
        "malformed-auth": 401,
        "bad-signature": 401,
        "stale-request": 401,
        "replayed-nonce": 401,
        "nonce-window-full": 503,
        "bad-response-signature": 502,
    }
    assert issubclass(ReplayedNonce, AccessRefused)


# -- the module and its documentation --------------------------------------------------------


def test_the_module_imports_no_web_framework() -> None:
    code = (
        "import sys, zhongshu.gateway.access\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette', 'httpx'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


def _section(text: str, heading: str) -> str:
    return text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_the_spec_section_sits_after_identity_and_shows_the_vector() -> None:
    text = SPEC.read_text(encoding="utf-8")
    headings = re.findall(r"^## .*$", text, flags=re.M)
    assert headings[headings.index("## Identity") + 1] == "## Signed requests"
    vector = load_vector()
    for doc in (_section(text, "## Signed requests"), SPEC_ZH.read_text(encoding="utf-8")):
        assert vector["canonical_request"] + "\n" in _blocks(doc, "text")
        for value in (vector["public_key"], vector["signature"], vector["body_sm3"], vector["private_key"]):
            assert value in doc
        ed = vector["responses"][1]
        assert ed["headers"][access.RESPONSE_SIGNATURE_HEADER] in doc


def test_the_spec_python_example_signs_a_request_that_verifies() -> None:
    section = _section(SPEC.read_text(encoding="utf-8"), "## Signed requests")
    (example,) = _blocks(section, "python")
    assert "zhongshu" not in example
    assert _blocks(SPEC_ZH.read_text(encoding="utf-8"), "python") == [example]
    namespace: dict[str, Any] = {}
    exec(compile(example, "docs/access-spec.md Signed requests", "exec"), namespace)
    vector = load_vector()
    assert namespace["canonical"] == bytes.fromhex(vector["canonical_request_hex"])
    args = request_args(vector)
    seen = {k: args[k] for k in ("method", "host", "path", "query_pairs", "body")}
    verify_request(bytes.fromhex(vector["public_key"]), namespace["headers"], now_ms=T0, **seen)


if __name__ == "__main__":
    if sys.argv[1:] == ["--regenerate"]:
        regenerate_worked_example()
        print(f"wrote {VECTOR}")
