"""Signed application access: the request and response signing rule of docs/access-spec.md.

An application signs each request with its SM2 key; the gateway checks the signature, the
timestamp (within ``MAX_SKEW_MS`` of its own clock) and the nonce (never seen twice within that
window, by ``NonceWindow``). The node signs each answer with its own key so the application can
tell that a hub node answered. Canonical request string, lines joined by ``\\n``:

    ZHONGSHU-SM2-SM3
    METHOD                      (ASCII uppercase)
    host                        (the Host header as sent, ASCII lowercase, port kept)
    /path                       (as sent, percent-encoding untouched)
    canonical query             (see ``canonical_query``; empty line for none)
    timestamp                   (milliseconds since the Unix epoch, decimal)
    nonce                       (32 lowercase hex digits)
    app id
    sm3(body)                   (lowercase hex; SM3 of b"" for no body)

and the canonical response string is ``ZHONGSHU-RESPONSE``, status, request nonce, sm3(body).

A plain library: no web framework, no clock, no randomness except ``new_nonce``. Time comes in
as ``now_ms``; the gateway and the SDK both import this module.
"""

from __future__ import annotations

import heapq
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import parse_qsl, quote

from zhongshu.crypto import PrivateKey, Suite, get_suite

SCHEME = "ZHONGSHU-SM2-SM3"
"""First line of the canonical request string, and the ``WWW-Authenticate`` scheme of a 401."""
RESPONSE_SCHEME = "ZHONGSHU-RESPONSE"
"""First line of the canonical response string."""

MAX_SKEW_MS = 300_000
"""A request's timestamp may be at most 5 minutes before or after the node's clock."""
NONCE_WINDOW_ENTRIES = 1_000_000
"""Default bound on the (app id, nonce) pairs a node remembers at once."""

APP_HEADER = "X-Zhongshu-App"
TIMESTAMP_HEADER = "X-Zhongshu-Timestamp"
NONCE_HEADER = "X-Zhongshu-Nonce"
SIGNATURE_HEADER = "X-Zhongshu-Signature"
NODE_HEADER = "X-Zhongshu-Node"
RESPONSE_SIGNATURE_HEADER = "X-Zhongshu-Response-Signature"
REQUEST_HEADERS = (APP_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)

# The accepted forms, matched whole (re.fullmatch).
APP_ID_FORM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TIMESTAMP_FORM = re.compile(r"0|[1-9][0-9]{0,15}")
NONCE_FORM = re.compile(r"[0-9a-f]{32}")
SIGNATURE_FORM = re.compile(r"(?:[0-9a-f]{2}){1,80}")
METHOD_FORM = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
HOST_FORM = re.compile(r"[!-~]+")
PATH_FORM = re.compile(r'/[!-"$->@-~]*')
"""Printable ASCII after the leading slash, without "?" and "#" (the query is separate)."""


# -- errors --------------------------------------------------------------------------------


class AccessRefused(Exception):
    """A signed request (or a signed answer) that is not accepted; ``code`` is its problem code."""

    code: ClassVar[str] = "access-refused"
    http_status: ClassVar[int] = 401

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        """What is wrong, for a person: the problem document's ``detail``."""


class MalformedAuth(AccessRefused):
    """An authentication header is missing, repeated or not of its form; or a request part
    (method, host, path, query) cannot be put in the canonical string."""

    code = "malformed-auth"

    def __init__(self, detail: str, header: str | None = None) -> None:
        super().__init__(detail)
        self.header = header
        """The header at fault, when one is."""


class BadSignature(AccessRefused):
    """The signature is not a valid SM2 signature of the canonical request by the app's key."""

    code = "bad-signature"


class StaleRequest(AccessRefused):
    """The timestamp is more than ``MAX_SKEW_MS`` away from the node's clock."""

    code = "stale-request"

    def __init__(self, detail: str, timestamp_ms: int, now_ms: int) -> None:
        super().__init__(detail)
        self.timestamp_ms = timestamp_ms
        """The request's timestamp."""
        self.now_ms = now_ms
        """The node's clock when it checked."""


class ReplayedNonce(AccessRefused):
    """This app already sent this nonce within the window."""

    code = "replayed-nonce"

    def __init__(self, detail: str, app_id: str, nonce: str) -> None:
        super().__init__(detail)
        self.app_id = app_id
        self.nonce = nonce


