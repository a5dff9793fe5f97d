"""RFC 9457 problem documents: every error the API returns has this shape."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from starlette.responses import Response

from zhongshu.codec import encode_json
from zhongshu.node import errors

PROBLEM_BASE = "https://zhongshu.dev/problems/"
PROBLEM_TYPE = "application/problem+json"

STATUS: dict[type[errors.Refused], int] = {
    errors.MalformedTransaction: 400,
    errors.BadRequest: 400,
    errors.InvalidSignature: 400,
    errors.InvalidPublicKey: 400,
    errors.WrongChain: 400,
    errors.UnknownContract: 400,
    errors.UnknownMethod: 400,
    errors.InvalidArguments: 400,
    errors.Expired: 400,
    errors.BatchRefused: 400,
    errors.UnknownChain: 404,
    errors.NotFound: 404,
    errors.Duplicate: 409,
    errors.TooLarge: 413,
    errors.MempoolFull: 503,
    errors.CommitTimeout: 504,
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
    status = STATUS.get(type(exc), 400)
    if isinstance(exc, errors.BatchRefused) and all(isinstance(e, errors.Duplicate) for _, e in exc.errors):
        status = 409
    return problem_response(status, exc.code, exc.title, exc.detail, instance, **exc.extra)
