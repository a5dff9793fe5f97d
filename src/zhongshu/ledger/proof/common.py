"""What the builder and the verifier share: the format, the result and the error types."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from zhongshu.codec import DecodeError, decode
from zhongshu.ledger.evidence_args import EVIDENCE_CONTRACT, EVIDENCE_PUT, EvidencePut
from zhongshu.ledger.proof.json_text import JsonTextError, decode_strict_json
from zhongshu.ledger.types import (
    CommitCertificate,
    Header,
    Transaction,
)

FORMAT = "zhongshu-proof/2"
"""The format identifier every bundle carries in ``format``."""

_UINT64_LIMIT = 1 << 64
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
T = TypeVar("T")


class ProofInvalid(ValueError):
    """A bundle that does not prove what it claims; ``reason`` says which check failed."""

    def __init__(self, reason: str) -> None:
        # One line, and text any terminal can print (a lone surrogate is shown escaped).
        one_line = " ".join(reason.split())
        self.reason = one_line.encode("utf-8", "backslashreplace").decode("utf-8")
        super().__init__(self.reason)


PUBLIC_KEY_SIZES = {"sm": 65, "intl": 32}
"""Bytes of a public key per suite (§1): SM2 ``04 || x || y``, Ed25519 32."""
SIGNATURE_SIZES = {"sm": range(8, 73), "intl": range(64, 65)}
"""Bytes of a signature per suite (§1): SM2 DER of two INTEGERs, 8 to 72; Ed25519 exactly 64."""


@dataclass(frozen=True)
class VerifiedProof:
    """What a valid bundle proves."""

    chain_id: str
    """The chain the transaction was committed on."""
    genesis_hash: bytes
    """The genesis hash the transaction was signed for; checked only with a trusted genesis."""
    height: int
    """Height of the block holding the transaction."""
    time: int
    """That block's time, milliseconds since the Unix epoch (chosen by its proposer)."""
    tx_hash: bytes
    """Hash of the transaction's sign-bytes."""
    block_hash: bytes
    """Hash of the block's header."""
    digest: bytes | None
    """The file digest an ``evidence.put`` deposited; None for other transactions."""
    signed_power: int
    """Voting power whose precommits verified (on the anchor header when anchored)."""
    total_power: int
    """Total voting power of the validator set."""
    name: str | None = None
    """The deposited file's name, for ``evidence.put``."""
    anchor_height: int | None = None
    """Height of the newer header that proved the block, when the bundle is anchored."""
    trusted: bool = False
    """True when the validator set was checked against a trusted genesis."""
    algorithm: str | None = None
    """The hash the deposited digest was made with (§2, "The digest's hash"), for ``evidence.put``."""


def load_bundle(data: bytes | str) -> Any:
    """The JSON value of a bundle's text; raise ProofInvalid unless it is strict JSON (§6).

    Strict: UTF-8, no key twice in one object at any depth, no lone surrogate, no NaN or
    Infinity. ``verify_bundle`` then checks the value's shape.
    """
    try:
        return decode_strict_json(data)
    except JsonTextError as exc:
        raise ProofInvalid(f"the bundle is not strict JSON: {exc}") from None


def _hexes(items: Sequence[bytes]) -> list[str]:
    return [b.hex() for b in items]


def commit_to_json(commit: CommitCertificate) -> dict[str, Any]:
    return {
        "height": commit.height,
        "round": commit.round,
        "block_hash": commit.block_hash.hex(),
        "signatures": [
            {"validator": s.validator.hex(), "signature": s.signature.hex()} for s in commit.signatures
        ],
    }


def _evidence_args(tx: Transaction) -> EvidencePut | None:
    """The decoded arguments of an ``evidence.put``; None for any other transaction."""
    if tx.contract != EVIDENCE_CONTRACT or tx.method != EVIDENCE_PUT:
        return None
    return decode(tx.args, EvidencePut, canonical=True)


def _evidence_json(tx: Transaction, header: Header) -> dict[str, Any] | None:
    try:
        args = _evidence_args(tx)
    except DecodeError:
        return None
    if args is None:
        return None
    return {"digest": args.digest.hex(), "name": args.name, "height": header.height, "time": header.time}
