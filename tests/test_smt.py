"""The sparse Merkle tree (ledger/smt.py): versions, proofs, tampering, and a naive reference.

The reference below (``naive_root``) is written apart from the module: a recursion over the
whole set of key hashes with no shortcut other than the documented one (a subtree of one leaf
is that leaf). The fixed vectors were computed once with it and are kept as hex.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhongshu.codec import DecodeError
from zhongshu.crypto import get_suite
from zhongshu.ledger.smt import (
    PLACEHOLDER,
    CorruptNode,
    MemoryNodeStore,
    MissingNode,
    NodeStore,
    ProofLeaf,
    SparseMerkleProof,
    SparseMerkleTree,
    decode_proof,
    encode_proof,
    get_child_keys,
    node_key,
    verify_proof,
    verify_proof_bytes,
)

Hasher = Callable[[bytes], bytes]

SM3 = get_suite("sm").hasher()
SHA256 = get_suite("intl").hasher()
HASHERS = [pytest.param(SM3, id="sm3"), pytest.param(SHA256, id="sha256")]
SETTINGS = settings(max_examples=100, deadline=None)


def naive_root(h: Hasher, pairs: dict[bytes, bytes]) -> bytes:
    """The root of ``pairs`` by the definition: recursion over all key hashes, bit by bit."""
    leaves = {int.from_bytes(h(k), "big"): h(v) for k, v in pairs.items()}
    return _naive_subtree(h, leaves, 0)


def _naive_subtree(h: Hasher, leaves: dict[int, bytes], depth: int) -> bytes:
    if not leaves:
        return b"\x00" * 32
    if len(leaves) == 1:
        ((path, value_hash),) = leaves.items()
        return h(b"\x00" + path.to_bytes(32, "big") + value_hash)
    left = {p: v for p, v in leaves.items() if not (p >> (255 - depth)) & 1}
    right = {p: v for p, v in leaves.items() if (p >> (255 - depth)) & 1}
    return h(b"\x01" + _naive_subtree(h, left, depth + 1) + _naive_subtree(h, right, depth + 1))


def build(h: Hasher, pairs: dict[bytes, bytes]) -> tuple[SparseMerkleTree, bytes]:
    """The tree of ``pairs`` written as version 1 of an empty store."""
    tree = SparseMerkleTree(h, MemoryNodeStore())
    root, nodes = tree.apply(PLACEHOLDER, 0, pairs, 1)
    tree.store.put_nodes(nodes)
    return tree, root


def walk_version(h: Hasher, store: NodeStore, version: int, root: bytes) -> dict[bytes, bytes]:
    """Every node of ``version``'s tree (node key -> stored bytes), from node_key(version, root).

    Each node hashes to the hash part of its key, and each stored child version names a
    stored node.
    """
    found: dict[bytes, bytes] = {}
    pending = [] if root == PLACEHOLDER else [node_key(version, root)]
    while pending:
        key = pending.pop()
        node = store.get_node(key)
        assert node is not None, key.hex()
        assert h(node[:65]) == key[8:]
        assert len(node) == (81 if node[0] == 1 else 65)
        found[key] = node
        pending += get_child_keys(node)
    return found


# Fixed vectors: maps of ASCII keys and values, roots from naive_root (computed once, kept).
VECTOR_MAPS: list[dict[bytes, bytes]] = [
    {},
    {b"a": b"1"},
    {b"a": b"1", b"b": b"2"},
    {b"a": b"1", b"b": b"2", b"c": b"3"},
    {b"evidence/" + bytes([i]): b"v" * i for i in range(10)},
]
VECTOR_ROOTS = {
    "sm3": [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "11d7c415611ca503345281bf03a60c8209a2df303c0d670a2b5d571f67dd5ae2",
        "7bcde5415ed982a348a796bf179774bd19d1463ca63faf905f2fb0e1cb028ec1",
        "1ffcb8e886a820fb323bfed9ee6d9d92d717a648c091383f509e42449b82b366",
        "0a14736e9af3b29436bbecb39770e8a69c8f71ed12642329c1099447a553ab1c",
    ],
    "sha256": [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "565388d4bc00257133f799d9366ac97f6e949c18acc53d17457f8859ba0f08d3",
        "70a50295110313dd28320faccbee14d04dc2894e877a2e407115a2f337ed4efa",
        "8e2a164a410203f51300d7c6645b7a37f549768457be109acc126c63573a9e0a",
        "1bb857213626045bb7e6b6fa881bcb1611fdf38beb8f01252cce87d00dd2e930",
    ],
}


keys = st.binary(min_size=0, max_size=6)
values = st.binary(min_size=0, max_size=4)
# A run of batches over a small key universe, so keys are updated and deleted again and again.
universes = st.lists(keys, min_size=1, max_size=14, unique=True)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[bytes], list[dict[bytes, bytes | None]]]:
    universe = draw(universes)
    batch = st.dictionaries(st.sampled_from(universe), st.none() | values, max_size=len(universe))
    return universe, draw(st.lists(batch, min_size=1, max_size=8))


@pytest.mark.parametrize("h", HASHERS)
@SETTINGS
@given(history=histories(), order=st.randoms(use_true_random=False))
def test_every_version_proves_every_key(
    h: Hasher, history: tuple[list[bytes], list[dict[bytes, bytes | None]]], order: object
) -> None:
    universe, batches = history
    store = MemoryNodeStore()
    tree = SparseMerkleTree(h, store)
    roots, models = [PLACEHOLDER], [dict[bytes, bytes]()]
    for version, batch in enumerate(batches, start=1):
        root, nodes = tree.apply(roots[-1], version - 1, batch, version)
        # New nodes are keyed by this version and their hash, and were not stored before.
        assert all(key == node_key(version, h(node[:65])) for key, node in nodes.items())
        assert not any(key in store.nodes for key in nodes)
        tree.store.put_nodes(nodes)
        model = dict(models[-1])
        for key, value in batch.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        roots.append(root)
        models.append(model)
    # Every version, after all later batches were applied: each key proves its value or absence.
    for version, (root, model) in enumerate(zip(roots, models, strict=True)):
        assert root == naive_root(h, model)
        for key in universe:
            proof = tree.prove(root, version, key)
            value = model.get(key)
            assert verify_proof(h, root, key, value, proof)
            assert verify_proof_bytes(h, root, key, value, encode_proof(proof))
            # Not for another value, nor absence of a present key, nor presence of an absent one.
            assert not verify_proof(h, root, key, (value or b"") + b"x", proof)
            if value is not None:
                assert not verify_proof(h, root, key, None, proof)
            # Not against a version where the key had another value (or presence).
            for other_root, other_model in zip(roots, models, strict=True):
                if other_model.get(key) != value:
                    assert not verify_proof(h, other_root, key, value, proof), version
    # Order independence: the final set built in one batch, or key by key in any order.
    final = models[-1]
    assert roots[-1] == build(h, final)[1]
    shuffled = list(final.items())
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    root, root_version = PLACEHOLDER, 0
    for version, (key, value) in enumerate(shuffled, start=len(batches) + 1):
        root, nodes = tree.apply(root, root_version, {key: value}, version)
        tree.store.put_nodes(nodes)
        root_version = version
    assert root == roots[-1]


@pytest.mark.parametrize("h", HASHERS)
@settings(max_examples=50, deadline=None)
@given(pairs=st.dictionaries(keys, values, max_size=300))
def test_tree_equals_naive_reference(h: Hasher, pairs: dict[bytes, bytes]) -> None:
    tree, root = build(h, pairs)
    assert root == naive_root(h, pairs)
    # Deleting half the keys collapses to the tree of the other half.
    gone = list(pairs)[::2]
    smaller, nodes = tree.apply(root, 1, dict.fromkeys(gone), 2)
    kept = {k: v for k, v in pairs.items() if k not in gone}
    assert smaller == naive_root(h, kept)


@pytest.mark.parametrize("h", HASHERS)
def test_empty_and_noop_batches(h: Hasher) -> None:
    tree, root = build(h, {})
    assert root == PLACEHOLDER
    assert tree.apply(root, 1, {b"absent": None}, 2) == (PLACEHOLDER, {})
    proof = tree.prove(root, 1, b"k")
    assert proof == SparseMerkleProof(leaf=None, depth=0, bitmap=b"", siblings=[])
    assert verify_proof(h, root, b"k", None, proof)
    assert not verify_proof(h, root, b"k", b"v", proof)
    tree, root = build(h, {b"k": b"v"})
    # Writing a present value, or deleting an absent key, keeps the root and makes no node;
    # only the root is stored again, under the new version.
    same, nodes = tree.apply(root, 1, {b"k": b"v", b"other": None}, 2)
    assert (same, nodes) == (root, {node_key(2, root): tree.get_node(node_key(1, root))})
    tree.store.put_nodes(nodes)
    assert tree.get_value_hash(root, 2, b"k") == h(b"v")
    assert tree.get_value_hash(root, 2, b"other") is None


@pytest.mark.parametrize(("name", "h"), [("sm3", SM3), ("sha256", SHA256)])
def test_fixed_vectors(name: str, h: Hasher) -> None:
    for pairs, expected in zip(VECTOR_MAPS, VECTOR_ROOTS[name], strict=True):
        assert naive_root(h, pairs).hex() == expected
        assert build(h, pairs)[1].hex() == expected


def test_tampered_proof_bytes_never_verify() -> None:
    h = SHA256
    pairs = {bytes([i]): bytes([i, i]) for i in range(40)}
    tree, root = build(h, pairs)
    for key, value in [(b"\x05", b"\x05\x05"), (b"absent", None), (b"\x99", None)]:
        data = encode_proof(tree.prove(root, 1, key))
        assert verify_proof_bytes(h, root, key, value, data)
        for i in range(len(data)):
            for mask in (0x01, 0x80, 0xFF):
                tampered = bytearray(data)
                tampered[i] ^= mask
                assert not verify_proof_bytes(h, root, key, value, bytes(tampered)), (i, mask)
        # A byte too many or too few.
        assert not verify_proof_bytes(h, root, key, value, data + b"\x00")
        assert not verify_proof_bytes(h, root, key, value, data[:-1])


@settings(max_examples=60, deadline=None)
@given(pairs=st.dictionaries(keys, values, min_size=1, max_size=40), data=st.data())
def test_tampered_value_or_key_never_verifies(pairs: dict[bytes, bytes], data: st.DataObject) -> None:
    h = SHA256
    tree, root = build(h, pairs)
    key = data.draw(st.sampled_from(sorted(pairs)))
    proof = tree.prove(root, 1, key)
    value = pairs[key]
    # Any changed value: one byte flipped, one added, or absence claimed.
    if value:
        i = data.draw(st.integers(0, len(value) - 1))
        flipped = bytearray(value)
        flipped[i] ^= data.draw(st.integers(1, 255))
        assert not verify_proof(h, root, key, bytes(flipped), proof)
    assert not verify_proof(h, root, key, value + b"\x00", proof)
    assert not verify_proof(h, root, key, None, proof)
    # Another key with this value: a membership proof never stands for it. As absent: only
    # when the other key is absent and its path meets this leaf (then it is a true absence proof).
    other = data.draw(keys.filter(lambda k: k != key))
    assert not verify_proof(h, root, other, value, proof)
    assert not verify_proof(h, root, other, None, proof) or other not in pairs
    # An absence proof may stand for another absent key on the same path, never a present one.
    absent = tree.prove(root, 1, other)
    for candidate in [key, *pairs]:
        assert not verify_proof(h, root, candidate, None, absent) or candidate not in pairs


hashes = st.binary(min_size=32, max_size=32)
wild_bytes = st.one_of(hashes, st.binary(max_size=40))
wild_proofs = st.builds(
    SparseMerkleProof,
    leaf=st.none() | st.builds(ProofLeaf, key_hash=wild_bytes, value_hash=wild_bytes),
    depth=st.integers(-3, 300),
    bitmap=st.binary(max_size=40),
    siblings=st.lists(wild_bytes, max_size=12),
)


@settings(max_examples=200, deadline=None)
@given(proof=wild_proofs, value=st.none() | values, raw=st.binary(max_size=200))
def test_malformed_proofs_give_false(proof: SparseMerkleProof, value: bytes | None, raw: bytes) -> None:
    h = SHA256
    tree, root = build(h, {b"a": b"1", b"b": b"2"})
    for r in (root, b"", b"short"):
        assert verify_proof(h, r, b"a", value, proof) is False
        assert verify_proof_bytes(h, r, b"a", value, raw) is False
    # Values of the wrong type anywhere give False too.
    odd: object = SparseMerkleProof(leaf="x", depth="1", bitmap=None, siblings=3)  # type: ignore[arg-type]
    assert verify_proof(h, root, b"a", b"1", odd) is False  # type: ignore[arg-type]
    assert verify_proof(h, root, "a", b"1", tree.prove(root, 1, b"a")) is False  # type: ignore[arg-type]


def test_non_canonical_proof_refused() -> None:
    h = SHA256
    tree, root = build(h, {b"a": b"1", b"b": b"2", b"c": b"3"})
    proof = tree.prove(root, 1, b"a")
    # A placeholder listed as a sibling, padding bits set, or an empty deepest sibling: refused.
    assert proof.depth >= 1
    padded = SparseMerkleProof(proof.leaf, proof.depth, bytes([proof.bitmap[0] | 1]), proof.siblings)
    assert not verify_proof(h, root, b"a", b"1", padded)
    with pytest.raises(DecodeError):
        decode_proof(encode_proof(proof) + b"\x00")


def test_proof_size_is_about_log_n() -> None:
    h = SM3
    tree = SparseMerkleTree(h, MemoryNodeStore())
    root = PLACEHOLDER
    for chunk in range(4):
        batch = {f"k{chunk}-{i}".encode(): b"v" * 32 for i in range(500)}
        root, nodes = tree.apply(root, chunk, batch, chunk + 1)
        tree.store.put_nodes(nodes)
    sizes = [len(encode_proof(tree.prove(root, 4, f"k1-{i}".encode()))) for i in range(200)]
    absent = [len(encode_proof(tree.prove(root, 4, f"none-{i}".encode()))) for i in range(200)]
    print(
        f"2000 keys: membership proof {sum(sizes) / len(sizes):.0f} B mean, {max(sizes)} B max; "
        f"absence {sum(absent) / len(absent):.0f} B mean"
    )
    # log2(2000) is about 11: about a dozen 34-byte siblings, a 66-byte leaf and a few framing bytes.
    assert max(sizes) < 80 + 34 * 24


# The worked example of docs/state-map.md: {a: 1, b: 2, c: 3} with SHA-256.
EXAMPLE_ROOT = "8e2a164a410203f51300d7c6645b7a37f549768457be109acc126c63573a9e0a"
EXAMPLE_PROOF_B = (
    "95a8736d7470726f6f6692c4203e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d"
    "c420d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab3504c4019092"
    "c4206dc4a0fe4285844b9c64ba063f6a8b808a07eb2e8c124cda2babd55a2a7f3d24"
    "c420565388d4bc00257133f799d9366ac97f6e949c18acc53d17457f8859ba0f08d3"
)
EXAMPLE_PROOF_D = (
    "95a8736d7470726f6f66c003c401a092"
    "c42044ebb3d0f7604913f94789f54965210118cb621490e4279a2f512ea8ecf280a4"
    "c420565388d4bc00257133f799d9366ac97f6e949c18acc53d17457f8859ba0f08d3"
)
EXAMPLE_PROOF_G = (
    "95a8736d7470726f6f6692c420ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
    "c4206b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b01c4018091"
    "c42068b9d91d8dd078a757107b3148b7ca18ee66a9c9c8b843e0da351ad44c2a45ce"
)


def test_worked_example() -> None:
    h = SHA256
    tree, root = build(h, {b"a": b"1", b"b": b"2", b"c": b"3"})
    assert root.hex() == EXAMPLE_ROOT
    # b is present (depth 4, two placeholder siblings left out); d's path ends in an empty slot;
    # g's path ends in a's leaf, so a's membership proof is also g's proof of absence.
    assert encode_proof(tree.prove(root, 1, b"b")).hex() == EXAMPLE_PROOF_B
    assert encode_proof(tree.prove(root, 1, b"d")).hex() == EXAMPLE_PROOF_D
    assert encode_proof(tree.prove(root, 1, b"g")) == encode_proof(tree.prove(root, 1, b"a"))
    assert encode_proof(tree.prove(root, 1, b"g")).hex() == EXAMPLE_PROOF_G
    assert verify_proof_bytes(h, root, b"b", b"2", bytes.fromhex(EXAMPLE_PROOF_B))
    assert verify_proof_bytes(h, root, b"d", None, bytes.fromhex(EXAMPLE_PROOF_D))
    assert verify_proof_bytes(h, root, b"g", None, bytes.fromhex(EXAMPLE_PROOF_G))
    assert verify_proof_bytes(h, root, b"a", b"1", bytes.fromhex(EXAMPLE_PROOF_G))
    assert not verify_proof_bytes(h, root, b"a", None, bytes.fromhex(EXAMPLE_PROOF_G))


def test_missing_or_corrupt_nodes_raise_typed_errors() -> None:
    h = SHA256
    tree, root = build(h, {b"a": b"1", b"b": b"2"})
    unknown = h(b"not a root")
    with pytest.raises(MissingNode):
        tree.prove(unknown, 1, b"a")
    with pytest.raises(MissingNode):
        tree.apply(unknown, 1, {b"a": b"2"}, 2)
    # The root is stored at version 1 only.
    with pytest.raises(MissingNode):
        tree.prove(root, 2, b"a")
    store = MemoryNodeStore()
    leaf = b"\x00" + bytes(64)
    internal = b"\x01" + bytes(64) + bytes(16)
    # A leaf is 65 bytes, an internal node 81; any other tag or size is not a node.
    for stored in (b"\x02" + bytes(64), b"", leaf + bytes(16), internal[:65], internal + b"\x00"):
        store.put_nodes({node_key(1, unknown): stored})
        with pytest.raises(CorruptNode):
            SparseMerkleTree(h, store).prove(unknown, 1, b"a")
        with pytest.raises(CorruptNode):
            SparseMerkleTree(h, store).apply(unknown, 1, {b"a": b"1"}, 2)


def test_node_missing_at_the_version_its_parent_names_raises() -> None:
    h = SHA256
    tree, root = build(h, {b"a": b"1", b"b": b"2", b"c": b"3"})
    store = tree.store
    assert isinstance(store, MemoryNodeStore)
    # Version 2 changes a; version 3 writes a's old value back: the same root and leaf hashes
    # as version 1, stored again under version 3.
    changed, nodes = tree.apply(root, 1, {b"a": b"9"}, 2)
    tree.store.put_nodes(nodes)
    back, nodes = tree.apply(changed, 2, {b"a": b"1"}, 3)
    tree.store.put_nodes(nodes)
    assert back == root
    leaf_a = h(b"\x00" + h(b"a") + h(b"1"))
    assert {node_key(1, leaf_a), node_key(3, leaf_a)} <= set(store.nodes)
    # The root names n1 (unchanged) at version 1 and leaf a (its right child) at version 3.
    assert tree.get_node(node_key(3, root))[65:] == (1).to_bytes(8, "big") + (3).to_bytes(8, "big")
    # Leaf a gone from version 3: version 3 fails although the same leaf is kept at version 1.
    del store.nodes[node_key(3, leaf_a)]
    with pytest.raises(MissingNode):
        tree.prove(root, 3, b"a")
    with pytest.raises(MissingNode):
        tree.apply(root, 3, {b"a": b"2"}, 4)
    with pytest.raises(MissingNode):
        tree.apply(root, 3, {b"a": b"2", b"b": b"5"}, 4)
    assert verify_proof(h, root, b"a", b"1", tree.prove(root, 1, b"a"))
    # The other paths of version 3 still prove.
    assert verify_proof(h, root, b"b", b"2", tree.prove(root, 3, b"b"))


def test_versions_must_follow_the_root_version() -> None:
    tree, root = build(SHA256, {b"a": b"1"})
    for root_version, version in [(1, 1), (1, 0), (2, 1), (-1, 1), (1, 2**64)]:
        with pytest.raises(ValueError):
            tree.apply(root, root_version, {b"a": b"2"}, version)


@pytest.mark.parametrize("h", HASHERS)
def test_unchanged_batch_stores_the_root_under_the_new_version(h: Hasher) -> None:
    tree, root = build(h, {b"a": b"1", b"b": b"2", b"c": b"3"})
    # No update, or only updates that change nothing: the root's bytes again, under version 2.
    for batch in ({}, {b"a": b"1"}, {b"absent": None, b"b": b"2", b"c": b"3"}):
        same, nodes = tree.apply(root, 1, batch, 2)
        assert same == root
        assert nodes == {node_key(2, root): tree.get_node(node_key(1, root))}
    tree.store.put_nodes(nodes)
    # Version 3 over version 2, then version 4 deletes two keys: the last leaf, written at
    # version 1, becomes the root and is stored again under version 4.
    same, nodes = tree.apply(root, 2, {}, 3)
    tree.store.put_nodes(nodes)
    last, nodes = tree.apply(root, 3, {b"a": None, b"b": None}, 4)
    leaf_c = h(b"\x00" + h(b"c") + h(b"3"))
    assert last == leaf_c
    assert nodes == {node_key(4, leaf_c): tree.get_node(node_key(1, leaf_c))}
    tree.store.put_nodes(nodes)
    for version in (1, 2, 3):
        assert tree.get_value_hash(root, version, b"b") == h(b"2")
    assert tree.get_value_hash(last, 4, b"c") == h(b"3")
    assert tree.get_value_hash(last, 4, b"b") is None
    # The empty tree stores no root.
    empty, nodes = tree.apply(last, 4, {b"c": None}, 5)
    assert (empty, nodes) == (PLACEHOLDER, {})


@pytest.mark.parametrize("h", HASHERS)
@SETTINGS
@given(history=histories())
def test_each_batch_writes_exactly_its_version_tree_nodes(
    h: Hasher, history: tuple[list[bytes], list[dict[bytes, bytes | None]]]
) -> None:
    _, batches = history
    store = MemoryNodeStore()
    tree = SparseMerkleTree(h, store)
    roots = [PLACEHOLDER]
    for version, batch in enumerate(batches, start=1):
        root, nodes = tree.apply(roots[-1], version - 1, batch, version)
        store.put_nodes(nodes)
        roots.append(root)
        # The batch's nodes are exactly the nodes of its version's tree keyed by that version:
        # each reachable from node_key(version, root), none left over.
        walked = walk_version(h, store, version, root)
        assert {k: v for k, v in walked.items() if k[:8] == version.to_bytes(8, "big")} == nodes
        assert root == PLACEHOLDER or node_key(version, root) in nodes
        # Older versions name only nodes of their own version or before.
        assert all(int.from_bytes(k[:8], "big") <= version for k in walked)
    # After all batches, every version still walks from its root, child versions included.
    for version, root in enumerate(roots):
        walk_version(h, store, version, root)
