"""The HTTP side both clients share: a ``Call`` as httpx request arguments, httpx's answers and
failures as the SDK's (no httpx exception leaves the SDK)."""

from __future__ import annotations

from typing import Any

import httpx

from zhongshu.sdk.calls import Call, read_answer
from zhongshu.sdk.errors import ConnectionFailed

FAILURES = (httpx.HTTPError, httpx.InvalidURL)
"""What httpx raises when it gets no usable answer: refused, timed out, unresolved, cut off."""


def request_args(call: Call[Any], timeout: float) -> dict[str, Any]:
    """The keyword arguments of ``httpx.Client.request`` for ``call``."""
    headers = {"accept": call.accept}
    if call.body is not None:
        headers["content-type"] = call.content_type
    wait = timeout if call.min_timeout is None else max(timeout, call.min_timeout)
    return {
        "method": call.method,
        "url": call.path,
        "params": call.params,
        "content": call.body,
        "headers": headers,
        "timeout": wait,
    }


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
