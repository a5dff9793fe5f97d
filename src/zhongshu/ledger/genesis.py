"""genesis.json: the file a node's home holds and ``zhongshu verify --trust`` takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zhongshu.ledger.types import ChainParams, Genesis, Validator, ValidatorSet


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


def genesis_from_json(doc: Any) -> Genesis:
    """Parse a genesis document; raise GenesisError naming the first bad field."""
    try:
        validators = [
            Validator(bytes.fromhex(v["public_key"]), int(v["power"]), str(v.get("name", "")))
            for v in doc["validators"]
        ]
        params = ChainParams(**{k: int(v) for k, v in doc.get("params", {}).items()})
        genesis = Genesis(
            str(doc["chain_id"]), str(doc["suite"]), int(doc["time"]), ValidatorSet(validators), params
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise GenesisError(f"not a valid genesis document: {exc!r}") from None
    # A chain needs at least one validator, each with positive power.
    if not validators or any(v.power <= 0 for v in validators):
        raise GenesisError("genesis needs at least one validator, each with positive power")
    if genesis.suite not in ("sm", "intl"):
        raise GenesisError(f"unknown suite {genesis.suite!r}")
    return genesis


def load_genesis(path: Path) -> Genesis:
    import json

    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GenesisError(f"cannot read genesis {path}: {exc}") from None
    return genesis_from_json(doc)


def save_genesis(path: Path, genesis: Genesis) -> None:
    import json

    path.write_text(json.dumps(genesis_to_json(genesis), indent=2) + "\n")
