"""Stateless checks of an incoming transaction, done before its signature is verified."""

from __future__ import annotations

from typing import Any

import msgspec

from zhongshu.codec import encode
from zhongshu.execution import errors as xerr
from zhongshu.execution.registry import Registry
from zhongshu.ledger.types import Transaction
from zhongshu.node import errors
from zhongshu.node.errors import ArgumentLimit, WrongGenesis


class TxJSON(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A transaction as the API takes it: byte fields as lowercase hex."""

    chain_id: str
    genesis_hash: str
    sender: str
    contract: str
    method: str
    args: str
    valid_until: int
    nonce: int
    signature: str


def tx_to_json(tx: Transaction) -> dict[str, Any]:
    return {
        "chain_id": tx.chain_id,
        "genesis_hash": tx.genesis_hash.hex(),
        "sender": tx.sender.hex(),
        "contract": tx.contract,
        "method": tx.method,
        "args": tx.args.hex(),
        "valid_until": tx.valid_until,
        "nonce": tx.nonce,
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
    for name, value in (("valid_until", item.valid_until), ("nonce", item.nonce)):
        if not 0 <= value < 2**64:
            raise errors.MalformedTransaction(f"field {name!r} must be an unsigned 64-bit integer")
    return Transaction(
        item.chain_id,
        _unhex("genesis_hash", item.genesis_hash),
        _unhex("sender", item.sender),
        item.contract,
        item.method,
        _unhex("args", item.args),
        item.valid_until,
        item.nonce,
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
