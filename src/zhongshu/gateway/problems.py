"""RFC 9457 problem documents: every error the API returns has this shape.

``PROBLEM_TYPES`` is the one list of the codes the gateway can answer with: each code's status,
title and description. A problem document's ``type`` is ``/problems/<code>``, a path of the
gateway itself (RFC 9457 allows a relative reference), and ``GET /problems/<code>`` answers
with the code's entry; docs/access-spec.md's error table is this list (a test compares them).
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from starlette.responses import Response

from zhongshu.codec import encode_json
from zhongshu.node import errors

PROBLEM_BASE = "/problems/"
PROBLEM_TYPE = "application/problem+json"


@dataclass(frozen=True)
class ProblemType:
    """One code the gateway answers with."""

    code: str
    status: int
    """The HTTP status it comes with (batch-refused: 409 when every refused one is a duplicate)."""
    title: str
    description: str
    """When it happens and what to do."""
    refusal: type[errors.Refused] | None = None
    """The node's error it stands for; None for codes only the gateway's layers answer with."""

    @property
    def uri(self) -> str:
        return PROBLEM_BASE + self.code

    def view(self) -> dict[str, Any]:
        return {
            "type": self.uri,
            "code": self.code,
            "title": self.title,
            "status": self.status,
            "description": self.description,
        }


def _refusal(kind: type[errors.Refused], status: int, description: str) -> ProblemType:
    return ProblemType(kind.code, status, kind.title, description, kind)


PROBLEM_TYPES: dict[str, ProblemType] = {
    p.code: p
    for p in sorted(
        (
            _refusal(
                errors.MalformedTransaction,
                400,
                "The body is not JSON of the right shape (or not UTF-8, inside strings too), a hex field "
                "is not hex, an integer is out of range, or wait is neither commit nor absent.",
            ),
            ProblemType(
                "malformed-http",
                400,
                "Malformed HTTP request",
                "The bytes are not HTTP/1.1 (request line, headers, chunked framing); "
                "the connection is closed.",
            ),
            ProblemType(
                "invalid-request",
                400,
                "Invalid request",
                "A query parameter has the wrong type or a required one is missing.",
            ),
            _refusal(
                errors.BadRequest,
                400,
                "A path or query value is malformed or out of range: a hash that is not hex, a height that "
                "is not a number, a timeout that is not above 0 and at most 60 (NaN and infinities "
                "included), a limit outside 1 to 1,000, a cursor that is not a next_cursor of that list.",
            ),
            _refusal(
                errors.InvalidSignature,
                400,
                "The signature does not verify (wrong key, truncated or garbage DER).",
            ),
            _refusal(
                errors.InvalidPublicKey,
                400,
                "sender (or a list's owner) is not a public key of the chain's suite.",
            ),
            _refusal(errors.WrongChain, 400, "The transaction names another chain than the URL's."),
            _refusal(
                errors.WrongGenesis,
                400,
                "The transaction names this chain's name but another genesis hash: it was signed for "
                "another network; sign it again with the genesis_hash of this chain's status.",
            ),
            _refusal(errors.UnknownContract, 400, "The chain has no such contract."),
            _refusal(errors.UnknownMethod, 400, "The contract has no such method."),
            _refusal(
                errors.InvalidArguments,
                400,
                "args is not the canonical encoding of the method's argument struct.",
            ),
            _refusal(
                errors.ArgumentLimit,
                400,
                "args decode but break a limit the contract states (for evidence.put: digest size, name, "
                "metadata, payload); detail names the limit.",
            ),
            _refusal(errors.Expired, 400, "valid_until is below the next block height."),
            _refusal(
                errors.BatchRefused,
                400,
                "A batch had bad transactions (409 if all are duplicates); errors lists {index, type, "
                "detail}; nothing of the batch was accepted.",
            ),
            ProblemType(
                "http-error",
                400,
                "HTTP error",
                "Another refusal of the HTTP layer (none is known to occur); status is the HTTP status.",
            ),
            ProblemType(
                "app-auth-required",
                401,
                "Signed request required",
                "The route needs a request signed by a registered application (POST txs on a business "
                "chain of a hub node) and the request carries neither X-Zhongshu-App nor "
                "X-Zhongshu-Signature; sign it (docs/access-spec.md, Signed requests).",
            ),
            ProblemType(
                "malformed-auth",
                401,
                "Malformed request authentication",
                "An authentication header is missing, repeated or not of its form, or the method, host, "
                "path or query cannot be written in the canonical request string; detail names the header.",
            ),
            ProblemType(
                "unknown-app",
                401,
                "Unknown application",
                "X-Zhongshu-App names no application the hub holds: use the app id the registration gave.",
            ),
            ProblemType(
                "retired-key",
                401,
                "Retired application key",
                "The request is signed by a key the application held before a key rotation: sign with "
                "its current key.",
            ),
            ProblemType(
                "bad-signature",
                401,
                "Bad request signature",
                "X-Zhongshu-Signature is not the application key's SM2 signature of the canonical request "
                "string (wrong key, a part changed on the way, malformed DER).",
            ),
            ProblemType(
                "stale-request",
                401,
                "Stale request",
                "The request's timestamp is more than 5 minutes from the node's clock (detail gives it): "
                "fix the application's clock and sign again.",
            ),
            ProblemType(
                "replayed-nonce",
                401,
                "Replayed nonce",
                "The application already sent this nonce within the last 5 minutes (to this node or "
                "another hub node): every request, retries included, needs a fresh nonce.",
            ),
            ProblemType(
                "app-disabled",
                403,
                "Application disabled",
                "The application, or its organization, is disabled on the hub: it may no longer call it.",
            ),
            ProblemType(
                "chain-not-granted",
                403,
                "Chain not granted",
                "The application holds no grant on this chain (or the chain is not an active chain of its "
                "organization on the hub).",
            ),
            ProblemType(
                "contract-not-granted",
                403,
                "Contract method not granted",
                "A transaction calls a contract method that the application's grants on this chain do not "
                "name; detail names the contract and the method.",
            ),
            ProblemType(
                "rate-limited",
                429,
                "Too many requests",
                "The application sent more requests per second than its quota allows on this node: "
                "retry after the Retry-After seconds.",
            ),
            ProblemType(
                "quota-exceeded",
                429,
                "Daily transaction quota exceeded",
                "The application's transactions on this node today (UTC) would pass its daily quota: "
                "Retry-After gives the seconds to the next 00:00 UTC.",
            ),
            ProblemType(
                "method-not-allowed",
                405,
                "Method not allowed",
                "The path exists but not with this HTTP method.",
            ),
            ProblemType(
                "request-timeout",
                408,
                "Request not received in time",
                "The request did not arrive whole in time (10 s plus 1 s per 64 KiB); "
                "the connection is closed.",
            ),
            _refusal(errors.UnknownChain, 404, "The node serves no such chain."),
            _refusal(
                errors.NoStateMap,
                409,
                "The node runs this chain without the state map (`state_map` false in its config, "
                "for measuring only): it answers no state reads or proofs. Ask another node.",
            ),
            _refusal(
                errors.StatePruned,
                410,
                "This node keeps only its latest heights' state provable (`state_heights_kept` in its "
                "config) and the height asked for is older: no state read or proof there. A node "
                "that keeps every height (the default) can answer.",
            ),
            _refusal(
                errors.ChainStopped,
                409,
                "The hub stopped the chain: its blocks, transactions and proofs stay readable, "
                "it takes no more transactions.",
            ),
            _refusal(
                errors.NotFound,
                404,
                "No such transaction, block, evidence record, problem code or path.",
            ),
            _refusal(errors.Duplicate, 409, "The transaction is already pending or committed."),
            ProblemType("body-too-large", 413, "Request body too large", "The request body is over 16 MiB."),
            _refusal(
                errors.TooLarge,
                413,
                "One transaction is over the chain's max_tx_bytes (96 KiB), or a batch over 10,000.",
            ),
            _refusal(errors.MempoolFull, 503, "The mempool is full: retry after the Retry-After seconds."),
            ProblemType(
                "nonce-window-full",
                503,
                "Nonce window full",
                "The node remembers as many request nonces as it may: retry after the Retry-After seconds.",
            ),
            ProblemType(
                "too-many-connections",
                503,
                "Too many connections",
                "The gateway's connections are all in use; retry after the Retry-After seconds.",
            ),
            ProblemType(
                "unhealthy",
                503,
                "Node not healthy",
                "GET /healthz: a chain cannot commit now (a replica whose connected peers, with itself, "
                "hold at most 2/3 of the voting power); detail names the chain.",
            ),
            _refusal(
                errors.NodeStopping,
                503,
                "The node is stopping and ended a ?wait=commit that was still waiting; tx_hashes names "
                "the transactions, which may still commit on the other nodes or be forgotten: look each "
                "up on a running node and resubmit the ones not committed.",
            ),
            _refusal(
                errors.CommitTimeout,
                504,
                "?wait=commit timed out; tx_hashes names the transactions, which may still commit or may "
                "be forgotten: look each up and resubmit the ones not committed.",
            ),
        ),
        key=lambda p: p.status,
    )
}
"""Every code the gateway answers with, by status: the access spec's table, in its order."""

