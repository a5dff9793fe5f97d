"""Checking a commit certificate against a validator set (block sync uses it)."""

from __future__ import annotations

from zhongshu.codec import encode
from zhongshu.crypto import Suite
from zhongshu.ledger.types import PRECOMMIT, CommitCertificate, ValidatorSet, Vote


class InvalidCommit(ValueError):
    """A commit certificate that does not prove its block."""


def check_commit(
    suite: Suite,
    chain_id: str,
    validators: ValidatorSet,
    commit: CommitCertificate,
    block_hash: bytes,
    height: int,
) -> int:
    """Return the verified voting power; raise InvalidCommit unless it exceeds 2/3 of the set."""
    # The certificate names this block and height.
    if commit.block_hash != block_hash or commit.height != height:
        raise InvalidCommit(f"certificate is for another block or height ({commit.height})")
    powers = {v.public_key: v.power for v in validators.validators}
    sign_bytes = encode(Vote(PRECOMMIT, chain_id, height, commit.round, block_hash))
    seen: set[bytes] = set()
    signed = 0
    for sig in commit.signatures:
        # Each signer is a validator, signs once, and its signature verifies.
        if sig.validator not in powers or sig.validator in seen:
            raise InvalidCommit("certificate signer is not a validator or signs twice")
        if not suite.verify(sig.validator, sign_bytes, sig.signature):
            raise InvalidCommit("certificate signature does not verify")
        seen.add(sig.validator)
        signed += powers[sig.validator]
    # Strictly more than 2/3 of the voting power.
    if 3 * signed <= 2 * validators.total_power():
        raise InvalidCommit(f"certificate carries {signed} of {validators.total_power()} voting power")
    return signed
