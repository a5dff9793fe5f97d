"""Blocks at the largest size the genesis allows travel between real nodes, live and by block sync.

Every P2P limit must fit the others (docs/p2p.md, "Limits"): a batch near the gateway's body
limit is gossiped in pieces, a follower fetches a large proposal's transactions in pieces, and
block sync packs as many blocks per reply as fit one frame, always at least one. Four real node
processes; node 3 is stopped while blocks of about 8 MiB (the default ``max_block_bytes``) are
committed, then restarted: it must catch up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import genesis_hash_of, wait_for
from test_network import Network, running_network
from zhongshu.crypto import get_suite
from zhongshu.ledger.genesis import load_genesis
from zhongshu.node.txcheck import tx_to_json
from zhongshu.sdk.client import evidence_tx

pytestmark = pytest.mark.slow

FAR = 1_000_000

PAYLOAD = 64 * 1024
"""The evidence contract's largest payload: each transaction is about 66 KB."""


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    with running_network(tmp_path, stop="kill") as network:
        yield network


def test_largest_blocks_gossip_and_sync(net: Network) -> None:
    genesis = load_genesis(net.root / "node0" / "genesis.json")
    max_block = genesis.params.max_block_bytes
    genesis_hash = genesis_hash_of(net.root / "node0" / "genesis.json")
    key = get_suite(genesis.suite).generate_private_key()
    assert net.stop(3) == 0
    start = net.height(0)
    # Enough 66 KB transactions for four full blocks, sent as batches of about 8 MB of JSON
    # (under the gateway's 16 MiB body limit) to different gateways.
    per_block = max_block // (PAYLOAD + 1024)
    txs = [
        evidence_tx(key, "main", genesis_hash, os.urandom(32), f"big-{n}", FAR, payload=os.urandom(PAYLOAD))
        for n in range(4 * per_block)
    ]
    batch = per_block // 2
    batches = [txs[first : first + batch] for first in range(0, len(txs), batch)]

    def send(n: int) -> httpx.Response:
        body = [tx_to_json(t) for t in batches[n]]
        with httpx.Client(timeout=120) as http:
            return http.post(f"{net.url(n % 3)}/txs", json=body, params={"wait": "commit", "timeout": "60"})

    # All batches at once, so that the mempools hold more than a block's worth.
    with ThreadPoolExecutor(len(batches)) as pool:
        answers = list(pool.map(send, range(len(batches))))
    for r in answers:
        assert r.status_code == 200, r.text[:500]
    with httpx.Client(timeout=30) as http:
        tip = net.height(0)
        sizes = []
        for height in range(start + 1, tip + 1):
            block = http.get(f"{net.url(1)}/blocks/{height}").json()
            sizes.append(block["tx_count"] * (PAYLOAD + 600))
    # Blocks near the largest size were committed (at least two above 90% of it).
    assert sum(1 for s in sizes if s >= 0.9 * max_block) >= 2, (max_block, sizes)
    # Node 3 comes back and catches up by block sync over those blocks.
    net.start(3)
    wait_for(lambda: net.height(3) >= tip, 120, f"node 3 to sync to height {tip}")
    for height in range(start + 1, tip + 1):
        hashes = {httpx.get(f"{net.url(i)}/blocks/{height}", timeout=10).json()["hash"] for i in (0, 3)}
        assert len(hashes) == 1, f"node 3 holds another block at {height}"
