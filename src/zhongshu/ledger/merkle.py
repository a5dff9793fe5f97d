"""RFC 6962 Merkle trees over any 32-byte hash: roots, inclusion and consistency proofs.

leaf hash  = H(0x00 || data)
node hash  = H(0x01 || left || right)
empty tree = H("")

The split point for n > 1 leaves is the largest power of two smaller than n (RFC 6962 2.1).
Verification follows RFC 9162 2.1.3.2 / 2.1.4.2, as transparency-dev/merkle does; a consistency
proof from size 0 is rejected (even 0 -> 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Hasher = Callable[[bytes], bytes]


class ProofError(ValueError):
    """An inclusion or consistency proof does not check."""


def hash_leaf(h: Hasher, data: bytes) -> bytes:
    return h(b"\x00" + data)


def hash_children(h: Hasher, left: bytes, right: bytes) -> bytes:
    return h(b"\x01" + left + right)


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(h: Hasher, leaves: Sequence[bytes]) -> bytes:
    """The RFC 6962 tree head over already-hashed leaves (iterative, O(n))."""
    if not leaves:
        return h(b"")
    level = list(leaves)
    # Pairing left to right and carrying a lone last node up gives the RFC 6962 shape.
    while len(level) > 1:
        nxt = [hash_children(h, level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def compute_root(h: Hasher, items: Sequence[bytes]) -> bytes:
    """The RFC 6962 tree head over raw leaf data."""
    return root_from_leaf_hashes(h, [hash_leaf(h, d) for d in items])


def inclusion_proof(h: Hasher, leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` among leaf hashes ``leaves`` (RFC 6962 2.1.1)."""
    if not 0 <= index < len(leaves):
        raise ProofError(f"leaf index {index} outside a tree of size {len(leaves)}")
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    # Walk down from the root, recording the sibling subtree of the side holding the leaf.
    siblings: list[bytes] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            siblings.append(root_from_leaf_hashes(h, leaves[lo + k : hi]))
            hi = lo + k
        else:
            siblings.append(root_from_leaf_hashes(h, leaves[lo : lo + k]))
            lo = lo + k
    path.extend(reversed(siblings))
    return path


def root_from_inclusion_proof(
    h: Hasher, index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root implied by an audit path (RFC 9162 2.1.3.2); raise ProofError on a bad shape."""
    if size <= 0 or not 0 <= index < size:
        raise ProofError(f"leaf index {index} outside a tree of size {size}")
    if any(len(p) != len(leaf_hash) for p in proof):
        raise ProofError("a proof node has the wrong length")
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = hash_children(h, p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hash_children(h, r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    h: Hasher, index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless ``leaf_hash`` sits at ``index`` of the tree with head ``root``."""
    # Hashes are never empty, and the root has the leaf hash's length.
    if not leaf_hash or len(root) != len(leaf_hash):
        raise ProofError("the leaf hash or the root is empty or of the wrong length")
    if root_from_inclusion_proof(h, index, size, leaf_hash, proof) != root:
        raise ProofError("the inclusion proof does not lead to the expected root")


def consistency_proof(h: Hasher, leaves: Sequence[bytes], size1: int) -> list[bytes]:
    """The proof that the first ``size1`` leaves are a prefix of ``leaves`` (RFC 6962 2.1.2)."""
    size2 = len(leaves)
    if not 0 < size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")
    return _subproof(h, size1, leaves, True)


def _subproof(h: Hasher, m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root_from_leaf_hashes(h, leaves)]
    k = _split(n)
    if m <= k:
        return _subproof(h, m, leaves[:k], complete) + [root_from_leaf_hashes(h, leaves[k:])]
    return _subproof(h, m - k, leaves[k:], False) + [root_from_leaf_hashes(h, leaves[:k])]


def verify_consistency(
    h: Hasher, size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ProofError unless tree ``root2`` of ``size2`` extends tree ``root1`` of ``size1``."""
    if not root1 or len(root1) != len(root2):
        raise ProofError("a root is empty or of the wrong length")
    if size1 <= 0:
        raise ProofError("a consistency proof needs a first tree of size at least 1")
    if size2 < size1:
        raise ProofError(f"size2 {size2} is smaller than size1 {size1}")
    if size1 == size2:
        if proof:
            raise ProofError("equal sizes take an empty proof")
        if root1 != root2:
            raise ProofError("equal sizes but different roots")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    if any(len(p) != len(root1) for p in proof):
        raise ProofError("a proof node has the wrong length")
    path = list(proof)
    # When size1 is an exact power-of-two subtree, its root is the implicit first node.
    if size1 & (size1 - 1) == 0:
        path = [root1, *path]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = hash_children(h, c, fr)
            sr = hash_children(h, c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = hash_children(h, sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if fr != root1:
        raise ProofError("the consistency proof does not lead to the first root")
    if sr != root2:
        raise ProofError("the consistency proof does not lead to the second root")
