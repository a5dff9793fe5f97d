"""An owner's evidence, page by page, from the node's owner index (contracts/evidence.py
``owner_entries``, stored beside each block; not state).

The index keys are ``ev/o/<owner>/<height u64><index u32>`` (big-endian), so key order is deposit
order, and a deposit's cursor is the hex of its 12-byte location. The store scans by prefix
only, so the entries after a cursor are read as the rest of its block, then the blocks after it
through ``paging.prefixes_after`` up to the chain's tip: a page costs a few hundred index reads
at most, however many deposits come before it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from zhongshu.contracts import evidence
from zhongshu.gateway.paging import Entry, prefixes_after
from zhongshu.node import errors
from zhongshu.node.chain import ChainNode

LOCATION = struct.Struct(">QI")
"""The owner index key's suffix: height, index of the transaction in its block."""


def decode_cursor(cursor: str) -> tuple[int, int]:
    """The (height, index) of a deposit from its cursor: 24 hex digits."""
    try:
        raw = bytes.fromhex(cursor)
    except ValueError:
        raw = b""
    # Exactly the hex of one location.
    if len(raw) != LOCATION.size:
        raise errors.BadRequest(f"cursor must be a next_cursor of this list, not {cursor[:80]!r}")
    height, index = LOCATION.unpack(raw)
    return height, index


def scan_owner(
    node: ChainNode, owner: bytes, after: tuple[int, int] | None, count: int
) -> list[tuple[bytes, bytes]]:
    """Up to ``count`` (location, digest) pairs of ``owner``'s deposits after ``after``, in order."""
    prefix = evidence.owner_prefix(owner)
    store = node.store
    if after is None:
        return [(key[len(prefix) :], digest) for key, digest in store.scan_index(prefix, count)]
    height, index = after
    block = prefix + height.to_bytes(8, "big")
    # The rest of the cursor's block: at most index + 1 of its entries come before the cursor.
    found = [
        (key[len(prefix) :], digest)
        for key, digest in store.scan_index(block, index + 1 + count)
        if LOCATION.unpack(key[len(prefix) :]) > after
    ]
    # The blocks after it, up to the tip.
    tip = node.height.to_bytes(8, "big")
    for head in prefixes_after(height.to_bytes(8, "big"), tip):
        if len(found) >= count:
            break
        rest = store.scan_index(prefix + head, count - len(found))
        found.extend((key[len(prefix) :], digest) for key, digest in rest)
    return found[:count]


def owner_entries(
    node: ChainNode, owner: bytes, after: tuple[int, int] | None, count: int
) -> Iterator[Entry]:
    """The page entries of ``owner``'s deposits after ``after``: a record is read only if shown."""
    for location, digest in scan_owner(node, owner, after, count):
        yield location.hex(), _loader(node, digest)


def _loader(node: ChainNode, digest: bytes) -> Any:
    return lambda: evidence_view(node.get_evidence(digest))


def evidence_view(record: evidence.EvidenceRecord) -> dict[str, Any]:
    return {
        "digest": record.digest.hex(),
        "name": record.name,
        "metadata": record.metadata,
        "payload": record.payload.hex(),
        "owner": record.owner.hex(),
        "height": record.height,
        "time": record.time,
        "tx_hash": record.tx_hash.hex(),
    }