class NonceWindowFull(AccessRefused):
    """The node remembers as many nonces as it may; it refuses until old ones expire."""

    code = "nonce-window-full"
    http_status = 503


class BadResponseSignature(AccessRefused):
    """An answer whose node signature is missing, malformed, by another key, or wrong.

    Raised by the application side (the SDK); a gateway never answers with it."""

    code = "bad-response-signature"
    http_status = 502


# -- the canonical request -----------------------------------------------------------------


def new_nonce() -> str:
    """A fresh nonce: 16 bytes from the operating system's secure random source, lowercase hex."""
    return secrets.token_hex(16)


def compute_body_hash(body: bytes) -> str:
    """Lowercase hex SM3 of the exact body bytes (b"" when the request has no body)."""
    return get_suite("sm").hash(body).hex()


def _percent_encode(text: str, what: str) -> str:
    """RFC 3986: unreserved characters as they are, every other UTF-8 byte as %XX (uppercase)."""
    try:
        return quote(text, safe="", encoding="utf-8", errors="strict")
    except UnicodeEncodeError:
        raise MalformedAuth(f"the query {what} {text!r} is not valid Unicode text") from None


def canonical_query(query_pairs: Sequence[tuple[str, str]]) -> str:
    """The canonical query: each name and value percent-encoded (RFC 3986, only
    ``A-Z a-z 0-9 - . _ ~`` left as they are, hex digits uppercase), the pairs sorted by encoded
    name then encoded value (as ASCII strings), each written ``name=value``, joined by ``&``.
    Repeated names are all kept; a name without a value is ``name=``; no pairs give ``""``."""
    encoded = sorted((_percent_encode(n, "name"), _percent_encode(v, "value")) for n, v in query_pairs)
    return "&".join(f"{name}={value}" for name, value in encoded)


def parse_query(raw_query: bytes | str) -> list[tuple[str, str]]:
    """The (name, value) pairs of a query string as sent (the part after "?"), decoded as web
    forms are (``application/x-www-form-urlencoded``: ``+`` is a space, ``%XX`` a byte, UTF-8),
    as the gateway's web framework reads them. Empty pieces (``a=1&&b=2``) are skipped; a piece
    without ``=`` is a name with an empty value. Bytes that do not decode to UTF-8 are refused."""
    try:
        text = raw_query.decode("ascii") if isinstance(raw_query, bytes) else raw_query
        return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise MalformedAuth("the query string is not percent-encoded UTF-8") from None


def canonical_request(
    method: str,
    host: str,
    path: str,
    query_pairs: Sequence[tuple[str, str]],
    timestamp_ms: int,
    nonce: str,
    app_id: str,
    body: bytes,
) -> bytes:
    """The bytes an application signs: the nine lines of the module docstring, UTF-8, joined by
    ``\\n`` with no newline at the end. Refuses (MalformedAuth) any part that is not of its form,
    so that no part can carry a line break into another's place."""
    # The method is an HTTP token (RFC 9110), compared in ASCII uppercase.
    if not METHOD_FORM.fullmatch(method):
        raise MalformedAuth(f"the method {method!r} is not an HTTP token")
    # The host is the Host header as sent: printable ASCII, no spaces.
    if not HOST_FORM.fullmatch(host):
        raise MalformedAuth(f"the host {host!r} is not printable ASCII without spaces")
    # The path starts with "/" and holds printable ASCII only (non-ASCII is percent-encoded).
    if not PATH_FORM.fullmatch(path):
        raise MalformedAuth(f"the path {path!r} does not start with '/' or is not percent-encoded ASCII")
    # The timestamp is a non-negative integer of at most 16 digits.
    if type(timestamp_ms) is not int or not 0 <= timestamp_ms < 10**16:
        raise MalformedAuth(f"the timestamp {timestamp_ms!r} is not milliseconds since the epoch")
    # The nonce is 32 lowercase hex digits.
    if not NONCE_FORM.fullmatch(nonce):
        raise MalformedAuth(f"the nonce {nonce!r} is not 32 lowercase hex digits")
    # The app id is 1 to 64 of A-Z a-z 0-9 . _ - and starts with a letter or digit.
    if not APP_ID_FORM.fullmatch(app_id):
        raise MalformedAuth(f"the app id {app_id!r} is not of the form {APP_ID_FORM.pattern}")
    lines = [
        SCHEME,
        method.upper(),
        host.lower(),
        path,
        canonical_query(query_pairs),
        str(timestamp_ms),
        nonce,
        app_id,
        compute_body_hash(body),
    ]
    return "\n".join(lines).encode("utf-8")


