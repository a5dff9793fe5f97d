"""What the clients ask the gateway and how they read its answers, without any I/O.

Every client method is an *operation*: a generator that yields ``Call``s (a request and how to
read its answer) and is sent back each call's decoded answer, and finally returns the method's
result. ``Client`` runs operations over a blocking connection, ``AsyncClient`` over an asyncio
one (``run_sync``, ``run_async``); neither knows a route, a parameter or a result type, so each
request is built in one place and each answer read in one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from zhongshu.codec import encode
from zhongshu.crypto import PrivateKey
from zhongshu.gateway.binary import MSGPACK, decode_answer
from zhongshu.ledger.genesis import GenesisError, genesis_from_json
from zhongshu.ledger.proof import load_bundle
from zhongshu.ledger.types import STATUS_OK, Genesis, Transaction
from zhongshu.sdk.errors import UnexpectedResponse, api_error
from zhongshu.sdk.tx import DEFAULT_VALIDITY, evidence_tx, sign_tx
from zhongshu.sdk.types import (
    BlockView,
    ChainPage,
    ChainStatus,
    Event,
    EvidenceAt,
    EvidencePage,
    EvidenceRecord,
    Outcome,
    ProofBundle,
    Receipt,
    StateValue,
    SubmitResult,
    TxView,
)

T = TypeVar("T")

COMMIT_WAIT_MARGIN = 10.0
"""Seconds a ``wait=commit`` request may take beyond the wait itself before the client gives up."""


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to the gateway and how to read a successful answer."""

    method: str
    path: str
    read: Callable[[bytes], T]
    """Decodes the body of a 2xx answer."""
    params: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    """The request body, already encoded (as ``content_type``)."""
    min_timeout: float | None = None
    """Seconds the request may need at least (a commit wait), beyond the client's own timeout."""
    content_type: str = "application/json"
    accept: str = "application/json"


Operation = Generator[Call[Any], Any, T]
"""Yields calls, is sent each call's answer, returns the result."""


@dataclass
class ChainRef:
    """The chain a client talks to, and its genesis hash once read (every transaction signs it).

    Kept once read: if the gateway later serves another network's chain of that name, its
    transactions are refused (``wrong-genesis``) rather than signed for the new network.
    """

    name: str
    genesis_hash: bytes | None = None

    def path(self, suffix: str) -> str:
        return f"/v1/chains/{self.name}{suffix}"


# -- reading answers ---------------------------------------------------------------------------


def read_answer(call: Call[T], status: int, content: bytes, retry_after: str | None = None) -> T:
    """The decoded answer of ``call``; ApiError for an error status, UnexpectedResponse for a
    success whose body is not what the route returns."""
    if status >= 400:
        try:
            body: Any = msgspec.json.decode(content)
        # msgspec raises UnicodeDecodeError, not DecodeError, for a string that is not UTF-8.
        except (msgspec.DecodeError, UnicodeDecodeError):
            body = None
        raise api_error(status, body, content.decode("utf-8", "replace"), retry_after)
    try:
        return call.read(content)
    except (msgspec.DecodeError, UnicodeDecodeError, GenesisError) as exc:
        raise UnexpectedResponse(status, f"{call.method} {call.path}: {exc}") from None


def json_reader(kind: type[T]) -> Callable[[bytes], T]:
    """Decode JSON into ``kind``; fields ``kind`` does not name are ignored."""
    return msgspec.json.Decoder(kind).decode


def _read_genesis(content: bytes) -> Genesis:
    return genesis_from_json(msgspec.json.decode(content))


def _read_proof(content: bytes) -> ProofBundle:
    # Strict JSON (docs/proof-format.md §6): ProofInvalid otherwise, as for a bundle from a file.
    document = load_bundle(content)
    if not isinstance(document, dict):
        raise msgspec.ValidationError("a proof bundle is a JSON object")
    return ProofBundle(document=document)


# -- requests ----------------------------------------------------------------------------------


def get(path: str, kind: type[T], **params: str) -> Call[T]:
    return Call("GET", path, json_reader(kind), params)


def page_params(cursor: str | None, limit: int | None, **params: str) -> dict[str, str]:
    if cursor:
        params["cursor"] = cursor
    if limit is not None:
        params["limit"] = str(limit)
    return params


def _hex(value: str | bytes) -> str:
    return value.hex() if isinstance(value, bytes) else value


# -- operations --------------------------------------------------------------------------------


def one(call: Call[T]) -> Operation[T]:
    """The operation of a single call."""
    answer: T = yield call
    return answer


