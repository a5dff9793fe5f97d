"""Offline proof bundles: one JSON document that proves a transaction was committed.

A bundle carries the encoded transaction, its receipt, the block header, RFC 6962 inclusion
paths for both, the validator set and a commit certificate of more than 2/3 of its voting power.
Optionally a newer ("anchor") header proves the block through its history root, so one recent
signed header proves any older block. ``verify_bundle`` needs nothing but the bundle, the hash
function and the signature scheme; docs/proof-format.md specifies every byte.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from zhongshu.codec import DecodeError, decode, encode
from zhongshu.crypto import SUITE_NAMES, Suite, get_suite
from zhongshu.ledger.evidence_args import EVIDENCE_CONTRACT, EVIDENCE_PUT, EvidencePut
from zhongshu.ledger.hashing import (
    compute_block_hash,
    compute_tx_hash,
    compute_validator_set_hash,
)
from zhongshu.ledger.merkle import (
    ProofError,
    hash_leaf,
    inclusion_proof,
    root_from_leaf_hashes,
    verify_inclusion,
)
from zhongshu.ledger.types import (
    HASH_SIZE,
    PRECOMMIT,
    STATUS_OK,
    Block,
    CommitCertificate,
    Genesis,
    Header,
    Receipt,
    Transaction,
    Validator,
    ValidatorSet,
    Vote,
)

FORMAT = "zhongshu-proof/1"
"""The format identifier every bundle carries in ``format``."""

_UINT64_LIMIT = 1 << 64
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
T = TypeVar("T")


class ProofInvalid(ValueError):
    """A bundle that does not prove what it claims; ``reason`` says which check failed."""

    def __init__(self, reason: str) -> None:
        self.reason = " ".join(reason.split())
        super().__init__(self.reason)


@dataclass(frozen=True)
class VerifiedProof:
    """What a valid bundle proves."""

    chain_id: str
    """The chain the transaction was committed on."""
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


# ----------------------------------------------------------------------------------------------
# Building


def build_bundle(
    suite_name: str,
    block: Block,
    receipts: list[Receipt],
    tx_index: int,
    commit: CommitCertificate | None,
    validator_set: ValidatorSet,
    *,
    anchor: tuple[Header, CommitCertificate, list[bytes]] | None = None,
) -> dict[str, Any]:
    """The proof bundle of ``block.txs[tx_index]`` as plain JSON-able values.

    ``validator_set`` is the set that signs the certified header: the block's, or the anchor's
    when ``anchor`` = (newer header, its commit, hashes of blocks 1 .. newer.height-1) is given.
    Without an anchor ``commit`` is required; with one it is included when given and the block
    names the same validator set. Raises ValueError when the inputs do not fit together.
    """
    h = get_suite(suite_name).hasher()
    header = block.header
    if len(receipts) != len(block.txs) or header.tx_count != len(block.txs):
        raise ValueError("the block, its header's tx_count and the receipts disagree in number")
    if not 0 <= tx_index < len(block.txs):
        raise ValueError(f"tx_index {tx_index} outside a block of {len(block.txs)} transactions")
    block_hash = compute_block_hash(h, header)
    tx_leaves = [hash_leaf(h, encode(tx)) for tx in block.txs]
    receipt_leaves = [hash_leaf(h, encode(r)) for r in receipts]
    if root_from_leaf_hashes(h, tx_leaves) != header.tx_root:
        raise ValueError("the transactions do not match the header's tx_root")
    if root_from_leaf_hashes(h, receipt_leaves) != header.receipt_root:
        raise ValueError("the receipts do not match the header's receipt_root")
    vset_hash = compute_validator_set_hash(h, validator_set)
    tx = block.txs[tx_index]
    tx_hash = compute_tx_hash(h, tx)

    anchor_json: dict[str, Any] | None = None
    if anchor is not None:
        a_header, a_commit, hashes = anchor
        a_hash = compute_block_hash(h, a_header)
        if a_header.height <= header.height or len(hashes) != a_header.height - 1:
            raise ValueError("the anchor must be newer than the block and come with its history")
        if hashes[header.height - 1] != block_hash:
            raise ValueError("the history's block hash at the block's height is not the block's")
        history_leaves = [hash_leaf(h, bh) for bh in hashes]
        if root_from_leaf_hashes(h, history_leaves) != a_header.history_root:
            raise ValueError("the block hashes do not match the anchor header's history_root")
        _require_certifies(a_commit, a_header, a_hash, "the anchor commit")
        if a_header.validator_set_hash != vset_hash:
            raise ValueError("the validator set is not the one the anchor header names")
        anchor_json = {
            "height": a_header.height,
            "hash": a_hash.hex(),
            "header": encode(a_header).hex(),
            "history_path": _hexes(inclusion_proof(h, history_leaves, header.height - 1)),
            "commit": _commit_json(a_commit),
        }
        # The block's own commit is an extra check, possible only under the same validator set.
        if header.validator_set_hash != vset_hash:
            commit = None
    elif commit is None:
        raise ValueError("a bundle without an anchor needs the block's commit certificate")
    elif header.validator_set_hash != vset_hash:
        raise ValueError("the validator set is not the one the block header names")
    if commit is not None:
        _require_certifies(commit, header, block_hash, "the commit")

    return {
        "format": FORMAT,
        "suite": suite_name,
        "chain_id": header.chain_id,
        "tx": {
            "index": tx_index,
            "hash": tx_hash.hex(),
            "encoded": encode(tx).hex(),
            "path": _hexes(inclusion_proof(h, tx_leaves, tx_index)),
        },
        "receipt": {
            "encoded": encode(receipts[tx_index]).hex(),
            "path": _hexes(inclusion_proof(h, receipt_leaves, tx_index)),
        },
        "block": {
            "height": header.height,
            "time": header.time,
            "hash": block_hash.hex(),
            "header": encode(header).hex(),
        },
        "commit": None if commit is None else _commit_json(commit),
        "validator_set": {
            "encoded": encode(validator_set).hex(),
            "validators": [
                {"public_key": v.public_key.hex(), "power": v.power, "name": v.name}
                for v in validator_set.validators
            ],
        },
        "evidence": _evidence_json(tx, header),
        "anchor": anchor_json,
    }


def _require_certifies(commit: CommitCertificate, header: Header, block_hash: bytes, what: str) -> None:
    if commit.block_hash != block_hash or commit.height != header.height:
        raise ValueError(f"{what} is for another block than the header given")


def _hexes(items: Sequence[bytes]) -> list[str]:
    return [b.hex() for b in items]


def _commit_json(commit: CommitCertificate) -> dict[str, Any]:
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


# ----------------------------------------------------------------------------------------------
# Reading the JSON: every field present, nothing unexpected, every value of the right type


class _Obj:
    """One JSON object of the bundle; refuses missing and unexpected keys."""

    def __init__(self, value: Any, where: str, keys: tuple[str, ...]) -> None:
        name = where or "the bundle"
        if not isinstance(value, dict):
            raise ProofInvalid(f"{name} must be a JSON object")
        for key in keys:
            if key not in value:
                raise ProofInvalid(f"{self._at(where, key)} is missing: the bundle is incomplete")
        for key in value:
            if key not in keys:
                raise ProofInvalid(
                    f"unexpected field {self._at(where, str(key))}: {FORMAT} has no such field"
                )
        self._value: dict[str, Any] = value
        self._where = where

    @staticmethod
    def _at(where: str, key: str) -> str:
        return f"{where}.{key}" if where else key

    @property
    def where(self) -> str:
        return self._where

    def field(self, key: str) -> str:
        return self._at(self._where, key)

    def text(self, key: str) -> str:
        v = self._value[key]
        if not isinstance(v, str):
            raise ProofInvalid(f"{self.field(key)} must be a string")
        return v

    def uint(self, key: str) -> int:
        v = self._value[key]
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < _UINT64_LIMIT:
            raise ProofInvalid(f"{self.field(key)} must be an integer from 0 to 2^64-1")
        return v

    def hex(self, key: str, size: int | None = None) -> bytes:
        return _hex_value(self._value[key], self.field(key), size)

    def hexes(self, key: str, size: int) -> list[bytes]:
        return [_hex_value(v, f"{self.field(key)}[{i}]", size) for i, v in enumerate(self.items(key))]

    def items(self, key: str) -> list[Any]:
        v = self._value[key]
        if not isinstance(v, list):
            raise ProofInvalid(f"{self.field(key)} must be a JSON array")
        return v

    def obj(self, key: str, keys: tuple[str, ...]) -> _Obj:
        return _Obj(self._value[key], self.field(key), keys)

    def optional_obj(self, key: str, keys: tuple[str, ...]) -> _Obj | None:
        return None if self._value[key] is None else self.obj(key, keys)


def _hex_value(v: Any, where: str, size: int | None) -> bytes:
    if not isinstance(v, str) or not _HEX.fullmatch(v):
        raise ProofInvalid(f"{where} must be lowercase hex with an even number of digits")
    raw = bytes.fromhex(v)
    if size is not None and len(raw) != size:
        raise ProofInvalid(f"{where} must be {size} bytes, not {len(raw)}")
    return raw


@dataclass(frozen=True)
class _Commit:
    where: str
    height: int
    round: int
    block_hash: bytes
    signatures: list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class _Anchor:
    height: int
    hash: bytes
    header: bytes
    history_path: list[bytes]
    commit: _Commit


@dataclass(frozen=True)
class _Bundle:
    """The bundle's values, typed and hex-decoded but not yet checked against each other."""

    suite: str
    chain_id: str
    tx_index: int
    tx_hash: bytes
    tx: bytes
    tx_path: list[bytes]
    receipt: bytes
    receipt_path: list[bytes]
    height: int
    time: int
    block_hash: bytes
    header: bytes
    commit: _Commit | None
    validator_set: bytes
    validators: list[Validator]
    evidence: tuple[bytes, str, int, int] | None
    anchor: _Anchor | None


