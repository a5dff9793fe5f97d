"""The one canonical binary encoding for everything hashed or signed.

Canonical form is MessagePack as msgspec writes it: Structs as arrays of their fields in
declaration order, integers in their shortest form, byte strings as ``bin``, text as ``str``,
map keys sorted. Decoding is strict: a value must re-encode to exactly the bytes it came
from, so one value has one encoding and one hash.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

_encoder = msgspec.msgpack.Encoder(order="sorted")
_json_encoder = msgspec.json.Encoder(order="sorted")


class DecodeError(ValueError):
    """Bytes that are not the canonical encoding of the expected type."""


def encode(value: Any) -> bytes:
    """The canonical bytes of ``value``."""
    return _encoder.encode(value)


_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}


def decode(data: bytes, kind: type[T], *, canonical: bool = True) -> T:
    """Decode ``data`` as ``kind``; with ``canonical`` refuse any non-canonical encoding."""
    dec = _decoders.get(kind)
    if dec is None:
        dec = _decoders[kind] = msgspec.msgpack.Decoder(kind)
    try:
        value: T = dec.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise DecodeError(f"not a valid {getattr(kind, '__name__', kind)}: {exc}") from None
    # One value, one encoding: re-encoding must give the same bytes.
    if canonical and _encoder.encode(value) != data:
        raise DecodeError(f"not the canonical encoding of {getattr(kind, '__name__', kind)}")
    return value


def encode_json(value: Any) -> bytes:
    """JSON for the edges (API, files); never hashed."""
    return _json_encoder.encode(value)


def decode_any(data: bytes) -> Any:
    """Decode MessagePack into plain Python values."""
    try:
        return msgspec.msgpack.decode(data)
    # msgspec raises UnicodeDecodeError, not DecodeError, for a string that is not UTF-8.
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise DecodeError(f"not valid MessagePack: {exc}") from None
