"""A damaged store is found at start and the node refuses to start on it (issue 6).

One real node commits a few blocks and stops; each test damages a copy of its home as a disk or
a careless operator might (a truncated data file, overwritten tail pages, a changed block, lost
meta) and then either starts ``zhongshu node start`` on it as a real process, which must exit at
once with one line naming the store, or runs ``ChainStore.check`` on the copy's data directory.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import lmdb
import msgspec
import pytest

from conftest import READY_TIMEOUT, NodeProcess, _release, cli_env, free_port, start_node
from zhongshu.codec import decode, encode
from zhongshu.crypto import get_suite
from zhongshu.ledger.hashing import compute_block_hash
from zhongshu.ledger.types import Block
from zhongshu.sdk import Client
from zhongshu.store import ChainStore, StoreDamaged
from zhongshu.store.datafile import DATA_FILE, load_meta_page

pytestmark = pytest.mark.slow

BLOCKS = 8
"""Blocks the built store holds (one deposit each)."""
REQUIRED_META = ("genesis_hash", "history_frontier", "history_size", "state_root")
"""The meta keys a node resumes from (chain.py's FrontierState and the genesis hash)."""
SIGBUS = -7


@dataclass(frozen=True)
class Built:
    """A stopped node's home whose store holds BLOCKS blocks."""

    home: Path
    height: int
    suite: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    base = tmp_path_factory.mktemp("built")
    node = start_node(base)
    try:
        key = get_suite(node.suite).generate_private_key()
        with Client(node.url, "main") as client:
            for i in range(BLOCKS):
                client.put_evidence(key, os.urandom(32), f"scan-{i}.pdf")
            height = client.status().height
        assert node.stop() == 0, node.log()
    finally:
        _release(node)
    assert height >= BLOCKS
    yield Built(node.home, height, node.suite)


@pytest.fixture
def home(built: Built, tmp_path: Path) -> Path:
    """A copy of the built home for one test to damage."""
    copy = tmp_path / "home"
    shutil.copytree(built.home, copy)
    return copy


def data_file(home: Path) -> Path:
    return home / "data" / DATA_FILE


def page_size(home: Path) -> int:
    with data_file(home).open("rb") as f:
        meta = load_meta_page(f.read(4096), 0)
    assert meta is not None
    return meta.page_size


def rewrite_block(home: Path, height: int, *, keep_hash_consistent: bool) -> None:
    """Store block ``height`` with a changed time, as a bad disk or a bad hand would."""
    env = lmdb.open(str(home / "data"), max_dbs=16, map_size=1 << 30)
    try:
        blocks, hashes = env.open_db(b"blocks"), env.open_db(b"hashes")
        key = height.to_bytes(8, "big")
        with env.begin(write=True) as txn:
            raw = txn.get(key, db=blocks)
            assert raw is not None
            block = decode(bytes(raw), Block, canonical=False)
            header = msgspec.structs.replace(block.header, time=block.header.time + 1)
            txn.put(key, encode(msgspec.structs.replace(block, header=header)), db=blocks)
            if keep_hash_consistent:
                txn.put(key, compute_block_hash(get_suite("sm").hasher(), header), db=hashes)
    finally:
        env.close()


def edit_meta(home: Path, key: bytes, value: bytes | None) -> None:
    env = lmdb.open(str(home / "data"), max_dbs=16, map_size=1 << 30)
    try:
        meta = env.open_db(b"meta")
        with env.begin(write=True, db=meta) as txn:
            if value is None:
                assert txn.delete(key)
            else:
                txn.put(key, value)
    finally:
        env.close()


def start_on(home: Path) -> tuple[int, str, str]:
    """Run ``zhongshu node start`` on ``home``; fail the test if it ever serves.

    Returns the exit code, stdout and stderr of a node that exited without serving.
    """
    port = free_port()
    out, err = home.parent / "start.out", home.parent / "start.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "zhongshu", "node", "start", "--home", str(home), "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=cli_env(),
        )
    deadline = time.monotonic() + READY_TIMEOUT
    try:
        with httpx.Client(timeout=1.0) as http:
            while proc.poll() is None:
                try:
                    serving = http.get(f"http://127.0.0.1:{port}/v1/chains/main/status").status_code == 200
                except httpx.HTTPError:
                    serving = False
                if serving:
                    pytest.fail(f"the node started serving on a damaged store\n{err.read_text()}")
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"the node neither served nor exited within {READY_TIMEOUT:g} s\n"
                        f"{out.read_text(errors='replace')[-3000:]}{err.read_text(errors='replace')[-3000:]}"
                    )
                time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.read_text(), err.read_text()


