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


EVIDENCE_KEY_PREFIX = b"ev/d/"
"""State key of a deposit: this prefix, then the digest (docs/state-layout.md)."""


class EvidenceRecord(msgspec.Struct, array_like=True, frozen=True, tag="evidence.record"):
    """The state value under ``ev/d/<digest>``: what was deposited, by whom, when.

    It lives in the ledger layer so that a state proof's verifier can read it.
    """

    digest: bytes
    name: str
    metadata: dict[str, str]
    payload: bytes
    owner: bytes
    """Public key of the depositor."""
    height: int
    time: int
    tx_hash: bytes


DIGEST_ALGORITHM_KEY = "algorithm"
"""The metadata key by which a deposit names the hash its digest was made with."""

DIGEST_ALGORITHMS: dict[str, int] = {
    "sm3": 32,
    "sha256": 32,
    "sha384": 48,
    "sha512": 64,
    "sha3-256": 32,
    "sha3-384": 48,
    "sha3-512": 64,
}
"""Every hash a deposit may name, with the size of its digest in bytes."""

_DEFAULT_BY_SIZE = {48: "sha384", 64: "sha512"}
_SUITE_HASH = {"sm": "sm3", "intl": "sha256"}


def digest_algorithm(args: EvidencePut, suite: str) -> str | None:
    """The hash the deposit's digest was made with; None when the deposit cannot say.

    The rule (docs/proof-format.md §2, "The digest's hash"): the name in ``metadata["algorithm"]``
    when present; otherwise the chain suite's hash (``sm3`` or ``sha256``) for a 32-byte digest,
    ``sha384`` for 48 bytes, ``sha512`` for 64. None for an unknown name, a size that is not the
    named hash's, or a digest of any other size.
    """
    named = args.metadata.get(DIGEST_ALGORITHM_KEY)
    if named is not None:
        return named if DIGEST_ALGORITHMS.get(named) == len(args.digest) else None
    if len(args.digest) == 32:
        return _SUITE_HASH.get(suite)
    return _DEFAULT_BY_SIZE.get(len(args.digest))
