"""JSON views of ledger objects for the API: bytes as lowercase hex."""

from __future__ import annotations

from typing import Any

from zhongshu.codec import DecodeError, decode_any
from zhongshu.ledger.proof.common import commit_to_json
from zhongshu.ledger.types import CommitCertificate, Header, Receipt
from zhongshu.node.chain import Committed
from zhongshu.node.txcheck import MAX_SAFE_JSON_INT


def jsonable(value: Any) -> Any:
    """Plain JSON values from decoded MessagePack: bytes become hex, and an integer beyond
    ±(2^53 - 1) its decimal text (as a transaction's nonce: a reader of numbers as doubles
    would round it)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_JSON_INT:
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def decoded(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return jsonable(decode_any(raw))
    except DecodeError:
        return raw.hex()


def header_view(header: Header) -> dict[str, Any]:
    return {
        "chain_id": header.chain_id,
        "height": header.height,
        "time": header.time,
        "prev_hash": header.prev_hash.hex(),
        "tx_count": header.tx_count,
        "tx_root": header.tx_root.hex(),
        "receipt_root": header.receipt_root.hex(),
        "state_root": header.state_root.hex(),
        "history_root": header.history_root.hex(),
        "validator_set_hash": header.validator_set_hash.hex(),
        "proposer": header.proposer.hex(),
    }


def commit_view(commit: CommitCertificate) -> dict[str, Any]:
    """The API shows a commit exactly as a proof bundle carries it."""
    return commit_to_json(commit)


def receipt_view(receipt: Receipt) -> dict[str, Any]:
    return {
        "status": "ok" if receipt.status == 0 else "failed",
        "result": decoded(receipt.result),
        "error": receipt.error,
        "events": [{"contract": e.contract, "name": e.name, "data": decoded(e.data)} for e in receipt.events],
    }


def committed_view(c: Committed) -> dict[str, Any]:
    return {
        "tx_hash": c.tx_hash.hex(),
        "height": c.height,
        "index": c.index,
        "time": c.time,
        "receipt": receipt_view(c.receipt),
    }
