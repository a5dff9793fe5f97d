"""Building a proof bundle from stored blocks (the node serves it at .../txs/{hash}/proof)."""

from __future__ import annotations

from typing import Any

from zhongshu.codec import encode
from zhongshu.crypto import get_suite
from zhongshu.ledger.hashing import (
    compute_block_hash,
    compute_tx_hash,
    compute_validator_set_hash,
)
from zhongshu.ledger.merkle import (
    Hasher,
    hash_leaf,
    inclusion_proof,
    root_from_leaf_hashes,
)
from zhongshu.ledger.proof.common import FORMAT, _evidence_json, _hexes, commit_to_json
from zhongshu.ledger.types import (
    Block,
    CommitCertificate,
    Header,
    Receipt,
    ValidatorSet,
)

Anchor = tuple[Header, CommitCertificate, list[bytes]]
"""A newer header, its commit, and the hashes of blocks 1 .. newer.height - 1."""


def build_bundle(
    suite_name: str,
    block: Block,
    receipts: list[Receipt],
    tx_index: int,
    commit: CommitCertificate | None,
    validator_set: ValidatorSet,
    *,
    anchor: Anchor | None = None,
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
    tx = block.txs[tx_index]
    tx_hash = compute_tx_hash(h, tx)
    anchor_json, commit = certify_block(h, header, block_hash, commit, validator_set, anchor)

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
        "block": block_to_json(header, block_hash),
        "commit": None if commit is None else commit_to_json(commit),
        "validator_set": validator_set_to_json(validator_set),
        "evidence": _evidence_json(tx, header),
        "anchor": anchor_json,
    }


def block_to_json(header: Header, block_hash: bytes) -> dict[str, Any]:
    """A bundle's ``block`` object (both kinds)."""
    return {
        "height": header.height,
        "time": header.time,
        "hash": block_hash.hex(),
        "header": encode(header).hex(),
    }


def validator_set_to_json(validator_set: ValidatorSet) -> dict[str, Any]:
    """A bundle's ``validator_set`` object (both kinds): the encoded set and its readable list."""
    return {
        "encoded": encode(validator_set).hex(),
        "validators": [
            {"public_key": v.public_key.hex(), "power": v.power, "name": v.name}
            for v in validator_set.validators
        ],
    }


def certify_block(
    h: Hasher,
    header: Header,
    block_hash: bytes,
    commit: CommitCertificate | None,
    validator_set: ValidatorSet,
    anchor: Anchor | None,
) -> tuple[dict[str, Any] | None, CommitCertificate | None]:
    """What certifies a block in a bundle (both kinds): the anchor's JSON, or None, and the
    block's own commit to include, or None.

    Without an anchor ``commit`` is required and the block must name ``validator_set``; with
    one, the anchor must be newer, prove the block through its history root and name the set,
    and the block's commit is kept only under the same set. Raises ValueError otherwise.
    """
    vset_hash = compute_validator_set_hash(h, validator_set)
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
            "commit": commit_to_json(a_commit),
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
    return anchor_json, commit


def _require_certifies(commit: CommitCertificate, header: Header, block_hash: bytes, what: str) -> None:
    if commit.block_hash != block_hash or commit.height != header.height:
        raise ValueError(f"{what} is for another block than the header given")
