"""Hashing a file with the hash a deposit names (docs/proof-format.md §2, "The digest's hash")."""

from __future__ import annotations

import hashlib
from typing import BinaryIO, Protocol

from zhongshu.ledger.evidence_args import DIGEST_ALGORITHMS

_CHUNK = 1 << 20


class _Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...


class _Tongsuo:
    """SM3 from Tongsuo, for a Python whose OpenSSL lacks it; hashlib's shape."""

    def __init__(self) -> None:
        from tongsuopy.crypto import hashes

        self._h = hashes.Hash(hashes.SM3())

    def update(self, data: bytes, /) -> None:
        self._h.update(data)

    def digest(self) -> bytes:
        return bytes(self._h.finalize())


def _new(algorithm: str) -> _Hash:
    if algorithm == "sm3" and "sm3" not in hashlib.algorithms_available:
        return _Tongsuo()
    return hashlib.new(algorithm.replace("-", "_"))


def digest_file(algorithm: str, stream: BinaryIO) -> bytes:
    """The digest of everything ``stream`` yields, by ``algorithm``, one of DIGEST_ALGORITHMS.

    Reads in chunks, so a file of any size is hashed in constant memory; an OSError while
    reading propagates (the file is unreadable, which says nothing about the proof).
    """
    if algorithm not in DIGEST_ALGORITHMS:
        raise ValueError(f"unknown digest algorithm {algorithm!r}")
    h = _new(algorithm)
    while chunk := stream.read(_CHUNK):
        h.update(chunk)
    return h.digest()
