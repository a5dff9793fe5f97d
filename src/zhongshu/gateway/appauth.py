"""Signed application access at the gateway: who may submit to a business chain, and how much.

``AppGate`` applies docs/access-spec.md (*Signed requests*, *Who signs*, *Quotas*) to a request,
with the application records of the hub chain (``zhongshu.hub.registry``) read from the hub
node's committed state. ``authenticate`` checks, in this order, and refuses at the first failure:

1. the authentication headers are all there and of their form, and the request's method, host,
   path and query can be written in the canonical string (``app-auth-required`` when neither the
   app id nor the signature header is sent, ``malformed-auth`` otherwise);
2. the app id names an app the hub holds (``unknown-app``);
3. the signature is the app's current key's (else, when one of the app's retired keys made it,
   ``retired-key``; else ``bad-signature``);
4. the app and its organization are active (``app-disabled``);
5. the timestamp is within 5 minutes of the node's clock (``stale-request``);
6. the nonce is new for this app within the window (``replayed-nonce``, ``nonce-window-full``);
7. the app has a token left in its per-second bucket (``rate-limited``).

``check_txs`` then checks each transaction against the app's grants (``chain-not-granted``,
``contract-not-granted``) and charges them to its daily quota (``quota-exceeded``). Rates,
quotas and nonces are kept per node, in memory: nothing here is shared between nodes except the
nonces that ``on_nonce`` hands out and ``remember_nonce`` takes in.

Time comes from ``clock_ms``; all state lives in the gate object. The gate is used from one
thread (the event loop's): its methods do not await, so each runs whole.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

from zhongshu.crypto import get_suite
from zhongshu.execution.context import StateReader
from zhongshu.gateway.access import (
    APP_HEADER,
    APP_ID_FORM,
    NONCE_FORM,
    SIGNATURE_HEADER,
    AuthHeaders,
    BadSignature,
    NonceWindow,
    ReplayedNonce,
    StaleRequest,
    canonical_request,
    check_timestamp,
    parse_auth_headers,
    parse_query,
)
from zhongshu.hub.chains import get_chain
from zhongshu.hub.registry import AppRecord, get_app, is_granted
from zhongshu.hub.roles import STATUS_ACTIVE, get_org
from zhongshu.ledger.types import Transaction
from zhongshu.node.chain import ChainNode

DAY_MS = 86_400_000
"""One UTC day: quotas of transactions restart at each UTC midnight."""
MAX_RETIRED_KEYS_TRIED = 8
"""How many of an app's most recent retired keys a failed signature is tried against, to answer
``retired-key`` rather than ``bad-signature`` (bounded: each try is one SM2 verification)."""


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch, from the system clock."""
    return time.time_ns() // 1_000_000


# -- refusals ------------------------------------------------------------------------------


