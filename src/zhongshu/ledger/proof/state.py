"""State proof bundles (``zhongshu-state-proof/1``): a key's value, or its absence, at a height.

A state bundle carries the key, its hash, its value (or null), the state map's proof
(ledger.smt) against the block header's ``state_root``, and the same certification as a
transaction bundle: the block's commit, the validator set, and optionally a newer anchor header
proving the block through its history root. docs/proof-format.md §9 specifies every byte. Under
an evidence key (``ev/d/<digest>``) the value is a deposit's ``EvidenceRecord``, which the
verifier decodes, so a state bundle also proves that a file was deposited, or that it was not,
as of a height.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO

from zhongshu.codec import DecodeError
from zhongshu.crypto import get_suite
from zhongshu.ledger import smt
from zhongshu.ledger.evidence_args import (
    DIGEST_ALGORITHM_KEY,
    EVIDENCE_KEY_PREFIX,
    EvidencePut,
    EvidenceRecord,
    digest_algorithm,
)
from zhongshu.ledger.hashing import compute_block_hash
from zhongshu.ledger.proof.build import Anchor, block_to_json, certify_block, validator_set_to_json
from zhongshu.ledger.proof.common import ProofInvalid, commit_to_json
from zhongshu.ledger.proof.digest import digest_file
from zhongshu.ledger.proof.reader import (
    _ANCHOR_KEYS,
    _BLOCK_KEYS,
    _COMMIT_KEYS,
    _VALIDATOR_SET_KEYS,
    _Anchor,
    _Commit,
    _decode,
    _Obj,
    _read_anchor,
    _read_commit,
    _read_suite,
    _read_validators,
)
from zhongshu.ledger.proof.verify import (
    _check_anchor,
    _check_block_header,
    _check_commits,
    _check_validator_set,
)
from zhongshu.ledger.types import Block, CommitCertificate, Genesis, Header, Validator, ValidatorSet

STATE_FORMAT = "zhongshu-state-proof/1"
"""The format identifier every state bundle carries in ``format``."""

_TOP_KEYS = ("format", "suite", "chain_id", "state", "block", "commit", "validator_set", "anchor")
_STATE_KEYS = ("key", "key_hash", "value", "proof")


@dataclass(frozen=True)
class VerifiedState:
    """What a valid state bundle proves."""

    chain_id: str
    """The chain whose state it is."""
    height: int
    """The height after whose block the key held ``value``."""
    time: int
    """That block's time, milliseconds since the Unix epoch (chosen by its proposer)."""
    block_hash: bytes
    """Hash of that block's header."""
    key: bytes
    """The state key proven."""
    value: bytes | None
    """Its value after block ``height``; None: the key was absent."""
    signed_power: int
    """Voting power whose precommits verified (on the anchor header when anchored)."""
    total_power: int
    """Total voting power of the validator set."""
    anchor_height: int | None = None
    """Height of the newer header that proved the block, when the bundle is anchored."""
    trusted: bool = False
    """True when the validator set, suite and chain id were checked against a trusted genesis."""
    evidence: EvidenceRecord | None = None
    """The deposit under an evidence key (``ev/d/<digest>``) that holds one; else None."""
    algorithm: str | None = None
    """The hash a checked file (or file digest) was compared by; None when none was given."""
    file_checked: bool = False
    """True when a file (or its digest) was given and is the evidence key's digest."""


@dataclass(frozen=True)
class _StateBundle:
    """The state bundle's values, typed and hex-decoded but not yet checked against each other."""

    suite: str
    chain_id: str
    key: bytes
    key_hash: bytes
    value: bytes | None
    proof: bytes
    height: int
    time: int
    block_hash: bytes
    header: bytes
    commit: _Commit | None
    validator_set: bytes
    validators: list[Validator]
    anchor: _Anchor | None