_TOP_KEYS = (
    "format",
    "suite",
    "chain_id",
    "tx",
    "receipt",
    "block",
    "commit",
    "validator_set",
    "evidence",
    "anchor",
)
_COMMIT_KEYS = ("height", "round", "block_hash", "signatures")


def _read_commit(c: _Obj) -> _Commit:
    sigs = []
    for i, item in enumerate(c.items("signatures")):
        s = _Obj(item, f"{c.field('signatures')}[{i}]", ("validator", "signature"))
        sigs.append((s.hex("validator"), s.hex("signature")))
    return _Commit(c.where, c.uint("height"), c.uint("round"), c.hex("block_hash", HASH_SIZE), sigs)


def _read_bundle(bundle: Any) -> _Bundle:
    """The typed values of ``bundle``; raise ProofInvalid on any shape, type or hex fault."""
    # The bundle is a JSON object of a format this verifier reads.
    if not isinstance(bundle, dict):
        raise ProofInvalid("the bundle must be a JSON object")
    if "format" not in bundle:
        raise ProofInvalid(f"format is missing: not a proof bundle ({FORMAT})")
    if bundle["format"] != FORMAT:
        raise ProofInvalid(f"unknown proof format {bundle['format']!r}: this verifier reads {FORMAT}")
    # The suite is one this verifier knows.
    if bundle.get("suite") not in SUITE_NAMES:
        raise ProofInvalid(f"unknown suite {bundle.get('suite')!r}: expected one of {', '.join(SUITE_NAMES)}")
    # Every field is present with the right type, none is unexpected, and all hex decodes.
    top = _Obj(bundle, "", _TOP_KEYS)
    t = top.obj("tx", ("index", "hash", "encoded", "path"))
    r = top.obj("receipt", ("encoded", "path"))
    b = top.obj("block", ("height", "time", "hash", "header"))
    c = top.optional_obj("commit", _COMMIT_KEYS)
    v = top.obj("validator_set", ("encoded", "validators"))
    validators = []
    for i, item in enumerate(v.items("validators")):
        e = _Obj(item, f"{v.field('validators')}[{i}]", ("public_key", "power", "name"))
        validators.append(Validator(e.hex("public_key"), e.uint("power"), e.text("name")))
    ev = top.optional_obj("evidence", ("digest", "name", "height", "time"))
    a = top.optional_obj("anchor", ("height", "hash", "header", "history_path", "commit"))
    return _Bundle(
        suite=top.text("suite"),
        chain_id=top.text("chain_id"),
        tx_index=t.uint("index"),
        tx_hash=t.hex("hash", HASH_SIZE),
        tx=t.hex("encoded"),
        tx_path=t.hexes("path", HASH_SIZE),
        receipt=r.hex("encoded"),
        receipt_path=r.hexes("path", HASH_SIZE),
        height=b.uint("height"),
        time=b.uint("time"),
        block_hash=b.hex("hash", HASH_SIZE),
        header=b.hex("header"),
        commit=None if c is None else _read_commit(c),
        validator_set=v.hex("encoded"),
        validators=validators,
        evidence=None
        if ev is None
        else (ev.hex("digest"), ev.text("name"), ev.uint("height"), ev.uint("time")),
        anchor=None
        if a is None
        else _Anchor(
            a.uint("height"),
            a.hex("hash", HASH_SIZE),
            a.hex("header"),
            a.hexes("history_path", HASH_SIZE),
            _read_commit(a.obj("commit", _COMMIT_KEYS)),
        ),
    )


