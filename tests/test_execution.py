"""Execution: deterministic, in order; failures keep a failed receipt and change nothing."""

from __future__ import annotations

from zhongshu.codec import decode, encode
from zhongshu.contracts import build_registry
from zhongshu.contracts.evidence import (
    EvidencePutResult,
    decode_record,
    digest_key,
    owner_entries,
    owner_prefix,
)
from zhongshu.execution.context import CallContext
from zhongshu.execution.errors import ExecutionError
from zhongshu.execution.executor import apply_transactions
from zhongshu.execution.registry import Contract, Method
from zhongshu.ledger.evidence_args import EvidencePut
from zhongshu.ledger.types import STATUS_FAILED, STATUS_OK, Transaction

SENDER = b"\x04" + b"\x11" * 64
GENESIS_HASH = b"\x22" * 32


def _tx(
    args: object, *, contract: str = "evidence", method: str = "put", valid_until: int = 100
) -> Transaction:
    raw = args if isinstance(args, bytes) else encode(args)
    return Transaction("main", GENESIS_HASH, SENDER, contract, method, raw, valid_until, 1, b"sig")


def _run(txs: list[Transaction], state: dict[bytes, bytes] | None = None, height: int = 5):
    committed = state or {}
    hashes = [bytes([i]) * 32 for i in range(len(txs))]
    return apply_transactions(build_registry(), committed.get, "main", height, 1000 * height, txs, hashes)


def test_put_writes_its_record_and_the_node_indexes_its_owner() -> None:
    digest = b"\xaa" * 32
    outcome = _run([_tx(EvidencePut(digest, "a.pdf", {"k": "v"}, b"payload"))])
    (receipt,) = outcome.receipts
    assert receipt.status == STATUS_OK
    record = decode_record(outcome.writes[digest_key(digest)] or b"")
    assert (record.name, record.metadata, record.payload, record.height) == (
        "a.pdf",
        {"k": "v"},
        b"payload",
        5,
    )
    # The record is the only state written; the owner listing is the node's index, derived
    # from the block (owner key, height, index -> digest).
    assert list(outcome.writes) == [digest_key(digest)]
    assert [e.name for e in receipt.events] == ["deposited"]
    tx = _tx(EvidencePut(digest, "a.pdf", {"k": "v"}, b"payload"))
    location = (5).to_bytes(8, "big") + (0).to_bytes(4, "big")
    assert owner_entries(5, [tx], outcome.receipts) == {owner_prefix(SENDER) + location: digest}
    # A failed or repeated deposit is not indexed.
    again = _run([tx], {digest_key(digest): outcome.writes[digest_key(digest)] or b""})
    assert owner_entries(5, [tx], again.receipts) == {}


def test_second_deposit_returns_the_original_height_and_time() -> None:
    digest = b"\xbb" * 32
    first = _run([_tx(EvidencePut(digest, "x", {}, b""))], height=3)
    state = {k: v for k, v in first.writes.items() if v is not None}
    again = _run([_tx(EvidencePut(digest, "y", {}, b""))], state=state, height=9)
    result = decode(again.receipts[0].result, EvidencePutResult, canonical=False)
    assert (result.height, result.time, result.duplicate) == (3, 3000, True)
    assert again.writes == {}


def test_same_digest_twice_in_one_block_is_a_duplicate_of_the_first() -> None:
    digest = b"\xcc" * 32
    outcome = _run([_tx(EvidencePut(digest, "1", {}, b"")), _tx(EvidencePut(digest, "2", {}, b""))])
    second = decode(outcome.receipts[1].result, EvidencePutResult, canonical=False)
    assert second.duplicate and second.tx_hash == b"\x00" * 32


def test_failing_tx_stays_with_failed_receipt_and_no_writes() -> None:
    good = _tx(EvidencePut(b"\x01" * 32, "ok", {}, b""))
    oversized = _tx(EvidencePut(b"\x02" * 32, "big", {}, b"x" * (64 * 1024 + 1)))
    bad_digest = _tx(EvidencePut(b"\x03" * 5, "short", {}, b""))
    garbage = _tx(b"\xc1not msgpack")
    unknown = _tx(EvidencePut(b"\x04" * 32, "u", {}, b""), contract="nope")
    expired = _tx(EvidencePut(b"\x05" * 32, "e", {}, b""), valid_until=4)
    outcome = _run([good, oversized, bad_digest, garbage, unknown, expired])
    statuses = [r.status for r in outcome.receipts]
    assert statuses == [STATUS_OK] + [STATUS_FAILED] * 5
    assert all(r.error for r in outcome.receipts[1:])
    assert "payload of 65537 bytes exceeds 65536" in outcome.receipts[1].error
    # The one good deposit writes its record, and nothing else (owner listings are the node's
    # index, not state).
    assert set(outcome.writes) == {digest_key(b"\x01" * 32)}


def test_execution_is_deterministic() -> None:
    txs = [_tx(EvidencePut(bytes([i]) * 32, f"f{i}", {"i": str(i)}, b"")) for i in range(20)]
    a, b = _run(txs), _run(txs)
    assert [encode(r) for r in a.receipts] == [encode(r) for r in b.receipts]
    assert a.writes == b.writes


class Refused(ExecutionError):
    """The test contract's own failure, raised after it wrote."""


def _write_then_fail(ctx: CallContext, args: list[str]) -> str:
    """kv.set_then_fail: set, overwrite, delete, emit, and then fail."""
    ctx.state.set(b"kv/" + args[0].encode(), b"written")
    ctx.state.set(b"kv/shared", b"by the failing tx")
    ctx.state.delete(b"kv/keep")
    ctx.emit("set", {"key": args[0]})
    raise Refused(f"refusing {args[0]} after writing it")


def _write(ctx: CallContext, args: list[str]) -> str:
    """kv.set: read what the block holds so far, then write."""
    seen = ctx.state.get(b"kv/shared")
    ctx.state.set(b"kv/shared", b"by the good tx after " + (seen or b"nothing"))
    return args[0]


def test_a_transaction_that_writes_and_then_fails_leaves_no_write_behind() -> None:
    registry = build_registry()
    registry.register(
        Contract(
            "kv",
            {
                "set_then_fail": Method("set_then_fail", list[str], _write_then_fail),
                "set": Method("set", list[str], _write),
            },
        )
    )
    committed = {b"kv/keep": b"kept", b"kv/shared": b"committed"}
    txs = [
        _tx(["a"], contract="kv", method="set_then_fail"),
        _tx(["b"], contract="kv", method="set"),
        _tx(["c"], contract="kv", method="set_then_fail"),
    ]
    hashes = [bytes([i]) * 32 for i in range(len(txs))]
    outcome = apply_transactions(registry, committed.get, "main", 5, 5000, txs, hashes)
    failed, good, failed_last = outcome.receipts
    # The failures: a failed receipt that names the reason, no result and no events.
    for receipt, key in ((failed, "a"), (failed_last, "c")):
        assert (receipt.status, receipt.result, receipt.events) == (STATUS_FAILED, b"", [])
        assert receipt.error == f"refusing {key} after writing it"
    # The transaction after a failure sees the committed state, not the failed write.
    assert good.status == STATUS_OK
    # Only the good transaction's write is in the block; the failed ones left nothing.
    assert outcome.writes == {b"kv/shared": b"by the good tx after committed"}
