"""Stateless checks of an incoming transaction, done before its signature is verified."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from zhongshu.codec import encode
from zhongshu.execution import errors as xerr
from zhongshu.execution.registry import Registry
from zhongshu.ledger.types import Transaction
from zhongshu.node import errors
from zhongshu.node.errors import ArgumentLimit, WrongGenesis

MAX_SAFE_JSON_INT = 2**53 - 1
"""The largest integer every JSON reader holds exactly: one that reads numbers as IEEE doubles
(JavaScript's ``JSON.parse``) rounds those above it."""

U64_TEXT = "0|[1-9][0-9]{0,19}"
"""The decimal text a u64 field may be written as: digits only, no sign, spaces or leading zero."""
_U64_TEXT = re.compile(U64_TEXT)


class TxJSON(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A transaction as the API takes it: byte fields as lowercase hex; ``valid_until`` and
    ``nonce`` as a JSON integer or as the decimal text of one (see ``u64_to_json``)."""

    chain_id: str
    genesis_hash: str
    sender: str
    contract: str
    method: str
    args: str
    valid_until: int | str
    nonce: int | str
    signature: str


def u64_to_json(value: int) -> int | str:
    """An unsigned 64-bit integer for a JSON answer: a number up to ``MAX_SAFE_JSON_INT``, its
    decimal text above, so that a reader of numbers as doubles still gets it exactly (the
    Protocol Buffers JSON mapping writes every 64-bit integer as text for the same reason)."""
    return value if value <= MAX_SAFE_JSON_INT else str(value)


def _u64(name: str, value: int | str) -> int:
    """A u64 field from JSON: an integer, or its decimal text without sign, spaces or leading
    zeros; raise MalformedTransaction otherwise."""
    if isinstance(value, str):
        if not _U64_TEXT.fullmatch(value):
            raise errors.MalformedTransaction(
                f"field {name!r} is text but not the decimal digits of an unsigned integer: {value[:40]!r}"
            )
        value = int(value)
    if not 0 <= value < 2**64:
        raise errors.MalformedTransaction(f"field {name!r} must be an unsigned 64-bit integer")
    return value


def tx_to_json(tx: Transaction) -> dict[str, Any]:
    return {
        "chain_id": tx.chain_id,
        "genesis_hash": tx.genesis_hash.hex(),
        "sender": tx.sender.hex(),
        "contract": tx.contract,
        "method": tx.method,
        "args": tx.args.hex(),
        "valid_until": u64_to_json(tx.valid_until),
        "nonce": u64_to_json(tx.nonce),
        "signature": tx.signature.hex(),
    }


def _unhex(name: str, value: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = None
    # Exactly hex digits: no spaces, no 0x prefix.
    if raw is None or raw.hex() != value.lower():
        raise errors.MalformedTransaction(f"field {name!r} is not hex")
    return raw


def tx_from_json(item: TxJSON) -> Transaction:
    """Build the Transaction; raise MalformedTransaction for bad hex or out-of-range integers."""
    # Integers are unsigned 64-bit, as the canonical encoding defines them.
    valid_until = _u64("valid_until", item.valid_until)
    nonce = _u64("nonce", item.nonce)
    return Transaction(
        item.chain_id,
        _unhex("genesis_hash", item.genesis_hash),
        _unhex("sender", item.sender),
        item.contract,
        item.method,
        _unhex("args", item.args),
        valid_until,
        nonce,
        _unhex("signature", item.signature),
    )


def check_tx(
    tx: Transaction,
    *,
    chain_id: str,
    genesis_hash: bytes,
    registry: Registry,
    next_height: int,
    max_tx_bytes: int,
) -> int:
    """Every check but the sender key and signature; return the encoded size. Raise a typed Refused."""
    size = len(encode(tx))
    # The encoded transaction fits the chain's limit.
    if size > max_tx_bytes:
        raise errors.TooLarge(f"transaction of {size} bytes exceeds the limit of {max_tx_bytes}")
    # The transaction names this chain.
    if tx.chain_id != chain_id:
        raise errors.WrongChain(f"transaction is for chain {tx.chain_id!r}, not {chain_id!r}")
    # It names this chain's genesis: a chain of the same name on another network is not this one.
    if tx.genesis_hash != genesis_hash:
        named = tx.genesis_hash.hex() or "(empty)"
        raise WrongGenesis(
            f"transaction is for a chain {chain_id!r} of genesis hash {named}, but this network's "
            f"{chain_id!r} has genesis hash {genesis_hash.hex()} (GET /v1/chains/{chain_id}/status, "
            "field genesis_hash): it was signed for another network; sign it again with this hash"
        )
    # It can still be included: valid_until is not below the next height.
    if tx.valid_until < next_height:
        raise errors.Expired(f"valid_until {tx.valid_until} is below the next block height {next_height}")
    # The contract and method exist, and the arguments decode as the method's type.
    try:
        method = registry.get_method(tx.contract, tx.method)
        args = method.decode_args(tx.args)
    except xerr.UnknownContract as exc:
        raise errors.UnknownContract(str(exc)) from None
    except xerr.UnknownMethod as exc:
        raise errors.UnknownMethod(str(exc)) from None
    except xerr.InvalidArguments as exc:
        raise errors.InvalidArguments(str(exc)) from None
    # The arguments keep within the contract's stated limits (the rule its execution applies too).
    try:
        method.check_args(args)
    except xerr.InvalidArguments as exc:
        raise ArgumentLimit(f"{tx.contract}.{tx.method}: {exc}") from None
    # The sender key and signature are checked next, in threads (ChainNode._verify_senders).
    return size
