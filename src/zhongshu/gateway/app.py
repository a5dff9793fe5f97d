"""The REST gateway (FastAPI): the routes of design.md, errors as RFC 9457 problem documents.

Each route declares its answer's schema and its problem codes (``openapi.answers``); the
document is served at ``/openapi.json``, browsable at ``/docs`` and ``/redoc`` (``docs.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import starlette.responses
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from zhongshu import __version__
from zhongshu.codec import encode_json
from zhongshu.crypto import InvalidKey, PrivateKey
from zhongshu.gateway import binary as binary_route
from zhongshu.gateway import schemas, state_routes
from zhongshu.gateway.access import SCHEME, AccessRefused, NonceWindowFull
from zhongshu.gateway.appauth import AppGate, AppIdentity, AppRefused, TxCharge
from zhongshu.gateway.docs import docs_router
from zhongshu.gateway.evidence_index import decode_cursor, evidence_view, owner_entries
from zhongshu.gateway.health import chain_health, without_quorum
from zhongshu.gateway.limits import BodySizeLimit
from zhongshu.gateway.openapi import answers, event_stream, openapi_document, success, tx_body_schema
from zhongshu.gateway.paging import DEFAULT_LIMIT, MAX_LIMIT, Entry, check_limit, render_page
from zhongshu.gateway.problems import PROBLEM_TYPES, problem_response, refused_response
from zhongshu.gateway.signed_answers import SignedAnswers
from zhongshu.gateway.views import (
    commit_view,
    committed_view,
    decoded,
    header_view,
)
from zhongshu.ledger.genesis import genesis_to_json
from zhongshu.ledger.types import Transaction
from zhongshu.node import errors
from zhongshu.node.chain import ChainNode
from zhongshu.node.txcheck import TxJSON, tx_from_json, tx_to_json

log = logging.getLogger("zhongshu.gateway")

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_BATCH = 10_000
MAX_COMMIT_WAIT = 60.0
"""Seconds ``?wait=commit`` may wait at most (``timeout``); the default is 30."""

_tx_batch_decoder = msgspec.json.Decoder(TxJSON | list[TxJSON])

SUBMIT_CODES = (
    "unknown-chain",
    "malformed-transaction",
    "bad-request",
    "invalid-request",
    "invalid-signature",
    "invalid-public-key",
    "wrong-chain-id",
    "wrong-genesis",
    "unknown-contract",
    "unknown-method",
    "invalid-arguments",
    "argument-limit",
    "expired",
    "batch-refused",
    "duplicate",
    "too-large",
    "mempool-full",
    "commit-timeout",
    "node-stopping",
)
"""The problems POST txs can answer with."""

APP_ACCESS_CODES = (
    "app-auth-required",
    "malformed-auth",
    "unknown-app",
    "retired-key",
    "bad-signature",
    "stale-request",
    "replayed-nonce",
    "app-disabled",
    "chain-not-granted",
    "contract-not-granted",
    "rate-limited",
    "quota-exceeded",
    "nonce-window-full",
)
"""The problems POST txs can answer with too when applications sign their requests (``access``)."""

HUB_CHAIN = "hub"
"""The hub chain: its transactions are authorized by their signers' roles, not an app signature."""
NONCE_WINDOW_RETRY_SECONDS = 1
EVIDENCE_ANSWER = (
    "The EvidenceRecord; with `height` or `proof=true`, an EvidenceAt (the record or its absence "
    "as of that height, with the state bundle when asked)"
)


class JSONResponse(starlette.responses.JSONResponse):
    """JSON encoded by msgspec (``codec.encode_json``)."""

    def render(self, content: Any) -> bytes:
        return encode_json(content)


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"


LIMIT = Query(DEFAULT_LIMIT, description=f"items of the page at most, 1 to {MAX_LIMIT}")
CURSOR = Query("", description="the next_cursor of the previous page; empty for the first page")


