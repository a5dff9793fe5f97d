"""A versioned sparse Merkle tree: an authenticated map whose every old root stays provable.

The design follows Diem's Jellyfish Merkle tree and its ``SparseMerkleProof`` (and Celestia's
SMT for the byte layout): a binary tree of depth 256 over the key hashes, where a subtree that
holds exactly one leaf is replaced by that leaf (the leaf shortcut), and an empty subtree is
the placeholder. The root therefore depends only on the set of (key, value) pairs.

Hashing, with the chain suite's 32-byte hash H (SM3 or SHA-256), ``||`` concatenation:

    key_hash    = H(key)                               path: bit i = bit i of key_hash, MSB first
    value_hash  = H(value)
    leaf        = H(0x00 || key_hash || value_hash)    65 bytes hashed
    internal    = H(0x01 || left || right)             65 bytes hashed; bit 0 goes left
    placeholder = 32 zero bytes                        the empty subtree; the empty tree's root

A leaf and an internal node are hashed from inputs that differ in their first byte, so one can
never stand for the other; the placeholder is no node's hash (that would need a preimage of
zero). The canonical tree over a set of leaves at depth d is: the placeholder for no leaf, the
leaf for one, else internal(tree of the leaves whose bit d is 0, tree of those whose bit d is 1).
An internal node thus always holds at least two leaves; no internal node has two placeholder
children, nor a leaf beside a placeholder.

Storage. A version is a number >= 1 (the chain's block height); ``apply`` writes every node it
creates under the batch's version, in a ``NodeStore`` keyed version first (Jellyfish's NodeKey
idea), so that one batch's nodes are neighbours in the store's key order:

    node key  = version (u64, big-endian) || node hash                      40 bytes
    leaf      = 0x00 || key_hash || value_hash                              65 bytes
    internal  = 0x01 || left || right || left_version || right_version     81 bytes (u64 BE)

A node's hash is H of its first 65 bytes, always; an internal node's two versions name the
keys its children are stored under (0 for a placeholder child). Nodes are never deduplicated
across versions (a node equal to an older one is written again under the new version) and
never changed: ``apply`` returns the new nodes for the caller to store, so a version stays
provable for as long as the nodes reachable from it are kept. Every version stores its root:
the root of version v is at node key (v, root), or is the placeholder. Values are not in the
tree (only their hashes).

Pruning (Jellyfish's stale node index). ``apply_tracked`` also returns the batch's stale nodes:
the node keys reachable from the old root and not from the new one. Those are the internal
nodes on each changed path, the leaves deleted, rewritten or built again (a leaf that several
changes meet is rebuilt under the new version), and the old key of the root when the new root
is an older node stored again under the new version (the old root itself when nothing
changed); a subtree left as it is, a leaf taken up as it is below the root, and a leaf that a
new key's leaf joins under a new parent keep their keys and are not stale. A node stale since
version v (returned by the batch that made v) is reachable from the version that batch was
applied to, and from no version >= v: a version reaches only nodes of the version it was
applied to and its own new nodes. With each version applied to the one before, keeping
versions >= P and dropping those < P is therefore: delete every node whose stale-since
version is <= P, and no other. The store then holds exactly the nodes reachable from the
roots of versions >= P. The root of each version < P is gone (``prove`` raises MissingNode),
unless it is the placeholder or a leaf root that a new key's leaf joined under a new parent
and that a kept version still holds (that version then stays provable). The stale index key
orders the nodes by that version, so the nodes to delete are one key range:

    stale key = stale-since version (u64, big-endian) || node key                48 bytes

A proof (``SparseMerkleProof``, canonical MessagePack, array-like, tag "smtproof") names the
leaf found on the key's path, if any, and the siblings of the path from that depth up:

    ["smtproof", leaf, depth, bitmap, siblings]
    leaf      nil (an empty slot), or [key_hash, value_hash] (two 32-byte bin)
    depth     int 0..256: how many path bits lead from the root to the leaf or empty slot
    bitmap    bin of ceil(depth / 8) bytes; bit i (byte i // 8, MSB first) is 1 when the
              sibling at depth i + 1 (beside the path node at depth i + 1) is not the
              placeholder; the padding bits are 0
    siblings  array of 32-byte bin: the non-placeholder siblings, deepest first

A canonical proof has, for depth > 0, the deepest sibling not the placeholder (bit depth - 1
set), since the tree collapses a leaf or an empty slot beside a placeholder into its parent.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Protocol

import msgspec

from zhongshu.codec import DecodeError, decode, encode
from zhongshu.ledger.merkle import Hasher

HASH_SIZE = 32
KEY_BITS = 256
PLACEHOLDER = bytes(HASH_SIZE)
LEAF_TAG = b"\x00"
INTERNAL_TAG = b"\x01"
NODE_SIZE = 1 + 2 * HASH_SIZE
"""The hashed part of a stored node: the tag byte and two hashes (all of a leaf)."""
VERSION_SIZE = 8
MAX_VERSION = 2 ** (8 * VERSION_SIZE) - 1
NODE_KEY_SIZE = VERSION_SIZE + HASH_SIZE
STALE_KEY_SIZE = VERSION_SIZE + NODE_KEY_SIZE
LEAF_SIZE = NODE_SIZE
INTERNAL_SIZE = NODE_SIZE + 2 * VERSION_SIZE
# The stored size of a node by its tag byte.
_STORED_SIZE = {LEAF_TAG: LEAF_SIZE, INTERNAL_TAG: INTERNAL_SIZE}
# Offsets in an internal node's stored bytes.
_LEFT, _RIGHT, _LEFT_VERSION, _RIGHT_VERSION = 1, 1 + HASH_SIZE, NODE_SIZE, NODE_SIZE + VERSION_SIZE
# The version a placeholder child is recorded under.
_NO_VERSION = bytes(VERSION_SIZE)


class TreeError(Exception):
    """The node store cannot give the tree asked for: a node is missing or is not a node."""


class MissingNode(TreeError):
    """A node reachable from the given root is not in the store (pruned, or a wrong root)."""


class CorruptNode(TreeError):
    """Stored bytes that are not a leaf or internal node."""


class ProofLeaf(msgspec.Struct, array_like=True, frozen=True):
    """The leaf found on a key's path."""

    key_hash: bytes
    """H(key) of the leaf's key: the key itself when proving membership, another otherwise."""
    value_hash: bytes
    """H(value) of the leaf's value."""


