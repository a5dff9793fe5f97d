"""genesis.json: the file a node's home holds and ``zhongshu verify --trust`` takes.

Its format, field by field, and how its hash is computed are in docs/proof-format.md §3: a
third party computes the same genesis hash from the same file, so it is read strictly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from zhongshu.crypto import SUITE_NAMES
from zhongshu.ledger.proof.json_text import JsonTextError, decode_strict_json
from zhongshu.ledger.types import ChainParams, Genesis, Validator, ValidatorSet

_UINT64_LIMIT = 1 << 64
_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_PUBLIC_KEY_SIZES = {"sm": 65, "intl": 32}
_TOP_KEYS = ("chain_id", "suite", "time", "validators", "params")
_VALIDATOR_KEYS = ("public_key", "power", "name")
_PARAM_KEYS: tuple[str, ...] = ChainParams.__struct_fields__


class GenesisError(ValueError):
    """A genesis document that is missing fields or holds wrong values."""


def genesis_to_json(genesis: Genesis) -> dict[str, Any]:
    return {
        "chain_id": genesis.chain_id,
        "suite": genesis.suite,
        "time": genesis.time,
        "validators": [
            {"public_key": v.public_key.hex(), "power": v.power, "name": v.name}
            for v in genesis.validators.validators
        ],
        "params": {
            "block_interval_ms": genesis.params.block_interval_ms,
            "max_block_txs": genesis.params.max_block_txs,
            "max_block_bytes": genesis.params.max_block_bytes,
            "max_tx_bytes": genesis.params.max_tx_bytes,
        },
    }


def _object(value: Any, where: str, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    # An object with exactly the keys of the format: none unknown, none missing but optional ones.
    if not isinstance(value, dict):
        raise GenesisError(f"{where} must be a JSON object")
    for key in value:
        if key not in keys:
            raise GenesisError(f"{where} has the unknown field {key!r}")
    for key in keys:
        if key not in value and key not in optional:
            raise GenesisError(f"{where} lacks the field {key!r}")
    return value


def _uint(value: Any, where: str) -> int:
    # A JSON integer from 0 to 2^64-1 (not a boolean, not a string of digits).
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _UINT64_LIMIT:
        raise GenesisError(f"{where} must be an integer from 0 to 2^64-1")
    return value


def _text(value: Any, where: str) -> str:
    # A JSON string of Unicode text.
    if not isinstance(value, str):
        raise GenesisError(f"{where} must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise GenesisError(f"{where} holds a lone surrogate: not Unicode text") from None
    return value


def genesis_from_json(doc: Any) -> Genesis:
    """Parse a genesis document; raise GenesisError naming the first bad field.

    The rule (docs/proof-format.md §3): an object of ``chain_id`` (string), ``suite`` (``sm`` or
    ``intl``), ``time`` (uint), ``validators`` (a non-empty list of ``{public_key, power, name}``,
    keys lowercase hex of the suite's size, powers > 0, no key twice) and, optionally,
    ``params`` (any of the four ChainParams, uints; a missing one takes its default). No other
    field at any level.
    """
    top = _object(doc, "the genesis", _TOP_KEYS, optional=("params",))
    chain_id = _text(top["chain_id"], "chain_id")
    suite = _text(top["suite"], "suite")
    # The suite is one a chain can use.
    if suite not in SUITE_NAMES:
        raise GenesisError(f"unknown suite {suite!r}: expected one of {', '.join(SUITE_NAMES)}")
    time = _uint(top["time"], "time")
    items = top["validators"]
    # A chain needs at least one validator.
    if not isinstance(items, list) or not items:
        raise GenesisError("validators must be a non-empty JSON array")
    validators = []
    for i, item in enumerate(items):
        where = f"validators[{i}]"
        v = _object(item, where, _VALIDATOR_KEYS)
        key = v["public_key"]
        # Each key is lowercase hex of the suite's public key size.
        if not isinstance(key, str) or not _HEX.fullmatch(key):
            raise GenesisError(f"{where}.public_key must be lowercase hex with an even number of digits")
        raw = bytes.fromhex(key)
        if len(raw) != _PUBLIC_KEY_SIZES[suite]:
            raise GenesisError(f"{where}.public_key must be {_PUBLIC_KEY_SIZES[suite]} bytes, not {len(raw)}")
        # Each power is positive.
        power = _uint(v["power"], f"{where}.power")
        if power == 0:
            raise GenesisError(f"{where}.power must be positive")
        validators.append(Validator(raw, power, _text(v["name"], f"{where}.name")))
    # No validator appears twice.
    if len({v.public_key for v in validators}) != len(validators):
        raise GenesisError("validators lists a public key twice")
    params = _object(top.get("params", {}), "params", _PARAM_KEYS, optional=_PARAM_KEYS)
    values = {k: _uint(v, f"params.{k}") for k, v in params.items()}
    return Genesis(chain_id, suite, time, ValidatorSet(validators), ChainParams(**values))


def load_genesis(path: Path) -> Genesis:
    """The genesis in the file at ``path``; raise GenesisError if unreadable or not strict JSON."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GenesisError(f"cannot read genesis {path}: {exc.strerror or exc}") from None
    try:
        doc = decode_strict_json(data)
    except JsonTextError as exc:
        raise GenesisError(f"genesis {path} is not strict JSON: {exc}") from None
    return genesis_from_json(doc)


def save_genesis(path: Path, genesis: Genesis) -> None:
    import json

    path.write_text(json.dumps(genesis_to_json(genesis), indent=2) + "\n")