def assert_refused(home: Path, reason: str) -> None:
    """The node exits 1 with one line on stderr naming the store and ``reason``; no traceback."""
    code, stdout, stderr = start_on(home)
    assert code != SIGBUS, "the node died of SIGBUS"
    assert code == 1, (code, stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: the store at {home / 'data'} is damaged: "), lines[0]
    assert reason in lines[0], lines[0]
    assert "Traceback" not in stdout + stderr
    assert "node up" not in stdout


# -- real node processes ------------------------------------------------------------------


def test_an_undamaged_store_starts(built: Built, home: Path) -> None:
    node = NodeProcess(home, free_port(), suite=built.suite)
    try:
        node.restart()
        assert node.status()["height"] == built.height
        assert node.stop() == 0, node.log()
    finally:
        node.teardown()


def test_a_truncated_data_file_is_refused_without_sigbus(home: Path) -> None:
    size = data_file(home).stat().st_size
    os.truncate(data_file(home), size - 2 * page_size(home))
    assert_refused(home, "the file is truncated")


def test_overwritten_tail_pages_are_refused(home: Path) -> None:
    # The last pages written hold the free-page list, which only the first write would read.
    size, page = data_file(home).stat().st_size, page_size(home)
    with data_file(home).open("r+b") as f:
        f.seek(size - 2 * page)
        f.write(random.Random(6).randbytes(2 * page))
    assert_refused(home, "was overwritten")


def test_a_block_that_does_not_hash_to_its_stored_hash_is_refused(built: Built, home: Path) -> None:
    rewrite_block(home, built.height - 2, keep_hash_consistent=False)
    assert_refused(home, f"block {built.height - 2}'s stored hash is not the hash of its header")


def test_a_block_the_next_one_does_not_follow_is_refused(built: Built, home: Path) -> None:
    rewrite_block(home, built.height - 1, keep_hash_consistent=True)
    assert_refused(home, f"block {built.height} does not follow the stored hash of block {built.height - 1}")


# -- the store's check in process ---------------------------------------------------------


def check(home: Path) -> None:
    store = ChainStore(home / "data")
    try:
        store.check(get_suite("sm").hasher(), REQUIRED_META)
    finally:
        store.close()


def test_check_passes_an_undamaged_store(home: Path) -> None:
    check(home)


def test_check_finds_missing_meta(home: Path) -> None:
    edit_meta(home, b"state_root", None)
    with pytest.raises(StoreDamaged, match="meta 'state_root' is missing"):
        check(home)


def test_check_finds_a_height_above_the_stored_blocks(built: Built, home: Path) -> None:
    edit_meta(home, b"height", (built.height + 1).to_bytes(8, "big"))
    with pytest.raises(StoreDamaged, match=f"the last stored block is {built.height} but the stored height"):
        check(home)


def test_check_finds_an_overwritten_tail(home: Path) -> None:
    size, page = data_file(home).stat().st_size, page_size(home)
    with data_file(home).open("r+b") as f:
        f.seek(size - page)
        f.write(bytes(page))
    with pytest.raises(StoreDamaged, match="was overwritten") as caught:
        check(home)
    assert caught.value.path == home / "data"


def test_a_damaged_state_map_node_is_refused(home: Path) -> None:
    # A state map node reachable from the tip's root is changed in place: it no longer hashes
    # to the key it is stored under, which the start-up walk of the map finds.
    env = lmdb.open(str(home / "data"), max_dbs=16, map_size=1 << 30)
    try:
        nodes = env.open_db(b"state_map")
        meta = env.open_db(b"meta")
        with env.begin(write=True) as txn:
            root = bytes(txn.get(b"state_root", db=meta))
            key = bytes(txn.get(b"height", db=meta)) + root
            node = bytearray(txn.get(key, db=nodes))
            node[5] ^= 1
            txn.put(key, bytes(node), db=nodes)
    finally:
        env.close()
    assert_refused(
        home, f"state map node {root.hex()[:16]}.. of version {int.from_bytes(key[:8], 'big')} is damaged"
    )


def test_a_missing_state_map_node_is_refused(home: Path) -> None:
    env = lmdb.open(str(home / "data"), max_dbs=16, map_size=1 << 30)
    try:
        nodes = env.open_db(b"state_map")
        meta = env.open_db(b"meta")
        with env.begin(write=True) as txn:
            root = bytes(txn.get(b"state_root", db=meta))
            key = bytes(txn.get(b"height", db=meta)) + root
            assert txn.delete(key, db=nodes)
    finally:
        env.close()
    assert_refused(
        home, f"state map node {root.hex()[:16]}.. of version {int.from_bytes(key[:8], 'big')} is missing"
    )