class SparseMerkleProof(msgspec.Struct, array_like=True, frozen=True, tag="smtproof"):
    """The path from the root to a key's leaf or empty slot, siblings compressed by a bitmap."""

    leaf: ProofLeaf | None
    """The leaf at the end of the path, or None when the path ends in an empty subtree."""
    depth: int
    """Number of path bits from the root to the leaf or empty slot (0..256)."""
    bitmap: bytes
    """ceil(depth / 8) bytes; bit i (MSB first) set when the sibling at depth i + 1 is not empty."""
    siblings: list[bytes]
    """The non-placeholder sibling hashes, deepest first."""


class NodeStore(Protocol):
    """Where nodes live: stored bytes by node key (``node_key``). Nodes are only added or pruned."""

    def get_node(self, node_key: bytes) -> bytes | None:
        """The node's stored bytes, or None when the store does not hold it."""

    def put_nodes(self, nodes: Mapping[bytes, bytes]) -> None:
        """Add nodes (node key -> stored bytes)."""


class MemoryNodeStore:
    """A NodeStore in a dict (tests, tools; the node's own store is LMDB)."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}

    def get_node(self, node_key: bytes) -> bytes | None:
        return self.nodes.get(node_key)

    def put_nodes(self, nodes: Mapping[bytes, bytes]) -> None:
        self.nodes.update(nodes)


def node_key(version: int, node_hash: bytes) -> bytes:
    """The store key of the node ``node_hash`` written at ``version``: u64 BE version || hash."""
    return version.to_bytes(VERSION_SIZE, "big") + node_hash


def stale_key(since: int, node_key: bytes) -> bytes:
    """The stale index key of node ``node_key``, reachable from no version >= ``since``:
    u64 BE since || node key."""
    # The version is a u64 and the node key is one.
    if not 0 <= since <= MAX_VERSION or len(node_key) != NODE_KEY_SIZE:
        raise ValueError(f"no stale key for version {since} and a {len(node_key)}-byte node key")
    return since.to_bytes(VERSION_SIZE, "big") + node_key


def parse_stale_key(b: bytes) -> tuple[int, bytes]:
    """The (stale-since version, node key) of a stale index key; ValueError on another length."""
    # A stale key is a version and a node key.
    if len(b) != STALE_KEY_SIZE:
        raise ValueError(f"a stale key is {STALE_KEY_SIZE} bytes, not {len(b)}")
    return int.from_bytes(b[:VERSION_SIZE], "big"), b[VERSION_SIZE:]


def get_child_keys(node: bytes) -> list[bytes]:
    """The node keys of a stored internal node's children other than placeholders (a leaf: [])."""
    if node[:1] != INTERNAL_TAG:
        return []
    left, right = node[_LEFT:_RIGHT], node[_RIGHT:NODE_SIZE]
    keys = []
    if left != PLACEHOLDER:
        keys.append(node[_LEFT_VERSION:_RIGHT_VERSION] + left)
    if right != PLACEHOLDER:
        keys.append(node[_RIGHT_VERSION:INTERNAL_SIZE] + right)
    return keys


