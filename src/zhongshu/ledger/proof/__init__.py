"""Offline proof bundles: one JSON document that proves a transaction was committed.

A bundle carries the encoded transaction, its receipt, the block header, RFC 6962 inclusion
paths for both, the validator set and a commit certificate of more than 2/3 of its voting power.
Optionally a newer ("anchor") header proves the block through its history root, so one recent
signed header proves any older block. ``verify_bundle`` needs nothing but the bundle, the hash
function and the signature scheme; docs/proof-format.md specifies every byte.

A state bundle (``zhongshu-state-proof/1``, ``verify_state_bundle``) proves instead a key's
value, or its absence, at a height, by the state map's proof against the header's state_root.
"""

from zhongshu.ledger.proof.build import build_bundle
from zhongshu.ledger.proof.common import FORMAT, ProofInvalid, VerifiedProof, load_bundle
from zhongshu.ledger.proof.digest import digest_file
from zhongshu.ledger.proof.state import (
    STATE_FORMAT,
    VerifiedState,
    build_state_bundle,
    verify_state_bundle,
)
from zhongshu.ledger.proof.verify import verify_bundle

__all__ = [
    "FORMAT",
    "STATE_FORMAT",
    "ProofInvalid",
    "VerifiedProof",
    "VerifiedState",
    "build_bundle",
    "build_state_bundle",
    "digest_file",
    "load_bundle",
    "verify_bundle",
    "verify_state_bundle",
]
