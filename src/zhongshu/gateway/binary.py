"""The binary form of ``POST /v1/chains/{chain}/txs`` (docs/access-spec.md, *Binary submission*).

For high-volume clients: the body is the canonical MessagePack of an array of transactions
(each exactly as a block holds it), sent as ``application/msgpack``; the answer is MessagePack
too when the request's ``Accept`` names ``application/msgpack``. No hex, no JSON: the node
decodes the body straight into its ledger types and checks the bytes are canonical. Errors are
problem documents in JSON, as on every route.

This module has no web framework in it: the SDK imports the answer types from here.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from zhongshu.codec import DecodeError, decode
from zhongshu.ledger.types import Receipt, Transaction
from zhongshu.node import errors

MSGPACK = "application/msgpack"


class CommittedEntry(msgspec.Struct, frozen=True):
    """Where one transaction landed; ``receipt`` is the ledger's own Receipt (its canonical
    encoding is the receipt-root leaf)."""

    tx_hash: bytes
    height: int
    index: int
    time: int
    receipt: Receipt


class SubmitAnswer(msgspec.Struct, frozen=True, omit_defaults=True):
    """The MessagePack answer: a map with the JSON answer's field names, bytes as ``bin``."""

    status: Literal["pending", "committed"]
    tx_hashes: list[bytes] = []
    """With ``pending`` (202): the hashes, in order."""
    receipts: list[CommittedEntry] = []
    """With ``committed`` (200): one entry per transaction, in order."""


_answer_encoder = msgspec.msgpack.Encoder()
_answer_decoder = msgspec.msgpack.Decoder(SubmitAnswer)


def encode_answer(answer: SubmitAnswer) -> bytes:
    return _answer_encoder.encode(answer)


def decode_answer(content: bytes) -> SubmitAnswer:
    """Raises msgspec.DecodeError or msgspec.ValidationError for anything else."""
    return _answer_decoder.decode(content)


def decode_txs(body: bytes) -> list[Transaction]:
    """The transactions of a binary body; MalformedTransaction unless it is the canonical
    encoding of an array of transactions with 64-bit unsigned integers."""
    try:
        txs = decode(body, list[Transaction])
    except DecodeError as exc:
        raise errors.MalformedTransaction(
            f"the application/msgpack body must be the canonical MessagePack of an array of "
            f"transactions: {exc}"
        ) from None
    for i, tx in enumerate(txs):
        # Integers are unsigned 64-bit, as the canonical encoding defines them.
        if not (0 <= tx.valid_until < 2**64 and 0 <= tx.nonce < 2**64):
            raise errors.MalformedTransaction(
                f"transaction {i}: valid_until and nonce must be unsigned 64-bit integers"
            )
    return txs


def wants_msgpack(accept: str) -> bool:
    """Whether an ``Accept`` header asks for MessagePack (media types, parameters ignored)."""
    return any(part.split(";", 1)[0].strip().lower() == MSGPACK for part in accept.split(","))
