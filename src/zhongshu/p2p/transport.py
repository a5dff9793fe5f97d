"""The peer-to-peer transport of one node on one chain: mutual TLS 1.3, a validator handshake, frames.

A ``Transport`` listens on ``listen_host:listen_port`` and dials every configured peer. After the
TLS handshake (both sides present a certificate of the network CA) both sides run the validator
handshake:

1. each checks the validator key named in the peer's certificate: it must be a validator of the
   chain, not its own key, and (when dialling) the key configured for that address;
2. each sends HELLO = encode(Hello(version=1, chain_id, validator_public_key, nonce)), 32 random
   nonce bytes, and checks the peer's: same version and chain, key equal to the certificate's;
3. each sends AUTH = its validator-key signature (the chain's suite) over
   encode(AuthSignBytes(chain_id, own nonce, peer nonce, SHA-256 of own certificate DER,
   SHA-256 of the peer's certificate DER)) and verifies the peer's.

Any failure is logged as ``refused`` with the reason, counted, and the connection is aborted.
Only then is the peer connected. When both sides dial each other, the connection dialled by the
lower validator key (bytewise) is kept and the other closed; both sides apply the same rule (an
existing connection older than ``handshake_timeout`` is instead replaced: the peer reconnected).

After the handshake, every MESSAGE frame's body goes to ``on_message(peer_key, body)``. The
callback may be a plain function or return an awaitable; an awaitable is awaited before the next
frame of that peer is read (back-pressure per peer; other peers are not held up). Exceptions from
the callback are logged and counted; the connection stays up.

Outbound messages go to a bounded queue per connected peer (``queue_messages`` messages and
``queue_bytes`` bytes). When it is full, the *oldest* queued message is dropped and counted: the
transport is best-effort, and consensus re-sends what matters. A peer whose socket accepts no
data for ``stall_timeout`` seconds is disconnected. A message sent to a peer that is not connected
is not queued (``send`` returns False). Lost connections are redialled with exponential backoff
(``backoff_initial`` doubling to ``backoff_max``, each wait drawn from [delay/2, delay]).

All methods must be called from the event loop that ran ``start``; none is thread-safe.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import secrets
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import msgspec

from zhongshu.codec import DecodeError, decode, encode
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.p2p.frames import (
    AUTH,
    DEFAULT_MAX_FRAME,
    HEADER,
    HELLO,
    MESSAGE,
    FrameError,
    FrameTooLarge,
    encode_frame,
    read_frame,
    write_frame,
)
from zhongshu.p2p.pki import (
    PKIError,
    TLSFiles,
    cert_der,
    cert_sha256,
    client_context,
    server_context,
    validator_key_of,
)

log = logging.getLogger("zhongshu.p2p")

PROTOCOL_VERSION = 1
NONCE_SIZE = 32
HANDSHAKE_MAX_FRAME = 4096
"""Largest frame accepted before a peer is authenticated (HELLO and AUTH are a few hundred bytes)."""
ACCEPT_PAUSE = 0.5
"""Seconds the listener stops accepting after ``accept`` fails (e.g. out of file descriptors)."""
WRITE_BATCH_BYTES = 1024 * 1024
"""Queued frames are joined into writes of at most this many bytes (or one larger frame)."""

OnMessage = Callable[[bytes, bytes], Awaitable[None] | None]
"""``on_message(peer_key, body)``: a function, or one returning an awaitable that is awaited."""


class Hello(msgspec.Struct, array_like=True, frozen=True, tag="p2p-hello"):
    """The first handshake frame each side sends after TLS."""

    version: int
    """PROTOCOL_VERSION; a peer with another version is refused."""
    chain_id: str
    """The chain this connection serves; one transport serves one chain."""
    validator: bytes
    """The sender's validator public key; must equal the key its certificate names."""
    nonce: bytes
    """NONCE_SIZE fresh random bytes, which the peer's AUTH signature must cover."""


