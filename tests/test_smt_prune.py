"""Pruning support of the sparse Merkle tree (ledger/smt.py): stale nodes and the stale index.

``apply_tracked`` returns, beside ``apply``'s root and new nodes (compared byte for byte with
``apply`` on a second store), the keys of the nodes that the batch makes stale. They are
checked against a walk written here, apart from the module's: the node keys reachable from
the old root (through ``get_child_keys``) less those reachable from the new root. Then the
pruning rule of the module docstring: with the stale nodes indexed by ``stale_key``, keeping
versions >= P is deleting every node stale since a version <= P, after which the store holds
exactly the nodes of versions P.. and each of them proves every key; older roots are gone
but for a leaf root that a later key's leaf joined (it stays in the later versions).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from test_smt_properties import HASHERS, NEVER_WRITTEN, VALUES, apply_to_map
from zhongshu.ledger.smt import (
    PLACEHOLDER,
    MemoryNodeStore,
    MissingNode,
    SparseMerkleTree,
    get_child_keys,
    node_key,
    parse_stale_key,
    stale_key,
    verify_proof,
)

Hasher = Callable[[bytes], bytes]
Batch = dict[bytes, bytes | None]
History = tuple[list[bytes], list[Batch]]
SETTINGS = settings(max_examples=100, deadline=None)


def reachable(store: MemoryNodeStore, root: bytes, version: int) -> set[bytes]:
    """The keys of every node reachable from ``root`` of ``version``; KeyError if one is missing."""
    found: set[bytes] = set()
    pending = [] if root == PLACEHOLDER else [node_key(version, root)]
    while pending:
        key = pending.pop()
        found.add(key)
        pending += get_child_keys(store.nodes[key])
    return found


@st.composite
def histories(draw: st.DrawFn) -> History:
    """Up to 24 keys and 1 to 12 batches over them: inserts, updates, deletes, writes of the
    present value and deletes of absent keys all come up, as do empty batches."""
    universe = draw(st.lists(st.binary(max_size=3), min_size=1, max_size=24, unique=True))
    value_or_delete = st.none() | st.sampled_from(VALUES)
    batch = st.dictionaries(st.sampled_from(universe), value_or_delete, max_size=len(universe))
    return universe, draw(st.lists(batch, min_size=1, max_size=12))


def leaf_hash(h: Hasher, key: bytes, value: bytes) -> bytes:
    return h(b"\x00" + h(key) + h(value))


def key_with_first_bit(h: Hasher, bit: int, taken: list[bytes]) -> bytes:
    """A key, not one of ``taken``, whose key hash starts with ``bit``."""
    for i in range(1000):
        key = b"k%d" % i
        if key not in taken and h(key)[0] >> 7 == bit:
            return key
    raise AssertionError("no key found")


@pytest.mark.parametrize("h", HASHERS)
@SETTINGS
@given(history=histories(), gaps=st.lists(st.integers(1, 3), min_size=12, max_size=12))
def test_stale_nodes_are_the_old_roots_nodes_the_new_root_does_not_reach(
    h: Hasher, history: History, gaps: list[int]
) -> None:
    _, batches = history
    tracked = SparseMerkleTree(h, MemoryNodeStore())
    plain = SparseMerkleTree(h, MemoryNodeStore())
    root, root_version = PLACEHOLDER, 0
    # Each batch is applied to the version before it, some versions apart.
    for batch, gap in zip(batches, gaps, strict=False):
        version = root_version + gap
        new_root, nodes, stale = tracked.apply_tracked(root, root_version, batch, version)
        # The same root and new nodes as apply, on a store of its own.
        plain_root, plain_nodes = plain.apply(root, root_version, batch, version)
        assert (new_root, nodes) == (plain_root, plain_nodes)
        tracked.store.put_nodes(nodes)
        plain.store.put_nodes(plain_nodes)
        old = reachable(tracked.store, root, root_version)
        new = reachable(tracked.store, new_root, version)
        # Stale: reachable from the old root and not from the new one, each once.
        assert len(stale) == len(set(stale))
        assert set(stale) == old - new
        root, root_version = new_root, version


@pytest.mark.parametrize("h", HASHERS)
@SETTINGS
@given(history=histories(), data=st.data())
def test_pruning_by_the_stale_index_keeps_exactly_the_versions_from_p(
    h: Hasher, history: History, data: st.DataObject
) -> None:
    universe, batches = history
    store = MemoryNodeStore()
    tree = SparseMerkleTree(h, store)
    roots, maps = [PLACEHOLDER], [dict[bytes, bytes]()]
    index: set[bytes] = set()
    # Block i is version i, applied to version i - 1; its stale nodes go into the index.
    for version, batch in enumerate(batches, start=1):
        root, nodes, stale = tree.apply_tracked(roots[-1], version - 1, batch, version)
        store.put_nodes(nodes)
        index.update(stale_key(version, key) for key in stale)
        roots.append(root)
        maps.append(apply_to_map(maps[-1], batch))
    last = len(batches)
    # Before pruning the store holds the nodes of all versions, and nothing else.
    assert set(store.nodes) == set().union(*(reachable(store, roots[v], v) for v in range(last + 1)))
    # Prune once or twice, to a later P each time.
    pending = sorted(index)
    for keep_from in sorted(data.draw(st.lists(st.integers(1, last), min_size=1, max_size=2))):
        # The index in key order is by stale-since version: delete its entries up to P.
        while pending and parse_stale_key(pending[0])[0] <= keep_from:
            _, key = parse_stale_key(pending.pop(0))
            del store.nodes[key]
        # Exactly the nodes reachable from the roots of versions P.. are left.
        kept = [reachable(store, roots[v], v) for v in range(keep_from, last + 1)]
        assert set(store.nodes) == set().union(*kept)
        # Each kept version proves each key's value, or its absence.
        for version in range(keep_from, last + 1):
            root = roots[version]
            for key in [*universe, *NEVER_WRITTEN]:
                value = maps[version].get(key)
                assert verify_proof(h, root, key, value, tree.prove(root, version, key))
        # Each older version's root is gone, unless it is the empty tree's or a leaf that a
        # later key's leaf joined and a kept version still holds: that version still proves.
        for version in range(keep_from):
            root = roots[version]
            if root == PLACEHOLDER:
                continue
            if node_key(version, root) in store.nodes:
                assert store.nodes[node_key(version, root)][:1] == b"\x00"
                for key in universe:
                    value = maps[version].get(key)
                    assert verify_proof(h, root, key, value, tree.prove(root, version, key))
            else:
                with pytest.raises(MissingNode):
                    tree.prove(root, version, universe[0])


@pytest.mark.parametrize("h", HASHERS)
def test_first_insert_and_batches_on_the_empty_tree_make_nothing_stale(h: Hasher) -> None:
    tree = SparseMerkleTree(h, MemoryNodeStore())
    root, nodes, stale = tree.apply_tracked(PLACEHOLDER, 0, {b"a": b"1"}, 1)
    assert root == leaf_hash(h, b"a", b"1")
    assert (nodes, stale) == ({node_key(1, root): b"\x00" + h(b"a") + h(b"1")}, [])
    # The empty tree stays empty: no node, nothing stale, at version 0 or later.
    for root_version in (0, 4):
        assert tree.apply_tracked(PLACEHOLDER, root_version, {}, 5) == (PLACEHOLDER, {}, [])
        assert tree.apply_tracked(PLACEHOLDER, root_version, {b"a": None}, 5) == (PLACEHOLDER, {}, [])


@pytest.mark.parametrize("h", HASHERS)
def test_second_insert_joins_the_first_leaf_which_keeps_its_key(h: Hasher) -> None:
    tree = SparseMerkleTree(h, MemoryNodeStore())
    first, nodes, _ = tree.apply_tracked(PLACEHOLDER, 0, {b"a": b"1"}, 1)
    tree.store.put_nodes(nodes)
    # One new key: the old root, a leaf, goes under the new root as it is (nothing stale).
    second, nodes, stale = tree.apply_tracked(first, 1, {b"b": b"2"}, 2)
    tree.store.put_nodes(nodes)
    assert stale == []
    assert node_key(1, first) in reachable(tree.store, second, 2)
    # A third key: the version 2 root is rebuilt (stale); both leaves stay under their keys.
    third, nodes, stale = tree.apply_tracked(second, 2, {b"c": b"3"}, 3)
    tree.store.put_nodes(nodes)
    assert node_key(2, second) in stale
    assert set(stale) == reachable(tree.store, second, 2) - reachable(tree.store, third, 3)
    leaves = {node_key(1, first), node_key(2, leaf_hash(h, b"b", b"2"))}
    assert leaves <= reachable(tree.store, third, 3)


@pytest.mark.parametrize("h", HASHERS)
def test_pruning_keeps_a_leaf_root_that_a_later_key_joined(h: Hasher) -> None:
    tree = SparseMerkleTree(h, MemoryNodeStore())
    roots, index = [PLACEHOLDER], set()
    for version, batch in enumerate([{b"a": b"1"}, {b"b": b"2"}, {b"c": b"3"}], start=1):
        root, nodes, stale = tree.apply_tracked(roots[-1], version - 1, batch, version)
        tree.store.put_nodes(nodes)
        index.update(stale_key(version, key) for key in stale)
        roots.append(root)
    # Keep versions 3..: the root of version 2 is gone, but version 1's, a's leaf, is still
    # in version 3, so version 1 still proves a.
    for entry in index:
        since, key = parse_stale_key(entry)
        if since <= 3:
            del tree.store.nodes[key]
    assert set(tree.store.nodes) == reachable(tree.store, roots[3], 3)
    with pytest.raises(MissingNode):
        tree.prove(roots[2], 2, b"a")
    assert verify_proof(h, roots[1], b"a", b"1", tree.prove(roots[1], 1, b"a"))


@pytest.mark.parametrize("h", HASHERS)
def test_second_insert_in_a_batch_rebuilds_the_first_leaf(h: Hasher) -> None:
    tree = SparseMerkleTree(h, MemoryNodeStore())
    first, nodes, _ = tree.apply_tracked(PLACEHOLDER, 0, {b"a": b"1"}, 1)
    tree.store.put_nodes(nodes)
    # Two changes meet the old root, a leaf: it is built again under version 2 and is stale.
    second, nodes, stale = tree.apply_tracked(first, 1, {b"b": b"2", b"absent": None}, 2)
    assert stale == [node_key(1, first)]
    assert node_key(2, first) in nodes


@pytest.mark.parametrize("h", HASHERS)
def test_delete_collapses_a_pair_into_the_leaf_left_which_keeps_its_key(h: Hasher) -> None:
    # a and b share their first path bit, c does not: the root is over (a, b)'s subtree and c.
    a = key_with_first_bit(h, 0, [])
    b = key_with_first_bit(h, 0, [a])
    c = key_with_first_bit(h, 1, [])
    tree = SparseMerkleTree(h, MemoryNodeStore())
    root, nodes, _ = tree.apply_tracked(PLACEHOLDER, 0, {a: b"1", b: b"2", c: b"3"}, 1)
    tree.store.put_nodes(nodes)
    old = reachable(tree.store, root, 1)
    leaf_a, leaf_c = node_key(1, leaf_hash(h, a, b"1")), node_key(1, leaf_hash(h, c, b"3"))
    # Deleting b: a's leaf is taken up beside c's as it is; every other old node is stale.
    new_root, nodes, stale = tree.apply_tracked(root, 1, {b: None}, 2)
    tree.store.put_nodes(nodes)
    assert set(stale) == old - {leaf_a, leaf_c}
    assert len(stale) == len(old) - 2
    assert get_child_keys(nodes[node_key(2, new_root)]) == [leaf_a, leaf_c]


@pytest.mark.parametrize("h", HASHERS)
def test_delete_down_to_one_leaf_makes_the_whole_old_tree_stale(h: Hasher) -> None:
    tree = SparseMerkleTree(h, MemoryNodeStore())
    root, nodes, _ = tree.apply_tracked(PLACEHOLDER, 0, {b"a": b"1", b"b": b"2"}, 1)
    tree.store.put_nodes(nodes)
    old = reachable(tree.store, root, 1)
    # a's leaf is the new root, stored again under version 2: its version 1 key is stale too.
    new_root, nodes, stale = tree.apply_tracked(root, 1, {b"b": None}, 2)
    assert new_root == leaf_hash(h, b"a", b"1")
    assert nodes == {node_key(2, new_root): tree.store.nodes[node_key(1, new_root)]}
    assert set(stale) == old
    assert len(stale) == len(old)
    # Deleting every key: the empty tree, and every old node stale.
    empty, nodes, stale = tree.apply_tracked(root, 1, {b"a": None, b"b": None}, 2)
    assert (empty, nodes) == (PLACEHOLDER, {})
    assert sorted(stale) == sorted(old)


@pytest.mark.parametrize("h", HASHERS)
def test_batch_that_changes_nothing_makes_only_the_old_root_stale(h: Hasher) -> None:
    tree = SparseMerkleTree(h, MemoryNodeStore())
    root, nodes, _ = tree.apply_tracked(PLACEHOLDER, 0, {b"a": b"1", b"b": b"2", b"c": b"3"}, 1)
    tree.store.put_nodes(nodes)
    # No change, a present value written again, an absent key deleted: the root is stored
    # again under version 2, and that copy replaces the version 1 root, whose children stay.
    for batch in ({}, {b"a": b"1"}, {b"absent": None, b"b": b"2", b"c": b"3"}, {b"absent": None}):
        same, nodes, stale = tree.apply_tracked(root, 1, batch, 2)
        assert same == root
        assert nodes == {node_key(2, root): tree.store.nodes[node_key(1, root)]}
        assert stale == [node_key(1, root)]


@given(
    since=st.integers(0, 2**64 - 1),
    version=st.integers(0, 2**64 - 1),
    node_hash=st.binary(min_size=32, max_size=32),
)
def test_stale_key_is_since_then_node_key_and_parses_back(since: int, version: int, node_hash: bytes) -> None:
    key = node_key(version, node_hash)
    entry = stale_key(since, key)
    assert entry == since.to_bytes(8, "big") + key
    assert parse_stale_key(entry) == (since, key)


def test_stale_key_order_is_the_stale_since_version() -> None:
    late_small = stale_key(2, node_key(0, bytes(32)))
    early_large = stale_key(1, node_key(2**64 - 1, b"\xff" * 32))
    assert early_large < late_small


def test_wrong_stale_keys_raise_value_error() -> None:
    entry = stale_key(3, node_key(2, bytes(32)))
    for wrong in (b"", entry[:-1], entry + b"\x00", node_key(2, bytes(32))):
        with pytest.raises(ValueError):
            parse_stale_key(wrong)
    for since, key in ((-1, node_key(2, bytes(32))), (2**64, node_key(2, bytes(32))), (3, bytes(39))):
        with pytest.raises(ValueError):
            stale_key(since, key)