def get_bit(path: bytes, depth: int) -> int:
    """Bit ``depth`` of ``path``, most significant bit of the first byte first."""
    return (path[depth >> 3] >> (7 - (depth & 7))) & 1


def encode_leaf(key_hash: bytes, value_hash: bytes) -> bytes:
    return LEAF_TAG + key_hash + value_hash


def encode_internal(left: bytes, right: bytes) -> bytes:
    return INTERNAL_TAG + left + right


def compute_leaf_hash(h: Hasher, key_hash: bytes, value_hash: bytes) -> bytes:
    """H(0x00 || key_hash || value_hash)."""
    return h(encode_leaf(key_hash, value_hash))


def compute_internal_hash(h: Hasher, left: bytes, right: bytes) -> bytes:
    """H(0x01 || left || right)."""
    return h(encode_internal(left, right))


def is_leaf_node(node: bytes) -> bool:
    return node[:1] == LEAF_TAG


# A pending change: (key hash as a 256-bit integer, key_hash, value_hash or None to delete).
# The integer orders the changes by path and finds where a subtree's changes part (bisect).
_Change = tuple[int, bytes, bytes | None]
# A leaf to build: (key hash as an integer, key_hash, value_hash).
_Leaf = tuple[int, bytes, bytes]
# A subtree as its parent names it: (node hash, the version it is stored under as 8 bytes).
_Ref = tuple[bytes, bytes]
_EMPTY: _Ref = (PLACEHOLDER, _NO_VERSION)
_path_of = itemgetter(0)


