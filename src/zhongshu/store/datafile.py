"""The LMDB data file read with struct, never mapped: its size and free-page list against its meta.

This runs before LMDB opens the file. A data file shorter than the pages its meta says are in
use has lost its tail, and mapping it and reading past its end kills the process with SIGBUS.
A damaged free-page list passes every read and stops the node at its first write, because
only writes consult it; its pages are among the last ones written, at the file's tail.

The layout is LMDB 0.9's (``mdb.c``), in the machine's byte order. Pages 0 and 1 are meta pages;
the one with the larger transaction id is current. Every page starts with a 16-byte header:

====== ===============================================================================
offset page header
====== ===============================================================================
0      ``mp_pgno`` u64, the page's own number
10     ``mp_flags`` u16: 0x01 branch, 0x02 leaf, 0x04 overflow, 0x08 meta
12     ``mp_lower`` u16 (end of the node offsets, which start at 16) or, on an overflow
       page, ``mp_pages`` u32, its length in pages
14     ``mp_upper`` u16, start of the node area
====== ===============================================================================

A meta page goes on with ``MDB_meta``: ``mm_magic`` u32 (0xBEEFC0DE) at 16, ``mm_version``
u32 (1) at 20, ``mm_mapsize`` u64 at 32, the free-page tree's ``MDB_db`` at 40 (its ``md_pad``
u32 holds the page size, then ``md_depth`` u16 at 46, ``md_entries`` u64 at 72, ``md_root``
u64 at 80), ``mm_last_pg`` u64 at 136 and ``mm_txnid`` u64 at 144.

A node (at its offset in the page) is ``lo`` u16, ``hi`` u16, ``flags`` u16, ``ksize`` u16,
then the key, then on a leaf the data of ``lo | hi << 16`` bytes, or with flag 0x01 the u64
number of the overflow page holding it; on a branch ``lo | hi << 16 | flags << 32`` is the
child page. A free-page record's key is a transaction id; its data is a list of u64, a count
then that many page numbers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from zhongshu.store.errors import StoreDamaged

DATA_FILE = "data.mdb"

_MAGIC = 0xBEEFC0DE
_VERSION = 1
_P_BRANCH, _P_LEAF, _P_OVERFLOW, _P_META = 0x01, 0x02, 0x04, 0x08
_F_BIGDATA = 0x01
_P_INVALID = 2**64 - 1
"""The root of an empty tree."""
_MIN_PAGE_SIZE, _MAX_PAGE_SIZE = 512, 0x10000
_MAX_DEPTH = 32
"""LMDB's CURSOR_STACK: no tree is deeper."""
_PAGE_HEADER = struct.Struct("=QHHHH")
"""pgno, pad, flags, lower, upper."""
_NODE = struct.Struct("=HHHH")
"""lo, hi, flags, ksize."""
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_META_SIZE = 152
"""Bytes of a meta page read: its header and ``MDB_meta`` up to and including ``mm_txnid``."""


@dataclass(frozen=True)
class MetaPage:
    """One of the two meta pages of the data file."""

    page_size: int
    map_size: int
    """The map size LMDB recorded; every page in use lies inside it."""
    last_page: int
    """The last page number in use."""
    txn_id: int
    """The transaction that wrote this meta; the larger of the two is current."""
    free_root: int
    """The root page of the free-page tree, or ``_P_INVALID`` when it is empty."""
    free_depth: int
    """The free-page tree's depth: its leaves are this many pages below the root, root included."""
    free_entries: int
    """How many records the free-page tree holds."""


class _Damage(Exception):
    """A finding inside the data file, turned into StoreDamaged with the store's path."""


