"""Property tests of the RFC 6962 Merkle code and the history accumulator, with SHA-256 and SM3."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhongshu.crypto.sm import sm3
from zhongshu.ledger.history import HistoryAccumulator
from zhongshu.ledger.merkle import (
    Hasher,
    ProofError,
    compute_root,
    consistency_proof,
    hash_children,
    hash_leaf,
    inclusion_proof,
    root_from_inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


HASHERS = [pytest.param(sha256, id="sha256"), pytest.param(sm3, id="sm3")]

# Distinct leaf data: with repeated leaves a proof for one index can honestly verify at another.
# Hypothesis favours short lists, so half the examples take a size uniformly from 1..48.
leaf_lists = st.one_of(
    st.lists(st.binary(max_size=12), min_size=1, max_size=48, unique=True),
    st.builds(
        lambda n, salt: [salt + i.to_bytes(2, "big") for i in range(n)],
        st.integers(1, 48),
        st.binary(max_size=4),
    ),
)
PROPS = settings(max_examples=60, deadline=None)


def naive_root(h: Hasher, leaf_hashes: list[bytes]) -> bytes:
    """RFC 6962 2.1 MTH, recursively, straight from the definition."""
    n = len(leaf_hashes)
    if n == 0:
        return h(b"")
    if n == 1:
        return leaf_hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hash_children(h, naive_root(h, leaf_hashes[:k]), naive_root(h, leaf_hashes[k:]))


def flip(data: bytes, pos: int) -> bytes:
    out = bytearray(data)
    out[pos % len(out)] ^= 1 << (pos % 8)
    return bytes(out)


@pytest.mark.parametrize("h", HASHERS)
@PROPS
@given(items=st.lists(st.binary(max_size=12), max_size=70))
def test_root_matches_rfc6962_definition(h: Hasher, items: list[bytes]) -> None:
    leaves = [hash_leaf(h, d) for d in items]
    assert compute_root(h, items) == root_from_leaf_hashes(h, leaves) == naive_root(h, leaves)


@pytest.mark.parametrize("h", HASHERS)
@PROPS
@given(items=leaf_lists, data=st.data())
def test_inclusion_proofs(h: Hasher, items: list[bytes], data: st.DataObject) -> None:
    leaves = [hash_leaf(h, d) for d in items]
    n = len(leaves)
    root = compute_root(h, items)
    assert root == root_from_leaf_hashes(h, leaves)
    for i in range(n):
        proof = inclusion_proof(h, leaves, i)
        verify_inclusion(h, i, n, leaves[i], proof, root)
        assert root_from_inclusion_proof(h, i, n, leaves[i], proof) == root
        # Any other index with the same proof fails.
        for j in range(n):
            if j != i:
                with pytest.raises(ProofError):
                    verify_inclusion(h, j, n, leaves[i], proof, root)
        # A flipped bit anywhere in the proof, the leaf hash or the root fails.
        if proof:
            k = data.draw(st.integers(0, len(proof) - 1), label="proof node")
            pos = data.draw(st.integers(0, 8 * len(proof[k]) - 1), label="bit")
            bad = [*proof[:k], flip(proof[k], pos), *proof[k + 1 :]]
            with pytest.raises(ProofError):
                verify_inclusion(h, i, n, leaves[i], bad, root)
            with pytest.raises(ProofError):
                verify_inclusion(h, i, n, leaves[i], proof[:-1], root)
        with pytest.raises(ProofError):
            verify_inclusion(h, i, n, leaves[i], [*proof, leaves[i]], root)
        with pytest.raises(ProofError):
            verify_inclusion(h, i, n, flip(leaves[i], i), proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(h, i, n, leaves[i], proof, flip(root, i))
    with pytest.raises(ProofError):
        inclusion_proof(h, leaves, n)


@pytest.mark.parametrize("h", HASHERS)
@PROPS
@given(items=leaf_lists, data=st.data())
def test_consistency_proofs(h: Hasher, items: list[bytes], data: st.DataObject) -> None:
    leaves = [hash_leaf(h, d) for d in items]
    n = len(leaves)
    roots = [root_from_leaf_hashes(h, leaves[:m]) for m in range(n + 1)]
    for m in range(1, n + 1):
        proof = consistency_proof(h, leaves, m)
        verify_consistency(h, m, n, roots[m], roots[n], proof)
        pos = data.draw(st.integers(0, 255), label="bit")
        with pytest.raises(ProofError):
            verify_consistency(h, m, n, flip(roots[m], pos), roots[n], proof)
        with pytest.raises(ProofError):
            verify_consistency(h, m, n, roots[m], flip(roots[n], pos), proof)
        if proof:
            k = data.draw(st.integers(0, len(proof) - 1), label="proof node")
            bad = [*proof[:k], flip(proof[k], pos), *proof[k + 1 :]]
            with pytest.raises(ProofError):
                verify_consistency(h, m, n, roots[m], roots[n], bad)
            with pytest.raises(ProofError):
                verify_consistency(h, m, n, roots[m], roots[n], proof[:-1])
        with pytest.raises(ProofError):
            verify_consistency(h, m, n, roots[m], roots[n], [*proof, roots[m]])
    with pytest.raises(ProofError):
        consistency_proof(h, leaves, n + 1)


@pytest.mark.parametrize("h", HASHERS)
@PROPS
@given(items=st.lists(st.binary(max_size=12), max_size=70))
def test_history_accumulator_matches_compute_root(h: Hasher, items: list[bytes]) -> None:
    acc = HistoryAccumulator(h)
    assert acc.size == 0
    assert acc.root() == compute_root(h, [])
    for i, item in enumerate(items, start=1):
        acc.append(item)
        assert acc.size == i
        assert acc.root() == compute_root(h, items[:i])
        # The frontier holds one perfect subtree per set bit of the size.
        assert len(acc.frontier) == bin(i).count("1")
    # A copy rebuilt from (size, frontier) continues identically.
    resumed = HistoryAccumulator(h, acc.size, list(acc.frontier))
    resumed.append(b"next")
    acc.append(b"next")
    assert resumed.root() == acc.root() == compute_root(h, [*items, b"next"])


@pytest.mark.parametrize("h", HASHERS)
def test_every_size_up_to_70(h: Hasher) -> None:
    """Exhaustively over sizes, every inclusion and consistency proof verifies."""
    items = [i.to_bytes(2, "big") for i in range(70)]
    leaves = [hash_leaf(h, d) for d in items]
    roots = [root_from_leaf_hashes(h, leaves[:n]) for n in range(71)]
    acc = HistoryAccumulator(h)
    for n in range(1, 71):
        acc.append(items[n - 1])
        assert roots[n] == naive_root(h, leaves[:n]) == acc.root()
        for i in range(n):
            verify_inclusion(h, i, n, leaves[i], inclusion_proof(h, leaves[:n], i), roots[n])
        for m in range(1, n + 1):
            proof = consistency_proof(h, leaves[:n], m)
            verify_consistency(h, m, n, roots[m], roots[n], proof)


def test_sha256_and_sm3_trees_differ() -> None:
    items = [b"a", b"b", b"c"]
    assert compute_root(sha256, items) != compute_root(sm3, items)
    assert len(compute_root(sm3, items)) == 32