class SparseMerkleTree:
    """The versioned map over one NodeStore; a version is named by its number and root hash."""

    def __init__(self, h: Hasher, store: NodeStore) -> None:
        self.h = h
        self.store = store

    def get_node(self, key: bytes) -> bytes:
        """The node stored under node key ``key``; raise MissingNode or CorruptNode."""
        node = self.store.get_node(key)
        # A reachable node must be stored: a miss means a pruned version or a foreign root.
        if node is None:
            raise MissingNode(f"node {_describe(key)} is not in the store")
        # A leaf is a tag byte and two hashes; an internal node adds its children's versions.
        if len(node) != _STORED_SIZE.get(node[:1]):
            raise CorruptNode(f"node {_describe(key)} is {len(node)} bytes, not a node")
        return node

    def apply(
        self, root: bytes, root_version: int, updates: Mapping[bytes, bytes | None], version: int
    ) -> tuple[bytes, dict[bytes, bytes]]:
        """The root of ``version`` after applying ``updates`` (key -> value, None deletes) to
        the tree ``root`` stored at ``root_version`` (0 for the empty tree).

        Returns the new root and the nodes the caller stores (node key -> stored bytes): every
        node the batch created, under ``version``, and the new root under ``version`` even when
        the batch changes nothing (it is then the old root's bytes again), unless the new root
        is the placeholder. Stored nodes are never changed, so ``root`` stays provable.
        Deleting an absent key or writing a key's present value changes nothing.
        """
        new_root, new_nodes, _ = self.apply_tracked(root, root_version, updates, version)
        return new_root, new_nodes

    def apply_tracked(
        self, root: bytes, root_version: int, updates: Mapping[bytes, bytes | None], version: int
    ) -> tuple[bytes, dict[bytes, bytes], list[bytes]]:
        """``apply``, and the node keys that become stale at ``version``: every node reachable
        from ``root`` at ``root_version`` and not from the new root at ``version``, once each.

        Stale are the internal nodes on the path of each change that changes something, the
        leaves it deletes, rewrites or builds again, and the old key of a new root that is an older node (the
        old root when nothing changed, or a leaf taken up to the root): its copy under
        ``version`` replaces it. Subtrees left as they are, a leaf taken up as it is below the
        root, and a leaf that a new key's leaf joins under a new parent keep their keys (even
        the old root, when it is that leaf). From the empty tree nothing is stale.
        """
        # A version is a u64 after the one it builds on: one batch's nodes per version.
        if not root_version < version <= MAX_VERSION or root_version < 0:
            raise ValueError(f"version {version} does not follow root version {root_version}")
        h = self.h
        changes: list[_Change] = []
        for key, value in updates.items():
            key_hash = h(key)
            changes.append((int.from_bytes(key_hash, "big"), key_hash, None if value is None else h(value)))
        changes.sort(key=_path_of)
        at = version.to_bytes(VERSION_SIZE, "big")
        batch = _Batch(self, changes, at)
        old: _Ref = (root, root_version.to_bytes(VERSION_SIZE, "big"))
        new_root, new_root_version = batch.apply_range(*old, 0, 0, len(changes)) if changes else old
        # Every version stores its root: an older node taken as the root is written again, and
        # the copy, naming the same children, replaces it.
        if new_root != PLACEHOLDER and new_root_version != at:
            taken = new_root_version + new_root
            batch.new_nodes[at + new_root] = self.get_node(taken)
            batch.stale.append(taken)
        return new_root, batch.new_nodes, batch.stale

    def get_value_hash(self, root: bytes, version: int, key: bytes) -> bytes | None:
        """H(value) of ``key`` in the tree ``root`` of ``version``, or None when the key is absent."""
        proof = self.prove(root, version, key)
        key_hash = self.h(key)
        if proof.leaf is None or proof.leaf.key_hash != key_hash:
            return None
        return proof.leaf.value_hash

    def prove(self, root: bytes, version: int, key: bytes) -> SparseMerkleProof:
        """The proof of ``key``'s value in the tree ``root`` of ``version``, or of its absence."""
        key_hash = self.h(key)
        node_hash, node_version, depth = root, version.to_bytes(VERSION_SIZE, "big"), 0
        siblings_top_down: list[bytes] = []
        node = b""
        # Descend while the path is in an internal node; stop at a leaf or an empty subtree.
        while node_hash != PLACEHOLDER:
            node = self.get_node(node_version + node_hash)
            if is_leaf_node(node):
                break
            left, right = node[_LEFT:_RIGHT], node[_RIGHT:NODE_SIZE]
            if get_bit(key_hash, depth):
                node_hash, node_version, sibling = right, node[_RIGHT_VERSION:], left
            else:
                node_hash, node_version, sibling = left, node[_LEFT_VERSION:_RIGHT_VERSION], right
            siblings_top_down.append(sibling)
            depth += 1
        leaf = None
        if node_hash != PLACEHOLDER:
            leaf = ProofLeaf(key_hash=node[_LEFT:_RIGHT], value_hash=node[_RIGHT:NODE_SIZE])
        return SparseMerkleProof(
            leaf=leaf,
            depth=depth,
            bitmap=compute_bitmap(siblings_top_down),
            siblings=[s for s in reversed(siblings_top_down) if s != PLACEHOLDER],
        )