# ----------------------------------------------------------------------------------------------
# Verifying


def _decode(data: bytes, kind: type[T], where: str) -> T:
    try:
        return decode(data, kind, canonical=True)
    except DecodeError as exc:
        raise ProofInvalid(f"{where} is not a canonical {kind.__name__}: {exc}") from None


def _check_inclusion(
    suite: Suite, index: int, size: int, leaf: bytes, path: list[bytes], root: bytes, what: str
) -> None:
    h = suite.hasher()
    try:
        verify_inclusion(h, index, size, hash_leaf(h, leaf), path, root)
    except ProofError as exc:
        raise ProofInvalid(f"{what}: {exc}") from None


def _check_transaction(suite: Suite, p: _Bundle) -> tuple[Transaction, bytes]:
    """The transaction and its hash."""
    # The transaction decodes canonically and tx.hash is the hash of its sign-bytes.
    tx = _decode(p.tx, Transaction, "tx.encoded")
    tx_hash = compute_tx_hash(suite.hasher(), tx)
    if tx_hash != p.tx_hash:
        raise ProofInvalid("tx.hash is not the hash of tx.encoded: the bundle was altered")
    # The sender signed it.
    if not suite.verify(tx.sender, tx.sign_bytes(), tx.signature):
        raise ProofInvalid("the sender's signature on the transaction does not verify")
    return tx, tx_hash


