"""The HTTP/1.1 connection guard: a cap on open connections and a deadline on every request.

uvicorn's h11 protocol accepts every connection and waits forever for a request's headers and
body, so clients that open connections and trickle bytes hold file descriptors until the node
can accept no more. ``GuardedH11Protocol`` adds three rules to it:

- the cap: with ``max_connections`` open, a new connection is answered 503 and closed;
- the deadline: a request (from the connection's first byte, or from the first byte after the
  previous response) must arrive whole, headers and body, within ``request_grace`` seconds plus
  one second per ``min_bytes_per_second`` bytes received; otherwise 408 and the connection closes
  (it just closes if an answer has already begun). A connection that never sends a byte is
  closed the same way; an idle keep-alive connection is closed by uvicorn after its 5 s;
- broken framing is answered with a problem document instead of uvicorn's text/plain 400.

Each condition is logged through the ``zhongshu.gateway`` logger, which ``serve_home`` limits to
one line per kind per interval (``ratelog``).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from zhongshu.gateway.problems import encode_problem_http

log = logging.getLogger("zhongshu.gateway")

MAX_CONNECTIONS = 512
"""Open API connections at most (lowered to a quarter of the process's file limit if that is less)."""
REQUEST_GRACE = 10.0
"""Seconds a request may take to arrive before its bytes earn more time."""
MIN_BYTES_PER_SECOND = 64 * 1024
"""Each this many bytes received extends a request's deadline by one second."""
RETRY_AFTER = 1
"""Seconds a client refused at the cap is told to wait."""

_COMPLETE = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR, h11.SWITCHED_PROTOCOL)
"""Client states in which no more of the current request is expected."""


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = MAX_CONNECTIONS
    """Open connections at most; one more is answered 503 and closed."""
    request_grace: float = REQUEST_GRACE
    """Seconds a request may take to arrive, headers and body, before its bytes earn more."""
    min_bytes_per_second: int = MIN_BYTES_PER_SECOND
    """Bytes that earn a request one more second."""


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap and a request deadline (see the module)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_at = 0.0
        """Loop time by which the current request must have arrived."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # Below the cap: served, and its first request is on the clock from now.
        if len(self.connections) < self.limits.max_connections:
            super().connection_made(transport)
            self._start_deadline()
            return
        self.transport = transport
        log.warning("refused connections over the cap of %d open", self.limits.max_connections)
        transport.write(
            encode_problem_http(
                503,
                "too-many-connections",
                "Too many connections",
                f"the gateway has {self.limits.max_connections} connections open; "
                f"retry after {RETRY_AFTER} s, or reuse one connection for many requests",
                retry_after=RETRY_AFTER,
            )
        )
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Bytes of an unfinished request earn time at the minimum rate.
        if self._deadline is not None:
            self._deadline_at += len(data) / self.limits.min_bytes_per_second
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        self._watch_request()

    def send_400_response(self, msg: str) -> None:
        """Broken framing (h11 refused the bytes): a problem document, then close."""
        self._close_with(
            encode_problem_http(
                400,
                "malformed-http",
                "Malformed HTTP request",
                "the request is not valid HTTP/1.1 (request line, headers or body framing); "
                "the connection is closed",
            )
        )

    # -- the deadline -----------------------------------------------------------------------

    def _watch_request(self) -> None:
        """Stop the clock once the request is whole; start it when the next one begins."""
        if self.transport.is_closing() or self.conn.their_state in _COMPLETE:
            self._stop_deadline()
        elif self._deadline is None and (
            self.conn.their_state is h11.SEND_BODY or self.conn.trailing_data[0]
        ):
            self._start_deadline()

    def _start_deadline(self) -> None:
        self._deadline_at = self.loop.time() + self.limits.request_grace
        self._deadline = self.loop.call_at(self._deadline_at, self._on_deadline)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_deadline(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        # Bytes that arrived meanwhile moved the deadline: wait for the new one.
        if self.loop.time() < self._deadline_at:
            self._deadline = self.loop.call_at(self._deadline_at, self._on_deadline)
            return
        log.warning(
            "closed connections whose request did not arrive in time (%g s, then %d bytes/s)",
            self.limits.request_grace,
            self.limits.min_bytes_per_second,
        )
        self._close_with(
            encode_problem_http(
                408,
                "request-timeout",
                "Request not received in time",
                f"the request did not arrive whole within {self.limits.request_grace:g} s "
                f"(then at least {self.limits.min_bytes_per_second} bytes/s); send it at once",
            )
        )

    def _close_with(self, answer: bytes) -> None:
        """Write ``answer`` where one is due; end the request cycle; close."""
        # Due when no response to the current request has begun (none received yet, or not answered).
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self.transport.write(answer)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The application sees a disconnect and writes nothing more on this connection.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def connection_cap(open_files_limit: int) -> int:
    """API connections at most: MAX_CONNECTIONS, or a quarter of the file limit if that is less.

    The other descriptors stay for the store, the peers and the log.
    """
    if open_files_limit == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, open_files_limit // 4))


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, bound to ``limits``."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})
