"""Pages of list answers: at most ``limit`` items and ``PAGE_BYTES`` of JSON, with a cursor.

Every list route answers ``{"items": [...], "next_cursor": "..." | null}``. The client passes
``next_cursor`` back unchanged as ``?cursor=`` to get the next page; null means there is nothing
more now. A page holds at least one item, so a client always makes progress.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from zhongshu.codec import encode_json
from zhongshu.node import errors

PAGE_BYTES = 1024 * 1024
"""JSON bytes of the items of one page at most (one item may be larger alone: none is, today)."""
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

Entry = tuple[str, Callable[[], Any]]
"""An item of a list: its cursor, and the function that loads its JSON view."""


def check_limit(limit: int) -> int:
    """``limit`` is a number of items between 1 and MAX_LIMIT."""
    # The page size is within bounds: refused rather than silently changed.
    if not 1 <= limit <= MAX_LIMIT:
        raise errors.BadRequest(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return limit


def render_page(entries: Iterable[Entry], limit: int, max_bytes: int = PAGE_BYTES) -> bytes:
    """The JSON page of the first entries: up to ``limit`` items and ``max_bytes`` of items.

    An entry is loaded only if it is returned; ``entries`` may hold one more than ``limit`` so
    that a full page knows whether a next one exists.
    """
    items: list[bytes] = []
    size = 0
    last = None
    for cursor, load in entries:
        if len(items) == limit:
            break
        item = encode_json(load())
        # The page stays under its byte cap, except that it always holds one item.
        if items and size + len(item) > max_bytes:
            break
        items.append(item)
        size += len(item)
        last = cursor
    else:
        last = None
    return b'{"items":[' + b",".join(items) + b'],"next_cursor":' + encode_json(last) + b"}"


def prefixes_after(value: bytes, last: bytes) -> Iterator[bytes]:
    """Prefixes covering, in order, every string ``s`` as long as ``value`` with ``value < s <= last``.

    A store that scans by prefix only reaches the keys after ``value`` through these: the strings
    sharing ``value``'s first j bytes with a greater byte at j, from the longest j down. Strings
    beyond ``last`` (none exist when it is the greatest key) end each run early, so few prefixes are
    visited; the last prefix of a run may also cover some strings beyond ``last``, never one at
    or before ``value``.
    """
    for j in reversed(range(len(value))):
        for byte in range(value[j] + 1, 256):
            head = value[:j] + bytes([byte])
            if head > last[: j + 1]:
                break
            yield head
