"""The peer-to-peer transport of one node on one chain: mutual TLS 1.3, a validator handshake, frames.

A ``Transport`` listens on ``listen_host:listen_port`` and dials every configured peer. After the
TLS handshake (both sides present a certificate of the network CA) both sides run the validator
handshake (``zhongshu.p2p.handshake``). Any failure is logged as ``refused`` with the reason,
counted, and the connection is aborted. Only then is the peer connected; ``zhongshu.p2p.connections``
keeps one connection per peer (the tie-break when both sides dial each other) and runs its reader
and writer.

After the handshake, every MESSAGE frame's body goes to ``on_message(peer_key, body)``. The
callback may be a plain function or return an awaitable; an awaitable is awaited before the next
frame of that peer is read (back-pressure per peer; other peers are not held up). Exceptions from
the callback are logged and counted; the connection stays up.

Outbound messages go to a bounded queue per connected peer (``zhongshu.p2p.queue``:
``queue_messages`` messages and ``queue_bytes`` bytes). When it is full, the *oldest* queued
message is dropped and counted: the transport is best-effort, and consensus re-sends what matters.
A peer whose socket accepts no data for ``stall_timeout`` seconds is disconnected. A message sent
to a peer that is not connected is not queued (``send`` returns False). Lost connections are
redialled with exponential backoff (``backoff_initial`` doubling to ``backoff_max``, each wait
drawn from [delay/2, delay]).

All methods must be called from the event loop that ran ``start``; none is thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from collections.abc import Coroutine, Iterable
from typing import Any

from zhongshu.crypto import get_suite
from zhongshu.p2p.config import PeerAddress, TransportConfig, TransportError
from zhongshu.p2p.connections import (
    WRITE_BATCH_BYTES,
    Connection,
    ConnectionTable,
    OnMessage,
    abort_stream,
)
from zhongshu.p2p.frames import HEADER, MESSAGE, FrameError, encode_frame
from zhongshu.p2p.handshake import (
    HANDSHAKE_MAX_FRAME,
    NONCE_SIZE,
    PROTOCOL_VERSION,
    AuthSignBytes,
    Credentials,
    HandshakeRefused,
    Hello,
    auth_sign_bytes,
    run_handshake,
    short_key,
)
from zhongshu.p2p.metrics import Metrics, PeerInfo
from zhongshu.p2p.pki import cert_der, cert_sha256, client_context, server_context, validator_key_of
from zhongshu.p2p.queue import OutboundQueue

__all__ = [
    "ACCEPT_PAUSE",
    "HANDSHAKE_MAX_FRAME",
    "NONCE_SIZE",
    "PROTOCOL_VERSION",
    "WRITE_BATCH_BYTES",
    "AuthSignBytes",
    "HandshakeRefused",
    "Hello",
    "Metrics",
    "OnMessage",
    "PeerAddress",
    "PeerInfo",
    "Transport",
    "TransportConfig",
    "TransportError",
    "auth_sign_bytes",
]
"""Defined here or in the modules split out of this one; importable from here as before."""

log = logging.getLogger("zhongshu.p2p")

ACCEPT_PAUSE = 0.5
"""Seconds the listener stops accepting after ``accept`` fails (e.g. out of file descriptors)."""


class Transport:
    """One node's mutual-TLS connections to the other validators of one chain."""

    def __init__(self, config: TransportConfig, on_message: OnMessage) -> None:
        """Check the configuration (raise TransportError) and load the TLS contexts; nothing runs yet."""
        self.config = config
        self.metrics = Metrics()
        self._suite = get_suite(config.suite)
        # The validator key must be of the chain's suite.
        if config.validator_key.suite.name != config.suite:
            raise TransportError(
                f"the validator key is {config.validator_key.suite.name}, the chain uses {config.suite}"
            )
        # A queue must hold at least one frame of the largest size.
        if config.queue_bytes < config.max_frame + HEADER.size or config.queue_messages < 1:
            raise TransportError("queue_bytes must hold one largest frame and queue_messages be at least 1")
        self._own_key = config.validator_key.public_bytes()
        own_pem = config.tls.cert.read_bytes()
        # The node's own certificate must name its own validator key.
        if validator_key_of(own_pem) != self._own_key:
            raise TransportError(f"{config.tls.cert} names another validator key than the node's")
        self._allowed = frozenset(config.validators) - {self._own_key}
        self._credentials = Credentials(
            chain_id=config.chain_id,
            suite=self._suite,
            validator_key=config.validator_key,
            public_key=self._own_key,
            cert_sha256=cert_sha256(cert_der(own_pem)),
            allowed=self._allowed,
        )
        self._names = {p.validator: p.name for p in config.peers}
        self._server_ctx = server_context(config.tls)
        self._client_ctx = client_context(config.tls)
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: socket.socket | None = None
        self._pending = 0
        self._dialling = 0
        self._accepted: set[socket.socket] = set()
        """Accepted sockets whose handshake task has not started (``close`` closes them)."""
        self._closing = False
        self._label = config.name or short_key(self._own_key)
        self._connections = ConnectionTable(
            config, self.metrics, on_message, self._own_key, self._label, self._spawn
        )

    # -- public API ----------------------------------------------------------------------

    async def start(self, sock: socket.socket | None = None) -> None:
        """``listen`` then ``dial``."""
        await self.listen(sock)
        self.dial()

    async def listen(self, sock: socket.socket | None = None) -> None:
        """Accept peers on ``listen_host:listen_port`` (OSError if the address is taken).

        ``sock``: listen on this already bound TCP socket instead (handed over by a supervisor, or
        by tests that must hold their ports); the transport owns and closes it.
        """
        # Only validators of the chain are dialled, never this node itself.
        for peer in self.config.peers:
            if peer.validator not in self._allowed:
                raise TransportError(f"peer {peer.name} at {peer.host}:{peer.port} is not another validator")
        if sock is None:
            host, port = self.config.listen_host, self.config.listen_port
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            listener = socket.create_server((host, port), family=family, backlog=128)
        else:
            listener = sock
            listener.listen(128)
        listener.setblocking(False)
        # Accepting in a plain reader callback (not asyncio.Server) hands every accepted socket to
        # this class at once, so ``close`` can close each one (Python 3.11's Server can leak a
        # connection accepted just before it closes).
        asyncio.get_running_loop().add_reader(listener.fileno(), self._on_readable, listener)
        self._listener = listener
        host_bound, port_bound = listener.getsockname()[:2]
        log.info("p2p %s: listening on %s:%d", self._label, host_bound, port_bound)

    def dial(self) -> None:
        """Start keeping a connection to every configured peer (redialling with backoff)."""
        for peer in self.config.peers:
            self._spawn(self._dial_loop(peer))

    @property
    def port(self) -> int:
        """The port the transport listens on (after ``start``)."""
        assert self._listener is not None, "the transport is not listening"
        return int(self._listener.getsockname()[1])

    @property
    def handshakes_in_progress(self) -> int:
        """Connections this node is dialling or accepting that have not finished their handshake."""
        return self._pending + self._dialling

    def send(self, peer_key: bytes, payload: bytes) -> bool:
        """Queue ``payload`` for ``peer_key``; False (and counted) when that peer is not connected.

        FrameTooLarge when the payload does not fit in ``max_frame``.
        """
        frame = encode_frame(MESSAGE, payload, self.config.max_frame)
        return self._connections.send(peer_key, frame)

    def broadcast(self, payload: bytes) -> int:
        """Queue ``payload`` for every connected peer; return how many peers it was queued for."""
        frame = encode_frame(MESSAGE, payload, self.config.max_frame)
        return self._connections.broadcast(frame)

    def multicast(self, peer_keys: Iterable[bytes], payload: bytes) -> int:
        """Queue ``payload`` for each of ``peer_keys`` that is connected (framed once); return how many."""
        frame = encode_frame(MESSAGE, payload, self.config.max_frame)
        return sum(1 for key in peer_keys if self._connections.send(key, frame))

    def peers(self) -> list[PeerInfo]:
        """The connected (authenticated) peers, ordered by validator key."""
        return self._connections.peers()

    async def close(self) -> None:
        """Stop listening and dialling, drop every connection and wait for all tasks to end."""
        if self._closing:
            return
        self._closing = True
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
        self._connections.close()
        # A handshake task cancelled before its first step never takes over its socket.
        for sock in self._accepted:
            sock.close()
        self._accepted.clear()
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)
        # One more loop turn: aborted sockets are closed by callbacks scheduled for it.
        await asyncio.sleep(0)

    async def __aenter__(self) -> Transport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- accepting and dialling -----------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_readable(self, listener: socket.socket) -> None:
        """Accept every waiting connection and start its handshake."""
        for _ in range(128):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of file descriptors or similar: pause accepting for a moment instead of spinning.
                log.warning("p2p %s: accept failed, pausing for %g s: %s", self._label, ACCEPT_PAUSE, exc)
                loop = asyncio.get_running_loop()
                loop.remove_reader(listener.fileno())
                loop.call_later(ACCEPT_PAUSE, self._resume_accepting, listener)
                return
            sock.setblocking(False)
            address = f"{addr[0]}:{addr[1]}"
            # Unauthenticated connections are capped so a flood cannot pile up handshakes.
            if self._pending >= self.config.max_pending_handshakes:
                sock.close()
                self._refuse("inbound", address, HandshakeRefused("busy", "too many pending handshakes"))
                continue
            self._pending += 1
            self._accepted.add(sock)
            self._spawn(self._accept(sock, address))

    def _resume_accepting(self, listener: socket.socket) -> None:
        if not self._closing:
            asyncio.get_running_loop().add_reader(listener.fileno(), self._on_readable, listener)

    async def _accept(self, sock: socket.socket, address: str) -> None:
        # From here on the socket belongs to the asyncio transport (or is closed below).
        self._accepted.discard(sock)
        loop = asyncio.get_running_loop()
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.config.handshake_timeout):
                reader = asyncio.StreamReader()
                protocol = asyncio.StreamReaderProtocol(reader)
                try:
                    transport, _ = await loop.connect_accepted_socket(
                        lambda: protocol, sock, ssl=self._server_ctx
                    )
                except (ssl.SSLError, ConnectionError, OSError) as exc:
                    raise HandshakeRefused(
                        "tls", f"TLS handshake failed: {type(exc).__name__}: {exc}"
                    ) from None
                writer = asyncio.StreamWriter(transport, protocol, reader, loop)
                conn = await self._handshake(reader, writer, outbound=False, expected=None)
        except HandshakeRefused as exc:
            self._refuse("inbound", address, exc)
            abort_stream(writer, self._spawn)
            return
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, OSError, FrameError) as exc:
            self._refuse(
                "inbound",
                address,
                HandshakeRefused("handshake", f"no complete handshake: {type(exc).__name__}: {exc}"),
            )
            abort_stream(writer, self._spawn)
            return
        except BaseException:
            abort_stream(writer, self._spawn)
            raise
        finally:
            self._pending -= 1
        self._connections.register(conn)

    async def _dial_loop(self, peer: PeerAddress) -> None:
        gone = self._connections.gone_event(peer.validator)
        loop = asyncio.get_running_loop()
        delay = self.config.backoff_initial
        wait_first = False
        failures = 0
        while True:
            await gone.wait()
            if wait_first:
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, self.config.backoff_max)
            # The peer may have connected to us meanwhile.
            if not gone.is_set():
                continue
            wait_first = True
            try:
                await self._dial(peer)
            except HandshakeRefused as exc:
                self._refuse("outbound", f"{peer.host}:{peer.port}", exc)
                self.metrics.dial_failures += 1
                continue
            except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, OSError, FrameError) as exc:
                self.metrics.dial_failures += 1
                failures += 1
                level = logging.INFO if failures == 1 else logging.DEBUG
                log.log(
                    level,
                    "p2p %s: dial %s at %s:%d failed: %r",
                    self._label,
                    peer.name,
                    peer.host,
                    peer.port,
                    exc,
                )
                continue
            failures = 0
            # Connected (by this dial or the peer's): redial at once only if it then lasts a while.
            started = loop.time()
            await gone.wait()
            if loop.time() - started >= self.config.backoff_max:
                delay = self.config.backoff_initial
                wait_first = False

    async def _dial(self, peer: PeerAddress) -> None:
        self._dialling += 1
        try:
            async with asyncio.timeout(self.config.handshake_timeout):
                reader, writer = await asyncio.open_connection(peer.host, peer.port)
                try:
                    try:
                        await writer.start_tls(self._client_ctx)
                    except ssl.SSLCertVerificationError as exc:
                        raise HandshakeRefused(
                            "tls", f"the peer's certificate does not verify: {exc}"
                        ) from None
                    conn = await self._handshake(reader, writer, outbound=True, expected=peer.validator)
                except BaseException:
                    abort_stream(writer, self._spawn)
                    raise
        finally:
            self._dialling -= 1
        self._connections.register(conn)

    async def _handshake(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        outbound: bool,
        expected: bytes | None,
    ) -> Connection:
        """Run the validator handshake on a TLS stream; HandshakeRefused names the failed check."""
        peer = await run_handshake(reader, writer, self._credentials, expected=expected)
        self.metrics.handshakes += 1
        name = self._names.get(peer.validator, short_key(peer.validator))
        queue = OutboundQueue(self.config.queue_messages, self.config.queue_bytes)
        return Connection(peer.validator, name, reader, writer, outbound, peer.cert_sha256, queue)

    def _refuse(self, direction: str, address: str, exc: HandshakeRefused) -> None:
        self.metrics.rejected_handshakes += 1
        self.metrics.rejected[exc.reason] = self.metrics.rejected.get(exc.reason, 0) + 1
        log.warning("p2p %s: refused %s peer %s: %s", self._label, direction, address, exc)