def load_meta_page(raw: bytes, number: int) -> MetaPage | None:
    """Decode meta page ``number`` from its first bytes; None unless it is a meta page."""
    if len(raw) < _META_SIZE:
        return None
    pgno, _, flags, _, _ = _PAGE_HEADER.unpack_from(raw, 0)
    magic, version = _U32.unpack_from(raw, 16)[0], _U32.unpack_from(raw, 20)[0]
    # A meta page names itself, is flagged as meta, and carries LMDB's magic and version.
    if pgno != number or not flags & _P_META or magic != _MAGIC or version != _VERSION:
        return None
    return MetaPage(
        page_size=_U32.unpack_from(raw, 40)[0],
        map_size=_U64.unpack_from(raw, 32)[0],
        last_page=_U64.unpack_from(raw, 136)[0],
        txn_id=_U64.unpack_from(raw, 144)[0],
        free_root=_U64.unpack_from(raw, 80)[0],
        free_depth=_U16.unpack_from(raw, 46)[0],
        free_entries=_U64.unpack_from(raw, 72)[0],
    )


def check_data_file(path: Path) -> None:
    """Raise StoreDamaged unless ``path/data.mdb`` is absent, empty, or whole and consistent.

    Whole: both meta pages are LMDB meta pages, the pages in use fit in the recorded map, and
    the file is as long as those pages. Consistent: every page of the free-page list names
    itself and has the kind and bounds its place needs, and every page number it lists is in
    use. Reads the file with ``read``; never maps it. An absent or empty file is a new store
    (LMDB writes its meta pages on open).
    """
    file = path / DATA_FILE
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with file.open("rb") as f:
        try:
            _check_open_file(f, size)
        except _Damage as exc:
            raise StoreDamaged(path, str(exc)) from None


def _check_open_file(f: BinaryIO, size: int) -> None:
    first = load_meta_page(f.read(_META_SIZE), 0)
    # Page 0 is a meta page with a page size LMDB can have written.
    if first is None or not _MIN_PAGE_SIZE <= first.page_size <= _MAX_PAGE_SIZE:
        raise _Damage(f"page 0 of {DATA_FILE} is not an LMDB meta page")
    page_size = first.page_size
    # Both meta pages are there.
    if size < 2 * page_size:
        raise _Damage(f"{DATA_FILE} is {size} bytes, shorter than its two meta pages")
    f.seek(page_size)
    second = load_meta_page(f.read(_META_SIZE), 1)
    # Page 1 is a meta page too, with the same page size.
    if second is None or second.page_size != page_size:
        raise _Damage(f"page 1 of {DATA_FILE} is not an LMDB meta page")
    meta = max(first, second, key=lambda m: m.txn_id)
    in_use = (meta.last_page + 1) * page_size
    # The pages in use fit in the map LMDB recorded with them.
    if in_use > meta.map_size:
        raise _Damage(
            f"{DATA_FILE} says pages 0..{meta.last_page} are in use, past its map of {meta.map_size} bytes"
        )
    # The file holds every page in use: nothing was cut off its tail.
    if size < in_use:
        raise _Damage(
            f"{DATA_FILE} is {size} bytes but its pages 0..{meta.last_page} need {in_use}: "
            "the file is truncated"
        )
    _FreeList(f, meta).check()


