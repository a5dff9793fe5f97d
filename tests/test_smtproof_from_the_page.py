"""A second reader of state proofs, written from docs/proof-format.md §9.1 alone.

It decodes ``state.proof`` byte by byte (its own MessagePack reading: the smallest forms of §2,
nothing else) and checks it by the five steps of the page, without ``zhongshu.ledger.smt``.
The proofs the tree builds, for keys present and absent in random maps and in the document's
worked example, must pass it; altered ones, other values and other roots must not. If the code
and the page drift apart, one of the two readers says so.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from test_state_proof import _example
from zhongshu.codec import decode
from zhongshu.crypto import get_suite
from zhongshu.ledger.smt import PLACEHOLDER, MemoryNodeStore, SparseMerkleTree, encode_proof
from zhongshu.ledger.types import Header

Hasher = Callable[[bytes], bytes]
ZERO = bytes(32)


class Malformed(Exception):
    """Bytes that are not a canonical smtproof."""


class _Reader:
    """The few MessagePack forms an smtproof holds, in their smallest encodings only."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise Malformed("truncated")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def array_len(self) -> int:
        first = self.byte()
        if 0x90 <= first <= 0x9F:
            return first - 0x90
        if first == 0xDC:
            n = int.from_bytes(self.take(2), "big")
            if n < 16:
                raise Malformed("array16 for a short array")
            return n
        raise Malformed(f"not an array header: {first:#x}")

    def uint(self) -> int:
        first = self.byte()
        if first <= 0x7F:
            return first
        if first == 0xCC:
            n = self.byte()
            if n < 0x80:
                raise Malformed("uint8 for a fixint")
            return n
        if first == 0xCD:
            n = int.from_bytes(self.take(2), "big")
            if n < 0x100:
                raise Malformed("uint16 for a smaller uint")
            return n
        raise Malformed(f"not a uint 0..65535: {first:#x}")

    def bin(self) -> bytes:
        if self.byte() != 0xC4:
            raise Malformed("not a bin8")
        return self.take(self.byte())


def read_smtproof(data: bytes) -> tuple[tuple[bytes, bytes] | None, int, bytes, list[bytes]]:
    """``["smtproof", leaf, depth, bitmap, siblings]`` (§9.1): leaf, depth, bitmap, siblings."""
    r = _Reader(data)
    if r.take(1) != b"\x95" or r.take(9) != b"\xa8smtproof":
        raise Malformed("not the smtproof array and tag")
    leaf: tuple[bytes, bytes] | None = None
    if r.data[r.at] == 0xC0:
        r.at += 1
    else:
        if r.array_len() != 2:
            raise Malformed("a leaf is an array of 2")
        leaf = (r.bin(), r.bin())
    depth = r.uint()
    bitmap = r.bin()
    siblings = [r.bin() for _ in range(r.array_len())]
    if r.at != len(data):
        raise Malformed("bytes after the proof")
    return leaf, depth, bitmap, siblings


def bit(data: bytes, i: int) -> int:
    """Bit ``i`` of ``data``, the most significant bit of byte 0 first."""
    return (data[i // 8] >> (7 - i % 8)) & 1


def check(h: Hasher, root: bytes, key: bytes, value: bytes | None, proof: bytes) -> bool:
    """§9.1 "Checking it", steps 1 to 5."""
    try:
        leaf, depth, bitmap, siblings = read_smtproof(proof)
    except Malformed:
        return False
    # 1. Sizes, padding, one non-placeholder sibling per set bit.
    if len(root) != 32 or not 0 <= depth <= 256 or len(bitmap) != -(-depth // 8):
        return False
    if any(bit(bitmap, i) for i in range(depth, len(bitmap) * 8)):
        return False
    if sum(bit(bitmap, i) for i in range(depth)) != len(siblings):
        return False
    if any(len(s) != 32 or s == ZERO for s in siblings):
        return False
    if leaf is not None and any(len(part) != 32 for part in leaf):
        return False
    # 2. The deepest level has a sibling, or the tree would have collapsed.
    if depth > 0 and not bit(bitmap, depth - 1):
        return False
    key_hash = h(key)
    # 3. Presence needs this key's leaf with this value; absence, no leaf or another key's.
    if value is not None:
        if leaf is None or leaf != (key_hash, h(value)):
            return False
    elif leaf is not None and leaf[0] == key_hash:
        return False
    # 4. The leaf lies on the key's path.
    if leaf is not None and any(bit(leaf[0], i) != bit(key_hash, i) for i in range(depth)):
        return False
    # 5. Up from the leaf (or the empty subtree) to the root, deepest sibling first.
    node = h(b"\x00" + leaf[0] + leaf[1]) if leaf is not None else ZERO
    listed = iter(siblings)
    for level in range(depth - 1, -1, -1):
        sibling = next(listed) if bit(bitmap, level) else ZERO
        pair = sibling + node if bit(key_hash, level) else node + sibling
        node = h(b"\x01" + pair)
    return node == root


def test_the_placeholder_is_the_pages() -> None:
    assert PLACEHOLDER == ZERO


def test_the_documents_worked_example_passes_the_second_reader() -> None:
    # §9.5: the map {a: 1, b: 2, c: 3} with SHA-256; b present, d absent.
    h = get_suite("intl").hasher()
    for key, value in ((b"b", b"2"), (b"d", None)):
        bundle, _ = _example(key, value)
        proof = bytes.fromhex(bundle["state"]["proof"])
        state_root = decode(bytes.fromhex(bundle["block"]["header"]), Header).state_root
        assert check(h, state_root, key, value, proof)
        assert not check(h, state_root, key, b"other", proof)
        assert not check(h, state_root, b"a", value, proof)


@pytest.mark.parametrize("suite", ["sm", "intl"])
@pytest.mark.parametrize("seed", range(4))
def test_proofs_of_random_maps_pass_the_second_reader_and_nothing_else(suite: str, seed: int) -> None:
    h = get_suite(suite).hasher()
    rng = random.Random(seed)
    tree = SparseMerkleTree(h, MemoryNodeStore())
    state: dict[bytes, bytes] = {}
    root = PLACEHOLDER
    # Three versions: inserts, then updates and deletes.
    for version in (1, 2, 3):
        writes: dict[bytes, bytes | None] = {}
        for _ in range(rng.randrange(1, 200)):
            fresh = rng.randbytes(rng.randrange(1, 40))
            key = rng.choice([*state, fresh]) if state else fresh
            writes[key] = None if state and rng.random() < 0.2 else rng.randbytes(rng.randrange(0, 50))
        root, nodes = tree.apply(root, version - 1, writes, version)
        tree.store.put_nodes(nodes)
        for key, value in writes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
    probes = rng.sample(sorted(state), min(30, len(state)))
    probes += [rng.randbytes(rng.randrange(1, 40)) for _ in range(30)]
    for key in probes:
        value = state.get(key)
        proof = encode_proof(tree.prove(root, 3, key))
        assert check(h, root, key, value, proof), (key, value)
        # Another value, the opposite claim, another root, another key: refused.
        assert not check(h, root, key, b"not the value" if value is not None else b"x", proof)
        if value is not None:
            assert not check(h, root, key, None, proof)
        assert not check(h, h(root), key, value, proof)
        # Any one bit changed: refused.
        i = rng.randrange(len(proof))
        changed = proof[:i] + bytes([proof[i] ^ (1 << rng.randrange(8))]) + proof[i + 1 :]
        assert not check(h, root, key, value, changed), (i, proof.hex())
