"""Length-prefixed frames over a byte stream.

A frame is a 4-byte big-endian unsigned length ``n`` followed by ``n`` bytes of payload. The
payload's first byte is the message kind; the rest is the body. ``n`` counts the kind byte, so
the smallest valid frame is ``00 00 00 01 <kind>``. A reader refuses a frame whose announced
length exceeds its limit *before* reading the body, so a hostile peer cannot make it buffer
more than the limit; the caller then drops the connection.
"""

from __future__ import annotations

import asyncio
import struct
from typing import NamedTuple

HEADER = struct.Struct(">I")
"""The length prefix: 4 bytes, big-endian, unsigned."""
DEFAULT_MAX_FRAME = 4 * 1024 * 1024
"""Largest payload (kind byte + body) a reader accepts unless configured otherwise: room for a block."""

HELLO = 1
"""Handshake: the sender's chain id, validator key and nonce."""
AUTH = 2
"""Handshake: the sender's validator signature over both nonces and both certificates."""
MESSAGE = 3
"""Application data, handed to ``on_message`` after the handshake."""
KINDS = frozenset({HELLO, AUTH, MESSAGE})


class FrameError(Exception):
    """A frame that breaks the framing rules; the connection it came on must be dropped."""


class FrameTooLarge(FrameError):
    """A frame longer than the limit (announced by a peer, or about to be sent)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class Frame(NamedTuple):
    kind: int
    body: bytes


def encode_frame(kind: int, body: bytes, max_size: int = DEFAULT_MAX_FRAME) -> bytes:
    """The wire bytes of one frame; FrameTooLarge when kind byte + body exceed ``max_size``."""
    # The kind is one byte.
    if not 0 <= kind <= 255:
        raise FrameError(f"frame kind {kind} does not fit in one byte")
    size = 1 + len(body)
    # Never send what a peer with the same limit would refuse.
    if size > max_size:
        raise FrameTooLarge(size, max_size)
    return HEADER.pack(size) + bytes((kind,)) + body


async def read_frame(reader: asyncio.StreamReader, max_size: int = DEFAULT_MAX_FRAME) -> Frame:
    """Read one frame; FrameTooLarge before reading a body over ``max_size``.

    Raises asyncio.IncompleteReadError when the stream ends (cleanly between frames: ``partial``
    is empty), FrameError for an empty frame.
    """
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    # Refuse oversized frames on the announced length, before buffering anything.
    if size > max_size:
        raise FrameTooLarge(size, max_size)
    # A frame holds at least its kind byte.
    if size == 0:
        raise FrameError("empty frame: no kind byte")
    payload = await reader.readexactly(size)
    return Frame(payload[0], payload[1:])


async def write_frame(
    writer: asyncio.StreamWriter, kind: int, body: bytes, max_size: int = DEFAULT_MAX_FRAME
) -> int:
    """Write one frame and wait until the stream buffer drains; return the bytes written."""
    data = encode_frame(kind, body, max_size)
    writer.write(data)
    await writer.drain()
    return len(data)