class _FreeList:
    """The free-page tree of the current meta, read page by page with ``read``."""

    def __init__(self, f: BinaryIO, meta: MetaPage) -> None:
        self.f = f
        self.meta = meta
        self.page_size = meta.page_size

    def check(self) -> None:
        """Walk the whole tree; raise _Damage at the first page or record that cannot be LMDB's."""
        if self.meta.free_root == _P_INVALID:
            return
        # The tree is no deeper than LMDB's cursors can walk.
        if not 1 <= self.meta.free_depth <= _MAX_DEPTH:
            raise _Damage(f"the free list's depth is {self.meta.free_depth}")
        records = 0
        pending = [(self.meta.free_root, 1)]
        while pending:
            pgno, depth = pending.pop()
            page = self._read(pgno, 1, "free-list page")
            flags, offsets = self._nodes(pgno, page)
            # Branches sit above the tree's depth and leaves at it.
            if flags & _P_BRANCH and depth < self.meta.free_depth:
                for offset in offsets:
                    lo, hi, nflags, _ = _NODE.unpack_from(page, offset)
                    pending.append((lo | hi << 16 | nflags << 32, depth + 1))
            elif flags & _P_LEAF and depth == self.meta.free_depth:
                for offset in offsets:
                    self._check_record(pgno, page, offset)
                records += len(offsets)
            else:
                raise _Damage(f"free-list page {pgno} is not the branch or leaf its place in the tree needs")
        # The tree holds as many records as the meta counts.
        if records != self.meta.free_entries:
            raise _Damage(f"the free list holds {records} records, its meta counts {self.meta.free_entries}")

    def _read(self, pgno: int, pages: int, what: str) -> bytes:
        # Only pages in use are referred to, never the meta pages.
        if not 2 <= pgno <= self.meta.last_page - pages + 1:
            raise _Damage(f"a {what} is page {pgno}, outside the pages in use")
        self.f.seek(pgno * self.page_size)
        page = self.f.read(pages * self.page_size)
        # A page names itself.
        if _U64.unpack_from(page, 0)[0] != pgno:
            raise _Damage(f"page {pgno} (a {what}) does not name itself: it was overwritten")
        return page

    def _nodes(self, pgno: int, page: bytes) -> tuple[int, list[int]]:
        _, _, flags, lower, upper = _PAGE_HEADER.unpack_from(page, 0)
        # The node offsets and the node area lie inside the page, offsets before nodes.
        if not _PAGE_HEADER.size <= lower <= upper <= self.page_size or lower % 2:
            raise _Damage(f"free-list page {pgno} has node bounds {lower}..{upper}")
        count = (lower - _PAGE_HEADER.size) // 2
        offsets = list(struct.unpack_from(f"={count}H", page, _PAGE_HEADER.size))
        # Every node starts in the node area with its header inside the page.
        if any(not upper <= o <= self.page_size - _NODE.size for o in offsets):
            raise _Damage(f"free-list page {pgno} has a node outside its node area")
        return flags, offsets

    def _check_record(self, pgno: int, page: bytes, offset: int) -> None:
        lo, hi, nflags, ksize = _NODE.unpack_from(page, offset)
        size = lo | hi << 16
        start = offset + _NODE.size + ksize
        # The key is a transaction id no newer than the meta's.
        if ksize != _U64.size or start > self.page_size:
            raise _Damage(f"free-list page {pgno} has a record whose key is {ksize} bytes")
        if _U64.unpack_from(page, offset + _NODE.size)[0] > self.meta.txn_id:
            raise _Damage(f"free-list page {pgno} has a record of a transaction after the meta's")
        if nflags & _F_BIGDATA:
            # Data kept on overflow pages: a first page flagged overflow, long enough for it.
            if start + _U64.size > self.page_size:
                raise _Damage(f"free-list page {pgno} has a record cut by the page's end")
            first = _U64.unpack_from(page, start)[0]
            head = self._read(first, 1, "free-list overflow page")
            pages = _U32.unpack_from(head, 12)[0]
            if not _U16.unpack_from(head, 10)[0] & _P_OVERFLOW or pages * self.page_size < size + 16:
                raise _Damage(f"page {first} is not the overflow page its free-list record needs")
            data = self._read(first, pages, "free-list overflow page")[16 : 16 + size]
        else:
            # Data kept in the node lies inside the page.
            if start + size > self.page_size:
                raise _Damage(f"free-list page {pgno} has a record cut by the page's end")
            data = page[start : start + size]
        count = _U64.unpack_from(data, 0)[0] if size >= _U64.size else -1
        # The data is a count and that many page numbers, all of pages in use.
        if not 0 <= count < size // _U64.size:
            raise _Damage(f"free-list page {pgno} has a record of {size} bytes listing {count} pages")
        listed = struct.unpack_from(f"={count}Q", data, _U64.size)
        if any(not 2 <= p <= self.meta.last_page for p in listed):
            raise _Damage(f"free-list page {pgno} lists a page outside the pages in use")