def chain_page(cursor: str | None = None, limit: int | None = None) -> Operation[ChainPage]:
    return (yield from one(Call("GET", "/v1/chains", json_reader(ChainPage), page_params(cursor, limit))))


def all_chains() -> Operation[list[ChainStatus]]:
    """Every chain the node serves, following ``next_cursor`` to the end."""
    items: list[ChainStatus] = []
    cursor: str | None = None
    while True:
        page: ChainPage = yield from chain_page(cursor)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


def status(chain: ChainRef) -> Operation[ChainStatus]:
    return (yield from one(get(chain.path("/status"), ChainStatus)))


def genesis(chain: ChainRef) -> Operation[Genesis]:
    return (yield from one(Call("GET", chain.path("/genesis"), _read_genesis)))


def genesis_hash(chain: ChainRef) -> Operation[bytes]:
    """The chain's genesis hash, read from its status once and then kept."""
    if chain.genesis_hash is None:
        current: ChainStatus = yield from status(chain)
        chain.genesis_hash = bytes.fromhex(current.genesis_hash)
    return chain.genesis_hash


def _valid_until(chain: ChainRef, validity: int) -> Operation[tuple[bytes, int]]:
    """The genesis hash to sign and the last height a transaction signed now may commit at."""
    current: ChainStatus = yield from status(chain)
    if chain.genesis_hash is None:
        chain.genesis_hash = bytes.fromhex(current.genesis_hash)
    return chain.genesis_hash, current.height + validity


def sign(
    chain: ChainRef, key: PrivateKey, contract: str, method: str, args: Any, validity: int
) -> Operation[Transaction]:
    hash_, valid_until = yield from _valid_until(chain, validity)
    return sign_tx(key, chain.name, hash_, contract, method, args, valid_until)


def submit(
    chain: ChainRef, txs: Transaction | list[Transaction], wait: bool, timeout: float
) -> Operation[SubmitResult]:
    """Submit over the binary route: the canonical MessagePack of the transactions, answered in
    MessagePack (docs/access-spec.md, *Binary submission*); the result is the JSON route's."""
    batch = txs if isinstance(txs, list) else [txs]
    params = {"wait": "commit", "timeout": f"{timeout:g}"} if wait else {}
    call = Call(
        "POST",
        chain.path("/txs"),
        read_binary_submit,
        params,
        encode(batch),
        timeout + COMMIT_WAIT_MARGIN if wait else None,
        content_type=MSGPACK,
        accept=MSGPACK,
    )
    return (yield from one(call))


def _plain(raw: bytes) -> Any:
    """A result or event datum as the JSON route shows it: decoded MessagePack, bytes as hex
    (undecodable bytes as their hex; nothing as None)."""
    if not raw:
        return None
    try:
        return _hexed(msgspec.msgpack.decode(raw))
    except (msgspec.DecodeError, UnicodeDecodeError):
        return raw.hex()


def _hexed(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _hexed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hexed(v) for v in value]
    return value


def read_binary_submit(content: bytes) -> SubmitResult:
    """The MessagePack answer of the binary route, as the SubmitResult the JSON route gives."""
    answer = decode_answer(content)
    if answer.status == "pending":
        return SubmitResult(status="pending", tx_hashes=[h.hex() for h in answer.tx_hashes])
    receipts = [
        Receipt(
            tx_hash=e.tx_hash.hex(),
            height=e.height,
            index=e.index,
            time=e.time,
            receipt=Outcome(
                status="ok" if e.receipt.status == STATUS_OK else "failed",
                result=_plain(e.receipt.result),
                error=e.receipt.error,
                events=[
                    Event(contract=v.contract, name=v.name, data=_plain(v.data)) for v in e.receipt.events
                ],
            ),
        )
        for e in answer.receipts
    ]
    return SubmitResult(status="committed", receipts=receipts)


def put_evidence(
    chain: ChainRef,
    key: PrivateKey,
    digest: bytes,
    name: str,
    metadata: dict[str, str] | None,
    payload: bytes,
    algorithm: str | None,
    timeout: float,
) -> Operation[Receipt]:
    hash_, valid_until = yield from _valid_until(chain, DEFAULT_VALIDITY)
    tx = evidence_tx(key, chain.name, hash_, digest, name, valid_until, metadata, payload, algorithm)
    result: SubmitResult = yield from submit(chain, tx, True, timeout)
    if len(result.receipts) != 1:
        raise UnexpectedResponse(200, f"one receipt expected for one transaction, got {len(result.receipts)}")
    return result.receipts[0]


