"""A node that keeps only its latest heights provable (``state_heights_kept``) prunes the rest.

The store must then hold exactly the state map nodes that the kept heights reach (nothing
leaked, nothing missing), every kept height must still prove its keys, an older one must be
refused with its own problem (``state-pruned``, 410), and the node must restart on what is left.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx

from conftest import NodeProcess, free_port, run_cli
from test_smt import naive_root
from zhongshu.contracts.evidence import digest_key
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.ledger.smt import PLACEHOLDER, get_child_keys, node_key, verify_proof
from zhongshu.node import errors
from zhongshu.node.home import CONFIG_FILE, HomeError, init_single_home, load_home
from zhongshu.node.signer import Signer
from zhongshu.node.solo_node import SoloNode
from zhongshu.node.statemap_worker import MIN_WRITES
from zhongshu.sdk import Client
from zhongshu.sdk.tx import evidence_tx

FAR = 1_000_000
KEPT = 3


def _solo(home: Path, kept: int) -> SoloNode:
    if not home.exists():
        init_single_home(home, now_ms=time.time_ns() // 1_000_000)
    config, genesis, key = load_home(home)
    return SoloNode(
        genesis,
        config.data_dir,
        Signer(key, home / "signer_state.json"),
        verify_workers=1,
        state_heights_kept=kept,
    )


async def _deposit(node: SoloNode, key: PrivateKey, count: int) -> tuple[int, list[bytes]]:
    """``count`` deposits in one submission: the height of their block, and their digests."""
    digests = [os.urandom(32) for _ in range(count)]
    txs = [
        evidence_tx(key, node.chain_id, node.genesis_hash, d, f"f{n}.pdf", FAR) for n, d in enumerate(digests)
    ]
    committed = await node.wait_committed(await node.submit(txs), timeout=60)
    return max(c.height for c in committed), digests


def _reachable(node: SoloNode, heights: range) -> set[bytes]:
    """Every node key the roots of ``heights`` reach, walked from their headers' roots."""
    seen: set[bytes] = set()
    with node.store.state_map_reader() as nodes:
        for h in heights:
            root = node.store.load_header(h).state_root
            queue = [] if root == PLACEHOLDER else [node_key(h, root)]
            while queue:
                key = queue.pop()
                if key in seen:
                    continue
                stored = nodes.get_node(key)
                assert stored is not None, f"height {h} reaches a node that is gone"
                seen.add(key)
                queue.extend(get_child_keys(stored))
    return seen


def test_a_node_keeps_exactly_the_nodes_of_its_last_heights(tmp_path: Path) -> None:
    home = tmp_path / "home"

    async def build() -> dict[int, list[bytes]]:
        node = _solo(home, KEPT)
        runner = asyncio.create_task(node.run())
        key = get_suite("sm").generate_private_key()
        deposited: dict[int, list[bytes]] = {}
        try:
            # Small blocks (mapped in the node's process), one large (in the map worker), more small.
            for count in (3, 2, 4, MIN_WRITES, 5, 1, 3, 2):
                height, digests = await _deposit(node, key, count)
                deposited.setdefault(height, []).extend(digests)
            tip = node.height
            assert node.metrics.map_worker_blocks >= 1
            assert node.store.state_provable_from() == tip - KEPT + 1
            # Exactly the nodes of the kept heights are stored: no stale node left behind, none
            # a kept height needs taken away.
            kept = _reachable(node, range(tip - KEPT + 1, tip + 1))
            assert node.store.state_map_nodes() == len(kept)
            # The tip's root is the whole state's, by the tree's definition.
            state = dict(node.store.scan_state(b"", limit=1_000_000))
            assert node.store.load_header(tip).state_root == naive_root(node.hash, state)
            # Every kept height proves its deposits; the height before them is refused.
            for h in range(tip - KEPT + 1, tip + 1):
                for digests in deposited.values():
                    at = node.prove_state(digest_key(digests[0]), h)
                    root = at.record.block.header.state_root
                    assert verify_proof(node.hash, root, at.key, at.value, at.proof)
            try:
                node.prove_state(digest_key(deposited[tip][0]), tip - KEPT)
            except errors.StatePruned as exc:
                assert f"from height {tip - KEPT + 1}" in str(exc)
            else:
                raise AssertionError("a pruned height was proven")
        finally:
            node.close()
            await runner
        return deposited

    deposited = asyncio.run(build())

    async def restart() -> None:
        # The node starts again on what is left (its start-up walk of the map passes) and
        # goes on pruning as it makes blocks.
        node = _solo(home, KEPT)
        runner = asyncio.create_task(node.run())
        try:
            before = node.height
            height, _ = await _deposit(node, get_suite("sm").generate_private_key(), 2)
            assert height == before + 1
            assert node.store.state_provable_from() == height - KEPT + 1
            assert node.store.state_map_nodes() == len(_reachable(node, range(height - KEPT + 1, height + 1)))
            last = max(deposited)
            at = node.prove_state(digest_key(deposited[last][0]), height)
            assert at.value is not None
            assert verify_proof(node.hash, at.record.block.header.state_root, at.key, at.value, at.proof)
        finally:
            node.close()
            await runner

    asyncio.run(restart())


