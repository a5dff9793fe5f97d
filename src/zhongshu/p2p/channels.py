"""Many chains over one transport: each chain's messages travel on a channel of their own.

A hub node keeps one mutual-TLS connection to each other node (``Transport``, authenticated by
the nodes' hub keys) and every chain it serves shares it. A MESSAGE frame's body is then::

    u8 n | channel name (n bytes, ASCII) | the chain's own message

``ChannelMux`` reads the name and hands the rest to that channel's handler, with the peer's hub
key as the sender. What one chain receives cannot hold up another:

- each (peer, channel) pair has its own inbox (``INBOX_MESSAGES`` messages, ``INBOX_BYTES``
  bytes) drained by its own task, so a chain slow to handle its messages, or a peer flooding one
  chain, fills only that inbox; beyond its bounds new messages are dropped and counted;
- a channel accepts messages only from its members (the nodes that validate the chain);
- messages for a channel not open yet (a chain its peers started a moment earlier) wait in a
  small shared buffer (``EARLY_MESSAGES``, ``EARLY_BYTES``, ``EARLY_SECONDS``) and are handed
  over when it opens; the oldest go first when it is full.

The transport still limits the bytes read per peer (``inbound_bytes_per_second``) for all
channels together. All methods run on the event loop that started the transport.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from zhongshu.p2p.config import TransportConfig
from zhongshu.p2p.metrics import PeerInfo
from zhongshu.p2p.transport import Transport

log = logging.getLogger("zhongshu.p2p")

INBOX_MESSAGES = 4096
"""Messages waiting per (peer, channel) before new ones from that peer on that channel are dropped."""
INBOX_BYTES = 32 * 1024 * 1024
EARLY_MESSAGES = 1024
"""Messages kept, over all channels, for channels that are not open yet."""
EARLY_BYTES = 16 * 1024 * 1024
EARLY_SECONDS = 10.0
"""How long a message for a channel not open yet is kept."""
MAX_CHANNEL_NAME = 64

Handler = Callable[[bytes, bytes], Awaitable[None] | None]
"""``handler(sender's key on the chain, message)``; an awaitable result is awaited before that peer's next
message on that channel."""


class ChannelError(ValueError):
    """A channel name that cannot be framed, or one opened twice."""


def encode_channel_message(name: str, message: bytes) -> bytes:
    """The transport payload that carries ``message`` on channel ``name``."""
    raw = name.encode("ascii")
    return bytes((len(raw),)) + raw + message


def decode_channel_message(payload: bytes) -> tuple[str, bytes] | None:
    """(channel name, message) of a transport payload; None when it is not one."""
    if not payload:
        return None
    size = payload[0]
    # A name of 1..MAX_CHANNEL_NAME printable ASCII bytes, wholly inside the payload.
    if not 1 <= size <= MAX_CHANNEL_NAME or len(payload) < 1 + size:
        return None
    raw = payload[1 : 1 + size]
    if not all(0x21 <= b <= 0x7E for b in raw):
        return None
    return raw.decode("ascii"), payload[1 + size :]


@dataclass
class _Inbox:
    """Messages from one peer on one channel, waiting for the channel's handler."""

    messages: deque[bytes] = field(default_factory=deque)
    size: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


@dataclass
class ChannelMetrics:
    received: int = 0
    dropped_full: int = 0
    """Messages dropped because their (peer, channel) inbox was full."""
    dropped_not_member: int = 0
    """Messages from a node that is not a member of the channel."""
    handler_errors: int = 0


class Channel:
    """One chain's view of the shared transport: send to and hear from its member nodes only.

    It has the methods a Replica uses of a ``Transport`` (``start``, ``close``, ``send``,
    ``broadcast``, ``peers``), so a chain runs on either.
    """

    def __init__(self, mux: ChannelMux, name: str, members: Mapping[bytes, bytes]) -> None:
        self.mux = mux
        self.name = name
        self.members = {hub: key for hub, key in members.items() if hub != mux.own_key}
        """The other nodes of this chain: hub key (the transport's peer) -> key on this chain."""
        self._hub_keys = {key: hub for hub, key in self.members.items()}
        self.metrics = ChannelMetrics()
        self._handler: Handler | None = None
        self._inboxes: dict[bytes, _Inbox] = {}
        self._closed = False

    def attach(self, handler: Handler) -> None:
        """Deliver this channel's messages to ``handler`` from now on."""
        self._handler = handler

    async def start(self) -> None:
        """Nothing to start: the mux runs the transport."""

    async def close(self) -> None:
        """Stop hearing this channel (its queued messages are dropped); the transport stays up."""
        if self._closed:
            return
        self._closed = True
        self.mux.forget(self)
        tasks = [inbox.task for inbox in self._inboxes.values() if inbox.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._inboxes.clear()

    def send(self, peer_key: bytes, message: bytes) -> bool:
        """Queue ``message`` for the member node whose key on this chain is ``peer_key``; False
        when it is not a connected member."""
        hub = self._hub_keys.get(peer_key)
        if hub is None:
            return False
        return self.mux.transport.send(hub, encode_channel_message(self.name, message))

    def broadcast(self, message: bytes) -> int:
        """Queue ``message`` for every connected member node; return how many."""
        connected = [p.validator for p in self.mux.transport.peers() if p.validator in self.members]
        if not connected:
            return 0
        return self.mux.transport.multicast(connected, encode_channel_message(self.name, message))

    def peers(self) -> list[PeerInfo]:
        """The connected member nodes, named by their keys on this chain, ordered by those keys."""
        found = [
            dataclasses.replace(p, validator=self.members[p.validator])
            for p in self.mux.transport.peers()
            if p.validator in self.members
        ]
        return sorted(found, key=lambda p: p.validator)

    def deliver(self, hub_key: bytes, message: bytes) -> None:
        """Queue a message from the node ``hub_key`` for the handler, which sees the sender's key
        on this chain (dropped when the node is not a member or its inbox is full)."""
        # Only the chain's own nodes speak on its channel.
        if hub_key not in self.members:
            self.metrics.dropped_not_member += 1
            return
        peer_key = self.members[hub_key]
        inbox = self._inboxes.get(peer_key)
        if inbox is None:
            inbox = self._inboxes[peer_key] = _Inbox()
        # Each (peer, channel) inbox is bounded: a flood fills its own inbox, not others'.
        if len(inbox.messages) >= INBOX_MESSAGES or inbox.size + len(message) > INBOX_BYTES:
            self.metrics.dropped_full += 1
            return
        self.metrics.received += 1
        inbox.messages.append(message)
        inbox.size += len(message)
        inbox.ready.set()
        if inbox.task is None and not self._closed:
            inbox.task = asyncio.get_running_loop().create_task(
                self._drain(peer_key, inbox), name=f"channel-{self.name}"
            )

    async def _drain(self, peer_key: bytes, inbox: _Inbox) -> None:
        while True:
            await inbox.ready.wait()
            while inbox.messages:
                message = inbox.messages.popleft()
                inbox.size -= len(message)
                handler = self._handler
                if handler is None:
                    continue
                try:
                    result = handler(peer_key, message)
                    if result is not None:
                        await result
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.metrics.handler_errors += 1
                    log.exception("channel %s: a message from %s failed", self.name, peer_key.hex()[:12])
            inbox.ready.clear()


@dataclass
class _Early:
    at: float
    peer: bytes
    name: str
    message: bytes


class ChannelMux:
    """One node's transport to the other hub nodes, shared by every chain it serves."""

    def __init__(
        self,
        make_transport: Callable[[Callable[[bytes, bytes], None]], Transport],
        own_key: bytes,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``make_transport(on_message)``: the transport to the other nodes, which hands every
        message of an authenticated peer to ``on_message`` (``open_mux`` makes the real one)."""
        self.transport = make_transport(self._on_message)
        self.own_key = own_key
        self._channels: dict[str, Channel] = {}
        self._early: deque[_Early] = deque()
        self._early_bytes = 0
        self._clock = clock
        self.unknown_dropped = 0
        """Messages for channels that never opened in time, or that were not channel messages."""

    async def start(self) -> None:
        await self.transport.start()

    async def close(self) -> None:
        for channel in list(self._channels.values()):
            await channel.close()
        await self.transport.close()

    def open(self, name: str, members: Mapping[bytes, bytes]) -> Channel:
        """The channel ``name`` among ``members`` (hub key -> the node's key on the chain; this
        node's own entry is ignored).

        Messages that came for it before it opened are handed over now.
        """
        # A name fits the one-byte length and is printable ASCII.
        if decode_channel_message(encode_channel_message(name, b"")) is None:
            raise ChannelError(f"channel name {name!r} must be 1 to {MAX_CHANNEL_NAME} printable ASCII bytes")
        # One chain, one channel.
        if name in self._channels:
            raise ChannelError(f"channel {name!r} is open already")
        channel = Channel(self, name, members)
        self._channels[name] = channel
        return channel

    def flush_early(self, channel: Channel) -> None:
        """Hand ``channel`` the messages that came for it before it opened (call after attaching)."""
        self._expire_early()
        kept: deque[_Early] = deque()
        for early in self._early:
            if early.name == channel.name:
                self._early_bytes -= len(early.message)
                channel.deliver(early.peer, early.message)
            else:
                kept.append(early)
        self._early = kept

    def forget(self, channel: Channel) -> None:
        if self._channels.get(channel.name) is channel:
            del self._channels[channel.name]

    def _on_message(self, peer: bytes, payload: bytes) -> None:
        decoded = decode_channel_message(payload)
        if decoded is None:
            self.unknown_dropped += 1
            return
        name, message = decoded
        channel = self._channels.get(name)
        if channel is not None:
            channel.deliver(peer, message)
            return
        self._keep_early(_Early(self._clock(), peer, name, message))

    def _keep_early(self, early: _Early) -> None:
        """Keep a message for a channel not open yet, within the shared bounds (oldest out first)."""
        self._expire_early()
        # One message larger than the whole buffer is never kept.
        if len(early.message) > EARLY_BYTES:
            self.unknown_dropped += 1
            return
        while self._early and (
            len(self._early) >= EARLY_MESSAGES or self._early_bytes + len(early.message) > EARLY_BYTES
        ):
            old = self._early.popleft()
            self._early_bytes -= len(old.message)
            self.unknown_dropped += 1
        self._early.append(early)
        self._early_bytes += len(early.message)

    def _expire_early(self) -> None:
        limit = self._clock() - EARLY_SECONDS
        while self._early and self._early[0].at < limit:
            old = self._early.popleft()
            self._early_bytes -= len(old.message)
            self.unknown_dropped += 1

    def channel_metrics(self) -> dict[str, ChannelMetrics]:
        return {name: c.metrics for name, c in sorted(self._channels.items())}


def open_mux(config: TransportConfig) -> ChannelMux:
    """A mux over a mutual-TLS ``Transport`` of ``config`` (not started yet)."""
    return ChannelMux(functools.partial(Transport, config), config.validator_key.public_bytes())