class AuthSignBytes(msgspec.Struct, array_like=True, frozen=True, tag="p2p-auth"):
    """What a side signs with its validator key in AUTH; its encoding is the signed message."""

    chain_id: str
    signer_nonce: bytes
    """The signer's own HELLO nonce."""
    peer_nonce: bytes
    """The nonce the signer received in the peer's HELLO."""
    signer_cert_sha256: bytes
    """SHA-256 of the DER certificate the signer presented in TLS."""
    peer_cert_sha256: bytes
    """SHA-256 of the DER certificate the signer received from the peer in TLS."""


def auth_sign_bytes(
    chain_id: str, signer_nonce: bytes, peer_nonce: bytes, signer_cert_sha256: bytes, peer_cert_sha256: bytes
) -> bytes:
    """The exact bytes a side signs in AUTH (see docs/p2p.md for the layout)."""
    return encode(AuthSignBytes(chain_id, signer_nonce, peer_nonce, signer_cert_sha256, peer_cert_sha256))


class TransportError(RuntimeError):
    """A transport configured inconsistently (its certificate names another key, wrong suite, ...)."""


class HandshakeRefused(Exception):
    """A peer that failed a check of the handshake; ``reason`` is the short code counted in metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class PeerAddress:
    """A peer to dial: where it listens and the validator key it must present there."""

    name: str
    host: str
    port: int
    validator: bytes


@dataclass(frozen=True)
class TransportConfig:
    chain_id: str
    suite: str
    """The chain's crypto suite (``sm`` or ``intl``): the handshake signatures use it."""
    validator_key: PrivateKey
    validators: frozenset[bytes]
    """Public keys allowed to connect: the chain's validator set (this node's own key is ignored)."""
    tls: TLSFiles
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    """0 picks a free port (see ``Transport.port``)."""
    peers: tuple[PeerAddress, ...] = ()
    name: str = ""
    """This node's name, for log lines."""
    max_frame: int = DEFAULT_MAX_FRAME
    """Largest frame (kind byte + body) read or sent; a peer sending more is disconnected."""
    queue_messages: int = 10_000
    """Per-peer outbound queue bound in messages."""
    queue_bytes: int = 32 * 1024 * 1024
    """Per-peer outbound queue bound in bytes (framed)."""
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    handshake_timeout: float = 5.0
    """Seconds for TCP connect + TLS + validator handshake."""
    stall_timeout: float = 30.0
    """Seconds a peer's socket may accept no data while we have data for it, before we disconnect."""
    max_pending_handshakes: int = 64
    """Inbound connections still in their handshake beyond this are refused at once."""


@dataclass
class Metrics:
    """Counters since start; read them, never write them."""

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped: int = 0
    """Messages discarded unsent: queue overflow (oldest first) or still queued when a connection closed."""
    unroutable: int = 0
    """``send`` calls for a peer that was not connected."""
    oversized_frames: int = 0
    protocol_errors: int = 0
    stalled: int = 0
    """Peers disconnected because their socket accepted nothing for ``stall_timeout``."""
    handshakes: int = 0
    """Handshakes that succeeded (including duplicates closed by the tie-break)."""
    rejected_handshakes: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    """Rejected handshakes by reason code."""
    dial_failures: int = 0
    duplicates_closed: int = 0
    callback_errors: int = 0


@dataclass(frozen=True)
class PeerInfo:
    validator: bytes
    name: str
    outbound: bool
    """True when this node dialled the connection."""
    address: str
    """The peer's end of the TCP connection, host:port."""
    local_address: str
    """This node's end of the TCP connection, host:port."""
    tls_version: str
    cipher: str
    cert_sha256: bytes
    queued_messages: int
    queued_bytes: int
    dropped: int
    """Messages dropped from this connection's queue on overflow."""