def build_state_bundle(
    suite_name: str,
    key: bytes,
    value: bytes | None,
    proof: smt.SparseMerkleProof,
    block: Block,
    commit: CommitCertificate | None,
    validator_set: ValidatorSet,
    *,
    anchor: Anchor | None = None,
) -> dict[str, Any]:
    """The state bundle proving ``key`` held ``value`` (None: was absent) after ``block``.

    ``proof`` must verify against the block header's ``state_root``. ``validator_set``,
    ``commit`` and ``anchor`` = (newer header, its commit, hashes of blocks 1 .. newer.height-1)
    are as for ``build_bundle``: without an anchor ``commit`` is required; with one it is
    included when given and the block names the same validator set. Raises ValueError when the
    inputs do not fit together.
    """
    h = get_suite(suite_name).hasher()
    header = block.header
    if not smt.verify_proof(h, header.state_root, key, value, proof):
        what = "absence" if value is None else "value"
        raise ValueError(f"the proof does not show the key's {what} under the header's state_root")
    block_hash = compute_block_hash(h, header)
    anchor_json, commit = certify_block(h, header, block_hash, commit, validator_set, anchor)
    return {
        "format": STATE_FORMAT,
        "suite": suite_name,
        "chain_id": header.chain_id,
        "state": {
            "key": key.hex(),
            "key_hash": h(key).hex(),
            "value": None if value is None else value.hex(),
            "proof": smt.encode_proof(proof).hex(),
        },
        "block": block_to_json(header, block_hash),
        "commit": None if commit is None else commit_to_json(commit),
        "validator_set": validator_set_to_json(validator_set),
        "anchor": anchor_json,
    }


def _require_certifies(commit: CommitCertificate, header: Header, block_hash: bytes, what: str) -> None:
    if commit.block_hash != block_hash or commit.height != header.height:
        raise ValueError(f"{what} is for another block than the header given")


def _read_state_bundle(bundle: Any) -> _StateBundle:
    """The typed values of a state bundle; raise ProofInvalid on any shape, type or hex fault."""
    suite = _read_suite(bundle, STATE_FORMAT, "state proof bundle")
    # Every field is present with the right type, none is unexpected, and all hex decodes
    # to a size the format allows.
    top = _Obj(bundle, "", _TOP_KEYS, STATE_FORMAT)
    s = top.obj("state", _STATE_KEYS)
    b = top.obj("block", _BLOCK_KEYS)
    c = top.optional_obj("commit", _COMMIT_KEYS)
    v = top.obj("validator_set", _VALIDATOR_SET_KEYS)
    validators = _read_validators(v, suite)
    a = top.optional_obj("anchor", _ANCHOR_KEYS)
    return _StateBundle(
        suite=suite,
        chain_id=top.text("chain_id"),
        key=s.hex("key"),
        key_hash=s.hex("key_hash", smt.HASH_SIZE),
        value=s.optional_hex("value"),
        proof=s.hex("proof"),
        height=b.uint("height"),
        time=b.uint("time"),
        block_hash=b.hex("hash", smt.HASH_SIZE),
        header=b.hex("header"),
        commit=None if c is None else _read_commit(c, suite),
        validator_set=v.hex("encoded"),
        validators=validators,
        anchor=_read_anchor(a, suite),
    )


def _check_state(p: _StateBundle, header: Header) -> None:
    """The key (the one ``key_hash`` names) holds the value, or is absent, in the state map
    whose root the header holds."""
    h = get_suite(p.suite).hasher()
    # state.key_hash is H(state.key), so neither can be changed alone (an absence proof would
    # otherwise also stand for any other key whose hash shares its path prefix).
    if h(p.key) != p.key_hash:
        raise ProofInvalid("state.key_hash is not the hash of state.key: the bundle was altered")
    # The proof is the canonical encoding of a SparseMerkleProof.
    try:
        proof = smt.decode_proof(p.proof)
    except DecodeError as exc:
        raise ProofInvalid(f"state.proof is not a canonical smtproof: {exc}") from None
    # It leads from H(key) and H(value) (or to an empty slot or another key's leaf) to state_root.
    if not smt.verify_proof(h, header.state_root, p.key, p.value, proof):
        what = "absence of the key" if p.value is None else "key's value"
        raise ProofInvalid(f"state.proof does not prove the {what} under the block's state_root")