# -- signing and verifying requests --------------------------------------------------------


@dataclass(frozen=True)
class AuthHeaders:
    """The four authentication headers of a request, checked for form."""

    app_id: str
    """``X-Zhongshu-App``: the application, as registered on the hub."""
    timestamp_ms: int
    """``X-Zhongshu-Timestamp``: when the app signed, milliseconds since the Unix epoch (UTC)."""
    nonce: str
    """``X-Zhongshu-Nonce``: 32 lowercase hex digits, fresh for every request."""
    signature: bytes
    """``X-Zhongshu-Signature``: the DER SM2 signature (sent as lowercase hex)."""


def _pick_headers(headers: Mapping[str, str], names: Sequence[str]) -> dict[str, str]:
    """The values of ``names`` in ``headers`` (names compared case-insensitively); a name present
    twice (e.g. in two spellings) is refused."""
    wanted = {name.lower(): name for name in names}
    found: dict[str, str] = {}
    for key, value in headers.items():
        name = wanted.get(key.lower())
        if name is None:
            continue
        # Each authentication header appears once.
        if name in found:
            raise MalformedAuth(f"the header {name} appears more than once", name)
        found[name] = value
    return found


def parse_auth_headers(headers: Mapping[str, str]) -> AuthHeaders:
    """The authentication headers of a request, each checked for its exact form (no surrounding
    spaces, no other spelling); MalformedAuth names the first header that is missing or wrong.
    The gateway calls this first to learn the app id, then looks up the app's key."""
    found = _pick_headers(headers, REQUEST_HEADERS)
    for name in REQUEST_HEADERS:
        # All four headers are present.
        if name not in found:
            raise MalformedAuth(f"the header {name} is missing", name)
    app_id = found[APP_HEADER]
    # The app id is of its form.
    if not APP_ID_FORM.fullmatch(app_id):
        raise MalformedAuth(f"{APP_HEADER} is not 1 to 64 of A-Z a-z 0-9 . _ -", APP_HEADER)
    timestamp = found[TIMESTAMP_HEADER]
    # The timestamp is decimal digits without sign or leading zeros.
    if not TIMESTAMP_FORM.fullmatch(timestamp):
        raise MalformedAuth(
            f"{TIMESTAMP_HEADER} is not an integer count of milliseconds (decimal, no leading zeros)",
            TIMESTAMP_HEADER,
        )
    nonce = found[NONCE_HEADER]
    # The nonce is exactly 32 lowercase hex digits.
    if not NONCE_FORM.fullmatch(nonce):
        raise MalformedAuth(f"{NONCE_HEADER} is not 32 lowercase hex digits (16 bytes)", NONCE_HEADER)
    signature = found[SIGNATURE_HEADER]
    # The signature is lowercase hex of 1 to 80 bytes.
    if not SIGNATURE_FORM.fullmatch(signature):
        raise MalformedAuth(
            f"{SIGNATURE_HEADER} is not lowercase hex of a DER signature (at most 80 bytes)",
            SIGNATURE_HEADER,
        )
    return AuthHeaders(app_id, int(timestamp), nonce, bytes.fromhex(signature))


def check_timestamp(timestamp_ms: int, now_ms: int) -> None:
    """Refuse (StaleRequest) a timestamp more than MAX_SKEW_MS before or after ``now_ms``;
    exactly MAX_SKEW_MS away is accepted."""
    # The request was signed within 5 minutes of the node's clock, either way.
    if abs(timestamp_ms - now_ms) > MAX_SKEW_MS:
        raise StaleRequest(
            f"the request's timestamp {timestamp_ms} is more than {MAX_SKEW_MS} ms from the node's "
            f"clock {now_ms}: check the application's clock and sign again",
            timestamp_ms,
            now_ms,
        )


def _app_suite(key_size: int) -> Suite:
    suite = get_suite("sm")
    # Applications sign with SM2 (the scheme is ZHONGSHU-SM2-SM3), whatever a chain's suite.
    if key_size != suite.public_key_size:
        raise ValueError(f"an application key is an SM2 key (65-byte public key), not {key_size} bytes")
    return suite