class _OutboundQueue:
    """Framed messages for one peer, bounded in count and bytes; overflow drops the oldest."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.items: deque[bytes] = deque()
        self.nbytes = 0
        self.dropped = 0
        self._ready = asyncio.Event()

    def put(self, frame: bytes) -> int:
        """Append ``frame``; drop the oldest until both bounds hold; return how many were dropped."""
        self.items.append(frame)
        self.nbytes += len(frame)
        dropped = 0
        while len(self.items) > self.max_messages or self.nbytes > self.max_bytes:
            self.nbytes -= len(self.items.popleft())
            dropped += 1
        self.dropped += dropped
        self._ready.set()
        return dropped

    async def take(self, max_bytes: int) -> list[bytes]:
        """Wait for at least one frame; return the oldest frames up to ``max_bytes`` (at least one)."""
        while not self.items:
            self._ready.clear()
            await self._ready.wait()
        batch = [self.items.popleft()]
        total = len(batch[0])
        while self.items and total + len(self.items[0]) <= max_bytes:
            frame = self.items.popleft()
            total += len(frame)
            batch.append(frame)
        self.nbytes -= total
        return batch


class _Connection:
    """One authenticated connection to a peer, its queue and its reader and writer tasks."""

    def __init__(
        self,
        peer_key: bytes,
        name: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        outbound: bool,
        peer_cert_sha256: bytes,
        queue: _OutboundQueue,
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


def _address(writer: asyncio.StreamWriter, which: str = "peername") -> str:
    peer = writer.get_extra_info(which)
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


def _short(key: bytes) -> str:
    return key.hex()[:16] + "…"


class Transport:
    """One node's mutual-TLS connections to the other validators of one chain."""

    def __init__(self, config: TransportConfig, on_message: OnMessage) -> None:
        """Check the configuration (raise TransportError) and load the TLS contexts; nothing runs yet."""
        self.config = config
        self.metrics = Metrics()
        self._on_message = on_message
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
        self._own_cert_sha256 = cert_sha256(cert_der(own_pem))
        self._allowed = frozenset(config.validators) - {self._own_key}
        self._names = {p.validator: p.name for p in config.peers}
        self._server_ctx = server_context(config.tls)
        self._client_ctx = client_context(config.tls)
        self._conns: dict[bytes, _Connection] = {}
        self._gone: dict[bytes, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: socket.socket | None = None
        self._pending = 0
        self._dialling = 0
        self._accepted: set[socket.socket] = set()
        """Accepted sockets whose handshake task has not started (``close`` closes them)."""
        self._closing = False
        self._label = config.name or _short(self._own_key)

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
        conn = self._conns.get(peer_key)
        if conn is None:
            self.metrics.unroutable += 1
            return False
        self.metrics.dropped += conn.queue.put(frame)
        return True

    def broadcast(self, payload: bytes) -> int:
        """Queue ``payload`` for every connected peer; return how many peers it was queued for."""
        frame = encode_frame(MESSAGE, payload, self.config.max_frame)
        for conn in self._conns.values():
            self.metrics.dropped += conn.queue.put(frame)
        return len(self._conns)

    def peers(self) -> list[PeerInfo]:
        """The connected (authenticated) peers, ordered by validator key."""
        return [
            PeerInfo(
                c.peer_key,
                c.name,
                c.outbound,
                c.address,
                c.local_address,
                c.tls_version,
                c.cipher,
                c.peer_cert_sha256,
                len(c.queue.items),
                c.queue.nbytes,
                c.queue.dropped,
            )
            for _, c in sorted(self._conns.items())
        ]

    async def close(self) -> None:
        """Stop listening and dialling, drop every connection and wait for all tasks to end."""
        if self._closing:
            return
        self._closing = True
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
        for conn in list(self._conns.values()):
            self._drop(conn, "transport closing")
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

    # -- connections ---------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _gone_event(self, key: bytes) -> asyncio.Event:
        event = self._gone.get(key)
        if event is None:
            event = self._gone[key] = asyncio.Event()
            event.set()
        return event

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
            self._abort(writer)
            return
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, OSError, FrameError) as exc:
            self._refuse(
                "inbound",
                address,
                HandshakeRefused("handshake", f"no complete handshake: {type(exc).__name__}: {exc}"),
            )
            self._abort(writer)
            return
        except BaseException:
            self._abort(writer)
            raise
        finally:
            self._pending -= 1
        self._register(conn)

    async def _dial_loop(self, peer: PeerAddress) -> None:
        gone = self._gone_event(peer.validator)
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
                    self._abort(writer)
                    raise
        finally:
            self._dialling -= 1
        self._register(conn)

    async def _handshake(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        outbound: bool,
        expected: bytes | None,
    ) -> _Connection:
        """Run the validator handshake on a TLS stream; HandshakeRefused names the failed check."""
        ssl_object = writer.get_extra_info("ssl_object")
        peer_der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        # TLS must have produced a verified peer certificate.
        if not peer_der:
            raise HandshakeRefused("tls", "no peer certificate")
        try:
            peer_key = validator_key_of(peer_der)
        except PKIError as exc:
            raise HandshakeRefused("certificate", str(exc)) from None
        # A node never connects to itself.
        if peer_key == self._own_key:
            raise HandshakeRefused("own key", "the peer's certificate names this node's own validator key")
        # Only validators of this chain may connect.
        if peer_key not in self._allowed:
            raise HandshakeRefused("unknown validator", f"{_short(peer_key)} is not in the validator set")
        # A dialled address must be served by the validator configured for it.
        if expected is not None and peer_key != expected:
            raise HandshakeRefused(
                "unexpected validator", f"expected {_short(expected)}, got {_short(peer_key)}"
            )
        peer_fp = cert_sha256(peer_der)
        nonce = secrets.token_bytes(NONCE_SIZE)
        hello = Hello(PROTOCOL_VERSION, self.config.chain_id, self._own_key, nonce)
        await write_frame(writer, HELLO, encode(hello), HANDSHAKE_MAX_FRAME)
        frame = await read_frame(reader, HANDSHAKE_MAX_FRAME)
        # The first frame must be a HELLO.
        if frame.kind != HELLO:
            raise HandshakeRefused("protocol", f"expected HELLO, got frame kind {frame.kind}")
        try:
            peer_hello = decode(frame.body, Hello)
        except DecodeError as exc:
            raise HandshakeRefused("protocol", f"malformed HELLO: {exc}") from None
        # Same protocol version.
        if peer_hello.version != PROTOCOL_VERSION:
            raise HandshakeRefused(
                "protocol", f"protocol version {peer_hello.version}, expected {PROTOCOL_VERSION}"
            )
        # Same chain.
        if peer_hello.chain_id != self.config.chain_id:
            raise HandshakeRefused(
                "wrong chain", f"peer serves chain {peer_hello.chain_id!r}, not {self.config.chain_id!r}"
            )
        # The claimed validator key is the one the certificate names.
        if peer_hello.validator != peer_key:
            raise HandshakeRefused("key mismatch", "HELLO names another validator key than the certificate")
        # A fresh nonce of the right size, not a reflection of ours.
        if len(peer_hello.nonce) != NONCE_SIZE or peer_hello.nonce == nonce:
            raise HandshakeRefused("protocol", "bad nonce")
        own_signed = auth_sign_bytes(
            self.config.chain_id, nonce, peer_hello.nonce, self._own_cert_sha256, peer_fp
        )
        await write_frame(writer, AUTH, self.config.validator_key.sign(own_signed), HANDSHAKE_MAX_FRAME)
        frame = await read_frame(reader, HANDSHAKE_MAX_FRAME)
        # The second frame must be an AUTH.
        if frame.kind != AUTH:
            raise HandshakeRefused("protocol", f"expected AUTH, got frame kind {frame.kind}")
        peer_signed = auth_sign_bytes(
            self.config.chain_id, peer_hello.nonce, nonce, peer_fp, self._own_cert_sha256
        )
        # The peer holds the validator key its certificate names.
        if not self._suite.verify(peer_key, peer_signed, frame.body):
            raise HandshakeRefused(
                "bad signature", "AUTH is not a signature by the certificate's validator key"
            )
        self.metrics.handshakes += 1
        name = self._names.get(peer_key, _short(peer_key))
        queue = _OutboundQueue(self.config.queue_messages, self.config.queue_bytes)
        return _Connection(peer_key, name, reader, writer, outbound, peer_fp, queue)

    def _register(self, conn: _Connection) -> None:
        """Make ``conn`` the peer's connection, or close it when the tie-break keeps the existing one."""
        if self._closing:
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
        self._gone_event(conn.peer_key).clear()
        conn.tasks = [self._spawn(self._read_loop(conn)), self._spawn(self._write_loop(conn))]
        log.info(
            "p2p %s: connected to %s (%s, %s, %s)",
            self._label,
            conn.name,
            conn.address,
            "outbound" if conn.outbound else "inbound",
            conn.tls_version,
        )

    def _dialler(self, conn: _Connection) -> bytes:
        return self._own_key if conn.outbound else conn.peer_key

    async def _read_loop(self, conn: _Connection) -> None:
        reason = "closed by peer"
        try:
            while True:
                frame = await read_frame(conn.reader, self.config.max_frame)
                self.metrics.frames_in += 1
                self.metrics.bytes_in += HEADER.size + 1 + len(frame.body)
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

    async def _write_loop(self, conn: _Connection) -> None:
        reason = "write failed"
        try:
            while True:
                batch = await conn.queue.take(WRITE_BATCH_BYTES)
                data = b"".join(batch)
                conn.writer.write(data)
                self.metrics.frames_out += len(batch)
                self.metrics.bytes_out += len(data)
                try:
                    await asyncio.wait_for(conn.writer.drain(), self.config.stall_timeout)
                except TimeoutError:
                    self.metrics.stalled += 1
                    reason = f"stalled: accepted no data for {self.config.stall_timeout:g} s"
                    log.warning("p2p %s: dropping %s: %s", self._label, conn.name, reason)
                    return
        except (ConnectionError, OSError) as exc:
            reason = f"write failed ({type(exc).__name__})"
        finally:
            self._drop(conn, reason)

    def _drop(self, conn: _Connection, reason: str) -> None:
        """Close ``conn`` (idempotent); if it is the peer's current connection, the peer is gone."""
        if conn.closed:
            return
        conn.closed = True
        current = asyncio.current_task()
        for task in conn.tasks:
            if task is not current:
                task.cancel()
        self._abort(conn.writer)
        if self._conns.get(conn.peer_key) is conn:
            del self._conns[conn.peer_key]
            self.metrics.dropped += len(conn.queue.items)
            self._gone_event(conn.peer_key).set()
            level = logging.DEBUG if self._closing else logging.INFO
            log.log(level, "p2p %s: disconnected from %s: %s", self._label, conn.name, reason)

    def _abort(self, writer: asyncio.StreamWriter | None) -> None:
        """Close the socket at once (no TLS close_notify: the peer may be hostile or stalled).

        None: the TLS transport was never made, and asyncio has already closed the socket.
        """
        if writer is None:
            return
        writer.transport.abort()
        self._spawn(self._reap(writer))

    @staticmethod
    async def _reap(writer: asyncio.StreamWriter) -> None:
        """Wait (bounded) until the aborted connection is gone, so no socket outlives the transport."""
        try:
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
        except Exception:
            return

    def _refuse(self, direction: str, address: str, exc: HandshakeRefused) -> None:
        self.metrics.rejected_handshakes += 1
        self.metrics.rejected[exc.reason] = self.metrics.rejected.get(exc.reason, 0) + 1
        log.warning("p2p %s: refused %s peer %s: %s", self._label, direction, address, exc)
