"""Reading a bundle strictly: every key present, no unknown key, every value of its type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from zhongshu.codec import DecodeError, decode
from zhongshu.crypto import SUITE_NAMES
from zhongshu.ledger.evidence_args import DIGEST_ALGORITHMS
from zhongshu.ledger.proof.common import (
    _HEX,
    _UINT64_LIMIT,
    FORMAT,
    PUBLIC_KEY_SIZES,
    SIGNATURE_SIZES,
    ProofInvalid,
    T,
)
from zhongshu.ledger.types import (
    HASH_SIZE,
    Validator,
)

_Size = int | range | tuple[int, ...] | None
"""The sizes a byte string may have: exactly n, a range, a few sizes, or any."""


class _Obj:
    """One JSON object of a bundle of format ``fmt``; refuses missing and unexpected keys."""

    def __init__(self, value: Any, where: str, keys: tuple[str, ...], fmt: str = FORMAT) -> None:
        name = where or "the bundle"
        if not isinstance(value, dict):
            raise ProofInvalid(f"{name} must be a JSON object")
        for key in keys:
            if key not in value:
                raise ProofInvalid(f"{self._at(where, key)} is missing: the bundle is incomplete")
        for key in value:
            if key not in keys:
                raise ProofInvalid(f"unexpected field {self._at(where, str(key))}: {fmt} has no such field")
        self._value: dict[str, Any] = value
        self._where = where
        self._fmt = fmt

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
        # The string is Unicode text that UTF-8 can write (no lone surrogate).
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise ProofInvalid(f"{self.field(key)} holds a lone surrogate: not Unicode text") from None
        return v

    def uint(self, key: str) -> int:
        v = self._value[key]
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < _UINT64_LIMIT:
            raise ProofInvalid(f"{self.field(key)} must be an integer from 0 to 2^64-1")
        return v

    def hex(self, key: str, size: _Size = None) -> bytes:
        return _hex_value(self._value[key], self.field(key), size)

    def optional_hex(self, key: str, size: _Size = None) -> bytes | None:
        """Hex bytes, or None for a JSON null."""
        return None if self._value[key] is None else self.hex(key, size)

    def hexes(self, key: str, size: int) -> list[bytes]:
        return [_hex_value(v, f"{self.field(key)}[{i}]", size) for i, v in enumerate(self.items(key))]

    def items(self, key: str) -> list[Any]:
        v = self._value[key]
        if not isinstance(v, list):
            raise ProofInvalid(f"{self.field(key)} must be a JSON array")
        return v

    def obj(self, key: str, keys: tuple[str, ...]) -> _Obj:
        return _Obj(self._value[key], self.field(key), keys, self._fmt)

    def item_obj(self, key: str, index: int, item: Any, keys: tuple[str, ...]) -> _Obj:
        """Element ``index`` (``item``) of the array ``key``, as an object with ``keys``."""
        return _Obj(item, f"{self.field(key)}[{index}]", keys, self._fmt)

    def optional_obj(self, key: str, keys: tuple[str, ...]) -> _Obj | None:
        return None if self._value[key] is None else self.obj(key, keys)


def _hex_value(v: Any, where: str, size: _Size) -> bytes:
    if not isinstance(v, str) or not _HEX.fullmatch(v):
        raise ProofInvalid(f"{where} must be lowercase hex with an even number of digits")
    raw = bytes.fromhex(v)
    check_size(raw, size, where)
    return raw


def check_size(raw: bytes, size: _Size, where: str) -> None:
    """Raise ProofInvalid unless ``raw`` has a size the format allows for ``where``."""
    if size is None:
        return
    if isinstance(size, int):
        if len(raw) != size:
            raise ProofInvalid(f"{where} must be {size} bytes, not {len(raw)}")
    elif isinstance(size, range):
        if len(raw) not in size:
            raise ProofInvalid(f"{where} must be {size.start} to {size.stop - 1} bytes, not {len(raw)}")
    elif len(raw) not in size:
        allowed = ", ".join(map(str, size[:-1])) + f" or {size[-1]}"
        raise ProofInvalid(f"{where} must be {allowed} bytes, not {len(raw)}")


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


class _Certified(Protocol):
    """What a bundle of either kind holds to certify its block: the block header, the
    validator set, the block's commit and the optional anchor (the checks of §7 steps 9-12)."""

    @property
    def suite(self) -> str: ...
    @property
    def chain_id(self) -> str: ...
    @property
    def height(self) -> int: ...
    @property
    def time(self) -> int: ...
    @property
    def block_hash(self) -> bytes: ...
    @property
    def header(self) -> bytes: ...
    @property
    def commit(self) -> _Commit | None: ...
    @property
    def validator_set(self) -> bytes: ...
    @property
    def validators(self) -> list[Validator]: ...
    @property
    def anchor(self) -> _Anchor | None: ...


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