def test_by_default_every_height_stays(tmp_path: Path) -> None:
    async def scenario() -> None:
        node = _solo(tmp_path / "home", 0)
        runner = asyncio.create_task(node.run())
        key = get_suite("sm").generate_private_key()
        try:
            await _deposit(node, key, 1)
            first, digests = await _deposit(node, key, 2)
            for _ in range(4):
                await _deposit(node, key, 2)
            assert node.store.state_provable_from() == 1
            # Nothing will be pruned: no stale node is indexed either.
            assert node.store.stale_state_nodes() == 0
            at = node.prove_state(digest_key(digests[0]), first)
            assert verify_proof(node.hash, at.record.block.header.state_root, at.key, at.value, at.proof)
            assert node.prove_state(digest_key(digests[0]), first - 1).value is None
        finally:
            node.close()
            await runner

    asyncio.run(scenario())


def test_state_heights_kept_must_not_be_negative(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_single_home(home, now_ms=time.time_ns() // 1_000_000)
    doc = json.loads((home / CONFIG_FILE).read_text())
    assert load_home(home)[0].state_heights_kept == 0
    for bad in (-1, "3", 2.5):
        doc["state_heights_kept"] = bad
        (home / CONFIG_FILE).write_text(json.dumps(doc))
        try:
            load_home(home)
        except HomeError as exc:
            assert "state_heights_kept" in str(exc)
        else:
            raise AssertionError(f"state_heights_kept {bad!r} was taken")


def test_a_pruned_height_gets_its_problem_document(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "home"
    init_single_home(home, port=port, now_ms=time.time_ns() // 1_000_000)
    doc = json.loads((home / CONFIG_FILE).read_text())
    doc["state_heights_kept"] = 2
    (home / CONFIG_FILE).write_text(json.dumps(doc))
    node = NodeProcess(home, port)
    try:
        node.restart()
        key = get_suite("sm").generate_private_key()
        with Client(node.url, "main") as client:
            digests = [os.urandom(32) for _ in range(4)]
            heights = [client.put_evidence(key, d, f"f{i}.pdf").height for i, d in enumerate(digests)]
        tip = heights[-1]
        old = httpx.get(
            node.api(f"/evidence/{digests[0].hex()}"), params={"height": tip - 2, "proof": "true"}
        )
        assert old.status_code == 410, old.text
        assert old.headers["content-type"].startswith("application/problem+json")
        assert old.json()["type"].endswith("/problems/state-pruned")
        assert f"from height {tip - 1}" in old.json()["detail"]
        state = httpx.get(node.api(f"/state/{digest_key(digests[0]).hex()}"), params={"height": tip - 2})
        assert state.status_code == 410, state.text
        kept = httpx.get(
            node.api(f"/evidence/{digests[0].hex()}"), params={"height": tip - 1, "proof": "true"}
        )
        assert kept.status_code == 200, kept.text
        # The command line says it in one line and exits 1 (refused by the node).
        key_hex = digest_key(digests[0]).hex()
        cli = run_cli("state", "get", key_hex, "--height", str(tip - 2), "--api", node.url)
        assert cli.returncode == 1, (cli.stdout, cli.stderr)
        lines = cli.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "state_heights_kept" in lines[0], lines
    finally:
        node.teardown()
