"""Evidence deposit (存证): fix a file's digest, name and metadata on the chain at a time.

State keys:
  ``ev/d/<digest>``                         -> EvidenceRecord

Deposits by owner are not state: the node indexes them beside each block it stores
(``owner_entries``: ``ev/o/<owner key>/<height u64><index u32>`` -> digest, in deposit order),
for listings. State is what the contract reads; a listing is the node's query aid, and keeping
it out of the state map halves what a deposit costs the map (docs/state-layout.md).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import msgspec

from zhongshu.codec import decode, encode
from zhongshu.execution.context import CallContext
from zhongshu.execution.errors import InvalidArguments
from zhongshu.execution.registry import Contract, Method
from zhongshu.ledger.evidence_args import (
    DIGEST_ALGORITHM_KEY,
    DIGEST_ALGORITHMS,
    EVIDENCE_CONTRACT,
    EVIDENCE_KEY_PREFIX,
    EvidencePut,
)
from zhongshu.ledger.evidence_args import EvidenceRecord as EvidenceRecord  # re-exported
from zhongshu.ledger.types import STATUS_OK, Receipt, Transaction

MAX_PAYLOAD = 64 * 1024
MAX_NAME = 512
MAX_METADATA_ENTRIES = 64
MAX_METADATA_BYTES = 8 * 1024
DIGEST_SIZES = (32, 48, 64)

_LOC = struct.Struct(">QI")


class EvidencePutResult(msgspec.Struct, frozen=True):
    digest: bytes
    height: int
    """Height of the first deposit of this digest."""
    time: int
    tx_hash: bytes
    """The transaction of the first deposit."""
    duplicate: bool
    """True when the digest was already deposited; nothing new is written."""


def digest_key(digest: bytes) -> bytes:
    return EVIDENCE_KEY_PREFIX + digest


def owner_prefix(owner: bytes) -> bytes:
    return b"ev/o/" + owner + b"/"


def owner_entries(height: int, txs: Sequence[Transaction], receipts: Sequence[Receipt]) -> dict[bytes, bytes]:
    """The owner index entries of a block: each first deposit of a digest, by its depositor.

    A transaction is indexed when its receipt reports a ``deposited`` event (a failed
    transaction, or a second deposit of a digest, reports none).
    """
    entries: dict[bytes, bytes] = {}
    for index, (tx, receipt) in enumerate(zip(txs, receipts, strict=True)):
        deposited = any(e.contract == EVIDENCE_CONTRACT and e.name == "deposited" for e in receipt.events)
        if receipt.status != STATUS_OK or not deposited:
            continue
        args = decode(tx.args, EvidencePut, canonical=False)
        entries[owner_prefix(tx.sender) + _LOC.pack(height, index)] = args.digest
    return entries


def check_put(args: EvidencePut) -> None:
    """The limits of a deposit, stateless: admission and ``put`` both apply exactly this rule."""
    # The digest is a 256-, 384- or 512-bit hash of the file.
    if len(args.digest) not in DIGEST_SIZES:
        raise InvalidArguments(f"digest must be 32, 48 or 64 bytes, got {len(args.digest)}")
    # A hash named in the metadata is one a verifier knows, and the digest has its size.
    named = args.metadata.get(DIGEST_ALGORITHM_KEY)
    if named is not None and named not in DIGEST_ALGORITHMS:
        raise InvalidArguments(
            f"metadata {DIGEST_ALGORITHM_KEY} {named!r} is not one of {', '.join(DIGEST_ALGORITHMS)}"
        )
    if named is not None and DIGEST_ALGORITHMS[named] != len(args.digest):
        raise InvalidArguments(
            f"a {named} digest is {DIGEST_ALGORITHMS[named]} bytes, got {len(args.digest)}"
        )
    # The name is short enough to index and show.
    if len(args.name.encode()) > MAX_NAME:
        raise InvalidArguments(f"name of {len(args.name.encode())} bytes exceeds {MAX_NAME}")
    # Metadata is small: a handful of string pairs.
    meta_size = sum(len(k.encode()) + len(v.encode()) for k, v in args.metadata.items())
    if len(args.metadata) > MAX_METADATA_ENTRIES or meta_size > MAX_METADATA_BYTES:
        raise InvalidArguments(
            f"metadata of {len(args.metadata)} entries and {meta_size} bytes exceeds "
            f"{MAX_METADATA_ENTRIES} entries or {MAX_METADATA_BYTES} bytes"
        )
    # The optional payload is at most 64 KiB.
    if len(args.payload) > MAX_PAYLOAD:
        raise InvalidArguments(f"payload of {len(args.payload)} bytes exceeds {MAX_PAYLOAD}")


def put(ctx: CallContext, args: EvidencePut) -> EvidencePutResult:
    """Deposit a digest; a second deposit of the same digest returns the original height and time."""
    # The arguments keep within the deposit's limits (a block may hold what admission refused).
    check_put(args)
    key = digest_key(args.digest)
    existing = ctx.state.get(key)
    if existing is not None:
        first = decode(existing, EvidenceRecord, canonical=False)
        return EvidencePutResult(first.digest, first.height, first.time, first.tx_hash, True)
    record = EvidenceRecord(
        args.digest,
        args.name,
        args.metadata,
        args.payload,
        ctx.sender,
        ctx.height,
        ctx.time,
        ctx.tx_hash,
    )
    ctx.state.set(key, encode(record))
    ctx.emit("deposited", {"digest": args.digest, "name": args.name, "owner": ctx.sender})
    return EvidencePutResult(args.digest, ctx.height, ctx.time, ctx.tx_hash, False)


CONTRACT = Contract("evidence", {"put": Method("put", EvidencePut, put, check_put)})


def decode_record(raw: bytes) -> EvidenceRecord:
    return decode(raw, EvidenceRecord, canonical=False)
