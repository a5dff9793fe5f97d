"""A transaction belongs to one chain: two networks whose chains share a name neither accept nor
prove each other's transactions. Real node processes, through the public API and the CLI.

Each transaction signs its chain's genesis hash (docs/proof-format.md §2); a node refuses one
signed for another genesis with ``wrong-genesis``, a block holding one is invalid, and
``zhongshu verify --trust`` refuses a bundle whose transaction was signed for a genesis other
than the trusted one.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from conftest import NodeProcess, run_cli
from zhongshu.crypto import get_suite
from zhongshu.ledger.hashing import compute_genesis_hash, compute_tx_hash
from zhongshu.ledger.types import Block, ChainParams, Genesis, Transaction, Validator, ValidatorSet
from zhongshu.node.chain import ChainNode, InvalidBlock
from zhongshu.node.signer import Signer
from zhongshu.node.txcheck import tx_to_json
from zhongshu.sdk.client import evidence_tx

SM = get_suite("sm")
FAR = 10**9
"""A valid_until far above any height these tests reach."""
HTTP_TIMEOUT = 30.0


def deposit(genesis_hash: bytes, name: str, *, chain_id: str = "main") -> Transaction:
    """A fresh evidence.put signed for the chain ``chain_id`` of ``genesis_hash``."""
    return evidence_tx(SM.generate_private_key(), chain_id, genesis_hash, os.urandom(32), name, FAR)


def post(node: NodeProcess, body: Any, **params: str) -> httpx.Response:
    return httpx.post(node.api("/txs"), json=body, params=params, timeout=HTTP_TIMEOUT)


def commit(node: NodeProcess, tx: Transaction) -> dict[str, Any]:
    """Submit with ?wait=commit; return the receipt view, which must be a success."""
    response = post(node, tx_to_json(tx), wait="commit", timeout="10")
    assert response.status_code == 200, response.text
    (receipt,) = response.json()["receipts"]
    assert receipt["receipt"]["status"] == "ok", receipt
    return dict(receipt)


def is_known(node: NodeProcess, tx: Transaction) -> bool:
    """Whether ``node`` has ``tx``, pending or committed."""
    tx_hash = compute_tx_hash(SM.hasher(), tx).hex()
    return httpx.get(node.api(f"/txs/{tx_hash}"), timeout=HTTP_TIMEOUT).status_code == 200


@pytest.mark.slow
def test_transaction_of_a_same_named_network_is_refused(
    module_twins: tuple[NodeProcess, NodeProcess],
) -> None:
    a, b = module_twins
    assert a.status()["chain_id"] == b.status()["chain_id"] == "main"
    genesis_a, genesis_b = a.genesis_hash(), b.genesis_hash()
    assert genesis_a != genesis_b
    tx = deposit(genesis_a, "for-network-a.pdf")
    commit(a, tx)
    # The very transaction committed on network A is refused by B, whose chain has A's chain's name.
    response = post(b, tx_to_json(tx))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith("/wrong-genesis"), problem
    assert genesis_a.hex() in problem["detail"] and genesis_b.hex() in problem["detail"]
    # In a batch it is named by its index, and nothing of the batch is accepted.
    own = deposit(genesis_b, "for-network-b.pdf")
    response = post(b, [tx_to_json(own), tx_to_json(tx)])
    assert response.status_code == 400, response.text
    assert [(e["index"], e["type"]) for e in response.json()["errors"]] == [(1, "wrong-genesis")]
    # B commits its own transactions; A's never reached it.
    commit(b, deposit(genesis_b, "later.pdf"))
    assert not is_known(b, tx) and not is_known(b, own)
    assert is_known(a, tx)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
def test_bundle_fails_verify_trust_with_a_same_named_genesis(
    module_twins: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    a, _ = module_twins
    key, file, bundle = tmp_path / "app.pem", tmp_path / "contract.pdf", tmp_path / "bundle.json"
    file.write_bytes(os.urandom(1000))
    ok(run_cli("keys", "new", "--out", key))
    ok(run_cli("evidence", "put", file, "--key", key, "--api", a.url, "--proof-out", bundle))
    assert ok(run_cli("verify", bundle, "--file", file, "--trust", a.genesis_path)).startswith("VALID")
    # Another network: A's genesis with the same name, suite and validators, created a moment later.
    twin = json.loads(a.genesis_path.read_text())
    twin["time"] += 1
    twin_path = tmp_path / "twin-genesis.json"
    twin_path.write_text(json.dumps(twin))
    result = run_cli("verify", bundle, "--file", file, "--trust", twin_path)
    assert result.returncode == 1, f"{result.stdout}\n{result.stderr}"
    assert "VALID" not in result.stdout
    assert "signed for another network's chain" in result.stderr, result.stderr


def test_block_holding_a_transaction_of_another_genesis_is_invalid(tmp_path: Path) -> None:
    validator = SM.generate_private_key()
    genesis = Genesis(
        "main",
        "sm",
        1_700_000_000_000,
        ValidatorSet([Validator(validator.public_bytes(), 1, "v0")]),
        ChainParams(),
    )
    node = ChainNode(genesis, tmp_path / "data", Signer(validator, tmp_path / "signer_state.json"))
    twin = compute_genesis_hash(node.hash, msgspec.structs.replace(genesis, time=genesis.time + 1))

    def proposed(txs: list[Transaction]) -> Block:
        """Block 1 as a proposer that skipped admission would build it."""
        hashes = [compute_tx_hash(node.hash, tx) for tx in txs]
        return node.execute_block(1, genesis.time + 1000, txs, hashes, validator.public_bytes()).block

    try:
        own = deposit(node.genesis_hash, "own.pdf")
        node.validate_block(proposed([own]))
        for foreign in (
            deposit(twin, "same-name.pdf"),
            deposit(node.genesis_hash, "x.pdf", chain_id="other"),
        ):
            with pytest.raises(InvalidBlock, match="another chain or genesis"):
                node.validate_block(proposed([own, foreign]))
    finally:
        node.close()
