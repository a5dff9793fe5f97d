"""How each ledger object is hashed: H(canonical encoding), with the chain's suite hash."""

from __future__ import annotations

from collections.abc import Sequence

from zhongshu.codec import encode
from zhongshu.ledger.merkle import Hasher, compute_root
from zhongshu.ledger.types import Genesis, Header, Receipt, Transaction, TxBody, ValidatorSet


def compute_tx_hash(h: Hasher, tx: Transaction | TxBody) -> bytes:
    """The transaction hash: H(encoded TxBody), the hash of the sign-bytes."""
    body = tx.body() if isinstance(tx, Transaction) else tx
    return h(encode(body))


def compute_block_hash(h: Hasher, header: Header) -> bytes:
    return h(encode(header))


def compute_validator_set_hash(h: Hasher, vset: ValidatorSet) -> bytes:
    return h(encode(vset))


def compute_genesis_hash(h: Hasher, genesis: Genesis) -> bytes:
    return h(encode(genesis))


def compute_tx_root(h: Hasher, txs: Sequence[Transaction]) -> bytes:
    """RFC 6962 root whose leaves are the encoded transactions (signature included)."""
    return compute_root(h, [encode(tx) for tx in txs])


def compute_receipt_root(h: Hasher, receipts: Sequence[Receipt]) -> bytes:
    return compute_root(h, [encode(r) for r in receipts])


def compute_state_root(h: Hasher, prev_state_root: bytes, writes: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Chain the state: H("state" || prev || root over encoded (key, value) writes in key order).

    A deleted key is written with an empty value.
    """
    leaves = [encode([k, v]) for k, v in sorted(writes)]
    return h(b"state" + prev_state_root + compute_root(h, leaves))