def _check_header(suite: Suite, p: _Bundle, tx: Transaction) -> Header:
    """The block header, which holds the transaction's chain id."""
    # The header decodes canonically and hashes to block.hash.
    header = _decode(p.header, Header, "block.header")
    if compute_block_hash(suite.hasher(), header) != p.block_hash:
        raise ProofInvalid("block.hash is not the hash of block.header: the bundle was altered")
    # block.height and block.time are the header's own, and the height is a real one.
    if (p.height, p.time) != (header.height, header.time) or header.height < 1:
        raise ProofInvalid("block.height or block.time differs from the encoded header")
    # One chain throughout: the header's, the transaction's and the bundle's chain id agree.
    if not header.chain_id == tx.chain_id == p.chain_id:
        raise ProofInvalid(
            f"chain ids disagree: bundle {p.chain_id!r}, header {header.chain_id!r}, tx {tx.chain_id!r}"
        )
    return header


def _check_evidence(
    p: _Bundle, tx: Transaction, header: Header, file_digest: bytes | None
) -> EvidencePut | None:
    """The deposit's arguments for an ``evidence.put``, else None."""
    try:
        args = _evidence_args(tx)
    except DecodeError as exc:
        raise ProofInvalid(f"the evidence.put arguments do not decode: {exc}") from None
    # The evidence summary is exactly what the arguments and the header say (or null).
    truth = None if args is None else (args.digest, args.name, header.height, header.time)
    if p.evidence != truth:
        raise ProofInvalid("the evidence summary differs from what the transaction and header say")
    # The file checked is the file deposited.
    if file_digest is not None and (args is None or file_digest != args.digest):
        deposited = "deposits no digest" if args is None else f"deposited {args.digest.hex()}"
        raise ProofInvalid(f"the file's digest {file_digest.hex()} is not in this proof, which {deposited}")
    return args


