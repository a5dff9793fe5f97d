"""Property tests of the sparse Merkle tree's proofs across versions (ledger/smt.py).

Random histories of blocks over a small key space, so that keys are rewritten and deleted
often, are applied one block (one version: block i is version i) after another to one
MemoryNodeStore. Afterwards,
for every version v and every key, written or never written:

- the key's proof at v verifies against v's root with the key's value at v, or as absent when
  the key was never written or was deleted by then (also through its encoded bytes);
- the same proof fails for any other value: a membership proof fails as a proof of absence,
  and a proof of absence fails for any value;
- the same proof fails against the root of every version whose root differs from v's, for
  the value at v, the value at that version, or absence (a proof leads to one root only);
- two versions have the same root exactly when they hold the same map.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhongshu.crypto import get_suite
from zhongshu.ledger.smt import (
    PLACEHOLDER,
    MemoryNodeStore,
    SparseMerkleTree,
    encode_proof,
    verify_proof,
    verify_proof_bytes,
)

Hasher = Callable[[bytes], bytes]
History = tuple[list[bytes], list[dict[bytes, bytes | None]]]

HASHERS = [
    pytest.param(get_suite("sm").hasher(), id="sm3"),
    pytest.param(get_suite("intl").hasher(), id="sha256"),
]
# Few values, so that a key often holds at one version the value it held at another.
VALUES = [b"", b"0", b"1", b"01"]
# Keys of the map are at most 3 bytes; these are never written.
NEVER_WRITTEN = [b"never-written", b"also never written"]


@st.composite
def histories(draw: st.DrawFn) -> History:
    """A small key space and 1 to 10 blocks of writes and deletes over it."""
    universe = draw(st.lists(st.binary(max_size=3), min_size=1, max_size=8, unique=True))
    value_or_delete = st.none() | st.sampled_from(VALUES)
    block = st.dictionaries(st.sampled_from(universe), value_or_delete, max_size=len(universe))
    return universe, draw(st.lists(block, min_size=1, max_size=10))


def apply_to_map(state: dict[bytes, bytes], block: dict[bytes, bytes | None]) -> dict[bytes, bytes]:
    """The plain map after a block: the model the tree's versions are checked against."""
    after = dict(state)
    for key, value in block.items():
        if value is None:
            after.pop(key, None)
        else:
            after[key] = value
    return after


@pytest.mark.parametrize("h", HASHERS)
@settings(max_examples=150, deadline=None)
@given(history=histories())
def test_each_version_proves_each_key_and_nothing_else(h: Hasher, history: History) -> None:
    universe, blocks = history
    tree = SparseMerkleTree(h, MemoryNodeStore())
    roots, maps = [PLACEHOLDER], [dict[bytes, bytes]()]
    # Block i is version i; the empty map before the first block is version 0.
    for version, block in enumerate(blocks, start=1):
        root, nodes = tree.apply(roots[-1], version - 1, block, version)
        tree.store.put_nodes(nodes)
        roots.append(root)
        maps.append(apply_to_map(maps[-1], block))
    # The root names the map: equal roots exactly for equal maps.
    for root, state in zip(roots, maps, strict=True):
        assert [other == root for other in roots] == [other == state for other in maps]
    for version, (root, state) in enumerate(zip(roots, maps, strict=True)):
        for key in [*universe, *NEVER_WRITTEN]:
            value = state.get(key)
            proof = tree.prove(root, version, key)
            # The key's value at this version, or its absence, against this version's root.
            assert verify_proof(h, root, key, value, proof)
            assert verify_proof_bytes(h, root, key, value, encode_proof(proof))
            # No other value, nor absence for a present key, nor presence for an absent one.
            for other in [None, *VALUES, b"not a value"]:
                if other != value:
                    assert not verify_proof(h, root, key, other, proof)
            # No other version's root, unless that version has this root (the same map).
            for other_root, other_state in zip(roots, maps, strict=True):
                if other_root != root:
                    for claimed in {value, other_state.get(key), None}:
                        assert not verify_proof(h, other_root, key, claimed, proof)
