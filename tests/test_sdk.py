"""The SDK: typed answers, errors as the SDK's own exceptions, the async client, file loaders.

The answer and error readers are checked on bytes written here (both forms of a problem
``type``, a 504, a body that is no problem document); the clients against a real node.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import NodeProcess, free_port
from zhongshu.crypto import get_suite
from zhongshu.gateway.access import parse_query, verify_request
from zhongshu.ledger.evidence_args import EvidencePut
from zhongshu.ledger.types import ChainParams, Genesis, Validator, ValidatorSet
from zhongshu.sdk import (
    ApiError,
    AppCredentials,
    AsyncClient,
    BlockView,
    ChainStatus,
    Client,
    CommitTimeout,
    ConnectionFailed,
    EvidencePage,
    EvidenceRecord,
    FileError,
    ProofBundle,
    ProofInvalid,
    Receipt,
    SubmitResult,
    TxView,
    UnexpectedResponse,
    UntrustedAnswer,
    ZhongshuError,
    load_app,
    load_genesis,
    load_key,
    load_proof,
    new_key,
    save_key,
    save_proof,
    verify_proof,
)
from zhongshu.sdk.calls import get, read_answer
from zhongshu.sdk.tx import sign_tx

ZERO_HASH = "00" * 32


@pytest.fixture(scope="module")
def client(module_node: NodeProcess) -> Iterator[Client]:
    with Client(module_node.url, "main") as c:
        yield c


def problem(code_uri: str, status: int, **extra: object) -> bytes:
    return json.dumps({"type": code_uri, "title": "T", "status": status, "detail": "do X", **extra}).encode()


# -- reading answers, on bytes written here -------------------------------------------------------


@pytest.mark.parametrize("uri", ["/problems/not-found", "https://zhongshu.dev/problems/not-found"])
def test_a_problem_document_becomes_an_api_error_with_its_code(uri: str) -> None:
    with pytest.raises(ApiError) as caught:
        read_answer(get("/x", ChainStatus), 404, problem(uri, 404, instance="/x"))
    error = caught.value
    assert (error.status, error.code, error.title, error.detail) == (404, "not-found", "T", "do X")
    assert error.problem["instance"] == "/x"
    assert isinstance(error, ZhongshuError)


def test_a_commit_timeout_carries_the_transaction_hashes() -> None:
    body = problem("/problems/commit-timeout", 504, tx_hashes=["ab" * 32, "cd" * 32])
    with pytest.raises(CommitTimeout) as caught:
        read_answer(get("/x", SubmitResult), 504, body)
    assert caught.value.tx_hashes == ["ab" * 32, "cd" * 32]
    assert caught.value.code == "commit-timeout"


def test_a_busy_gateway_says_when_to_retry() -> None:
    with pytest.raises(ApiError) as caught:
        read_answer(get("/x", SubmitResult), 503, problem("/problems/mempool-full", 503), retry_after="3")
    assert caught.value.retry_after == 3.0


def test_an_error_that_is_no_problem_document_is_still_an_api_error() -> None:
    with pytest.raises(ApiError) as caught:
        read_answer(get("/x", ChainStatus), 502, b"<html>Bad Gateway</html>")
    assert (caught.value.status, caught.value.code) == (502, "")
    assert caught.value.title == "Bad Gateway" and "Bad Gateway" in caught.value.detail
    # JSON with a string that is not UTF-8 (msgspec raises UnicodeDecodeError for it).
    with pytest.raises(ApiError) as caught:
        read_answer(get("/x", ChainStatus), 502, b'{"title": "\xff"}')
    assert caught.value.status == 502


def test_fields_the_gateway_adds_later_are_ignored() -> None:
    answer = {
        "chain_id": "main",
        "suite": "intl",
        "height": 3,
        "latest_block_hash": "aa" * 32,
        "latest_block_time": 5,
        "genesis_hash": "bb" * 32,
        "a_field_of_version_2": {"anything": [1, 2]},
    }
    status = read_answer(get("/x", ChainStatus), 200, json.dumps(answer).encode())
    assert (status.suite, status.height, status.genesis_hash) == ("intl", 3, "bb" * 32)


@pytest.mark.parametrize("body", [b"not json", b'{"chain_id": 7}', b"[]", b'{"chain_id": "\xff"}'])
def test_a_success_with_the_wrong_body_is_an_unexpected_response(body: bytes) -> None:
    with pytest.raises(UnexpectedResponse):
        read_answer(get("/x", ChainStatus), 200, body)


# -- connections -----------------------------------------------------------------------------------


def test_a_closed_port_raises_connection_failed_not_an_httpx_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url) as c, pytest.raises(ConnectionFailed) as caught:
        c.status()
    assert not isinstance(caught.value, httpx.HTTPError)
    assert caught.value.url == url and "reach" in str(caught.value)

    async def status() -> None:
        async with AsyncClient(url) as ac:
            await ac.status()

    with pytest.raises(ConnectionFailed):
        asyncio.run(status())


def test_a_gateway_that_never_answers_raises_connection_failed() -> None:
    # A listening socket nobody accepts from: the connection opens, no answer ever comes.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        with Client(url, timeout=0.3) as c, pytest.raises(ConnectionFailed) as caught:
            c.status()
    assert "in time" in caught.value.reason


# -- against a node ------------------------------------------------------------------------------


def test_status_and_chains_are_typed(client: Client, module_node: NodeProcess) -> None:
    status = client.status()
    assert isinstance(status, ChainStatus)
    assert status.genesis_hash == module_node.genesis_hash().hex()
    assert client.genesis_hash() == module_node.genesis_hash()
    assert [c.chain_id for c in client.chains()] == ["main"]
    assert client.chain_page(limit=1).next_cursor is None


def test_unknown_things_raise_api_errors_with_their_codes(client: Client, module_node: NodeProcess) -> None:
    with pytest.raises(ApiError) as caught:
        client.get_tx(ZERO_HASH)
    assert (caught.value.status, caught.value.code) == (404, "not-found")
    with pytest.raises(ApiError) as caught:
        client.get_block("tall")
    assert caught.value.code == "bad-request"
    with Client(module_node.url, "elsewhere") as other, pytest.raises(ApiError) as caught:
        other.status()
    assert caught.value.code == "unknown-chain"


def test_a_deposit_reads_back_typed(client: Client, tmp_path: Path) -> None:
    key = new_key(client.status().suite)
    digests = [os.urandom(32) for _ in range(3)]
    receipts = [client.put_evidence(key, d, f"scan-{i}.pdf", {"n": str(i)}) for i, d in enumerate(digests)]
    first = receipts[0]
    assert isinstance(first, Receipt) and first.ok
    assert first.deposit().digest == digests[0].hex() and not first.deposit().duplicate
    assert client.put_evidence(key, digests[0], "again.pdf").deposit().duplicate

    tx = client.get_tx(first.tx_hash)
    assert isinstance(tx, TxView) and tx.status == "committed" and tx.height == first.height
    assert tx.tx.sender == key.public_hex() and tx.receipt is not None and tx.receipt.ok
    block = client.get_block(first.height)
    assert isinstance(block, BlockView) and first.tx_hash in block.txs
    assert block.header.height == block.commit.height == first.height
    assert client.get_block("latest").height >= first.height

    record = client.get_evidence(digests[0])
    assert isinstance(record, EvidenceRecord)
    assert (record.name, record.metadata, record.owner) == ("scan-0.pdf", {"n": "0"}, key.public_hex())
    page = client.evidence_page(key.public_bytes(), limit=2)
    assert isinstance(page, EvidencePage) and len(page.items) == 2 and page.next_cursor
    rest = client.evidence_page(key.public_hex(), cursor=page.next_cursor)
    assert [r.digest for r in page.items + rest.items] == [d.hex() for d in digests]
    assert client.list_evidence(key.public_bytes()) == page.items + rest.items


def test_submit_answers_pending_hashes_or_receipts_and_duplicates_are_api_errors(client: Client) -> None:
    key = new_key(client.status().suite)
    tx = client.sign(key, "evidence", "put", _evidence_args(os.urandom(32)))
    pending = client.submit(tx, wait=False)
    assert isinstance(pending, SubmitResult) and pending.status == "pending" and len(pending.tx_hashes) == 1
    with pytest.raises(ApiError) as caught:
        client.submit(tx)
    assert (caught.value.status, caught.value.code) == (409, "duplicate")
    batch = [client.sign(key, "evidence", "put", _evidence_args(os.urandom(32))) for _ in range(2)]
    committed = client.submit(batch)
    assert committed.status == "committed" and [r.ok for r in committed.receipts] == [True, True]
    assert committed.hashes == [r.tx_hash for r in committed.receipts]


def test_binary_submit_reads_as_the_json_route_shows_it(client: Client, module_node: NodeProcess) -> None:
    # The SDK submits over the binary route; its receipts must equal what the JSON routes say.
    key = new_key(client.status().suite)
    batch = [client.sign(key, "evidence", "put", _evidence_args(os.urandom(32))) for _ in range(2)]
    committed = client.submit(batch)
    for receipt in committed.receipts:
        view = client.get_tx(receipt.tx_hash)
        assert view.receipt == receipt.receipt
        assert (view.height, view.index, view.time) == (receipt.height, receipt.index, receipt.time)
        # And the raw JSON of the gateway, read without the SDK's types.
        raw = httpx.get(module_node.api(f"/txs/{receipt.tx_hash}"), timeout=30).json()
        assert raw["receipt"]["result"] == receipt.receipt.result
        assert raw["receipt"]["events"][0]["data"] == receipt.receipt.events[0].data


def _evidence_args(digest: bytes) -> EvidencePut:
    return EvidencePut(digest, "tx.bin", {}, b"")


def test_a_proof_verifies_offline_after_a_save_and_a_load(
    client: Client, module_node: NodeProcess, tmp_path: Path
) -> None:
    key = new_key(client.status().suite)
    file = tmp_path / "deed.txt"
    file.write_bytes(b"deed of parcel 9")
    digest = get_suite(client.status().suite).hash(file.read_bytes())
    receipt = client.put_evidence(key, digest, "deed.txt")
    bundle = client.get_proof(receipt.tx_hash)
    assert isinstance(bundle, ProofBundle) and bundle.chain_id == "main"
    trusted = load_genesis(module_node.genesis_path)
    assert verify_proof(bundle, trusted=trusted, file=file).height == receipt.height

    save_proof(tmp_path / "deed.proof.json", bundle)
    loaded = load_proof(tmp_path / "deed.proof.json")
    assert loaded == bundle
    assert Client.verify_proof(loaded.document, trusted=trusted, file_digest=digest).trusted
    with pytest.raises(ProofInvalid):
        verify_proof(loaded, trusted=trusted, file_digest=os.urandom(32))
    (tmp_path / "twice.json").write_text('{"format": 1, "format": 2}')
    with pytest.raises(ProofInvalid):
        load_proof(tmp_path / "twice.json")


def test_the_async_client_answers_as_the_sync_one(client: Client, module_node: NodeProcess) -> None:
    key = new_key(client.status().suite)
    digests = [os.urandom(32) for _ in range(3)]

    async def scenario() -> tuple[list[Receipt], TxView, EvidenceRecord]:
        async with AsyncClient(module_node.url, "main") as ac:
            receipts = await asyncio.gather(*(ac.put_evidence(key, d, "a.bin") for d in digests))
            with pytest.raises(ApiError) as caught:
                await ac.get_evidence(os.urandom(32))
            assert caught.value.code == "not-found"
            return list(receipts), await ac.get_tx(receipts[0].tx_hash), await ac.get_evidence(digests[0])

    receipts, tx, record = asyncio.run(scenario())
    assert all(isinstance(r, Receipt) and r.ok for r in receipts)
    assert tx == client.get_tx(receipts[0].tx_hash)
    assert record == client.get_evidence(digests[0])


# -- files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", ["sm", "intl"])
def test_load_key_reads_either_suite(tmp_path: Path, suite: str) -> None:
    key = new_key(suite)
    save_key(tmp_path / "k.pem", key)
    assert load_key(tmp_path / "k.pem").public_bytes() == key.public_bytes()
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileError):
        save_key(tmp_path / "k.pem", new_key(suite))


def test_unusable_files_raise_file_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("hello")
    for load in (load_key, load_genesis):
        with pytest.raises(FileError) as caught:
            load(tmp_path / "missing")
        assert "missing" in str(caught.value)
        with pytest.raises(FileError):
            load(junk)
    with pytest.raises(FileError):
        load_proof(tmp_path / "missing")


def test_a_trusting_client_accepts_answers_signed_by_its_validators(
    client: Client, module_node: NodeProcess
) -> None:
    genesis = load_genesis(module_node.genesis_path)
    with Client(module_node.url, "main", trusted=genesis) as trusting:
        key = new_key(genesis.suite)
        receipt = trusting.put_evidence(key, os.urandom(32), "signed.txt")
        assert receipt.ok
        assert trusting.get_tx(receipt.tx_hash).status == "committed"
        # A refusal is checked too, then raised as what it is.
        with pytest.raises(ApiError) as caught:
            trusting.get_block(10**9)
        assert caught.value.code == "not-found"


def test_an_answer_from_another_network_is_untrusted(
    module_twins: tuple[NodeProcess, NodeProcess],
) -> None:
    first, second = module_twins
    # A chain of the same name on another network: its validators are not the trusted ones.
    with (
        Client(first.url, "main", trusted=load_genesis(second.genesis_path)) as client,
        pytest.raises(UntrustedAnswer) as caught,
    ):
        client.status()
    assert "no validator of the genesis" in str(caught.value)


def test_an_unsigned_or_altered_answer_is_untrusted(module_node: NodeProcess) -> None:
    genesis = load_genesis(module_node.genesis_path)

    def forward(request: httpx.Request) -> httpx.Response:
        # A proxy that passes the node's answer on, with one byte of its body changed.
        real = httpx.request(request.method, str(request.url), headers=request.headers, timeout=10)
        body = real.content.replace(b'"height"', b'"heigth"', 1)
        return httpx.Response(real.status_code, headers=real.headers, content=body)

    tampering = Client(module_node.url, "main", trusted=genesis)
    tampering._http = httpx.Client(base_url=module_node.url, transport=httpx.MockTransport(forward))
    with tampering, pytest.raises(UntrustedAnswer):
        tampering.status()

    def strip(request: httpx.Request) -> httpx.Response:
        real = httpx.request(request.method, str(request.url), headers=request.headers, timeout=10)
        headers = {k: v for k, v in real.headers.items() if not k.lower().startswith("x-zhongshu")}
        return httpx.Response(real.status_code, headers=headers, content=real.content)

    stripping = Client(module_node.url, "main", trusted=genesis)
    stripping._http = httpx.Client(base_url=module_node.url, transport=httpx.MockTransport(strip))
    with stripping, pytest.raises(UntrustedAnswer):
        stripping.status()


def test_the_async_client_checks_answers_too(module_twins: tuple[NodeProcess, NodeProcess]) -> None:
    first, second = module_twins

    async def run() -> None:
        async with AsyncClient(first.url, "main", trusted=load_genesis(first.genesis_path)) as ok:
            assert (await ok.status()).chain_id == "main"
        async with AsyncClient(first.url, "main", trusted=load_genesis(second.genesis_path)) as bad:
            with pytest.raises(UntrustedAnswer):
                await bad.status()

    asyncio.run(run())


# -- application credentials (app=) ---------------------------------------------------------------


def _write_app_file(directory: Path, app_id: str, key_file: str, **extra: object) -> Path:
    path = directory / "app.json"
    path.write_text(json.dumps({"app_id": app_id, "key_file": key_file, **extra}))
    return path


def test_load_app_reads_a_registration_file(tmp_path: Path) -> None:
    key = new_key("sm")
    (tmp_path / "keys").mkdir()
    save_key(tmp_path / "keys" / "app_key.pem", key)
    # The key file is relative to the JSON file's directory, not to the working directory.
    path = _write_app_file(tmp_path, "app-0123456789abcdef", "keys/app_key.pem", name="e-filing")
    app = load_app(path)
    assert app.app_id == "app-0123456789abcdef"
    assert app.key.public_bytes() == key.public_bytes()
    # An absolute path is taken as it is.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    absolute = _write_app_file(elsewhere, "app-fedcba9876543210", str(tmp_path / "keys" / "app_key.pem"))
    assert load_app(absolute).key.public_bytes() == key.public_bytes()


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("not json", "not JSON"),
        ('["app-0123456789abcdef", "k.pem"]', "JSON object"),
        ('{"app_id": "demo-app", "key_file": "k.pem"}', "app_id"),
        ('{"app_id": "app-0123456789ABCDEF", "key_file": "k.pem"}', "app_id"),
        ('{"app_id": "app-0123456789abcdef"}', "key_file"),
        ('{"app_id": "app-0123456789abcdef", "key_file": ""}', "key_file"),
        ('{"app_id": "app-0123456789abcdef", "key_file": "missing.pem"}', "cannot read"),
        ('{"app_id": "app-0123456789abcdef", "key_file": "ed.pem"}', "SM2"),
    ],
)
def test_load_app_refuses_what_is_not_a_registration(tmp_path: Path, content: str, complaint: str) -> None:
    save_key(tmp_path / "ed.pem", new_key("intl"))
    (tmp_path / "app.json").write_text(content)
    with pytest.raises(FileError) as caught:
        load_app(tmp_path / "app.json")
    assert complaint in str(caught.value)
    with pytest.raises(FileError):
        load_app(tmp_path / "absent.json")


def test_app_credentials_are_an_app_id_and_an_sm2_key() -> None:
    with pytest.raises(ValueError):
        AppCredentials("no spaces allowed", new_key("sm"))
    with pytest.raises(ValueError):
        AppCredentials("app-0123456789abcdef", new_key("intl"))


@pytest.mark.parametrize("trusting", [False, True])
def test_the_client_signs_each_request_as_the_spec_says(trusting: bool) -> None:
    key = new_key("sm")
    app = AppCredentials("app-0123456789abcdef", key)
    seen: list[httpx.Request] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404, json={"type": "/problems/not-found", "title": "Not found", "status": 404})

    genesis = Genesis("main", "sm", 0, ValidatorSet([Validator(key.public_bytes(), 1, "v")]), ChainParams())
    client = Client("http://gateway.example:7700", "main", app=app, trusted=genesis if trusting else None)
    client._http = httpx.Client(base_url=client.url, transport=httpx.MockTransport(capture))
    tx = sign_tx(key, "main", b"\x01" * 32, "evidence", "put", EvidencePut(b"\x02" * 32, "f", {}, b""), 10)
    with client:
        for call in (lambda: client.submit(tx), lambda: client.evidence_page(key.public_bytes(), limit=5)):
            with pytest.raises((ApiError, UntrustedAnswer)):
                call()
    post, get = seen
    # The query goes as its canonical form, which is what is signed.
    assert post.url.query == b"timeout=30&wait=commit"
    assert get.url.query == f"limit=5&owner={key.public_hex()}".encode()
    nonces = set()
    for request in seen:
        path, _, query = request.url.raw_path.partition(b"?")
        assert request.headers["host"] == "gateway.example:7700"
        verify_request(
            key.public_bytes(),
            request.headers,
            request.method,
            request.headers["host"],
            path.decode(),
            parse_query(query),
            request.content,
            now_ms=int(request.headers["x-zhongshu-timestamp"]),
        )
        nonces.add(request.headers["x-zhongshu-nonce"])
    # A fresh nonce each time, one per request (the answer's signature names the same one).
    assert len(nonces) == 2