def _check_in_block(suite: Suite, p: _Bundle, header: Header, tx_hash: bytes) -> None:
    """The transaction and its successful receipt are in the block."""
    # The transaction is leaf tx.index of the header's tx tree of tx_count leaves.
    _check_inclusion(
        suite,
        p.tx_index,
        header.tx_count,
        p.tx,
        p.tx_path,
        header.tx_root,
        "the transaction is not in the block's tx_root",
    )
    # The receipt is the same leaf of the receipt tree.
    _check_inclusion(
        suite,
        p.tx_index,
        header.tx_count,
        p.receipt,
        p.receipt_path,
        header.receipt_root,
        "the receipt is not in the block's receipt_root",
    )
    # The receipt decodes canonically, is this transaction's, and says it succeeded.
    receipt = _decode(p.receipt, Receipt, "receipt.encoded")
    if receipt.tx_hash != tx_hash:
        raise ProofInvalid("the receipt is for another transaction")
    if receipt.status != STATUS_OK:
        raise ProofInvalid(f"the transaction failed on chain ({receipt.error or 'no reason given'})")


def _check_anchor(suite: Suite, p: _Bundle, header: Header) -> tuple[Header, bytes, _Commit]:
    """The header the proof rests on, its hash and its commit: the anchor's, or the block's."""
    if p.anchor is None:
        # Without an anchor the block's own commit certifies it.
        if p.commit is None:
            raise ProofInvalid("commit is null and there is no anchor: nothing certifies the block")
        return header, p.block_hash, p.commit
    h = suite.hasher()
    # The anchor header decodes canonically and hashes to anchor.hash.
    anchor = _decode(p.anchor.header, Header, "anchor.header")
    if compute_block_hash(h, anchor) != p.anchor.hash:
        raise ProofInvalid("anchor.hash is not the hash of anchor.header: the bundle was altered")
    # It is newer than the block, states its own height, and is of the same chain.
    if anchor.height != p.anchor.height or anchor.height <= header.height:
        raise ProofInvalid("anchor.height is not the anchor header's, or is not above the block's")
    if anchor.chain_id != p.chain_id:
        raise ProofInvalid(f"the anchor header is for chain {anchor.chain_id!r}, not {p.chain_id!r}")
    # The block hash is leaf height-1 of the anchor's history tree over blocks 1 .. anchor-1.
    _check_inclusion(
        suite,
        header.height - 1,
        anchor.height - 1,
        p.block_hash,
        p.anchor.history_path,
        anchor.history_root,
        "the block is not in the anchor header's history_root",
    )
    return anchor, p.anchor.hash, p.anchor.commit


def _check_validator_set(
    suite: Suite, p: _Bundle, signed_header: Header, trusted: Genesis | None
) -> ValidatorSet:
    """The validator set named by the certified header (and by the trusted genesis)."""
    # The set decodes canonically and the readable listing is the encoded one.
    vset = _decode(p.validator_set, ValidatorSet, "validator_set.encoded")
    if encode(ValidatorSet(p.validators)) != p.validator_set:
        raise ProofInvalid("validator_set.validators differs from validator_set.encoded")
    # Each key appears once, each power is positive, and there is at least one validator.
    keys = [v.public_key for v in vset.validators]
    if not keys or len(set(keys)) != len(keys) or any(v.power <= 0 for v in vset.validators):
        raise ProofInvalid("the validator set is empty, repeats a key or has a non-positive power")
    # It is the set the certified header names.
    if compute_validator_set_hash(suite.hasher(), vset) != signed_header.validator_set_hash:
        which = "block header" if p.anchor is None else "anchor header"
        raise ProofInvalid(f"the validator set is not the one the {which} names")
    if trusted is not None:
        # Trusted: the genesis's suite and chain.
        if trusted.suite != p.suite:
            raise ProofInvalid(f"the bundle uses suite {p.suite!r}, the trusted genesis {trusted.suite!r}")
        if trusted.chain_id != p.chain_id:
            raise ProofInvalid(
                f"the bundle is for chain {p.chain_id!r}, the trusted genesis for {trusted.chain_id!r}"
            )
        # Trusted: the signers are the genesis's validators.
        if encode(trusted.validators) != p.validator_set:
            raise ProofInvalid("the validator set is not the trusted genesis's validator set")
    return vset