def _check_record(p: _StateBundle, header: Header) -> EvidenceRecord | None:
    """The deposit an evidence key holds; None for another key or an absent one."""
    if not p.key.startswith(EVIDENCE_KEY_PREFIX) or p.value is None:
        return None
    digest = p.key[len(EVIDENCE_KEY_PREFIX) :]
    # The value under ev/d/<digest> is a canonical EvidenceRecord of that digest.
    record = _decode(p.value, EvidenceRecord, "state.value (an evidence key's)")
    if record.digest != digest:
        raise ProofInvalid("the evidence record under the key is of another digest")
    # It was deposited at or before the proven height.
    if record.height > header.height or record.time > header.time:
        raise ProofInvalid("the evidence record says it was deposited after the proven block")
    # The digest names a hash this format knows (or its size implies one).
    if _record_algorithm(record, p.suite) is None:
        named = record.metadata.get(DIGEST_ALGORITHM_KEY)
        raise ProofInvalid(
            f"the deposit's digest of {len(record.digest)} bytes is not a digest of "
            + (f"the hash it names ({named!r})" if named is not None else "32, 48 or 64 bytes")
        )
    return record


def _record_algorithm(record: EvidenceRecord, suite: str) -> str | None:
    """The hash a deposit's digest was made with (§2, "The digest's hash")."""
    return digest_algorithm(EvidencePut(record.digest, record.name, record.metadata), suite)


def _check_file(
    p: _StateBundle, record: EvidenceRecord | None, file_digest: bytes | None, file: BinaryIO | None
) -> str | None:
    """The hash a given file (or file digest) was compared by; None when none was given."""
    if file is None and file_digest is None:
        return None
    # A file is checked against an evidence key only.
    if not p.key.startswith(EVIDENCE_KEY_PREFIX):
        raise ProofInvalid("a file was given, but this state proof is not of an evidence key (ev/d/...)")
    digest = p.key[len(EVIDENCE_KEY_PREFIX) :]
    # The hash: the deposit's (present), else the default for the digest's size (absent).
    if record is not None:
        algorithm = _record_algorithm(record, p.suite)
    else:
        algorithm = digest_algorithm(EvidencePut(digest, ""), p.suite)
    if algorithm is None:
        raise ProofInvalid(f"the key's digest of {len(digest)} bytes is not a digest of 32, 48 or 64 bytes")
    # The file is the one the key names.
    given = digest_file(algorithm, file) if file is not None else file_digest or b""
    if given != digest:
        raise ProofInvalid(
            f"the file's {algorithm} digest {given.hex()} is not the key's digest {digest.hex()}"
        )
    return algorithm


def verify_state_bundle(
    bundle: Any,
    *,
    trusted: Genesis | None,
    file: BinaryIO | None = None,
    file_digest: bytes | None = None,
) -> VerifiedState:
    """Check a state bundle completely, offline; raise ProofInvalid at the first failing check.

    Valid means: ``state.key_hash`` is the hash of the key, and the state map's proof leads from
    the key and its value (or from the key's absence) to the ``state_root`` of a block header
    certified by more than 2/3 of the voting power of the validator set the header (or a newer
    anchor header proving it through its history root) names; with ``trusted``, that set, the
    suite and the chain id are the genesis's. The value under an evidence key must be a
    canonical deposit record of the key's digest. With ``file`` (a binary stream) or
    ``file_digest``, the key must be an evidence key and the file's digest the key's. Any
    ``bundle`` value that is not a valid state bundle raises ProofInvalid; an OSError reading
    ``file`` propagates.
    """
    p = _read_state_bundle(bundle)
    suite = get_suite(p.suite)
    header = _check_block_header(suite, p)
    # One chain throughout: the header's and the bundle's chain id agree.
    if header.chain_id != p.chain_id:
        raise ProofInvalid(f"chain ids disagree: bundle {p.chain_id!r}, header {header.chain_id!r}")
    _check_state(p, header)
    record = _check_record(p, header)
    algorithm = _check_file(p, record, file_digest, file)
    certified = _check_anchor(suite, p, header)
    vset = _check_validator_set(suite, p, certified[0], trusted)
    signed = _check_commits(suite, p, header, certified, vset)
    return VerifiedState(
        chain_id=p.chain_id,
        height=header.height,
        time=header.time,
        block_hash=p.block_hash,
        key=p.key,
        value=p.value,
        signed_power=signed,
        total_power=vset.total_power(),
        anchor_height=None if p.anchor is None else certified[0].height,
        trusted=trusted is not None,
        evidence=record,
        algorithm=algorithm,
        file_checked=algorithm is not None,
    )
