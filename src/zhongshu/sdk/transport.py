"""The HTTP side both clients share: a ``Call`` as httpx request arguments, httpx's answers and
failures as the SDK's (no httpx exception leaves the SDK)."""

from __future__ import annotations

from typing import Any

import httpx

from zhongshu.gateway.access import (
    NODE_HEADER,
    NONCE_HEADER,
    AccessRefused,
    canonical_query,
    parse_query,
    verify_response,
)
from zhongshu.ledger.types import Genesis
from zhongshu.sdk.app import AppCredentials
from zhongshu.sdk.calls import Call, read_answer
from zhongshu.sdk.errors import ConnectionFailed, UnsignableRequest, UntrustedAnswer

FAILURES = (httpx.HTTPError, httpx.InvalidURL)
"""What httpx raises when it gets no usable answer: refused, timed out, unresolved, cut off."""


def request_args(call: Call[Any], timeout: float, nonce: str = "") -> dict[str, Any]:
    """The keyword arguments of ``httpx.Client.request`` (or ``build_request``) for ``call``; a
    ``nonce`` goes in ``X-Zhongshu-Nonce``, so the node's signature of the answer names this
    request. The query is sent in its canonical form (docs/access-spec.md), as signed."""
    headers = {"accept": call.accept}
    if nonce:
        headers[NONCE_HEADER] = nonce
    if call.body is not None:
        headers["content-type"] = call.content_type
    wait = timeout if call.min_timeout is None else max(timeout, call.min_timeout)
    query = canonical_query(list(call.params.items()))
    return {
        "method": call.method,
        "url": f"{call.path}?{query}" if query else call.path,
        "content": call.body,
        "headers": headers,
        "timeout": wait,
    }


def sign_app_request(request: httpx.Request, app: AppCredentials, nonce: str, now_ms: int) -> None:
    """Add the app's authentication headers to ``request``, signing it as it will be sent: the
    Host header, the path and query of its URL, its exact body (docs/access-spec.md, *Signed
    requests*). ``nonce`` is the request's ``X-Zhongshu-Nonce`` (one nonce serves both rules);
    UnsignableRequest if a part cannot be written in the canonical string."""
    path, _, query = request.url.raw_path.partition(b"?")
    try:
        signed = app.sign(
            request.method,
            request.headers["host"],
            path.decode("ascii"),
            parse_query(query),
            request.content,
            nonce=nonce,
            now_ms=now_ms,
        )
    except AccessRefused as exc:
        raise UnsignableRequest(exc.detail) from None
    request.headers.update(signed)


class TrustedValidators:
    """The keys whose signed answers a client accepts: the validators of a genesis it holds."""

    def __init__(self, genesis: Genesis) -> None:
        self.keys = {v.public_key for v in genesis.validators.validators}

    def check(self, url: str, response: httpx.Response, nonce: str) -> None:
        """Raise UntrustedAnswer unless a trusted validator signed this answer to this request
        (docs/access-spec.md, *Signed answers*)."""
        named = response.headers.get(NODE_HEADER, "")
        try:
            key = bytes.fromhex(named)
        except ValueError:
            key = b""
        # The answer names a validator of the trusted genesis.
        if key not in self.keys:
            raise UntrustedAnswer(
                url, f"it names node key {named[:16] or '(none)'}..., no validator of the genesis"
            )
        # And that validator's signature covers its status, body and this request's nonce.
        try:
            verify_response(key, response.status_code, nonce, response.content, response.headers)
        except AccessRefused as exc:
            raise UntrustedAnswer(url, exc.detail) from None


def read_response(call: Call[Any], response: httpx.Response) -> Any:
    """The decoded answer to ``call``, or its ApiError."""
    return read_answer(call, response.status_code, response.content, response.headers.get("retry-after"))


def connection_failed(url: str, exc: Exception) -> ConnectionFailed:
    """The SDK's error for an httpx failure to get an answer from ``url``."""
    if isinstance(exc, httpx.TimeoutException):
        reason = f"no answer in time ({type(exc).__name__}: {exc or 'timed out'})"
    else:
        reason = str(exc) or type(exc).__name__
    return ConnectionFailed(url, reason)