DIGEST_SIZES = tuple(sorted(set(DIGEST_ALGORITHMS.values())))
"""An evidence digest is 32, 48 or 64 bytes: the sizes of the hashes a deposit may name."""

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


_ANCHOR_KEYS = ("height", "hash", "header", "history_path", "commit")
_BLOCK_KEYS = ("height", "time", "hash", "header")
_VALIDATOR_SET_KEYS = ("encoded", "validators")


def _read_commit(c: _Obj, suite: str) -> _Commit:
    sigs = []
    for i, item in enumerate(c.items("signatures")):
        s = c.item_obj("signatures", i, item, ("validator", "signature"))
        sigs.append((s.hex("validator", PUBLIC_KEY_SIZES[suite]), s.hex("signature", SIGNATURE_SIZES[suite])))
    return _Commit(c.where, c.uint("height"), c.uint("round"), c.hex("block_hash", HASH_SIZE), sigs)


def _read_validators(v: _Obj, suite: str) -> list[Validator]:
    """The readable listing ``validator_set.validators``."""
    validators = []
    for i, item in enumerate(v.items("validators")):
        e = v.item_obj("validators", i, item, ("public_key", "power", "name"))
        validators.append(
            Validator(e.hex("public_key", PUBLIC_KEY_SIZES[suite]), e.uint("power"), e.text("name"))
        )
    return validators


def _read_anchor(a: _Obj | None, suite: str) -> _Anchor | None:
    if a is None:
        return None
    return _Anchor(
        a.uint("height"),
        a.hex("hash", HASH_SIZE),
        a.hex("header"),
        a.hexes("history_path", HASH_SIZE),
        _read_commit(a.obj("commit", _COMMIT_KEYS), suite),
    )


def _read_suite(bundle: Any, fmt: str, kind: str) -> str:
    """The suite of a bundle of format ``fmt`` (a ``kind``); raise unless both are known."""
    # The bundle is a JSON object of a format this verifier reads.
    if not isinstance(bundle, dict):
        raise ProofInvalid("the bundle must be a JSON object")
    if "format" not in bundle:
        raise ProofInvalid(f"format is missing: not a {kind} ({fmt})")
    if bundle["format"] != fmt:
        raise ProofInvalid(f"unknown proof format {bundle['format']!r}: this verifier reads {fmt}")
    # The suite is one this verifier knows.
    if bundle.get("suite") not in SUITE_NAMES:
        raise ProofInvalid(f"unknown suite {bundle.get('suite')!r}: expected one of {', '.join(SUITE_NAMES)}")
    suite: str = bundle["suite"]
    return suite


def _read_bundle(bundle: Any) -> _Bundle:
    """The typed values of ``bundle``; raise ProofInvalid on any shape, type or hex fault."""
    suite = _read_suite(bundle, FORMAT, "proof bundle")
    # Every field is present with the right type, none is unexpected, and all hex decodes
    # to a size the format allows.
    top = _Obj(bundle, "", _TOP_KEYS)
    t = top.obj("tx", ("index", "hash", "encoded", "path"))
    r = top.obj("receipt", ("encoded", "path"))
    b = top.obj("block", _BLOCK_KEYS)
    c = top.optional_obj("commit", _COMMIT_KEYS)
    v = top.obj("validator_set", _VALIDATOR_SET_KEYS)
    validators = _read_validators(v, suite)
    ev = top.optional_obj("evidence", ("digest", "name", "height", "time"))
    a = top.optional_obj("anchor", _ANCHOR_KEYS)
    return _Bundle(
        suite=suite,
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
        commit=None if c is None else _read_commit(c, suite),
        validator_set=v.hex("encoded"),
        validators=validators,
        evidence=None
        if ev is None
        else (ev.hex("digest", DIGEST_SIZES), ev.text("name"), ev.uint("height"), ev.uint("time")),
        anchor=_read_anchor(a, suite),
    )


# ----------------------------------------------------------------------------------------------
# Verifying


def _decode(data: bytes, kind: type[T], where: str) -> T:
    try:
        return decode(data, kind, canonical=True)
    except DecodeError as exc:
        raise ProofInvalid(f"{where} is not a canonical {kind.__name__}: {exc}") from None