STATUS: dict[type[errors.Refused], int] = {
    p.refusal: p.status for p in PROBLEM_TYPES.values() if p.refusal is not None
}


def problem_document(status: int, code: str, title: str, detail: str, instance: str = "") -> dict[str, Any]:
    """The RFC 9457 fields every problem carries."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    return body


def problem_response(
    status: int, code: str, title: str, detail: str, instance: str = "", **extra: Any
) -> Response:
    body = problem_document(status, code, title, detail, instance)
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra.pop("retry_after"))
    body.update(extra)
    return Response(encode_json(body), status_code=status, media_type=PROBLEM_TYPE, headers=headers)


def encode_problem_http(
    status: int, code: str, title: str, detail: str, *, retry_after: int | None = None
) -> bytes:
    """A whole HTTP/1.1 response carrying a problem document, for a connection about to close.

    The connection layer writes it when no application answers: a refused connection, a request
    that did not arrive in time, broken framing.
    """
    body = encode_json(problem_document(status, code, title, detail))
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        f"content-type: {PROBLEM_TYPE}",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


def refused_response(exc: errors.Refused, instance: str = "") -> Response:
    """The problem document of a refusal, at its registered status."""
    status = STATUS[type(exc)]
    if isinstance(exc, errors.BatchRefused) and all(isinstance(e, errors.Duplicate) for _, e in exc.errors):
        status = 409
    return problem_response(status, exc.code, exc.title, exc.detail, instance, **exc.extra)
