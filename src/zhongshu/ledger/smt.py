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

Nodes are immutable and content-addressed: a node's stored bytes are exactly its hash input
(65 bytes, tag byte first), kept under its hash in a ``NodeStore``. ``apply`` never changes a
stored node; it returns the new nodes for the caller to store, so a root stays provable for as
long as the nodes reachable from it are kept. Values are not in the tree (only their hashes).

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

from collections.abc import Mapping, Sequence
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
    """Where nodes live: bytes by node hash. Nodes are never changed, only added or pruned."""

    def get_node(self, node_hash: bytes) -> bytes | None:
        """The node's bytes, or None when the store does not hold it."""

    def put_nodes(self, nodes: Mapping[bytes, bytes]) -> None:
        """Add nodes (node hash -> node bytes)."""


class MemoryNodeStore:
    """A NodeStore in a dict (tests, tools; the node's own store is LMDB)."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}

    def get_node(self, node_hash: bytes) -> bytes | None:
        return self.nodes.get(node_hash)

    def put_nodes(self, nodes: Mapping[bytes, bytes]) -> None:
        self.nodes.update(nodes)


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


# A pending change: (key_hash, value_hash or None to delete), sorted by key_hash.
_Change = tuple[bytes, bytes | None]


class SparseMerkleTree:
    """The versioned map over one NodeStore; a version is named by its root hash."""

    def __init__(self, h: Hasher, store: NodeStore) -> None:
        self.h = h
        self.store = store

    def get_node(self, node_hash: bytes) -> bytes:
        """The stored node; raise MissingNode or CorruptNode."""
        node = self.store.get_node(node_hash)
        # A reachable node must be stored: a miss means a pruned version or a foreign root.
        if node is None:
            raise MissingNode(f"node {node_hash.hex()} is not in the store")
        # A node is a tag byte and two hashes.
        if len(node) != NODE_SIZE or node[:1] not in (LEAF_TAG, INTERNAL_TAG):
            raise CorruptNode(f"node {node_hash.hex()} is {len(node)} bytes, not a node")
        return node

    def apply(self, root: bytes, updates: Mapping[bytes, bytes | None]) -> tuple[bytes, dict[bytes, bytes]]:
        """The root after applying ``updates`` (key -> value, None deletes) to version ``root``.

        Returns the new root and the nodes it needs that this batch created (hash -> bytes);
        the caller stores them. Stored nodes are never changed, so ``root`` stays provable.
        Deleting an absent key or writing a key's present value changes nothing.
        """
        changes = sorted(
            (self.h(key), None if value is None else self.h(value)) for key, value in updates.items()
        )
        new_nodes: dict[bytes, bytes] = {}
        new_root = self._apply_at(root, 0, changes, new_nodes)
        # Only nodes reachable from the new root are returned: a batch creates each node once,
        # but a node equal to one already stored need not be written again.
        return new_root, {k: v for k, v in new_nodes.items() if self.store.get_node(k) is None}

    def _apply_at(
        self, node_hash: bytes, depth: int, changes: list[_Change], new_nodes: dict[bytes, bytes]
    ) -> bytes:
        """The subtree at ``depth`` after ``changes`` (all under it, sorted by key hash)."""
        if not changes:
            return node_hash
        if node_hash == PLACEHOLDER:
            return self._build(depth, [(k, v) for k, v in changes if v is not None], new_nodes)
        node = self.get_node(node_hash)
        if is_leaf_node(node):
            return self._build(depth, _merge_leaf(node, changes), new_nodes)
        split = _split_point(changes, depth)
        left = self._apply_at(node[1 : 1 + HASH_SIZE], depth + 1, changes[:split], new_nodes)
        right = self._apply_at(node[1 + HASH_SIZE :], depth + 1, changes[split:], new_nodes)
        return self._join(left, right, new_nodes)

    def _build(self, depth: int, leaves: list[tuple[bytes, bytes]], new_nodes: dict[bytes, bytes]) -> bytes:
        """The canonical subtree at ``depth`` over ``leaves`` (sorted, distinct key hashes)."""
        if not leaves:
            return PLACEHOLDER
        if len(leaves) == 1:
            return self._add_node(encode_leaf(*leaves[0]), new_nodes)
        # Two distinct 256-bit key hashes differ at some bit before depth 256.
        if depth >= KEY_BITS:
            raise TreeError("two updates have the same key hash")
        split = _split_point(leaves, depth)
        left = self._build(depth + 1, leaves[:split], new_nodes)
        right = self._build(depth + 1, leaves[split:], new_nodes)
        return self._join(left, right, new_nodes)

    def _join(self, left: bytes, right: bytes, new_nodes: dict[bytes, bytes]) -> bytes:
        """The parent of two subtrees, collapsed when it holds no leaf or a single leaf."""
        # Beside an empty side, an empty subtree or a single leaf is taken up as it is.
        if right == PLACEHOLDER and self._is_leaf_or_empty(left, new_nodes):
            return left
        if left == PLACEHOLDER and self._is_leaf_or_empty(right, new_nodes):
            return right
        return self._add_node(encode_internal(left, right), new_nodes)

    def _is_leaf_or_empty(self, node_hash: bytes, new_nodes: dict[bytes, bytes]) -> bool:
        if node_hash == PLACEHOLDER:
            return True
        node = new_nodes.get(node_hash)
        return is_leaf_node(self.get_node(node_hash) if node is None else node)

    def _add_node(self, node: bytes, new_nodes: dict[bytes, bytes]) -> bytes:
        node_hash = self.h(node)
        new_nodes[node_hash] = node
        return node_hash

    def get_value_hash(self, root: bytes, key: bytes) -> bytes | None:
        """H(value) of ``key`` in version ``root``, or None when the key is absent."""
        proof = self.prove(root, key)
        key_hash = self.h(key)
        if proof.leaf is None or proof.leaf.key_hash != key_hash:
            return None
        return proof.leaf.value_hash

    def prove(self, root: bytes, key: bytes) -> SparseMerkleProof:
        """The proof of ``key``'s value in version ``root``, or of its absence."""
        key_hash = self.h(key)
        node_hash, depth = root, 0
        siblings_top_down: list[bytes] = []
        node = b""
        # Descend while the path is in an internal node; stop at a leaf or an empty subtree.
        while node_hash != PLACEHOLDER:
            node = self.get_node(node_hash)
            if is_leaf_node(node):
                break
            left, right = node[1 : 1 + HASH_SIZE], node[1 + HASH_SIZE :]
            bit = get_bit(key_hash, depth)
            node_hash, sibling = (right, left) if bit else (left, right)
            siblings_top_down.append(sibling)
            depth += 1
        leaf = None
        if node_hash != PLACEHOLDER:
            leaf = ProofLeaf(key_hash=node[1 : 1 + HASH_SIZE], value_hash=node[1 + HASH_SIZE :])
        return SparseMerkleProof(
            leaf=leaf,
            depth=depth,
            bitmap=compute_bitmap(siblings_top_down),
            siblings=[s for s in reversed(siblings_top_down) if s != PLACEHOLDER],
        )


def _split_point(items: Sequence[tuple[bytes, object]], depth: int) -> int:
    """Index of the first item whose key hash has bit ``depth`` set (items sorted by key hash)."""
    for i, item in enumerate(items):
        if get_bit(item[0], depth):
            return i
    return len(items)


def _merge_leaf(leaf: bytes, changes: list[_Change]) -> list[tuple[bytes, bytes]]:
    """The leaves of a one-leaf subtree after ``changes``: sorted, deletions dropped."""
    merged: dict[bytes, bytes | None] = {leaf[1 : 1 + HASH_SIZE]: leaf[1 + HASH_SIZE :]}
    merged.update(changes)
    return sorted((k, v) for k, v in merged.items() if v is not None)


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