def sign_request(
    key: PrivateKey,
    method: str,
    host: str,
    path: str,
    query_pairs: Sequence[tuple[str, str]],
    timestamp_ms: int,
    nonce: str,
    app_id: str,
    body: bytes,
) -> dict[str, str]:
    """The four authentication headers for a request: its canonical string signed with the
    app's SM2 key. The caller brings the time and the nonce (``new_nonce()``)."""
    _app_suite(len(key.public_bytes()))
    message = canonical_request(method, host, path, query_pairs, timestamp_ms, nonce, app_id, body)
    return {
        APP_HEADER: app_id,
        TIMESTAMP_HEADER: str(timestamp_ms),
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: key.sign(message).hex(),
    }


def verify_request(
    public_key: bytes,
    headers: Mapping[str, str],
    method: str,
    host: str,
    path: str,
    query_pairs: Sequence[tuple[str, str]],
    body: bytes,
    now_ms: int,
) -> None:
    """Accept a signed request or raise why not: MalformedAuth (headers or request parts not of
    their form), StaleRequest (timestamp more than MAX_SKEW_MS from ``now_ms``), BadSignature
    (not the app's SM2 signature of the canonical string). ``public_key`` is the app's registered
    key (65 bytes). The nonce is not checked here: after this returns, the gateway calls
    ``NonceWindow.check_and_remember``, so that only authentic requests take room in the window."""
    suite = _app_suite(len(public_key))
    auth = parse_auth_headers(headers)
    check_timestamp(auth.timestamp_ms, now_ms)
    message = canonical_request(
        method, host, path, query_pairs, auth.timestamp_ms, auth.nonce, auth.app_id, body
    )
    # The signature is the app key's SM2 signature of the canonical request.
    if not suite.verify(public_key, message, auth.signature):
        raise BadSignature(
            f"{SIGNATURE_HEADER} is not a signature of this request by the key of app {auth.app_id!r}: "
            "recompute the canonical request string (docs/access-spec.md, Signed requests)"
        )


# -- nonces --------------------------------------------------------------------------------


class NonceWindow:
    """The (app id, nonce) pairs a node accepted within the skew window, in memory, bounded.

    A pair is kept until its timestamp falls more than MAX_SKEW_MS behind the newest ``now_ms``
    seen; after that a replay of it is stale, so forgetting it opens nothing. The window's clock
    never goes back: a request older than the horizon of the newest time seen is refused as
    stale even if a node's clock stepped back. When ``max_entries`` pairs are held, new pairs
    are refused (NonceWindowFull) until old ones expire, rather than forgetting live ones.
    One window per node; it is not shared between nodes.
    """

    def __init__(self, max_entries: int = NONCE_WINDOW_ENTRIES, max_skew_ms: int = MAX_SKEW_MS) -> None:
        if max_entries < 1 or max_skew_ms < 0:
            raise ValueError("a nonce window holds at least one entry and a non-negative skew")
        self.max_entries = max_entries
        self.max_skew_ms = max_skew_ms
        self._seen: set[tuple[str, str]] = set()
        self._expiry: list[tuple[int, str, str]] = []
        self._latest_ms: int | None = None

    def __len__(self) -> int:
        return len(self._seen)

    def _evict(self, horizon_ms: int) -> None:
        """Forget the pairs whose timestamp is below ``horizon_ms``."""
        while self._expiry and self._expiry[0][0] < horizon_ms:
            _, app_id, nonce = heapq.heappop(self._expiry)
            self._seen.discard((app_id, nonce))

    def check_and_remember(self, app_id: str, nonce: str, timestamp_ms: int, now_ms: int) -> None:
        """Remember the pair, or raise: StaleRequest (timestamp outside the window),
        ReplayedNonce (the pair was accepted before), NonceWindowFull (no room)."""
        latest = now_ms if self._latest_ms is None else max(self._latest_ms, now_ms)
        self._latest_ms = latest
        horizon = latest - self.max_skew_ms
        self._evict(horizon)
        # The timestamp is within the window (against the newest clock seen, too).
        if timestamp_ms < horizon or timestamp_ms > now_ms + self.max_skew_ms:
            raise StaleRequest(
                f"the request's timestamp {timestamp_ms} is outside the node's window "
                f"{horizon} to {now_ms + self.max_skew_ms}: check the application's clock and sign again",
                timestamp_ms,
                now_ms,
            )
        pair = (app_id, nonce)
        # The app has not used this nonce within the window.
        if pair in self._seen:
            raise ReplayedNonce(
                f"app {app_id!r} already sent nonce {nonce} within {self.max_skew_ms} ms: "
                "every request needs a fresh nonce",
                app_id,
                nonce,
            )
        # There is room to remember it.
        if len(self._seen) >= self.max_entries:
            raise NonceWindowFull(f"the node remembers {self.max_entries} nonces already: retry in a second")
        self._seen.add(pair)
        heapq.heappush(self._expiry, (timestamp_ms, app_id, nonce))


