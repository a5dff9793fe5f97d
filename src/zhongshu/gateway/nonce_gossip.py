"""Hub nodes tell each other the request nonces they accept, so a request replayed to another
node of the hub is refused there too (``replayed-nonce``).

Each accepted (app id, nonce, timestamp) goes to every other hub node on the channel
``~nonces`` of the shared transport (a name no chain can have), as the canonical MessagePack of
that triple; a node that receives one records it in its gate (``AppGate.remember_nonce``).

What it does not close: a replay that reaches a second node before the first node's message
does (one network hop, about a millisecond on a LAN) passes there. A request also binds its
Host: replayed to a node reached under another host name, its signature does not verify.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import msgspec

from zhongshu.gateway.access import AccessRefused
from zhongshu.gateway.appauth import AppGate
from zhongshu.p2p.channels import ChannelMux

log = logging.getLogger("zhongshu.gateway")

CHANNEL = "~nonces"
"""The channel of accepted nonces ('~' is never in a chain name)."""

NonceNote = tuple[str, str, int]
"""(app id, nonce, timestamp ms)."""

_decoder = msgspec.msgpack.Decoder(NonceNote)


def share_nonces(gate: AppGate, mux: ChannelMux, nodes: Iterable[bytes]) -> None:
    """Send every nonce ``gate`` accepts to ``nodes`` (hub keys), and remember theirs."""
    channel = mux.open(CHANNEL, {key: key for key in nodes})

    def on_message(peer: bytes, message: bytes) -> None:
        try:
            app_id, nonce, timestamp_ms = _decoder.decode(message)
            gate.remember_nonce(app_id, nonce, timestamp_ms)
        except (msgspec.DecodeError, ValueError, AccessRefused) as exc:
            log.info("a nonce note from %s was not taken: %s", peer.hex()[:12], exc)

    def on_nonce(app_id: str, nonce: str, timestamp_ms: int) -> None:
        channel.broadcast(msgspec.msgpack.encode((app_id, nonce, timestamp_ms)))

    channel.attach(on_message)
    mux.flush_early(channel)
    gate.on_nonce = on_nonce
