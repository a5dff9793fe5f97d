"""A large block's state map update runs in a worker process (node/statemap_worker.py).

The worker must give exactly what the node's own process gives: the header's ``state_root`` is
checked against ``naive_root`` (test_smt.py, the tree's definition over the whole stored state,
written apart from ledger/smt.py), and state proofs from the worker's nodes verify. A worker
killed from outside is replaced, and the next block is still right.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from test_smt import naive_root
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.ledger.smt import PLACEHOLDER, SparseMerkleTree, verify_proof
from zhongshu.node.home import init_single_home, load_home
from zhongshu.node.signer import Signer
from zhongshu.node.solo_node import SoloNode
from zhongshu.node.statemap_worker import MIN_WRITES, StateMapWorkers
from zhongshu.sdk.tx import evidence_tx
from zhongshu.store import ChainStore

FAR = 1_000_000


def _solo(tmp_path: Path) -> SoloNode:
    home = tmp_path / "home"
    init_single_home(home, now_ms=time.time_ns() // 1_000_000)
    config, genesis, key = load_home(home)
    return SoloNode(genesis, config.data_dir, Signer(key, home / "signer_state.json"), verify_workers=1)


async def _deposit(node: SoloNode, key: PrivateKey, count: int) -> int:
    """``count`` deposits in one submission; the height of the block that holds the last."""
    txs = [
        evidence_tx(key, node.chain_id, node.genesis_hash, os.urandom(32), f"f{n}.pdf", FAR)
        for n in range(count)
    ]
    hashes = await node.submit(txs)
    committed = await node.wait_committed(hashes, timeout=60)
    return max(c.height for c in committed)


def _whole_state(node: SoloNode) -> dict[bytes, bytes]:
    state = dict(node.store.scan_state(b"", limit=1_000_000))
    assert state, "the store holds no state"
    return state


def test_a_large_block_is_mapped_in_the_worker_and_gets_the_whole_states_root(tmp_path: Path) -> None:
    async def scenario() -> None:
        node = _solo(tmp_path)
        runner = asyncio.create_task(node.run())
        key = get_suite("sm").generate_private_key()
        try:
            # A small block first (mapped in the node's process), then large ones.
            await _deposit(node, key, 3)
            assert node.metrics.map_worker_blocks == 0
            for _ in range(2):
                height = await _deposit(node, key, 2 * MIN_WRITES)
            assert node.metrics.map_worker_blocks >= 2
            assert node.metrics.map_worker_cpu_seconds > 0
            root = node.store.load_header(height).state_root
            # Nothing written after the last deposit: the tip's root is the whole state's.
            assert node.height == height
            state = _whole_state(node)
            assert root == naive_root(node.hash, state)
            # Every key's proof, from nodes the worker made, verifies against the header.
            tree = SparseMerkleTree(node.hash, _Nodes(node.store))
            for k, v in list(state.items())[:: max(1, len(state) // 40)]:
                proof = tree.prove(root, height, k)
                assert verify_proof(node.hash, root, k, v, proof)
                assert not verify_proof(node.hash, root, k, v + b"x", proof)
        finally:
            node.close()
            await runner

    asyncio.run(scenario())


def test_a_killed_worker_is_replaced_and_the_next_block_is_right(tmp_path: Path) -> None:
    async def scenario() -> None:
        node = _solo(tmp_path)
        runner = asyncio.create_task(node.run())
        key = get_suite("sm").generate_private_key()
        try:
            await _deposit(node, key, MIN_WRITES)
            pool = node.map_workers._pool
            assert pool is not None and pool._processes
            (pid,) = list(pool._processes)
            os.kill(pid, signal.SIGKILL)
            height = await _deposit(node, key, MIN_WRITES)
            assert node.map_workers._pool is not pool, "the dead worker's pool is still in use"
            assert node.store.load_header(height).state_root == naive_root(node.hash, _whole_state(node))
        finally:
            node.close()
            await runner

    asyncio.run(scenario())


def test_the_worker_and_the_nodes_process_agree_with_deletes(tmp_path: Path) -> None:
    """Batches of inserts, updates and deletes applied both ways, on one LMDB store."""
    h = get_suite("sm").hasher()
    store = ChainStore(tmp_path / "data")
    worker = StateMapWorkers()
    keys = [os.urandom(20) for _ in range(600)]
    root, state = PLACEHOLDER, {}
    try:
        for version in range(1, 5):
            updates: dict[bytes, bytes | None] = {k: os.urandom(40) for k in keys[version * 100 :][:300]}
            updates.update({k: None for k in list(state)[:: 3 + version]})
            with store.state_map_reader() as nodes:
                here = SparseMerkleTree(h, nodes).apply_tracked(root, version - 1, updates, version)
            mapped = worker.apply(tmp_path / "data", "sm", root, version - 1, updates, version)
            assert mapped is not None
            there_root, there_nodes, there_stale, cpu = mapped
            assert there_root == here[0]
            assert there_nodes == sorted(here[1].items())
            assert there_stale == sorted(here[2])
            assert there_stale or version == 1
            assert cpu > 0
            _put_nodes(store, there_nodes)
            for k, v in updates.items():
                if v is None:
                    state.pop(k, None)
                else:
                    state[k] = v
            root = there_root
            assert root == naive_root(h, state)
    finally:
        worker.close()
        store.close()


class _Nodes:
    """The store's nodes as a NodeStore over one read per call (a test's reads are few)."""

    def __init__(self, store: ChainStore) -> None:
        self.store = store

    def get_node(self, node_key: bytes) -> bytes | None:
        with self.store.state_map_reader() as nodes:
            return nodes.get_node(node_key)

    def put_nodes(self, nodes: object) -> None:
        raise AssertionError("read only")


def _put_nodes(store: ChainStore, nodes: list[tuple[bytes, bytes]]) -> None:
    # What save_block does with a block's nodes, without a block around them.
    with store.env.begin(write=True) as txn:
        txn.cursor(db=store._smt).putmulti(nodes, append=True)


def test_a_block_under_the_threshold_stays_in_the_nodes_process(tmp_path: Path) -> None:
    async def scenario() -> None:
        node = _solo(tmp_path)
        runner = asyncio.create_task(node.run())
        try:
            height = await _deposit(node, get_suite("sm").generate_private_key(), MIN_WRITES - 1)
            assert node.metrics.map_worker_blocks == 0 and node.map_workers._pool is None
            assert node.store.load_header(height).state_root == naive_root(node.hash, _whole_state(node))
        finally:
            node.close()
            await runner

    asyncio.run(scenario())


def test_without_a_worker_the_node_maps_the_block_itself(tmp_path: Path) -> None:
    """Every worker it starts dies at once: the block is still made, its map computed in the node."""

    def dying_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn"), initializer=os._exit, initargs=(3,)
        )

    async def scenario() -> None:
        node = _solo(tmp_path)
        node.map_workers._get_pool = dying_pool  # type: ignore[method-assign]
        runner = asyncio.create_task(node.run())
        try:
            height = await _deposit(node, get_suite("sm").generate_private_key(), MIN_WRITES)
            assert node.metrics.map_worker_blocks == 0
            assert node.store.load_header(height).state_root == naive_root(node.hash, _whole_state(node))
        finally:
            node.close()
            await runner

    asyncio.run(scenario())


def test_one_pool_serves_several_stores_and_reopens_a_replaced_one(tmp_path: Path) -> None:
    """A hub's chains share the workers: each call names its store, and a store whose data file
    was replaced (restored from a backup) is read anew, not through the worker's old mapping."""
    h = get_suite("sm").hasher()
    paths = [tmp_path / "a", tmp_path / "b"]
    stores = [ChainStore(p) for p in paths]
    pool = StateMapWorkers(1)
    roots = [PLACEHOLDER, PLACEHOLDER]
    try:
        for version in (1, 2):
            for i, store in enumerate(stores):
                updates: dict[bytes, bytes | None] = {os.urandom(20): os.urandom(30) for _ in range(50)}
                with store.state_map_reader() as nodes:
                    here = SparseMerkleTree(h, nodes).apply_tracked(roots[i], version - 1, updates, version)
                mapped = pool.apply(paths[i], "sm", roots[i], version - 1, updates, version)
                assert mapped is not None and mapped[0] == here[0]
                assert mapped[1] == sorted(here[1].items())
                _put_nodes(store, mapped[1])
                roots[i] = mapped[0]
        # Store a is replaced by a copy of store b (a new file under the old name).
        stores[0].close()
        copy = tmp_path / "copy.mdb"
        copy.write_bytes((paths[1] / "data.mdb").read_bytes())
        os.replace(copy, paths[0] / "data.mdb")
        stores[0] = ChainStore(paths[0])
        updates = {os.urandom(20): os.urandom(30) for _ in range(50)}
        with stores[0].state_map_reader() as nodes:
            here = SparseMerkleTree(h, nodes).apply_tracked(roots[1], 2, updates, 3)
        mapped = pool.apply(paths[0], "sm", roots[1], 2, updates, 3)
        assert mapped is not None and mapped[0] == here[0]
    finally:
        pool.close()
        for store in stores:
            store.close()
