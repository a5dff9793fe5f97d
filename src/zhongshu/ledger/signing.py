"""A transaction signed: the sign-bytes of docs/access-spec.md (the canonical encoding of the
body) signed with the sender's key. The SDK and the hub's own transactions (``hub.init``) both
sign here."""

from __future__ import annotations

from zhongshu.codec import encode
from zhongshu.crypto import PrivateKey
from zhongshu.ledger.types import Transaction, TxBody


def sign_body(key: PrivateKey, body: TxBody) -> Transaction:
    """``body`` with ``key``'s signature over its sign-bytes (``body.sender`` must be ``key``'s)."""
    return Transaction(
        body.chain_id,
        body.genesis_hash,
        body.sender,
        body.contract,
        body.method,
        body.args,
        body.valid_until,
        body.nonce,
        key.sign(encode(body)),
    )