def _describe(key: bytes) -> str:
    """A node key for a message: 'HASH at version V'."""
    return f"{key[VERSION_SIZE:].hex()} at version {int.from_bytes(key[:VERSION_SIZE], 'big')}"


class _Batch:
    """One call of ``apply``: the sorted changes, the new nodes and the stale nodes so far.

    Changes are walked by index ranges into one sorted list: the changes under a subtree at
    depth d share their first d path bits, so the split between its two sides is a bisection.
    Above the depth where the changes part, the walk recurses; below it each path holds one
    change and is walked down and back up in a loop (``apply_one``), which is where most of a
    large tree's nodes are made.

    A subtree is passed as a ``_Ref``, (hash, version as 8 bytes): walking down, a child's
    version is read from its parent's stored bytes; a subtree the batch leaves as it is keeps
    its version, and every node the batch makes is new, at ``version``, in ``new_nodes``
    (node key -> stored bytes). An old node the batch rebuilds, collapses away or deletes is
    stale, its key in ``stale``; one the batch leaves or takes up as it is is not. The store is
    only read, never asked whether it holds a node.
    """

    def __init__(self, tree: SparseMerkleTree, changes: list[_Change], version: bytes) -> None:
        self.h = tree.h
        self.read_stored = tree.get_node
        self.get_stored = tree.store.get_node
        self.changes = changes
        self.version = version
        self.new_nodes: dict[bytes, bytes] = {}
        self.stale: list[bytes] = []

    def apply_range(self, node_hash: bytes, node_version: bytes, depth: int, lo: int, hi: int) -> _Ref:
        """The subtree at ``depth`` after ``changes[lo:hi]`` (all under it, at least one)."""
        if hi - lo == 1:
            return self.apply_one(node_hash, node_version, depth, self.changes[lo])
        if node_hash == PLACEHOLDER:
            inserts = [(p, k, v) for p, k, v in self.changes[lo:hi] if v is not None]
            return self.build(inserts, 0, len(inserts), depth) if inserts else _EMPTY
        node = self.read_stored(node_version + node_hash)
        if is_leaf_node(node):
            return self.merge_leaf((node_hash, node_version), node, depth, lo, hi)
        split = _split_point(self.changes, depth, lo, hi)
        left = (node[_LEFT:_RIGHT], node[_LEFT_VERSION:_RIGHT_VERSION])
        right = (node[_RIGHT:NODE_SIZE], node[_RIGHT_VERSION:])
        new_left = self.apply_range(*left, depth + 1, lo, split) if lo < split else left
        new_right = self.apply_range(*right, depth + 1, split, hi) if split < hi else right
        if new_left[0] == left[0] and new_right[0] == right[0]:
            return node_hash, node_version
        # The node is rebuilt, or collapsed away into one of its sides.
        self.stale.append(node_version + node_hash)
        # Beside an empty side, an empty subtree or a single leaf is taken up as it is.
        if new_right[0] == PLACEHOLDER and self.is_leaf_or_empty(new_left):
            return new_left
        if new_left[0] == PLACEHOLDER and self.is_leaf_or_empty(new_right):
            return new_right
        return self.add_internal(new_left, new_right)

    def apply_one(self, node_hash: bytes, node_version: bytes, depth: int, change: _Change) -> _Ref:
        """The subtree at ``depth`` after one change under it: down its path, then back up."""
        path, key_hash, value_hash = change
        top = node_hash, node_version
        get_stored = self.get_stored
        siblings: list[_Ref] = []
        # The keys of the internal nodes on the way down: stale if the change changes something.
        passed: list[bytes] = []
        node = b""
        # Down: through internal nodes to the leaf or empty slot on the path.
        while node_hash != PLACEHOLDER:
            key = node_version + node_hash
            node = get_stored(key) or b""
            # A stored leaf or internal node of its size; else read_stored raises the typed error.
            if len(node) != _STORED_SIZE.get(node[:1]):
                node = self.read_stored(key)
            if node[0] == 0:
                break
            passed.append(key)
            if (path >> (KEY_BITS - 1 - depth)) & 1:
                siblings.append((node[_LEFT:_RIGHT], node[_LEFT_VERSION:_RIGHT_VERSION]))
                node_hash, node_version = node[_RIGHT:NODE_SIZE], node[_RIGHT_VERSION:]
            else:
                siblings.append((node[_RIGHT:NODE_SIZE], node[_RIGHT_VERSION:]))
                node_hash, node_version = node[_LEFT:_RIGHT], node[_LEFT_VERSION:_RIGHT_VERSION]
            depth += 1
        # The change at the end of the path; ``single``: the result is empty or one leaf.
        new: _Ref
        if node_hash != PLACEHOLDER and node[_LEFT:_RIGHT] != key_hash:
            # Another key's leaf: deleting changes nothing; writing parts the two keys below.
            if value_hash is None:
                return top
            old = node_hash, node_version
            new, single = self.build_pair(old, node, path, key_hash, value_hash, depth), False
        elif value_hash is None:
            if node_hash == PLACEHOLDER:
                return top
            new, single = _EMPTY, True
            # The key's leaf is deleted.
            self.stale.append(node_version + node_hash)
        elif node_hash != PLACEHOLDER and node[_RIGHT:NODE_SIZE] == value_hash:
            return top
        else:
            new, single = self.add_leaf(key_hash, value_hash), True
            # The key's leaf, if any, is replaced by the leaf of its new value.
            if node_hash != PLACEHOLDER:
                self.stale.append(node_version + node_hash)
        # Each internal node passed is rebuilt or collapsed away; the siblings stay as they are.
        self.stale += passed
        # Up: each parent over the new child and the old sibling, collapsed as in apply_range.
        h, new_nodes, version = self.h, self.new_nodes, self.version
        new_hash, new_version = new
        for sibling, sibling_version in reversed(siblings):
            depth -= 1
            if single:
                # An empty slot or a single leaf beside an empty side is taken up as it is;
                # so is a leaf beside a side left empty.
                if sibling == PLACEHOLDER:
                    continue
                if new_hash == PLACEHOLDER and self.is_leaf_or_empty((sibling, sibling_version)):
                    new_hash, new_version = sibling, sibling_version
                    continue
                single = False
            if (path >> (KEY_BITS - 1 - depth)) & 1:
                hashed = INTERNAL_TAG + sibling + new_hash
                versions = sibling_version + new_version
            else:
                hashed = INTERNAL_TAG + new_hash + sibling
                versions = new_version + sibling_version
            new_hash, new_version = h(hashed), version
            new_nodes[version + new_hash] = hashed + versions
        return new_hash, new_version

    def build_pair(
        self, old: _Ref, old_leaf: bytes, path: int, key_hash: bytes, value_hash: bytes, depth: int
    ) -> _Ref:
        """The subtree at ``depth`` over a stored leaf and a new key's leaf on the same path."""
        fork = KEY_BITS - (path ^ int.from_bytes(old_leaf[_LEFT:_RIGHT], "big")).bit_length()
        new_leaf = self.add_leaf(key_hash, value_hash)
        if (path >> (KEY_BITS - 1 - fork)) & 1:
            node = self.add_internal(old, new_leaf)
        else:
            node = self.add_internal(new_leaf, old)
        return self.add_single_parents(node, path, fork, depth)

    def merge_leaf(self, old: _Ref, leaf: bytes, depth: int, lo: int, hi: int) -> _Ref:
        """The subtree at ``depth`` of one stored leaf after ``changes[lo:hi]``."""
        old_key_hash, old_value_hash = leaf[_LEFT:_RIGHT], leaf[_RIGHT:NODE_SIZE]
        merged: dict[bytes, bytes | None] = {old_key_hash: old_value_hash}
        merged.update((key_hash, value_hash) for _, key_hash, value_hash in self.changes[lo:hi])
        leaves = sorted((int.from_bytes(k, "big"), k, v) for k, v in merged.items() if v is not None)
        # Changes that change nothing keep the stored leaf (and make no node).
        if len(leaves) == 1 and leaves[0][1:] == (old_key_hash, old_value_hash):
            return old
        # The stored leaf is deleted, or built again under the new version.
        self.stale.append(old[1] + old[0])
        return self.build(leaves, 0, len(leaves), depth) if leaves else _EMPTY

    def build(self, leaves: list[_Leaf], lo: int, hi: int, depth: int) -> _Ref:
        """The canonical subtree at ``depth`` over ``leaves[lo:hi]`` (sorted, distinct, not empty)."""
        if hi - lo == 1:
            _, key_hash, value_hash = leaves[lo]
            return self.add_leaf(key_hash, value_hash)
        first = leaves[lo][0]
        # The depth where the leaves part; above it every level has one empty side.
        fork = KEY_BITS - (first ^ leaves[hi - 1][0]).bit_length()
        # Two distinct 256-bit key hashes differ at some bit before depth 256.
        if fork >= KEY_BITS:
            raise TreeError("two updates have the same key hash")
        split = _split_point(leaves, fork, lo, hi)
        left = self.build(leaves, lo, split, fork + 1)
        right = self.build(leaves, split, hi, fork + 1)
        return self.add_single_parents(self.add_internal(left, right), first, fork, depth)

    def add_single_parents(self, node: _Ref, path: int, from_depth: int, to_depth: int) -> _Ref:
        """The chain of parents, each beside an empty side, from ``from_depth`` up to ``to_depth``."""
        for level in range(from_depth - 1, to_depth - 1, -1):
            if (path >> (KEY_BITS - 1 - level)) & 1:
                node = self.add_internal(_EMPTY, node)
            else:
                node = self.add_internal(node, _EMPTY)
        return node

    def is_leaf_or_empty(self, ref: _Ref) -> bool:
        node_hash, version = ref
        if node_hash == PLACEHOLDER:
            return True
        key = version + node_hash
        node = self.new_nodes.get(key)
        return is_leaf_node(self.read_stored(key) if node is None else node)

    def add_leaf(self, key_hash: bytes, value_hash: bytes) -> _Ref:
        node = LEAF_TAG + key_hash + value_hash
        node_hash = self.h(node)
        self.new_nodes[self.version + node_hash] = node
        return node_hash, self.version

    def add_internal(self, left: _Ref, right: _Ref) -> _Ref:
        hashed = INTERNAL_TAG + left[0] + right[0]
        node_hash = self.h(hashed)
        self.new_nodes[self.version + node_hash] = hashed + left[1] + right[1]
        return node_hash, self.version