_read_tx_view = msgspec.json.Decoder(TxView, strict=False).decode
"""A transaction's ``valid_until`` and ``nonce`` come as decimal text above 2^53 - 1 (so that a
reader of numbers as doubles keeps them): the SDK reads either form as an integer."""


def get_tx(chain: ChainRef, tx_hash: str | bytes) -> Operation[TxView]:
    return (yield from one(Call("GET", chain.path(f"/txs/{_hex(tx_hash)}"), _read_tx_view)))


def get_block(chain: ChainRef, height: int | str) -> Operation[BlockView]:
    return (yield from one(get(chain.path(f"/blocks/{height}"), BlockView)))


def get_proof(chain: ChainRef, tx_hash: str | bytes, anchor_latest: bool) -> Operation[ProofBundle]:
    params = {"anchor": "latest"} if anchor_latest else {}
    return (yield from one(Call("GET", chain.path(f"/txs/{_hex(tx_hash)}/proof"), _read_proof, params)))


def get_evidence(chain: ChainRef, digest: str | bytes) -> Operation[EvidenceRecord]:
    return (yield from one(get(chain.path(f"/evidence/{_hex(digest)}"), EvidenceRecord)))


def _at_params(height: int | None, proof: bool, anchor_latest: bool) -> dict[str, str]:
    params = {} if height is None else {"height": str(height)}
    if proof:
        params["proof"] = "true"
        if anchor_latest:
            params["anchor"] = "latest"
    return params


def _with_bundle(kind: type[T]) -> Callable[[bytes], T]:
    """Read an answer whose ``proof`` is a state bundle: strictly, as a bundle from a file."""

    def read(content: bytes) -> T:
        document = load_bundle(content)
        if not isinstance(document, dict):
            raise msgspec.ValidationError("the answer is not a JSON object")
        proof = document.get("proof")
        plain = msgspec.convert({**document, "proof": None}, kind)
        if proof is None:
            return plain
        if not isinstance(proof, dict):
            raise msgspec.ValidationError("proof is not a JSON object")
        return msgspec.structs.replace(plain, proof=ProofBundle(document=proof))  # type: ignore[type-var]

    return read


def get_state(
    chain: ChainRef, key: bytes, height: int | None, proof: bool, anchor_latest: bool
) -> Operation[StateValue]:
    params = _at_params(height, proof, anchor_latest)
    return (yield from one(Call("GET", chain.path(f"/state/{key.hex()}"), _with_bundle(StateValue), params)))


def get_evidence_at(
    chain: ChainRef, digest: str | bytes, height: int | None, proof: bool, anchor_latest: bool
) -> Operation[EvidenceAt]:
    # Without a height the route answers a record (not found when absent); ask for the tip's.
    if height is None and not proof:
        height_or_tip = yield from status(chain)
        height = height_or_tip.height
    params = _at_params(height, proof, anchor_latest)
    path = chain.path(f"/evidence/{_hex(digest)}")
    return (yield from one(Call("GET", path, _with_bundle(EvidenceAt), params)))


def evidence_page(
    chain: ChainRef, owner: str | bytes, cursor: str | None = None, limit: int | None = None
) -> Operation[EvidencePage]:
    params = page_params(cursor, limit, owner=_hex(owner))
    return (yield from one(Call("GET", chain.path("/evidence"), json_reader(EvidencePage), params)))


def all_evidence(chain: ChainRef, owner: str | bytes) -> Operation[list[EvidenceRecord]]:
    """Every record ``owner`` deposited, oldest first, following ``next_cursor`` to the end."""
    items: list[EvidenceRecord] = []
    cursor: str | None = None
    while True:
        page: EvidencePage = yield from evidence_page(chain, owner, cursor)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


# -- running operations ------------------------------------------------------------------------


def run_sync(op: Operation[T], send: Callable[[Call[Any]], Any]) -> T:
    """Run ``op`` to its result, answering each call with ``send``."""
    answer: Any = None
    try:
        while True:
            try:
                call = op.send(answer)
            except StopIteration as done:
                result: T = done.value
                return result
            answer = send(call)
    finally:
        op.close()


async def run_async(op: Operation[T], send: Callable[[Call[Any]], Awaitable[Any]]) -> T:
    """Run ``op`` to its result, answering each call with the coroutine ``send``."""
    answer: Any = None
    try:
        while True:
            try:
                call = op.send(answer)
            except StopIteration as done:
                result: T = done.value
                return result
            answer = await send(call)
    finally:
        op.close()
