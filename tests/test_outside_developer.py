"""An outside developer connects to a Zhongshu hub from the published documents alone.

The fixture plays the operator: it starts the quick-start hub (``zhongshu up``) and registers a new
application for the department with the CLI. It hands the developer only what an operator would:
a gateway URL, the chain name, the app's credentials file and the hub's genesis file.

The test body plays the developer. It imports nothing of ``zhongshu``: everything it does
(canonical MessagePack, transaction sign-bytes and hash, the signed request, the node's signed
answer, the refusal codes) is written from docs/access-spec.md and docs/proof-format.md.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tongsuopy.crypto import hashes, serialization
from tongsuopy.crypto.asymciphers import ec
from tongsuopy.crypto.exceptions import InvalidSignature

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- the operator's side


@dataclass(frozen=True)
class Handoff:
    """What the operator gives the department's developer, and nothing more."""

    gateway: str  # one node's gateway URL
    chain: str  # the business chain the app may write to
    app_file: Path  # app.json written by `zhongshu app register`
    hub_genesis: Path  # the hub's genesis document: which node keys to trust


@pytest.fixture(scope="module")
def handoff(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Handoff]:
    # conftest's helpers, imported at run time: mypy would otherwise check conftest.py itself
    # (its pytest_runtest_makereport hook does not pass the strict config), which is not this file's.
    conftest = importlib.import_module("conftest")
    cli_env, free_base, wait_for = conftest.cli_env, conftest.free_base, conftest.wait_for

    tmp = tmp_path_factory.mktemp("outside")
    home = tmp / "hub"
    base = free_base(4)
    env = cli_env()
    log_path = tmp / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "zhongshu", "up", "--home", str(home), "--port", str(base)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:

        def ready() -> bool:
            if up.poll() is not None:
                pytest.fail(f"zhongshu up exited with {up.returncode}:\n{log_path.read_text()}")
            return "Press Ctrl-C" in log_path.read_text(errors="replace")

        wait_for(ready, 120, "the quick-start hub", interval=0.2)
        api = f"http://127.0.0.1:{base}"
        register = subprocess.run(
            [
                sys.executable, "-m", "zhongshu", "app", "register", "demo", "dept-archive",
                "--grant", "main:evidence:*",
                "--key", str(home / "demo" / "admin_key.pem"),
                "--out", str(tmp / "dept"),
                "--api", api,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=90,
        )  # fmt: skip
        assert register.returncode == 0, register.stdout + register.stderr
        yield Handoff(
            gateway=api,
            chain="main",
            app_file=tmp / "dept" / "app.json",
            hub_genesis=home / "node0" / "genesis.json",
        )
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(up.pid, signal.SIGKILL)
                up.wait()


# --------------------------------------------------------------- the developer's side: from the docs

# access-spec.md, "The canonical request string", item 9: SM3 of no bytes.
SM3_EMPTY = "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"


def sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return bytes(digest.finalize())


def _length(n: int, fix: int | None, fix_limit: int, codes: tuple[int, int, int]) -> bytes:
    """A MessagePack length header: the fix form when it fits, else 8/16/32-bit (proof-format §2)."""
    if fix is not None and n < fix_limit:
        return bytes([fix | n])
    c8, c16, c32 = codes
    if c8 and n < 1 << 8:
        return bytes([c8, n])
    if n < 1 << 16:
        return bytes([c16]) + n.to_bytes(2, "big")
    return bytes([c32]) + n.to_bytes(4, "big")


def mp(value: object) -> bytes:
    """Canonical MessagePack, proof-format.md §2 rules 1-6 (only what a transaction needs)."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        raise TypeError(f"no {type(value).__name__} in canonical MessagePack")
    if isinstance(value, int):
        if value < 0 or value >= 1 << 64:
            raise ValueError(value)
        if value < 0x80:
            return bytes([value])
        for code, size in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
            if value < 1 << (8 * size):
                return bytes([code]) + value.to_bytes(size, "big")
    if isinstance(value, bytes):
        return _length(len(value), None, 0, (0xC4, 0xC5, 0xC6)) + value
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _length(len(raw), 0xA0, 32, (0xD9, 0xDA, 0xDB)) + raw
    if isinstance(value, list):
        return _length(len(value), 0x90, 16, (0, 0xDC, 0xDD)) + b"".join(mp(v) for v in value)
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: str(kv[0]).encode("utf-8"))
        return _length(len(items), 0x80, 16, (0, 0xDE, 0xDF)) + b"".join(mp(k) + mp(v) for k, v in items)
    raise TypeError(type(value).__name__)


def genesis_hash(genesis: dict[str, Any]) -> bytes:
    """proof-format.md §3, "Its hash" (sm suite: SM3)."""
    defaults = {"block_interval_ms": 200, "max_block_txs": 5000, "max_block_bytes": 8388608,
                "max_tx_bytes": 98304}  # fmt: skip
    params = {**defaults, **genesis.get("params", {})}
    encoded = mp([
        "genesis", genesis["chain_id"], genesis["suite"], genesis["time"],
        ["validators", [[bytes.fromhex(v["public_key"]), v["power"], v["name"]]
                        for v in genesis["validators"]]],
        [params[k] for k in ("block_interval_ms", "max_block_txs", "max_block_bytes", "max_tx_bytes")],
    ])  # fmt: skip
    assert genesis["suite"] == "sm", "this developer only speaks the sm suite"
    return sm3(encoded)


def canonical_query(pairs: list[tuple[str, str]]) -> str:
    """access-spec.md, "Canonical query": RFC 3986 encoding, sorted by name then value."""

    def encode(text: str) -> str:
        return urllib.parse.quote(text, safe="")

    return "&".join(f"{n}={v}" for n, v in sorted((encode(n), encode(v)) for n, v in pairs))


@dataclass
class App:
    app_id: str
    key: Any  # tongsuopy SM2 private key

    @property
    def public_key(self) -> bytes:
        pub = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return bytes(pub)

    def sign(self, message: bytes) -> bytes:
        """SM2 with SM3 and the default ID, DER (access-spec.md, "Signed requests")."""
        return bytes(self.key.sign(message, ec.ECDSA(hashes.SM3())))


def load_app(app_file: Path) -> App:
    """app.json: ``{"app_id", "key_file"}``, key_file relative to the JSON file's directory."""
    config = json.loads(app_file.read_text())
    key_pem = (app_file.parent / config["key_file"]).read_bytes()
    return App(config["app_id"], serialization.load_pem_private_key(key_pem, password=None))


def signed_request_headers(
    app: App, method: str, host: str, path: str, query: list[tuple[str, str]], body: bytes,
    *, signed_query: str | None = None,
) -> dict[str, str]:  # fmt: skip
    """The four X-Zhongshu-* headers of a signed request (access-spec.md, nine lines)."""
    timestamp = str(time.time_ns() // 1_000_000)
    nonce = secrets.token_hex(16)
    lines = [
        "ZHONGSHU-SM2-SM3",
        method.upper(),
        host.lower(),
        path,
        canonical_query(query) if signed_query is None else signed_query,
        timestamp,
        nonce,
        app.app_id,
        sm3(body).hex(),
    ]
    signature = app.sign("\n".join(lines).encode("utf-8"))
    return {
        "X-Zhongshu-App": app.app_id,
        "X-Zhongshu-Timestamp": timestamp,
        "X-Zhongshu-Nonce": nonce,
        "X-Zhongshu-Signature": signature.hex(),
    }


def sm2_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SM2(), public_key)
    try:
        key.verify(signature, message, ec.ECDSA(hashes.SM3()))
    except InvalidSignature:
        return False
    return True


def check_signed_answer(response: httpx.Response, request_nonce: str, trusted: set[str]) -> str:
    """access-spec.md, "Signed answers": a trusted node key, and its signature over the four lines."""
    node: str | None = response.headers.get("X-Zhongshu-Node")
    signature = response.headers.get("X-Zhongshu-Response-Signature")
    assert node is not None and signature is not None, f"unsigned answer: {dict(response.headers)}"
    assert node in trusted, f"answer signed by {node[:16]}…, not a validator of the hub genesis"
    assert len(bytes.fromhex(node)) == 65, "an SM2 node key (the hub is sm)"
    canonical = "\n".join(
        ["ZHONGSHU-RESPONSE", str(response.status_code), request_nonce, sm3(response.content).hex()]
    ).encode("utf-8")
    assert sm2_verify(bytes.fromhex(node), bytes.fromhex(signature), canonical), (
        f"the node's signature of the {response.status_code} answer does not verify"
    )
    return node


def problem_code(response: httpx.Response) -> str:
    """Errors: an RFC 9457 problem document whose ``type`` is ``/problems/<code>``."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    problem = response.json()
    assert problem["status"] == response.status_code
    kind = str(problem["type"])
    assert kind.startswith("/problems/"), kind
    return str(kind.removeprefix("/problems/"))


def test_documents_worked_examples_hold_for_this_code() -> None:
    """The developer's own encoder and signer against the documents' worked examples (no network)."""
    # proof-format.md §2: a precommit, and its SM3.
    vote = mp(["vote", 2, "demo", 5, 0, sm3(b"abc")])
    assert vote.hex() == (
        "96a4766f746502a464656d6f0500c42066c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )
    assert sm3(vote).hex() == "c0b75f5101ef4b875b5234b227b4ccaf302d8a4956361cda57b110a8b27c2e02"
    assert mp(["vote", 2, "demo", 300, 1, b""]).hex() == "96a4766f746502a464656d6f" + "cd012c01c400"
    assert sm3(b"").hex() == SM3_EMPTY
    # access-spec.md, "Worked example": the 200-byte canonical request string and its signature.
    body = b'{"example":"signed request"}'
    assert sm3(body).hex() == "c9d59580cc94cdeb4b0a404e293e3175459278ded1d6af6486fa94fff2974675"
    canonical = "\n".join([
        "ZHONGSHU-SM2-SM3", "POST", "127.0.0.1:7700", "/v1/chains/main/txs",
        canonical_query([("wait", "commit"), ("timeout", "30")]),
        "1767225600000", "00112233445566778899aabbccddeeff", "demo-app", sm3(body).hex(),
    ]).encode()  # fmt: skip
    assert len(canonical) == 200
    example_public = bytes.fromhex(
        "0409f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020"
        "ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13"
    )
    example_signature = bytes.fromhex(
        "304402204ad13396154f50caf569f1afbf4eaa0085213462ba46baa41ccbbcedb4d2fab3"
        "022046a5c55117bad62bf0daa2e883320593b6f7ef3591b87a7f0289fa0daa1c1302"
    )
    assert sm2_verify(example_public, example_signature, canonical)
    assert not sm2_verify(example_public, example_signature, canonical + b"x")
    # The canonical query example.
    pairs = [("b", "2"), ("a", "2"), ("a", "1"), ("a b", "x y"), ("é", "~")]
    assert canonical_query(pairs) == "%C3%A9=~&a=1&a=2&a%20b=x%20y&b=2"


def test_department_deposits_through_the_access_spec(handoff: Handoff) -> None:
    app = load_app(handoff.app_file)
    hub_genesis = json.loads(handoff.hub_genesis.read_text())
    # "on a hub, the hub chain's genesis": the node keys to trust for signed answers.
    assert hub_genesis["chain_id"] == "hub" and hub_genesis["suite"] == "sm"
    trusted = {v["public_key"] for v in hub_genesis["validators"]}
    split = urllib.parse.urlsplit(handoff.gateway)
    host = split.netloc  # as httpx sends it in Host: 127.0.0.1:PORT
    chain = handoff.chain
    nodes_seen: set[str] = set()
    # "Accept-Encoding: identity": the answer's signature covers the exact body bytes.
    client = httpx.Client(base_url=handoff.gateway, timeout=45, headers={"Accept-Encoding": "identity"})

    def get(path: str) -> httpx.Response:
        nonce = secrets.token_hex(16)  # "X-Zhongshu-Nonce alone only asks for a signed answer"
        response = client.get(path, headers={"X-Zhongshu-Nonce": nonce})
        nodes_seen.add(check_signed_answer(response, nonce, trusted))
        return response

    with client:
        # 1. The chain's status (public GET): genesis_hash and height.
        status = get(f"/v1/chains/{chain}/status")
        assert status.status_code == 200, status.text
        state = status.json()
        assert state["chain_id"] == chain and state["suite"] == "sm"
        chain_genesis_hash = bytes.fromhex(state["genesis_hash"])
        assert len(chain_genesis_hash) == 32
        # A third party can compute it from the chain's genesis.json (proof-format.md §3).
        genesis = get(f"/v1/chains/{chain}/genesis")
        assert genesis.status_code == 200, genesis.text
        assert genesis_hash(genesis.json()) == chain_genesis_hash

        # 2. An evidence.put transaction, sent by the app's own key.
        document = b"Archive record 2026-0042: minutes of the department meeting.\n" + secrets.token_bytes(16)
        digest = sm3(document)
        args = mp(["evidence.put", digest, "minutes-2026-0042.txt",
                   {"department": "archive", "algorithm": "sm3"}, b""])  # fmt: skip
        sender = app.public_key
        valid_until = int(state["height"]) + 1000
        tx_nonce = secrets.randbits(64)
        sign_bytes = mp(
            ["tx", chain, chain_genesis_hash, sender, "evidence", "put", args, valid_until, tx_nonce]
        )
        assert sign_bytes[:4] == bytes.fromhex("99a27478")
        tx_hash = sm3(sign_bytes).hex()  # the suite hash of the sign-bytes
        tx_signature = app.sign(sign_bytes)
        tx = {
            "chain_id": chain,
            "genesis_hash": chain_genesis_hash.hex(),
            "sender": sender.hex(),
            "contract": "evidence",
            "method": "put",
            "args": args.hex(),
            "valid_until": valid_until,
            "nonce": tx_nonce,
            "signature": tx_signature.hex(),
        }
        body = json.dumps(tx, separators=(",", ":")).encode("utf-8")

        # 3. The signed submission: POST /v1/chains/main/txs?wait=commit&timeout=30.
        path = f"/v1/chains/{chain}/txs"
        query = [("wait", "commit"), ("timeout", "30")]
        url = f"{path}?{canonical_query(query)}"  # send the canonical query itself
        headers = signed_request_headers(app, "POST", host, path, query, body)
        headers["Content-Type"] = "application/json"
        submit = client.post(url, content=body, headers=headers)
        nodes_seen.add(check_signed_answer(submit, headers["X-Zhongshu-Nonce"], trusted))
        assert submit.status_code == 200, submit.text
        answer = submit.json()
        assert answer["status"] == "committed"
        [receipt] = answer["receipts"]
        assert receipt["tx_hash"] == tx_hash, "the node's transaction hash is not the one computed here"
        assert receipt["receipt"]["status"] == "ok", receipt
        assert receipt["height"] >= 1

        # 4. The proof bundle names the transaction and the digest.
        proof = get(f"/v1/chains/{chain}/txs/{tx_hash}/proof")
        assert proof.status_code == 200, proof.text
        bundle = proof.json()
        assert bundle["format"] == "zhongshu-proof/2"
        assert bundle["chain_id"] == chain and bundle["suite"] == "sm"
        assert bundle["tx"]["hash"] == tx_hash
        # The encoded Transaction: the 9 sign-bytes elements, then the signature (proof-format §2).
        expected_encoded = bytes([0x9A]) + sign_bytes[1:] + mp(tx_signature)
        assert bundle["tx"]["encoded"] == expected_encoded.hex()
        assert bundle["evidence"]["digest"] == digest.hex()
        assert bundle["evidence"]["name"] == "minutes-2026-0042.txt"
        assert bundle["block"]["height"] == receipt["height"]

        # 5. The refusals a developer meets.
        # The same signed request again: replayed-nonce (401).
        replay = client.post(url, content=body, headers=headers)
        nodes_seen.add(check_signed_answer(replay, headers["X-Zhongshu-Nonce"], trusted))
        assert (replay.status_code, problem_code(replay)) == (401, "replayed-nonce"), replay.text
        assert replay.headers["WWW-Authenticate"] == "ZHONGSHU-SM2-SM3"

        # A body changed after signing: bad-signature (401).
        tx2 = {**tx, "nonce": (tx_nonce + 1) % (1 << 64)}
        body2 = json.dumps(tx2, separators=(",", ":")).encode("utf-8")
        headers2 = signed_request_headers(app, "POST", host, path, query, body2)
        headers2["Content-Type"] = "application/json"
        tampered = body2.replace(b'"contract":"evidence"', b'"contract":"evidence" ')
        assert tampered != body2
        changed = client.post(url, content=tampered, headers=headers2)
        nodes_seen.add(check_signed_answer(changed, headers2["X-Zhongshu-Nonce"], trusted))
        assert (changed.status_code, problem_code(changed)) == (401, "bad-signature"), changed.text
        assert changed.headers["WWW-Authenticate"] == "ZHONGSHU-SM2-SM3"

        # An unsigned POST: app-auth-required (401); no nonce, so the answer signs an empty line.
        unsigned = client.post(url, content=body2, headers={"Content-Type": "application/json"})
        nodes_seen.add(check_signed_answer(unsigned, "", trusted))
        assert (unsigned.status_code, problem_code(unsigned)) == (401, "app-auth-required"), unsigned.text
        assert unsigned.headers["WWW-Authenticate"] == "ZHONGSHU-SM2-SM3"

    assert len(nodes_seen) == 1, "one gateway, one node key"