def _check_commit(
    suite: Suite, chain_id: str, c: _Commit, header: Header, header_hash: bytes, vset: ValidatorSet
) -> int:
    """The voting power whose precommits for ``header`` verify; raise unless it exceeds 2/3."""
    # The certificate is for this header: its block hash and its height.
    if c.block_hash != header_hash:
        raise ProofInvalid(f"{c.where}.block_hash is not the hash of the header it should certify")
    if c.height != header.height:
        raise ProofInvalid(f"{c.where}.height {c.height} is not the header's height {header.height}")
    powers = {v.public_key: v.power for v in vset.validators}
    sign_bytes = encode(Vote(PRECOMMIT, chain_id, c.height, c.round, c.block_hash))
    seen: set[bytes] = set()
    signed = 0
    for i, (key, signature) in enumerate(c.signatures):
        where = f"{c.where}.signatures[{i}]"
        # Each signer is a member of the validator set ...
        if key not in powers:
            raise ProofInvalid(f"{where} is by {key.hex()[:16]}.., which is not in the validator set")
        # ... that signs at most once (a duplicate never counts twice) ...
        if key in seen:
            raise ProofInvalid(f"{where} repeats validator {key.hex()[:16]}..: each may sign once")
        seen.add(key)
        # ... with a signature that verifies over the precommit's sign-bytes.
        if not suite.verify(key, sign_bytes, signature):
            raise ProofInvalid(f"{where} by validator {key.hex()[:16]}.. does not verify")
        signed += powers[key]
    total = vset.total_power()
    # Strictly more than 2/3 of the voting power precommitted: 3 * signed > 2 * total.
    if 3 * signed <= 2 * total:
        raise ProofInvalid(f"{c.where} carries {signed} of {total} voting power; more than 2/3 must sign")
    return signed


def verify_bundle(
    bundle: dict[str, Any], *, trusted: Genesis | None, file_digest: bytes | None = None
) -> VerifiedProof:
    """Check a proof bundle completely, offline; raise ProofInvalid at the first failing check.

    Valid means: the transaction and its successful receipt are in a block whose header is
    certified by more than 2/3 of the voting power of the validator set the header (or a newer
    anchor header proving it through its history root) names; with ``trusted``, that set and the
    chain are the genesis's; with ``file_digest``, the transaction deposited that digest. Every
    readable field must equal what the encoded bytes say.
    """
    p = _read_bundle(bundle)
    suite = get_suite(p.suite)
    tx, tx_hash = _check_transaction(suite, p)
    header = _check_header(suite, p, tx)
    args = _check_evidence(p, tx, header, file_digest)
    _check_in_block(suite, p, header, tx_hash)
    signed_header, signed_hash, signed_commit = _check_anchor(suite, p, header)
    vset = _check_validator_set(suite, p, signed_header, trusted)
    signed = _check_commit(suite, p.chain_id, signed_commit, signed_header, signed_hash, vset)
    if p.anchor is not None and p.commit is not None:
        # Anchored, the block's own commit is checked too, under the same validator set.
        if header.validator_set_hash != signed_header.validator_set_hash:
            raise ProofInvalid("commit is present but the block names another validator set")
        _check_commit(suite, p.chain_id, p.commit, header, p.block_hash, vset)
    return VerifiedProof(
        chain_id=p.chain_id,
        height=header.height,
        time=header.time,
        tx_hash=tx_hash,
        block_hash=p.block_hash,
        digest=None if args is None else args.digest,
        signed_power=signed,
        total_power=vset.total_power(),
        name=None if args is None else args.name,
        anchor_height=None if p.anchor is None else signed_header.height,
        trusted=trusted is not None,
    )
