"""Apply a block's transactions in order: the one deterministic state transition."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from zhongshu.codec import encode
from zhongshu.execution.context import CallContext, StateReader, TxState
from zhongshu.execution.errors import ExecutionError
from zhongshu.execution.registry import Registry
from zhongshu.ledger.types import STATUS_FAILED, STATUS_OK, Receipt, Transaction


@dataclass(frozen=True)
class BlockOutcome:
    receipts: list[Receipt]
    writes: dict[bytes, bytes | None]
    """Every key the block changed, with its final value (None: deleted)."""


def apply_transactions(
    registry: Registry,
    read_committed: StateReader,
    chain_id: str,
    height: int,
    time: int,
    txs: Sequence[Transaction],
    tx_hashes: Sequence[bytes],
) -> BlockOutcome:
    """Run each transaction in order against state; failures keep their receipt and drop writes.

    Signatures are not checked here: a block reaches execution only after its transactions
    were verified (mempool) or its commit certificate was.
    """
    block_writes: dict[bytes, bytes | None] = {}
    receipts: list[Receipt] = []
    for index, (tx, tx_hash) in enumerate(zip(txs, tx_hashes, strict=True)):
        state = TxState(read_committed, block_writes)
        ctx = CallContext(chain_id, height, time, tx_hash, index, tx.sender, state, tx.contract)
        try:
            # The transaction must be valid at this height.
            if tx.valid_until < height:
                raise ExecutionError(f"expired: valid until height {tx.valid_until}")
            method = registry.get_method(tx.contract, tx.method)
            result = method.handler(ctx, method.decode_args(tx.args))
        except ExecutionError as exc:
            receipts.append(Receipt(tx_hash, STATUS_FAILED, b"", str(exc), []))
            continue
        block_writes.update(state.writes)
        receipts.append(Receipt(tx_hash, STATUS_OK, encode(result), "", ctx.events))
    return BlockOutcome(receipts, block_writes)