# -- signed answers ------------------------------------------------------------------------


def _node_suite(public_key: bytes) -> Suite:
    """The suite of a node key, told by its length: 65 bytes SM2, 32 bytes Ed25519."""
    for name in ("sm", "intl"):
        suite = get_suite(name)
        if len(public_key) == suite.public_key_size:
            return suite
    raise ValueError(f"a node key is 65 bytes (SM2) or 32 bytes (Ed25519), not {len(public_key)}")


def canonical_response(status: int, request_nonce: str, body: bytes) -> bytes:
    """The bytes a node signs for an answer: ``ZHONGSHU-RESPONSE``, the HTTP status (decimal),
    the request's nonce (empty when the request carried no well-formed one), lowercase hex SM3
    of the exact answer body; joined by ``\\n``, UTF-8, no newline at the end."""
    # The status is an HTTP status code.
    if type(status) is not int or not 100 <= status <= 599:
        raise ValueError(f"{status!r} is not an HTTP status code")
    # The nonce is a request nonce, or empty.
    if request_nonce and not NONCE_FORM.fullmatch(request_nonce):
        raise ValueError(f"{request_nonce!r} is not a request nonce (32 lowercase hex digits)")
    lines = [RESPONSE_SCHEME, str(status), request_nonce, compute_body_hash(body)]
    return "\n".join(lines).encode("utf-8")


def sign_response(node_key: PrivateKey, status: int, request_nonce: str, body: bytes) -> dict[str, str]:
    """The two headers that let an application tell a hub node answered: the node's public key
    and its signature (SM2 DER or Ed25519, the node's suite) of the canonical response."""
    public_key = node_key.public_bytes()
    _node_suite(public_key)
    message = canonical_response(status, request_nonce, body)
    return {NODE_HEADER: public_key.hex(), RESPONSE_SIGNATURE_HEADER: node_key.sign(message).hex()}


def verify_response(
    node_public_key: bytes, status: int, request_nonce: str, body: bytes, headers: Mapping[str, str]
) -> None:
    """Accept an answer signed by the node key the application trusts, or raise
    BadResponseSignature: a header missing or repeated, another node key named, or a signature
    that does not verify for this status, request nonce and body."""
    suite = _node_suite(node_public_key)
    try:
        found = _pick_headers(headers, (NODE_HEADER, RESPONSE_SIGNATURE_HEADER))
    except MalformedAuth as exc:
        raise BadResponseSignature(exc.detail) from None
    for name in (NODE_HEADER, RESPONSE_SIGNATURE_HEADER):
        # Both headers are present.
        if name not in found:
            raise BadResponseSignature(f"the answer has no {name} header")
    # The answer names the node key the application trusts.
    if found[NODE_HEADER] != node_public_key.hex():
        raise BadResponseSignature(
            f"the answer is signed by node key {found[NODE_HEADER][:16]}..., not the trusted "
            f"{node_public_key.hex()[:16]}..."
        )
    signature = found[RESPONSE_SIGNATURE_HEADER]
    # The signature is lowercase hex of at most 80 bytes.
    if not SIGNATURE_FORM.fullmatch(signature):
        raise BadResponseSignature(f"{RESPONSE_SIGNATURE_HEADER} is not lowercase hex of a signature")
    message = canonical_response(status, request_nonce, body)
    # The node's signature covers this status, this request's nonce and this body.
    if not suite.verify(node_public_key, message, bytes.fromhex(signature)):
        raise BadResponseSignature("the node's signature does not match this answer")
