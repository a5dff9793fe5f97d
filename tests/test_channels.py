"""Channels: many chains over one transport (zhongshu.p2p.channels), in process.

The mux is driven through its transport callback (``_on_message``, what the transport calls for
each MESSAGE frame of an authenticated peer) and a transport stand-in that records sends; the
real transport's TLS and framing have their own tests (test_p2p.py), and the real thing runs
in test_hub_network.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from zhongshu.p2p import channels
from zhongshu.p2p.channels import (
    Channel,
    ChannelError,
    ChannelMux,
    decode_channel_message,
    encode_channel_message,
)
from zhongshu.p2p.metrics import PeerInfo

HUB_A, HUB_B, HUB_OWN = b"A" * 65, b"B" * 65, b"O" * 65
CHAIN_A, CHAIN_B = b"a" * 32, b"b" * 32


def _peer(key: bytes) -> PeerInfo:
    return PeerInfo(key, key[:1].decode(), True, "x:1", "y:2", "TLSv1.3", "c", b"", 0, 0, 0)


class _Transport:
    """Records what the mux sends; lists two connected peers."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    def send(self, peer: bytes, payload: bytes) -> bool:
        self.sent.append((peer, payload))
        return True

    def multicast(self, peers: Any, payload: bytes) -> int:
        peers = list(peers)
        self.sent.extend((p, payload) for p in peers)
        return len(peers)

    def peers(self) -> list[PeerInfo]:
        return [_peer(HUB_A), _peer(HUB_B)]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _mux(clock: _Clock | None = None) -> ChannelMux:
    return ChannelMux(lambda on_message: _Transport(), HUB_OWN, clock=clock or _Clock())  # type: ignore[arg-type,return-value]


def test_channel_message_round_trip_and_malformed() -> None:
    payload = encode_channel_message("main", b"\x01\x02")
    assert payload == b"\x04main\x01\x02"
    assert decode_channel_message(payload) == ("main", b"\x01\x02")
    # Empty, zero-length name, name longer than the payload, unprintable name.
    for bad in (b"", b"\x00abc", b"\x09short", b"\x02a\x00rest", b"\x41" + b"x" * 65):
        assert decode_channel_message(bad) is None


def test_open_refuses_bad_names_and_twice() -> None:
    mux = _mux()
    mux.open("main", {})
    with pytest.raises(ChannelError):
        mux.open("main", {})
    for name in ("", "a b", "x" * 65, "链"):
        with pytest.raises((ChannelError, UnicodeEncodeError)):
            mux.open(name, {})


def test_members_only_and_keys_translated() -> None:
    """A channel hears its members only, under their keys on the chain, and sends to their hub keys."""

    async def run() -> None:
        mux = _mux()
        channel = mux.open("main", {HUB_A: CHAIN_A, HUB_OWN: b"own"})
        heard: list[tuple[bytes, bytes]] = []
        channel.attach(lambda peer, message: heard.append((peer, message)))
        mux._on_message(HUB_A, encode_channel_message("main", b"hello"))
        mux._on_message(HUB_B, encode_channel_message("main", b"not a member"))
        await asyncio.sleep(0.01)
        assert heard == [(CHAIN_A, b"hello")]
        assert channel.metrics.dropped_not_member == 1
        # Peers are listed under their chain keys, members only.
        assert [p.validator for p in channel.peers()] == [CHAIN_A]
        assert channel.send(CHAIN_A, b"reply")
        assert not channel.send(CHAIN_B, b"to a stranger")
        assert channel.broadcast(b"all") == 1
        transport = mux.transport
        assert isinstance(transport, _Transport)
        assert transport.sent == [
            (HUB_A, encode_channel_message("main", b"reply")),
            (HUB_A, encode_channel_message("main", b"all")),
        ]
        await channel.close()

    asyncio.run(run())


def test_a_full_inbox_drops_only_its_own_messages() -> None:
    """A peer flooding one chain while that chain's handler is stuck fills that (peer, chain)
    inbox only: the same peer's messages on another chain still go through."""

    async def run() -> None:
        mux = _mux()
        slow = mux.open("slow", {HUB_A: CHAIN_A})
        fast = mux.open("fast", {HUB_A: CHAIN_A})
        release = asyncio.Event()
        fast_heard: list[bytes] = []

        async def stuck(peer: bytes, message: bytes) -> None:
            await release.wait()

        slow.attach(stuck)
        fast.attach(lambda peer, message: fast_heard.append(message))
        for i in range(channels.INBOX_MESSAGES + 100):
            mux._on_message(HUB_A, encode_channel_message("slow", i.to_bytes(4, "big")))
        mux._on_message(HUB_A, encode_channel_message("fast", b"vote"))
        await asyncio.sleep(0.01)
        assert fast_heard == [b"vote"]
        # The flood came in one burst: the inbox holds its bound, the rest are dropped.
        assert slow.metrics.received == channels.INBOX_MESSAGES
        assert slow.metrics.dropped_full == 100
        release.set()
        await slow.close()
        await fast.close()

    asyncio.run(run())


def test_early_messages_wait_for_their_channel_within_bounds() -> None:
    async def run() -> None:
        clock = _Clock()
        mux = _mux(clock)
        mux._on_message(HUB_A, encode_channel_message("new", b"first"))
        clock.now = 5.0
        mux._on_message(HUB_A, encode_channel_message("new", b"second"))
        mux._on_message(HUB_A, encode_channel_message("other", b"kept for other"))
        clock.now = 12.0
        channel = mux.open("new", {HUB_A: CHAIN_A})
        heard: list[bytes] = []
        channel.attach(lambda peer, message: heard.append(message))
        mux.flush_early(channel)
        await asyncio.sleep(0.01)
        # The first is older than EARLY_SECONDS (10 s) at the open: expired; the second arrives.
        assert heard == [b"second"]
        assert [e.name for e in mux._early] == ["other"]
        await channel.close()

    asyncio.run(run())


def test_early_buffer_is_bounded() -> None:
    mux = _mux()
    for i in range(channels.EARLY_MESSAGES + 10):
        mux._on_message(HUB_A, encode_channel_message(f"c{i % 7}", b"x"))
    assert len(mux._early) == channels.EARLY_MESSAGES
    assert mux.unknown_dropped == 10
    mux._on_message(HUB_A, encode_channel_message("big", b"y" * (channels.EARLY_BYTES + 1)))
    assert mux._early_bytes <= channels.EARLY_BYTES
    mux._on_message(HUB_A, b"\x00not a channel message")
    assert mux.unknown_dropped == 12


def test_a_closed_channel_is_forgotten() -> None:
    async def run() -> None:
        mux = _mux()
        channel = mux.open("gone", {HUB_A: CHAIN_A})
        await channel.close()
        assert "gone" not in mux._channels
        # Its name can be opened again (a node stops a chain, then serves it read-only).
        assert isinstance(mux.open("gone", {HUB_A: CHAIN_A}), Channel)

    asyncio.run(run())