def _split_point(items: Sequence[tuple[int, bytes, bytes | None]], depth: int, lo: int, hi: int) -> int:
    """Index of the first of ``items[lo:hi]`` with path bit ``depth`` set.

    The items are sorted by path and share their first ``depth`` bits, so it is the first path
    at or past that shared prefix followed by a 1 bit.
    """
    shift = KEY_BITS - 1 - depth
    return bisect_left(items, ((items[lo][0] >> shift) | 1) << shift, lo, hi, key=_path_of)


def compute_bitmap(siblings_top_down: list[bytes]) -> bytes:
    """ceil(n / 8) bytes; bit i (MSB first) set when sibling i is not the placeholder."""
    bits = bytearray((len(siblings_top_down) + 7) // 8)
    for i, sibling in enumerate(siblings_top_down):
        if sibling != PLACEHOLDER:
            bits[i >> 3] |= 0x80 >> (i & 7)
    return bytes(bits)


def encode_proof(proof: SparseMerkleProof) -> bytes:
    """The canonical bytes of a proof."""
    return encode(proof)


def decode_proof(data: bytes) -> SparseMerkleProof:
    """A proof from its canonical bytes; raise DecodeError on anything else."""
    return decode(data, SparseMerkleProof)


def compute_proof_root(h: Hasher, key_hash: bytes, proof: SparseMerkleProof) -> bytes | None:
    """The root a well-formed proof leads to along ``key_hash``'s path, or None if malformed."""
    depth, bitmap, siblings = proof.depth, proof.bitmap, proof.siblings
    # The depth is an integer no deeper than the key hash is long.
    if type(depth) is not int or not 0 <= depth <= KEY_BITS:
        return None
    # The bitmap has one bit per level, in whole bytes.
    if not isinstance(bitmap, bytes) or len(bitmap) != (depth + 7) // 8:
        return None
    # The bitmap's padding bits (past the last level) are 0: one proof, one encoding.
    if depth % 8 and bitmap[-1] & (0xFF >> (depth % 8)):
        return None
    # Every listed sibling is a 32-byte hash other than the placeholder, one per set bit.
    if not isinstance(siblings, list) or len(siblings) != sum(bin(b).count("1") for b in bitmap):
        return None
    if any(not isinstance(s, bytes) or len(s) != HASH_SIZE or s == PLACEHOLDER for s in siblings):
        return None
    # Above a leaf or an empty slot the tree holds another leaf, else it would have collapsed.
    if depth > 0 and not get_bit(bitmap, depth - 1):
        return None
    node = PLACEHOLDER
    if proof.leaf is not None:
        leaf = proof.leaf
        # The leaf holds two 32-byte hashes.
        if not isinstance(leaf, ProofLeaf) or not _is_hash(leaf.key_hash) or not _is_hash(leaf.value_hash):
            return None
        # The leaf lies on the key's path: its key hash shares the first ``depth`` bits.
        if not _shares_prefix(leaf.key_hash, key_hash, depth):
            return None
        node = compute_leaf_hash(h, leaf.key_hash, leaf.value_hash)
    remaining = iter(siblings)
    for level in range(depth - 1, -1, -1):
        sibling = next(remaining) if get_bit(bitmap, level) else PLACEHOLDER
        if get_bit(key_hash, level):
            node = compute_internal_hash(h, sibling, node)
        else:
            node = compute_internal_hash(h, node, sibling)
    return node


def verify_proof(h: Hasher, root: bytes, key: bytes, value: bytes | None, proof: SparseMerkleProof) -> bool:
    """True when ``proof`` shows ``key`` holds ``value`` in the tree ``root`` (absent for None).

    Membership: the proof's leaf has H(key) and H(value). Absence: the path ends in an empty
    slot, or in a leaf of another key whose hash shares the path so far. Any malformed input
    gives False, never an exception.
    """
    try:
        return _verify_proof(h, root, key, value, proof)
    except (TypeError, ValueError, IndexError, AttributeError):
        return False


def _verify_proof(h: Hasher, root: bytes, key: bytes, value: bytes | None, proof: SparseMerkleProof) -> bool:
    # The root is a 32-byte hash and the key and value are bytes.
    if not _is_hash(root) or not isinstance(key, bytes) or not isinstance(value, bytes | None):
        return False
    # A proof is a SparseMerkleProof.
    if not isinstance(proof, SparseMerkleProof):
        return False
    key_hash = h(key)
    leaf = proof.leaf
    if value is None:
        # Absence: no leaf at the end of the path, or a leaf of another key.
        if leaf is not None and isinstance(leaf, ProofLeaf) and leaf.key_hash == key_hash:
            return False
    # Membership: the leaf at the end of the path is this key's, with this value.
    elif leaf is None or leaf.key_hash != key_hash or leaf.value_hash != h(value):
        return False
    return compute_proof_root(h, key_hash, proof) == root


def verify_proof_bytes(h: Hasher, root: bytes, key: bytes, value: bytes | None, data: bytes) -> bool:
    """verify_proof over a proof's canonical bytes; False for bytes that are not one."""
    try:
        proof = decode_proof(data)
    except (DecodeError, TypeError):
        return False
    return verify_proof(h, root, key, value, proof)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _shares_prefix(a: bytes, b: bytes, bits: int) -> bool:
    """Whether the first ``bits`` bits of ``a`` and ``b`` are equal."""
    whole, rest = divmod(bits, 8)
    if a[:whole] != b[:whole]:
        return False
    return rest == 0 or (a[whole] ^ b[whole]) >> (8 - rest) == 0
