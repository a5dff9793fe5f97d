"""Proof sizes of the sparse Merkle tree (ledger/smt.py) at many keys; not a test, not asserted.

    .venv/bin/python bench/smt_size.py [--keys 100000] [--chunk 1000] [--suite sm|intl]

Builds a map of ``--keys`` keys in batches of ``--chunk`` (as blocks would write them), keeping
every version's nodes in memory, then prints the encoded proof sizes (membership and absence),
the depth of the paths, the nodes and node bytes stored, and the build, apply and verify times
of this machine in CPU seconds of this process (for orientation only; on a shared machine, less
noisy than wall time).
"""

from __future__ import annotations

import argparse
import statistics
import time

from zhongshu.crypto import get_suite
from zhongshu.ledger.smt import (
    NODE_KEY_SIZE,
    PLACEHOLDER,
    MemoryNodeStore,
    SparseMerkleTree,
    encode_proof,
    get_child_keys,
    node_key,
    verify_proof,
)

SAMPLES = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--suite", choices=["sm", "intl"], default="sm")
    args = parser.parse_args()
    h = get_suite(args.suite).hasher()
    store = MemoryNodeStore()
    tree = SparseMerkleTree(h, store)
    root, version = PLACEHOLDER, 0
    started = time.process_time()
    apply_s = 0.0
    for first in range(0, args.keys, args.chunk):
        batch = {
            f"key-{i}".encode(): f"value-{i}".encode()
            for i in range(first, min(args.keys, first + args.chunk))
        }
        applying = time.process_time()
        root, nodes = tree.apply(root, version, batch, version + 1)
        version += 1
        apply_s += time.process_time() - applying
        store.put_nodes(nodes)
    build_s = time.process_time() - started
    step = max(1, args.keys // SAMPLES)
    present = [f"key-{i}".encode() for i in range(0, args.keys, step)]
    absent = [f"absent-{i}".encode() for i in range(len(present))]
    member = [tree.prove(root, version, k) for k in present]
    missing = [tree.prove(root, version, k) for k in absent]
    started = time.process_time()
    for key, proof in zip(present, member, strict=True):
        assert verify_proof(h, root, key, f"value-{key[4:].decode()}".encode(), proof)
    verify_us = (time.process_time() - started) / len(member) * 1e6
    for key, proof in zip(absent, missing, strict=True):
        assert verify_proof(h, root, key, None, proof)
    print(f"suite {args.suite}: {args.keys} keys in batches of {args.chunk}, built in {build_s:.1f} s")
    print(f"  apply: {apply_s / args.keys * 1e6:.0f} us per written key (storing the nodes aside)")
    live, live_bytes = compute_live_nodes(tree, version, root)
    stored = len(store.nodes)
    stored_bytes = sum(map(len, store.nodes.values())) + stored * NODE_KEY_SIZE
    print(f"  nodes stored (all versions): {stored}, {stored_bytes / 1e6:.1f} MB of node keys and bytes")
    per_key = live_bytes / args.keys
    print(f"  nodes of the last version: {live}, {live / args.keys:.2f} per key, {per_key:.0f} B per key")
    print("    (node key + node bytes, before any database overhead)")
    _report("membership", [len(encode_proof(p)) for p in member], [p.depth for p in member])
    _report("absence", [len(encode_proof(p)) for p in missing], [p.depth for p in missing])
    with_leaf = sum(p.leaf is not None for p in missing)
    print(f"  absence proofs ending in another key's leaf: {with_leaf} of {len(missing)}")
    print(f"  verify: {verify_us:.0f} us per membership proof")


def compute_live_nodes(tree: SparseMerkleTree, version: int, root: bytes) -> tuple[int, int]:
    """How many nodes ``version``'s tree has, and their node keys and stored bytes in all."""
    count, size = 0, 0
    pending = [] if root == PLACEHOLDER else [node_key(version, root)]
    while pending:
        key = pending.pop()
        node = tree.get_node(key)
        count += 1
        size += len(key) + len(node)
        pending += get_child_keys(node)
    return count, size


def _report(kind: str, sizes: list[int], depths: list[int]) -> None:
    print(
        f"  {kind}: {statistics.mean(sizes):.0f} B mean, {max(sizes)} B max, "
        f"depth {statistics.mean(depths):.1f} mean, {max(depths)} max ({len(sizes)} proofs)"
    )


if __name__ == "__main__":
    main()