def _hex_param(name: str, value: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    # Exactly hex digits, no spaces or prefixes.
    if raw.hex() != value.lower():
        raise errors.BadRequest(f"{name} must be hex digits, e.g. 3fa2..., not {value[:80]!r}")
    if not raw:
        raise errors.MalformedTransaction(f"{name} must not be empty")
    return raw


def _media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def _msgpack_response(answer: binary_route.SubmitAnswer, status: int) -> Response:
    return Response(binary_route.encode_answer(answer), status, media_type=binary_route.MSGPACK)


def _json_txs(body: bytes) -> list[Transaction]:
    """The transactions of a JSON body (one object or an array), all or nothing."""
    try:
        parsed = _tx_batch_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise errors.MalformedTransaction(f"the body is not a transaction or a list: {exc}") from None
    except UnicodeDecodeError as exc:
        raise errors.MalformedTransaction(
            f"a string in the body is not UTF-8 ({exc.reason}); JSON text is UTF-8"
        ) from None
    items = parsed if isinstance(parsed, list) else [parsed]
    # Counted before building them: a batch past the limit is refused without the work.
    if len(items) > MAX_BATCH:
        raise errors.TooLarge(f"a batch holds at most {MAX_BATCH} transactions")
    txs = []
    failures: list[tuple[int, errors.Refused]] = []
    for i, item in enumerate(items):
        try:
            txs.append(tx_from_json(item))
        except errors.Refused as exc:
            failures.append((i, exc))
    if failures:
        if len(items) == 1:
            raise failures[0][1]
        raise errors.BatchRefused(failures)
    return txs


def _authenticate(gate: AppGate, request: Request, body: bytes) -> AppIdentity:
    """The application that signed ``request`` (``AppGate.authenticate``), from the request as
    it arrived: the Host header, the path of the request line, the raw query, every header."""
    scope = request.scope
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
    return gate.authenticate(
        request.method,
        request.headers.get("host", ""),
        bytes(raw_path).decode("latin-1"),
        bytes(scope.get("query_string", b"")),
        request.headers,
        body,
    )


def _check_commit_wait(timeout: float) -> float:
    """``timeout`` of ``?wait=commit``: a finite number of seconds above 0, at most MAX_COMMIT_WAIT."""
    # NaN fails both comparisons; infinities and negatives fail one.
    if not 0 < timeout <= MAX_COMMIT_WAIT or not math.isfinite(timeout):
        raise errors.BadRequest(
            f"timeout must be a number of seconds above 0 and at most {MAX_COMMIT_WAIT:g}, not {timeout}"
        )
    return timeout


def access_refused_response(
    code: str, detail: str, instance: str = "", retry_after: int | None = None
) -> Response:
    """The problem document of a refused application request, at its registered status; a 401
    names the signing scheme (``WWW-Authenticate``), a retry-able refusal its ``Retry-After``."""
    problem = PROBLEM_TYPES[code]
    extra = {} if retry_after is None else {"retry_after": retry_after}
    response = problem_response(problem.status, code, problem.title, detail, instance, **extra)
    if problem.status == 401:
        response.headers["WWW-Authenticate"] = SCHEME
    return response


def create_app(
    chains: dict[str, ChainNode],
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    node_key: PrivateKey | None = None,
    access: AppGate | None = None,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """The gateway over the chains this node serves; with ``node_key``, every answer is signed
    with it (``SignedAnswers``). With ``access`` (a hub node), submitting to any chain but the
    hub chain needs a request signed by a registered application, which ``access`` checks
    (authentication, grants, rate and quota); every GET stays public. ``routers`` are included
    as they are (more read routes, e.g. the hub's)."""
    app = FastAPI(
        title="Zhongshu gateway",
        version=__version__,
        description="Access API of the Zhongshu city blockchain hub (docs/access-spec.md). Errors are "
        "RFC 9457 problem documents (application/problem+json) whose `type` is `/problems/<code>` "
        "of this gateway: GET it for the code's description, GET /problems for all of them.",
        default_response_class=JSONResponse,
        docs_url=None,
        redoc_url=None,
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.include_router(docs_router(app.openapi_url or "/openapi.json"))

    @app.exception_handler(errors.Refused)
    async def on_refused(request: Request, exc: errors.Refused) -> Response:
        return refused_response(exc, request.url.path)

    @app.exception_handler(AccessRefused)
    async def on_access_refused(request: Request, exc: AccessRefused) -> Response:
        wait = NONCE_WINDOW_RETRY_SECONDS if isinstance(exc, NonceWindowFull) else None
        return access_refused_response(exc.code, exc.detail, request.url.path, wait)

    @app.exception_handler(AppRefused)
    async def on_app_refused(request: Request, exc: AppRefused) -> Response:
        return access_refused_response(exc.code, exc.detail, request.url.path, exc.retry_after)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return problem_response(
            400,
            "invalid-request",
            "Invalid request",
            f"{where}: {first.get('msg', 'invalid')}",
            request.url.path,
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem_response(
            exc.status_code,
            code,
            PROBLEM_TYPES[code].title,
            f"{request.method} {request.url.path}: {exc.detail}",
            request.url.path,
        )

    @app.exception_handler(ClientDisconnect)
    async def on_disconnect(request: Request, exc: ClientDisconnect) -> Response:
        # The client went away mid-body (or the connection guard closed it): nobody reads an answer.
        log.debug("a client disconnected before sending its whole request body")
        return Response(status_code=400)

    def chain_of(chain: str) -> ChainNode:
        node = chains.get(chain)
        if node is None:
            raise errors.UnknownChain(
                f"this node serves no chain {chain!r} (it serves: {', '.join(sorted(chains))})"
            )
        return node

    @app.get("/healthz", responses=answers(schemas.Health, "unhealthy"))
    async def healthz() -> Response:
        """200 when every chain served can commit now; 503 ``unhealthy`` naming those that cannot.

        A chain can commit when this node and its connected peers hold more than 2/3 of the
        voting power (a single-node chain always can).
        """
        health = {chain_id: chain_health(node) for chain_id, node in sorted(chains.items())}
        failing = without_quorum(health)
        if failing:
            detail = "; ".join(
                f"chain {c!r}: this node and its {health[c]['peers']} connected peers hold "
                f"{health[c]['power']} of {health[c]['total_power']} voting power, more than 2/3 is "
                "needed to commit; start or reconnect the other validators"
                for c in failing
            )
            return problem_response(503, "unhealthy", PROBLEM_TYPES["unhealthy"].title, detail, "/healthz")
        return JSONResponse({"status": "ok", "chains": health})

    @app.get("/problems", responses=answers(schemas.ProblemTypePage))
    async def list_problems() -> Any:
        """Every problem code the gateway answers with, in one page."""
        return {"items": [p.view() for p in PROBLEM_TYPES.values()], "next_cursor": None}

    @app.get("/problems/{code}", responses=answers(schemas.ProblemType, "not-found"))
    async def get_problem(code: str) -> Any:
        """What a problem code means: the ``type`` of a problem document resolves here."""
        problem = PROBLEM_TYPES.get(code)
        if problem is None:
            raise errors.NotFound(f"no problem code {code[:80]!r}; GET /problems lists them")
        return problem.view()

    @app.get("/v1/chains", responses=answers(schemas.ChainPage, "bad-request", "invalid-request"))
    async def list_chains(limit: int = LIMIT, cursor: str = CURSOR) -> Response:
        """The chains this node serves, by chain id, a page at a time (``items``, ``next_cursor``)."""
        entries: list[Entry] = [
            (chain_id, chains[chain_id].status) for chain_id in sorted(chains) if chain_id > cursor
        ]
        return Response(render_page(entries, check_limit(limit)), media_type="application/json")

    @app.get("/v1/chains/{chain}/status", responses=answers(schemas.ChainStatus, "unknown-chain"))
    async def status(chain: str) -> Any:
        """Height, latest block hash and mempool size of a chain."""
        return chain_of(chain).status()

    @app.get("/v1/chains/{chain}/genesis", responses=answers(schemas.Genesis, "unknown-chain"))
    async def genesis(chain: str) -> Any:
        """The chain's genesis document (what `zhongshu verify --trust` takes)."""
        return genesis_to_json(chain_of(chain).genesis)

    @app.post(
        "/v1/chains/{chain}/txs",
        status_code=202,
        responses=answers(
            schemas.SubmitPending, *SUBMIT_CODES, *(APP_ACCESS_CODES if access else ()), status=202
        )
        | {200: success(schemas.SubmitCommitted)},
        openapi_extra=tx_body_schema(),
    )
    async def submit(
        chain: str,
        request: Request,
        wait: str = Query("", description="`commit`: answer once all are committed, with receipts"),
        timeout: float = Query(
            30.0, description=f"with wait=commit: seconds to wait, above 0 and at most {MAX_COMMIT_WAIT:g}"
        ),
    ) -> Any:
        """Submit one transaction (a JSON object) or a batch (a JSON array), all or nothing.

        With ``?wait=commit`` the answer comes once all are committed, with their receipts.
        On a hub node, a business chain takes only requests signed by a registered application
        granted the transactions' contract methods (docs/access-spec.md, Who signs).
        """
        gate = access if chain != HUB_CHAIN else None
        identity: AppIdentity | None = None
        node: ChainNode | None = None
        if gate is not None:
            # The application is authenticated first, from the exact body bytes it signed; the
            # chain is looked up once its grants are checked.
            body = await request.body()
            started = time.thread_time()
            try:
                identity = _authenticate(gate, request, body)
            finally:
                gate.hub.metrics.access_check_seconds += time.thread_time() - started
                gate.hub.metrics.access_checks += 1
        else:
            node = chain_of(chain)
        if wait not in ("", "commit"):
            raise errors.MalformedTransaction(f"wait must be 'commit' or absent, not {wait!r}")
        if wait:
            _check_commit_wait(timeout)
        body = await request.body()
        binary = _media_type(request.headers.get("content-type", "")) == binary_route.MSGPACK
        txs = binary_route.decode_txs(body) if binary else _json_txs(body)
        if not txs:
            raise errors.MalformedTransaction("the batch is empty")
        if len(txs) > MAX_BATCH:
            raise errors.TooLarge(f"a batch holds at most {MAX_BATCH} transactions")
        charge: TxCharge | None = None
        served = chains.get(chain)
        # A chain the hub stopped says so (its grants no longer hold either).
        if served is not None and served.stopped:
            raise errors.ChainStopped(f"chain {chain!r} was stopped by the hub; it is read-only")
        if gate is not None and identity is not None:
            # Every transaction is one the app is granted on this chain, within its daily quota.
            started = time.thread_time()
            try:
                charge = gate.check_txs(identity, chain, txs)
            finally:
                gate.hub.metrics.access_check_seconds += time.thread_time() - started
        try:
            if node is None:
                node = chain_of(chain)
            hashes = await node.submit(txs)
        except errors.Refused:
            # Only transactions the node accepted count against the quota.
            if gate is not None and charge is not None:
                gate.refund(charge)
            raise
        msgpack_answer = binary_route.wants_msgpack(request.headers.get("accept", ""))
        if wait == "commit":
            # Watched at once: submit has just pooled them, so none can have committed yet.
            futures = node.watch(hashes)
            try:
                done = await node.wait_watched(hashes, futures, timeout)
            except (errors.CommitTimeout, errors.NodeStopping) as exc:
                raise type(exc)(exc.detail, tx_hashes=[h.hex() for h in hashes]) from None
            if msgpack_answer:
                entries = [
                    binary_route.CommittedEntry(c.tx_hash, c.height, c.index, c.time, c.receipt) for c in done
                ]
                return _msgpack_response(binary_route.SubmitAnswer("committed", receipts=entries), 200)
            return JSONResponse({"status": "committed", "receipts": [committed_view(c) for c in done]}, 200)
        if msgpack_answer:
            return _msgpack_response(binary_route.SubmitAnswer("pending", tx_hashes=hashes), 202)
        return JSONResponse({"status": "pending", "tx_hashes": [h.hex() for h in hashes]}, 202)

    @app.get(
        "/v1/chains/{chain}/txs/{tx_hash}",
        responses=answers(
            schemas.TxView, "unknown-chain", "bad-request", "malformed-transaction", "not-found"
        ),
    )
    async def get_tx(chain: str, tx_hash: str) -> Any:
        """A transaction with its receipt, or its pending status."""
        node = chain_of(chain)
        h = _hex_param("tx hash", tx_hash)
        tx, committed = node.load_tx(h)
        view: dict[str, Any] = {
            "hash": h.hex(),
            "status": "committed" if committed else "pending",
            "tx": tx_to_json(tx),
            "args_decoded": decoded(tx.args),
        }
        if committed:
            view.update(committed_view(committed))
        return view

    @app.get(
        "/v1/chains/{chain}/txs/{tx_hash}/proof",
        responses=answers(
            schemas.ProofBundle, "unknown-chain", "bad-request", "malformed-transaction", "not-found"
        ),
    )
    async def get_proof(
        chain: str,
        tx_hash: str,
        anchor: str = Query("", description="`latest`: prove the block through the newest header too"),
    ) -> Any:
        """The offline proof bundle; ``?anchor=latest`` proves the block through the newest header."""
        node = chain_of(chain)
        h = _hex_param("tx hash", tx_hash)
        return node.build_proof(h, anchor_latest=anchor == "latest")

    @app.get(
        "/v1/chains/{chain}/blocks/{height}",
        responses=answers(schemas.BlockView, "unknown-chain", "bad-request", "not-found"),
    )
    async def get_block(chain: str, height: str) -> Any:
        """A block by height (or ``latest``): header, transaction hashes, commit."""
        node = chain_of(chain)
        if height == "latest":
            number = node.height
        else:
            try:
                number = int(height)
            except ValueError:
                raise errors.BadRequest(f"height must be a number or 'latest', not {height!r}") from None
        record = node.load_block(number)
        header = record.block.header
        return {
            "height": header.height,
            "hash": record.block_hash.hex(),
            "time": header.time,
            "tx_count": header.tx_count,
            "txs": [r.tx_hash.hex() for r in record.receipts],
            "header": header_view(header),
            "commit": commit_view(record.commit),
        }

    @app.get(
        "/v1/chains/{chain}/evidence/{digest}",
        responses=answers(
            schemas.EvidenceRecord,
            "unknown-chain",
            "bad-request",
            "malformed-transaction",
            "not-found",
            "no-state-map",
            "state-pruned",
        )
        | {200: {"model": schemas.EvidenceRecord | state_routes.EvidenceAt, "description": EVIDENCE_ANSWER}},
    )
    async def get_evidence(
        chain: str,
        digest: str,
        height: int | None = state_routes.HEIGHT,
        proof: bool = state_routes.PROOF,
        anchor: str = state_routes.ANCHOR,
    ) -> Any:
        """An evidence record by file digest. With ``height`` or ``proof=true``: whether it was
        deposited as of that height (an EvidenceAt: the record or its absence, and the bundle)."""
        node = chain_of(chain)
        raw = _hex_param("digest", digest)
        if height is not None or proof:
            return state_routes.evidence_at(node, raw, height, proof, anchor)
        return evidence_view(node.get_evidence(raw))

    @app.get(
        "/v1/chains/{chain}/evidence",
        responses=answers(
            schemas.EvidencePage,
            "unknown-chain",
            "bad-request",
            "invalid-request",
            "malformed-transaction",
            "invalid-public-key",
        ),
    )
    async def list_evidence(
        chain: str,
        owner: str = Query(description="the depositor's public key, hex"),
        limit: int = LIMIT,
        cursor: str = CURSOR,
    ) -> Response:
        """Evidence deposited by one owner (public key, hex), oldest first, a page at a time."""
        node = chain_of(chain)
        owner_key = _hex_param("owner", owner)
        # The owner is a key of the chain's suite (so its index prefix is no other owner's).
        try:
            node.suite.check_public_key(owner_key)
        except InvalidKey as exc:
            raise errors.InvalidPublicKey(f"owner: {exc}") from None
        after = decode_cursor(cursor) if cursor else None
        count = check_limit(limit)
        # One entry more than the page, to tell whether a next page exists.
        page = render_page(owner_entries(node, owner_key, after, count + 1), count)
        return Response(page, media_type="application/json")

    @app.get(
        "/v1/chains/{chain}/events",
        response_class=EventStreamResponse,
        responses=event_stream() | answers(None, "unknown-chain"),
    )
    async def events(chain: str, request: Request) -> StreamingResponse:
        """Server-sent events: one ``block`` event per committed block, one ``event`` per contract event."""
        node = chain_of(chain)
        queue = node.subscribe()

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b": subscribed\n\n"
                while True:
                    try:
                        async with asyncio.timeout(15):
                            item = await queue.get()
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield b": keep-alive\n\n"
                        continue
                    if item is None:
                        return
                    yield f"event: {item['type']}\ndata: {json.dumps(item)}\n\n".encode()
            finally:
                node.unsubscribe(queue)

        return EventStreamResponse(stream())

    app.include_router(state_routes.state_router(chain_of))
    for router in routers:
        app.include_router(router)

    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    if node_key is not None:
        # Outermost: it signs what every other layer answered, refusals included.
        app.add_middleware(SignedAnswers, node_key=node_key)
    return app
