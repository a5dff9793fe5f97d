"""The authenticated connections of a transport: at most one per peer, each with a reader and a writer.

A connection enters the table once its handshake has passed. When a second connection to the
same peer arrives while the first is younger than ``handshake_timeout``, both sides keep the one
dialled by the lower validator key (bytewise) and close the other; an older connection is
instead replaced (the peer reconnected, so the old one is presumed dead). The kept connection
takes over the unsent queue.

Each connection runs two tasks. The reader hands every MESSAGE frame's body to
``on_message(peer_key, body)``, awaiting the result when it is awaitable before reading the next
frame (back-pressure per peer); an exception from the callback is logged and counted, and the
connection stays up. The writer drains the outbound queue in batches; a peer whose socket accepts
no data for ``stall_timeout`` seconds is disconnected. When either task ends, the connection is
dropped and the peer's *gone* event is set, which wakes the dial loop for that peer.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from zhongshu.p2p.config import TransportConfig
from zhongshu.p2p.frames import HEADER, MESSAGE, FrameError, FrameTooLarge, read_frame
from zhongshu.p2p.metrics import Metrics, PeerInfo
from zhongshu.p2p.queue import OutboundQueue
from zhongshu.p2p.ratelimit import ByteRate

log = logging.getLogger("zhongshu.p2p")

WRITE_BATCH_BYTES = 1024 * 1024
"""Queued frames are joined into writes of at most this many bytes (or one larger frame)."""

OnMessage = Callable[[bytes, bytes], Awaitable[None] | None]
"""``on_message(peer_key, body)``: a function, or one returning an awaitable that is awaited."""

Spawn = Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]
"""Starts a task that the transport tracks and cancels when it closes."""


class Connection:
    """One authenticated connection to a peer, its queue and its reader and writer tasks."""

    def __init__(
        self,
        peer_key: bytes,
        name: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        outbound: bool,
        peer_cert_sha256: bytes,
        queue: OutboundQueue,
    ) -> None:
        self.peer_key = peer_key
        self.name = name
        self.reader = reader
        self.writer = writer
        self.outbound = outbound
        self.peer_cert_sha256 = peer_cert_sha256
        self.queue = queue
        self.tasks: list[asyncio.Task[None]] = []
        self.closed = False
        self.established = asyncio.get_running_loop().time()
        ssl_object = writer.get_extra_info("ssl_object")
        self.tls_version = str(ssl_object.version()) if ssl_object else ""
        cipher = ssl_object.cipher() if ssl_object else None
        self.cipher = str(cipher[0]) if cipher else ""
        self.address = _address(writer)
        self.local_address = _address(writer, "sockname")

    def info(self) -> PeerInfo:
        """A snapshot of this connection and its queue."""
        return PeerInfo(
            self.peer_key,
            self.name,
            self.outbound,
            self.address,
            self.local_address,
            self.tls_version,
            self.cipher,
            self.peer_cert_sha256,
            len(self.queue.items),
            self.queue.nbytes,
            self.queue.dropped,
        )


def _address(writer: asyncio.StreamWriter, which: str = "peername") -> str:
    peer = writer.get_extra_info(which)
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


def abort_stream(writer: asyncio.StreamWriter | None, spawn: Spawn) -> None:
    """Close the socket at once (no TLS close_notify: the peer may be hostile or stalled).

    None: the TLS transport was never made, and asyncio has already closed the socket.
    """
    if writer is None:
        return
    writer.transport.abort()
    spawn(_reap(writer))


async def _reap(writer: asyncio.StreamWriter) -> None:
    """Wait (bounded) until the aborted connection is gone, so no socket outlives the transport."""
    try:
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
    except Exception:
        return


class ConnectionTable:
    """The current connection of every connected peer, and the tasks that serve each connection."""

    def __init__(
        self,
        config: TransportConfig,
        metrics: Metrics,
        on_message: OnMessage,
        own_key: bytes,
        label: str,
        spawn: Spawn,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.closing = False
        """Set by ``close``: connections registered from then on are dropped at once."""
        self._on_message = on_message
        self._own_key = own_key
        self._label = label
        self._spawn = spawn
        self._conns: dict[bytes, Connection] = {}
        self._gone: dict[bytes, asyncio.Event] = {}

    def gone_event(self, key: bytes) -> asyncio.Event:
        """The event that is set while ``key`` has no connection (set for a peer never seen)."""
        event = self._gone.get(key)
        if event is None:
            event = self._gone[key] = asyncio.Event()
            event.set()
        return event

    def send(self, peer_key: bytes, frame: bytes) -> bool:
        """Queue ``frame`` for ``peer_key``; False (and counted) when that peer is not connected."""
        conn = self._conns.get(peer_key)
        if conn is None:
            self.metrics.unroutable += 1
            return False
        self.metrics.dropped += conn.queue.put(frame)
        return True

    def broadcast(self, frame: bytes) -> int:
        """Queue ``frame`` for every connected peer; return how many peers it was queued for."""
        for conn in self._conns.values():
            self.metrics.dropped += conn.queue.put(frame)
        return len(self._conns)

    def peers(self) -> list[PeerInfo]:
        """The connected peers, ordered by validator key."""
        return [c.info() for _, c in sorted(self._conns.items())]

    def close(self) -> None:
        """Drop every connection, and every one registered later."""
        self.closing = True
        for conn in list(self._conns.values()):
            self._drop(conn, "transport closing")

    def register(self, conn: Connection) -> None:
        """Make ``conn`` the peer's connection, or close it when the tie-break keeps the existing one."""
        if self.closing:
            self._drop(conn, "transport closing")
            return
        existing = self._conns.get(conn.peer_key)
        if existing is not None:
            # Simultaneous dials: keep the connection dialled by the lower key. An existing connection
            # older than the handshake timeout is taken as stale (the peer reconnected) and replaced.
            young = conn.established - existing.established < self.config.handshake_timeout
            if young and self._dialler(existing) < self._dialler(conn):
                self.metrics.duplicates_closed += 1
                self._drop(conn, "duplicate connection (the one dialled by the lower key is kept)")
                return
            # The new connection takes over the unsent queue.
            conn.queue = existing.queue
            self._conns[conn.peer_key] = conn
            self.metrics.duplicates_closed += 1
            self._drop(existing, "replaced by a newer connection")
        self._conns[conn.peer_key] = conn
        self.gone_event(conn.peer_key).clear()
        conn.tasks = [self._spawn(self._read_loop(conn)), self._spawn(self._write_loop(conn))]
        log.info(
            "p2p %s: connected to %s (%s, %s, %s)",
            self._label,
            conn.name,
            conn.address,
            "outbound" if conn.outbound else "inbound",
            conn.tls_version,
        )

    def _dialler(self, conn: Connection) -> bytes:
        return self._own_key if conn.outbound else conn.peer_key

    async def _read_loop(self, conn: Connection) -> None:
        reason = "closed by peer"
        loop = asyncio.get_running_loop()
        config = self.config
        allowance = ByteRate(config.inbound_bytes_per_second, 2 * config.max_frame, loop.time())
        try:
            while True:
                frame = await read_frame(conn.reader, config.max_frame)
                size = HEADER.size + 1 + len(frame.body)
                self.metrics.frames_in += 1
                self.metrics.bytes_in += size
                # A peer over its byte allowance is not read from until it is back within it.
                wait = allowance.get_delay(size, loop.time())
                if wait > 0:
                    self.metrics.throttled += 1
                    await asyncio.sleep(wait)
                # After the handshake only MESSAGE frames are allowed.
                if frame.kind != MESSAGE:
                    self.metrics.protocol_errors += 1
                    reason = f"protocol error: unexpected frame kind {frame.kind}"
                    return
                try:
                    result = self._on_message(conn.peer_key, frame.body)
                    if inspect.isawaitable(result):
                        await result
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.metrics.callback_errors += 1
                    log.exception("p2p %s: on_message failed for a message from %s", self._label, conn.name)
        except FrameTooLarge as exc:
            self.metrics.oversized_frames += 1
            reason = f"oversized frame: {exc}"
            log.warning("p2p %s: dropping %s: %s", self._label, conn.name, reason)
        except FrameError as exc:
            self.metrics.protocol_errors += 1
            reason = f"protocol error: {exc}"
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            reason = f"closed by peer ({type(exc).__name__})"
        finally:
            self._drop(conn, reason)

    async def _write_loop(self, conn: Connection) -> None:
        reason = "write failed"
        try:
            while not conn.closed:
                batch = await conn.queue.take(WRITE_BATCH_BYTES)
                data = b"".join(batch)
                conn.writer.write(data)
                self.metrics.frames_out += len(batch)
                self.metrics.bytes_out += len(data)
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns normally when it
                # is cancelled just as the drain completes (closing the connection does both), and
                # this loop then waited for frames forever, holding up the node's stop.
                try:
                    async with asyncio.timeout(self.config.stall_timeout):
                        await conn.writer.drain()
                except TimeoutError:
                    self.metrics.stalled += 1
                    reason = f"stalled: accepted no data for {self.config.stall_timeout:g} s"
                    log.warning("p2p %s: dropping %s: %s", self._label, conn.name, reason)
                    return
        except (ConnectionError, OSError) as exc:
            reason = f"write failed ({type(exc).__name__})"
        finally:
            self._drop(conn, reason)

    def _drop(self, conn: Connection, reason: str) -> None:
        """Close ``conn`` (idempotent); if it is the peer's current connection, the peer is gone."""
        if conn.closed:
            return
        conn.closed = True
        current = asyncio.current_task()
        for task in conn.tasks:
            if task is not current:
                task.cancel()
        abort_stream(conn.writer, self._spawn)
        if self._conns.get(conn.peer_key) is conn:
            del self._conns[conn.peer_key]
            self.metrics.dropped += len(conn.queue.items)
            self.gone_event(conn.peer_key).set()
            level = logging.DEBUG if self.closing else logging.INFO
            log.log(level, "p2p %s: disconnected from %s: %s", self._label, conn.name, reason)
