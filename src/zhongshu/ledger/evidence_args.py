"""The arguments of ``evidence.put``: what a proof bundle reads to name the deposited file.

They live in the ledger layer so that both the evidence contract (which executes them) and the
proof verifier (which summarises them) decode the same struct.
"""

from __future__ import annotations

import msgspec

EVIDENCE_CONTRACT = "evidence"
"""Contract name of evidence deposit."""
EVIDENCE_PUT = "put"
"""Method that deposits a digest."""


class EvidencePut(msgspec.Struct, array_like=True, frozen=True, tag="evidence.put"):
    """``Transaction.args`` of ``evidence.put``: ["evidence.put", digest, name, metadata, payload]."""

    digest: bytes
    """The file's digest (32, 48 or 64 bytes), e.g. SM3 or SHA-256 of its contents."""
    name: str
    """A human name for the file, e.g. ``contract-2024-001.pdf``."""
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    """Small string pairs kept with the digest."""
    payload: bytes = b""
    """Optional small content (at most 64 KiB) stored with the digest."""
