"""Every way an SDK call can fail, as one family of exceptions under ``ZhongshuError``.

The gateway's refusals arrive as RFC 9457 problem documents and become ``ApiError`` (a commit
that timed out, ``CommitTimeout``); a gateway that cannot be reached is ``ConnectionFailed``; an
answer the SDK cannot read is ``UnexpectedResponse``; a key, genesis or proof file that cannot
be read or written is ``FileError``. No exception of the HTTP library escapes. A proof that does not verify
raises the verifier's own ``ProofInvalid`` (re-exported here): an invalid proof is an answer,
not a failed call.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from zhongshu.ledger.proof import ProofInvalid


class ZhongshuError(Exception):
    """Base of every error an SDK call raises (except ``ProofInvalid``, the verifier's verdict)."""


class UntrustedAnswer(ZhongshuError):
    """An answer not signed by a validator of the genesis the client trusts (``trusted=``):
    it did not come from a node of that chain, or was changed on the way."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"the answer from {url} is not signed by a trusted validator: {reason}")


class UnsignableRequest(ZhongshuError):
    """With ``app=``: a request that cannot be written in the canonical request string (a host
    or path outside printable ASCII), so it is not sent."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the request cannot be signed: {reason}")


class ApiError(ZhongshuError):
    """The gateway answered with an error status and (normally) a problem document."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        problem: dict[str, Any],
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        """The HTTP status, e.g. 404."""
        self.code = code
        """The problem code (docs/access-spec.md, *Errors*), e.g. ``not-found``; empty when the
        answer was not a problem document."""
        self.title = title
        """The code's short title."""
        self.detail = detail
        """What went wrong and what to do about it."""
        self.problem = problem
        """The whole problem document, with any extension members (``errors`` of a batch)."""
        self.retry_after = retry_after
        """Seconds to wait before retrying, when the gateway said (``mempool-full``)."""
        super().__init__(f"{status} {code or title}: {detail}")


class CommitTimeout(ApiError):
    """``wait=commit`` timed out (504 ``commit-timeout``), or the node stopped while it waited
    (503 ``node-stopping``): the transactions were admitted and may still commit.

    Look each one up by hash; submit again those that never commit (docs/access-spec.md,
    *Pending work*).
    """

    def __init__(
        self, status: int, code: str, title: str, detail: str, problem: dict[str, Any], tx_hashes: list[str]
    ) -> None:
        super().__init__(status, code, title, detail, problem)
        self.tx_hashes = tx_hashes
        """The hashes (hex) of the transactions that were admitted but not seen committed."""


class ConnectionFailed(ZhongshuError):
    """No answer from the gateway: connection refused, timed out, name not resolved, cut off."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        """The gateway URL the client was given."""
        self.reason = reason
        """What the network layer reported."""
        super().__init__(f"cannot reach the gateway at {url}: {reason}")


class UnexpectedResponse(ZhongshuError):
    """The gateway answered success with a body that is not what its route returns."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"the gateway's answer ({status}) is not what the SDK expects: {reason}")


class FileError(ZhongshuError):
    """A key, genesis or proof file that cannot be read or written, or does not hold what it should."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def problem_code(problem_type: str) -> str:
    """The code of a problem ``type``: its last path segment, so ``/problems/not-found`` and
    ``https://zhongshu.dev/problems/not-found`` both give ``not-found``."""
    return problem_type.rstrip("/").rsplit("/", 1)[-1]


def _retry_after(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def api_error(status: int, body: Any, text: str, retry_after: str | None = None) -> ApiError:
    """The error for an answer of ``status`` >= 400 whose JSON is ``body`` (None if not JSON)."""
    problem: dict[str, Any] = body if isinstance(body, dict) else {}
    code = problem_code(str(problem.get("type", "")))
    try:
        default_title = HTTPStatus(status).phrase
    except ValueError:
        default_title = "HTTP error"
    title = str(problem.get("title") or default_title)
    detail = str(problem.get("detail") or text.strip()[:500] or title)
    if (status, code) in ((504, "commit-timeout"), (503, "node-stopping")):
        hashes = problem.get("tx_hashes")
        tx_hashes = [str(h) for h in hashes] if isinstance(hashes, list) else []
        return CommitTimeout(status, code, title, detail, problem, tx_hashes)
    return ApiError(status, code, title, detail, problem, _retry_after(retry_after))


__all__ = [
    "ApiError",
    "CommitTimeout",
    "ConnectionFailed",
    "FileError",
    "ProofInvalid",
    "UnexpectedResponse",
    "UnsignableRequest",
    "ZhongshuError",
    "api_error",
    "problem_code",
]
