"""RFC 9457 problem documents: every error the API returns has this shape."""

from __future__ import annotations

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


def problem_response(
    status: int, code: str, title: str, detail: str, instance: str = "", **extra: Any
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra.pop("retry_after"))
    body.update(extra)
    return Response(encode_json(body), status_code=status, media_type=PROBLEM_TYPE, headers=headers)


def refused_response(exc: errors.Refused, instance: str = "") -> Response:
    status = STATUS.get(type(exc), 400)
    if isinstance(exc, errors.BatchRefused) and all(isinstance(e, errors.Duplicate) for _, e in exc.errors):
        status = 409
    return problem_response(status, exc.code, exc.title, exc.detail, instance, **exc.extra)