class AppRefused(Exception):
    """A request the gate refuses beyond the signing rule's own refusals (``access.AccessRefused``);
    ``code`` is its problem code, ``http_status`` its status."""

    code: ClassVar[str] = "app-refused"
    http_status: ClassVar[int] = 403

    def __init__(self, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        """What is wrong and what to do, for a person: the problem document's ``detail``."""
        self.retry_after = retry_after
        """Seconds after which a retry may pass (the ``Retry-After`` header), when it can."""


class AppAuthRequired(AppRefused):
    """A request to a route that needs a signed request carries none of the four headers."""

    code = "app-auth-required"
    http_status = 401


class UnknownApp(AppRefused):
    """The app id names no application the hub holds."""

    code = "unknown-app"
    http_status = 401

    def __init__(self, detail: str, app_id: str) -> None:
        super().__init__(detail)
        self.app_id = app_id
        """The app id the request named."""


class RetiredKey(AppRefused):
    """The request was signed by a key the app held before a rotation, not its current key."""

    code = "retired-key"
    http_status = 401

    def __init__(self, detail: str, app_id: str, public_key: bytes) -> None:
        super().__init__(detail)
        self.app_id = app_id
        self.public_key = public_key
        """The retired key that made the signature."""


class AppDisabled(AppRefused):
    """The app, or its organization, is disabled: it has lost every right."""

    code = "app-disabled"
    http_status = 403


class ChainNotGranted(AppRefused):
    """The app holds no grant on the chain (or the chain is not an active chain of its
    organization on the hub)."""

    code = "chain-not-granted"
    http_status = 403

    def __init__(self, detail: str, chain: str) -> None:
        super().__init__(detail)
        self.chain = chain


class ContractNotGranted(AppRefused):
    """A transaction calls a contract method the app's grants on that chain do not name."""

    code = "contract-not-granted"
    http_status = 403

    def __init__(self, detail: str, chain: str, contract: str, method: str) -> None:
        super().__init__(detail)
        self.chain = chain
        self.contract = contract
        self.method = method


class RateLimited(AppRefused):
    """The app sent more requests than its ``requests_per_second`` allow on this node."""

    code = "rate-limited"
    http_status = 429


class QuotaExceeded(AppRefused):
    """The app's transactions today on this node would pass its ``txs_per_day``."""

    code = "quota-exceeded"
    http_status = 429


# -- what the gate decides -----------------------------------------------------------------


@dataclass(frozen=True)
class AppIdentity:
    """An application whose request passed ``authenticate``."""

    app_id: str
    """The app, as the hub registered it."""
    org_id: str
    """Its organization."""
    public_key: bytes
    """The (current) key that signed the request."""
    nonce: str
    """The request's nonce, now remembered by the node."""
    timestamp_ms: int
    """The request's timestamp."""


@dataclass(frozen=True)
class TxCharge:
    """Transactions counted against an app's daily quota by ``check_txs``; ``refund`` takes them
    back when the node refuses them after all."""

    app_id: str
    day: int
    """The UTC day (milliseconds since the epoch // DAY_MS) they were counted on."""
    count: int


@dataclass
class _Bucket:
    """A token bucket of one app: ``requests_per_second`` tokens at most, refilled at that rate."""

    tokens: float
    updated_ms: int


@dataclass
class _DayCount:
    day: int
    txs: int


def seconds_to_next_utc_midnight(now_ms: int) -> int:
    """Whole seconds, rounded up (at least 1), from ``now_ms`` to the next UTC midnight."""
    next_midnight = (now_ms // DAY_MS + 1) * DAY_MS
    return max(1, math.ceil((next_midnight - now_ms) / 1000))


class AppGate:
    """Decides whether a request from an application may pass (module docstring: the order).

    ``hub`` is the node serving the hub chain, whose committed state holds the apps, their
    organizations, grants and quotas. Each node has its own gate: rates, quotas and nonces count
    what this node accepted. Hub nodes share accepted nonces: ``on_nonce`` is called with
    (app id, nonce, timestamp ms) after each nonce this gate accepts, and ``remember_nonce``
    records one another node accepted, so a replay to this node is refused too.
    """

    def __init__(
        self,
        hub: ChainNode,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
        nonces: NonceWindow | None = None,
    ) -> None:
        self.hub = hub
        """The hub chain's node: its state is read for every decision."""
        self.clock_ms = clock_ms
        """The node's clock, milliseconds since the Unix epoch."""
        self.nonces = nonces if nonces is not None else NonceWindow()
        """The (app id, nonce) pairs accepted within the window, this node's and gossiped ones."""
        self.on_nonce: Callable[[str, str, int], None] | None = None
        """Called with (app id, nonce, timestamp ms) after a nonce is accepted (for gossip)."""
        self._buckets: dict[str, _Bucket] = {}
        self._days: dict[str, _DayCount] = {}

    @contextmanager
    def _reading(self) -> Iterator[StateReader]:
        with self.hub.store.state_reader() as read:
            yield read

    # -- authentication --------------------------------------------------------------------

    def authenticate(
        self,
        method: str,
        host: str,
        raw_path: str,
        raw_query: bytes | str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> AppIdentity:
        """The app that signed this request, or the refusal of the first check that fails, in
        this order: headers well-formed (AppAuthRequired, MalformedAuth) → app known (UnknownApp)
        → signature by the current key (else RetiredKey for an old key, else BadSignature) → app
        and organization active (AppDisabled) → timestamp (StaleRequest) → nonce (ReplayedNonce,
        NonceWindowFull) → rate (RateLimited).

        ``host`` is the Host header as received, ``raw_path`` the path of the request line
        (percent-encoding untouched), ``raw_query`` the query string as sent, ``headers`` every
        header (a repeated one must appear twice), ``body`` the exact bytes."""
        names = {name.lower() for name in headers}
        # A route that needs a signed request gets one: an app id or a signature at least (a
        # nonce alone asks only for a signed answer).
        if APP_HEADER.lower() not in names and SIGNATURE_HEADER.lower() not in names:
            raise AppAuthRequired(
                f"{method.upper()} {raw_path} needs a request signed by a registered application: "
                "send the headers X-Zhongshu-App, -Timestamp, -Nonce and -Signature "
                "(docs/access-spec.md, Signed requests)"
            )
        auth = parse_auth_headers(headers)
        message = canonical_request(
            method, host, raw_path, parse_query(raw_query), auth.timestamp_ms, auth.nonce, auth.app_id, body
        )
        with self._reading() as read:
            app = get_app(read, auth.app_id)
            # The app id names an application the hub holds.
            if app is None:
                raise UnknownApp(
                    f"the hub holds no application {auth.app_id!r}: check X-Zhongshu-App against "
                    "the app id `zhongshu app register` gave",
                    auth.app_id,
                )
            self._check_signature(app, auth, message)
            org = get_org(read, app.org_id)
            # The app and its organization are active.
            if app.status != STATUS_ACTIVE:
                raise AppDisabled(f"application {app.app_id} is {app.status}: it may no longer call the hub")
            if org is None or org.status != STATUS_ACTIVE:
                raise AppDisabled(
                    f"the organization {app.org_id!r} of application {app.app_id} is disabled: "
                    "its applications may no longer call the hub"
                )
        now = self.clock_ms()
        # The request was signed within 5 minutes of the node's clock.
        check_timestamp(auth.timestamp_ms, now)
        # The nonce is new for this app (here, or gossiped from another hub node).
        self.nonces.check_and_remember(auth.app_id, auth.nonce, auth.timestamp_ms, now)
        if self.on_nonce is not None:
            self.on_nonce(auth.app_id, auth.nonce, auth.timestamp_ms)
        # The app has a request left in its rate.
        self._take_token(app, now)
        return AppIdentity(app.app_id, app.org_id, app.public_key, auth.nonce, auth.timestamp_ms)

    def _check_signature(self, app: AppRecord, auth: AuthHeaders, message: bytes) -> None:
        """Accept the app's current key's signature; name a retired key's as retired-key."""
        suite = get_suite("sm")
        # The signature is the app's current key's.
        if suite.verify(app.public_key, message, auth.signature):
            return
        retired = [k.public_key for k in app.keys if k.public_key != app.public_key]
        for key in reversed(retired[-MAX_RETIRED_KEYS_TRIED:]):
            # Not a key the app rotated away from.
            if suite.verify(key, message, auth.signature):
                raise RetiredKey(
                    f"the request is signed by key {key.hex()[:16]}..., which application {app.app_id} "
                    "no longer holds (its key was rotated): sign with its current key",
                    app.app_id,
                    key,
                )
        raise BadSignature(
            f"X-Zhongshu-Signature is not a signature of this request by the key of app {app.app_id!r}: "
            "recompute the canonical request string (docs/access-spec.md, Signed requests)"
        )

    def _take_token(self, app: AppRecord, now_ms: int) -> None:
        """Take one token from the app's bucket (``requests_per_second`` tokens at most, refilled
        at that rate), or refuse with the seconds until one is back."""
        rate = app.quota.requests_per_second
        bucket = self._buckets.get(app.app_id)
        if bucket is None:
            bucket = self._buckets[app.app_id] = _Bucket(float(rate), now_ms)
        elapsed = max(0, now_ms - bucket.updated_ms)
        bucket.tokens = min(float(rate), bucket.tokens + elapsed * rate / 1000)
        bucket.updated_ms = max(bucket.updated_ms, now_ms)
        # The app has a request left in this second's allowance.
        if bucket.tokens < 1:
            wait = max(1, math.ceil((1 - bucket.tokens) / rate))
            raise RateLimited(
                f"application {app.app_id} may send {rate} requests per second to this node: "
                f"retry after {wait} s",
                retry_after=wait,
            )
        bucket.tokens -= 1

    # -- nonces from other nodes -----------------------------------------------------------

    def remember_nonce(self, app_id: str, nonce: str, timestamp_ms: int) -> None:
        """Record a nonce another hub node accepted, so a replay of it here is ``replayed-nonce``.

        A pair this node knows already is left as it is, and one too old for the window is
        dropped (its replay would be stale anyway); ``NonceWindowFull`` when there is no room.
        ``on_nonce`` is not called: the nonce came from gossip."""
        # Gossip carries an app id and a nonce of their forms.
        if not APP_ID_FORM.fullmatch(app_id) or not NONCE_FORM.fullmatch(nonce):
            raise ValueError(f"not an app id and a nonce: {app_id[:80]!r}, {nonce[:80]!r}")
        try:
            self.nonces.check_and_remember(app_id, nonce, timestamp_ms, self.clock_ms())
        except (ReplayedNonce, StaleRequest):
            return

    # -- transactions ----------------------------------------------------------------------

    def check_txs(self, identity: AppIdentity, chain: str, txs: Sequence[Transaction]) -> TxCharge:
        """Refuse unless the app may send every one of ``txs`` to ``chain``: each transaction's
        (contract, method) granted on that chain (whoever signed the transaction: an app relays
        its users' transactions too), then room in its quota of transactions for today (UTC) on
        this node. The transactions are counted at once; ``refund`` the charge if the node then
        refuses them."""
        with self._reading() as read:
            app = get_app(read, identity.app_id)
            record = get_chain(read, chain)
            # The chain is an active chain of the app's organization, and the app has a grant on it.
            if not (
                app is not None
                and record is not None
                and record.status == STATUS_ACTIVE
                and app.org_id in record.orgs
                and any(g.chain == chain for g in app.grants)
            ):
                raise ChainNotGranted(
                    f"application {identity.app_id} holds no grant on chain {chain!r}: ask an admin of "
                    f"its organization for one (hub.app grants)",
                    chain,
                )
            # Each call is one the app's grants on this chain name (each distinct contract method
            # once, in the order they first appear: a batch is mostly one method).
            for contract, method in dict.fromkeys((tx.contract, tx.method) for tx in txs):
                if not is_granted(read, identity.app_id, chain, contract, method):
                    raise ContractNotGranted(
                        f"application {identity.app_id} is not granted {contract}.{method} "
                        f"on chain {chain!r}",
                        chain,
                        contract,
                        method,
                    )
        return self._charge(app, len(txs))

    def _charge(self, app: AppRecord, count: int) -> TxCharge:
        now = self.clock_ms()
        day = now // DAY_MS
        used = self._days.get(app.app_id)
        if used is None or used.day != day:
            used = self._days[app.app_id] = _DayCount(day, 0)
        limit = app.quota.txs_per_day
        # Today's transactions, these included, stay within the app's daily quota.
        if used.txs + count > limit:
            wait = seconds_to_next_utc_midnight(now)
            raise QuotaExceeded(
                f"application {app.app_id} may send {limit} transactions per UTC day to this node; "
                f"{used.txs} are counted today and this request has {count}: retry after {wait} s "
                "(at 00:00 UTC)",
                retry_after=wait,
            )
        used.txs += count
        return TxCharge(app.app_id, day, count)

    def refund(self, charge: TxCharge) -> None:
        """Take back the transactions of ``charge`` (the node refused them): only accepted
        transactions count against a quota."""
        used = self._days.get(charge.app_id)
        if used is not None and used.day == charge.day:
            used.txs = max(0, used.txs - charge.count)
