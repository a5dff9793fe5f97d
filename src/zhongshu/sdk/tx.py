"""Signed transactions for a chain: the sign-bytes of docs/access-spec.md, signed by a key."""

from __future__ import annotations

import secrets
from typing import Any

from zhongshu.codec import encode
from zhongshu.crypto import PrivateKey
from zhongshu.ledger.evidence_args import DIGEST_ALGORITHM_KEY, EvidencePut
from zhongshu.ledger.signing import sign_body
from zhongshu.ledger.types import Transaction, TxBody

DEFAULT_VALIDITY = 10_000
"""Blocks a transaction stays valid for, by default."""


def sign_tx(
    key: PrivateKey,
    chain_id: str,
    genesis_hash: bytes,
    contract: str,
    method: str,
    args: Any,
    valid_until: int,
    nonce: int | None = None,
) -> Transaction:
    """A signed transaction for the chain ``chain_id`` of genesis ``genesis_hash`` (its status's
    ``genesis_hash``); ``args`` is a msgspec Struct (or bytes already encoded)."""
    raw_args = args if isinstance(args, bytes) else encode(args)
    body = TxBody(
        chain_id,
        genesis_hash,
        key.public_bytes(),
        contract,
        method,
        raw_args,
        valid_until,
        secrets.randbits(63) if nonce is None else nonce,
    )
    return sign_body(key, body)


def evidence_tx(
    key: PrivateKey,
    chain_id: str,
    genesis_hash: bytes,
    digest: bytes,
    name: str,
    valid_until: int,
    metadata: dict[str, str] | None = None,
    payload: bytes = b"",
    algorithm: str | None = None,
) -> Transaction:
    """A signed ``evidence.put`` of ``digest``; ``algorithm`` (e.g. ``sha512``) names the hash the
    digest was made with, recorded as ``metadata["algorithm"]`` (docs/proof-format.md §2). Left
    out, a verifier takes the suite's hash for 32 bytes, sha384 for 48 and sha512 for 64."""
    meta = dict(metadata or {})
    if algorithm is not None:
        meta[DIGEST_ALGORITHM_KEY] = algorithm
    args = EvidencePut(digest, name, meta, payload)
    return sign_tx(key, chain_id, genesis_hash, "evidence", "put", args, valid_until)
