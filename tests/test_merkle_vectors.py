"""Our RFC 6962 Merkle code against transparency-dev/merkle's vectors (tests/vectors/merkle).

Every probe file is one test, named by its path under merkle/ (e.g. inclusion/1/happy-path.json).
The vectors use SHA-256; test_merkle_properties.py runs the same code with SM3.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from zhongshu.ledger.merkle import (
    ProofError,
    compute_root,
    consistency_proof,
    hash_children,
    hash_leaf,
    inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

MERKLE = Path(__file__).resolve().parent / "vectors" / "merkle"
REFERENCE = json.loads((MERKLE / "rfc6962_reference_tree.json").read_text(encoding="utf-8"))
LEAF_INPUTS = [bytes.fromhex(x) for x in REFERENCE["leaf_inputs_hex"]]
LEAF_HASHES = [bytes.fromhex(x) for x in REFERENCE["leaf_hashes_hex"]]
ROOTS = [bytes.fromhex(x) for x in REFERENCE["root_by_tree_size_0_to_8"]]


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def probe_files(kind: str) -> list[Path]:
    return sorted((MERKLE / kind).rglob("*.json"))


def probe_params(kind: str) -> list[Any]:
    return [pytest.param(p, id=p.relative_to(MERKLE).as_posix()) for p in probe_files(kind)]


def load_probe(path: Path) -> dict[str, Any]:
    probe: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return probe


def b64(s: str) -> bytes:
    return base64.b64decode(s, validate=True)


def b64_list(items: list[str] | None) -> list[bytes]:
    return [b64(s) for s in items or []]


# --- the files are there --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["inclusion", "consistency"])
def test_merkle_vector_directories_are_not_empty(kind: str) -> None:
    files = probe_files(kind)
    assert len(files) > 0, f"no {kind} vectors under {MERKLE / kind}"
    subdirs = [d for d in (MERKLE / kind).iterdir() if d.is_dir()]
    assert subdirs
    for d in subdirs:
        assert len(list(d.rglob("*.json"))) > 0, f"no vectors in {d}"
    # Both outcomes are represented, so neither branch of the probe tests is vacuous.
    outcomes = {load_probe(p)["wantErr"] for p in files}
    assert outcomes == {True, False}


# --- rfc6962_reference_tree.json ------------------------------------------------------------


def test_rfc6962_reference_tree_shape() -> None:
    assert len(LEAF_INPUTS) == len(LEAF_HASHES) == 8
    assert len(ROOTS) == 9


@pytest.mark.parametrize("i", range(8))
def test_rfc6962_reference_tree_leaf_hash(i: int) -> None:
    assert hash_leaf(sha256, LEAF_INPUTS[i]) == LEAF_HASHES[i]


@pytest.mark.parametrize("size", range(9))
def test_rfc6962_reference_tree_root(size: int) -> None:
    assert compute_root(sha256, LEAF_INPUTS[:size]) == ROOTS[size]
    assert root_from_leaf_hashes(sha256, LEAF_HASHES[:size]) == ROOTS[size]


def test_rfc6962_reference_tree_hasher_unit() -> None:
    unit = REFERENCE["hasher_unit"]
    assert sha256(b"") == ROOTS[0]
    assert hash_leaf(sha256, b"") == bytes.fromhex(unit["empty_leaf"])
    assert hash_leaf(sha256, b"L123456") == bytes.fromhex(unit["leaf('L123456')"])
    assert hash_children(sha256, b"N123", b"N456") == bytes.fromhex(unit["children('N123','N456')"])


@pytest.mark.parametrize("size", range(1, 9))
def test_rfc6962_reference_tree_all_inclusion_proofs_verify(size: int) -> None:
    for index in range(size):
        proof = inclusion_proof(sha256, LEAF_HASHES[:size], index)
        verify_inclusion(sha256, index, size, LEAF_HASHES[index], proof, ROOTS[size])


@pytest.mark.parametrize("size2", range(1, 9))
def test_rfc6962_reference_tree_all_consistency_proofs_verify(size2: int) -> None:
    for size1 in range(1, size2 + 1):
        proof = consistency_proof(sha256, LEAF_HASHES[:size2], size1)
        verify_consistency(sha256, size1, size2, ROOTS[size1], ROOTS[size2], proof)


# --- inclusion/**.json ----------------------------------------------------------------------


@pytest.mark.parametrize("path", probe_params("inclusion"))
def test_inclusion_vector(path: Path) -> None:
    p = load_probe(path)
    args = (
        sha256,
        p["leafIdx"],
        p["treeSize"],
        b64(p["leafHash"]),
        b64_list(p["proof"]),
        b64(p["root"]),
    )
    if p["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


def _matches_reference_tree(size: int, root: bytes) -> bool:
    return 0 < size < len(ROOTS) and ROOTS[size] == root


def test_inclusion_vectors_happy_paths_equal_our_proofs() -> None:
    """Where a happy-path probe is over the reference tree, our prover makes the same proof."""
    compared = 0
    for path in probe_files("inclusion"):
        p = load_probe(path)
        idx, size, root = p["leafIdx"], p["treeSize"], b64(p["root"])
        if p["wantErr"] or not _matches_reference_tree(size, root):
            continue
        assert b64(p["leafHash"]) == LEAF_HASHES[idx], path
        assert inclusion_proof(sha256, LEAF_HASHES[:size], idx) == b64_list(p["proof"]), path
        compared += 1
    assert compared >= 4


# --- consistency/**.json --------------------------------------------------------------------


@pytest.mark.parametrize("path", probe_params("consistency"))
def test_consistency_vector(path: Path) -> None:
    p = load_probe(path)
    args = (
        sha256,
        p["size1"],
        p["size2"],
        b64(p["root1"]),
        b64(p["root2"]),
        b64_list(p["proof"]),
    )
    if p["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_consistency_vectors_happy_paths_equal_our_proofs() -> None:
    compared = 0
    for path in probe_files("consistency"):
        p = load_probe(path)
        size1, size2 = p["size1"], p["size2"]
        if p["wantErr"] or size1 == size2:
            continue
        if not (
            _matches_reference_tree(size1, b64(p["root1"]))
            and _matches_reference_tree(size2, b64(p["root2"]))
        ):
            continue
        assert consistency_proof(sha256, LEAF_HASHES[:size2], size1) == b64_list(p["proof"]), path
        compared += 1
    assert compared >= 3


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


def test_inclusion_vectors_happy_paths_with_same_length_corruptions() -> None:
    """The files' wrong roots are mostly of the wrong length; corrupt ones of the right length."""
    checked = 0
    for path in probe_files("inclusion"):
        p = load_probe(path)
        if p["wantErr"]:
            continue
        idx, size, leaf, root = p["leafIdx"], p["treeSize"], b64(p["leafHash"]), b64(p["root"])
        proof = b64_list(p["proof"])
        for bit in (0, 131, 255):
            with pytest.raises(ProofError):
                verify_inclusion(sha256, idx, size, leaf, proof, _flip(root, bit))
            with pytest.raises(ProofError):
                verify_inclusion(sha256, idx, size, _flip(leaf, bit), proof, root)
            for k in range(len(proof)):
                bad = [*proof[:k], _flip(proof[k], bit), *proof[k + 1 :]]
                with pytest.raises(ProofError):
                    verify_inclusion(sha256, idx, size, leaf, bad, root)
        checked += 1
    assert checked >= 5


def test_consistency_vectors_happy_paths_with_same_length_corruptions() -> None:
    checked = 0
    for path in probe_files("consistency"):
        p = load_probe(path)
        if p["wantErr"]:
            continue
        size1, size2, root1, root2 = p["size1"], p["size2"], b64(p["root1"]), b64(p["root2"])
        proof = b64_list(p["proof"])
        if not root1 or len(root1) != 32:
            continue  # the "don't care" roots of additional/
        for bit in (0, 131, 255):
            with pytest.raises(ProofError):
                verify_consistency(sha256, size1, size2, _flip(root1, bit), root2, proof)
            with pytest.raises(ProofError):
                verify_consistency(sha256, size1, size2, root1, _flip(root2, bit), proof)
            for k in range(len(proof)):
                bad = [*proof[:k], _flip(proof[k], bit), *proof[k + 1 :]]
                with pytest.raises(ProofError):
                    verify_consistency(sha256, size1, size2, root1, root2, bad)
        checked += 1
    assert checked >= 4


def test_consistency_from_size_zero_is_rejected() -> None:
    """transparency-dev's rule, which we follow: no consistency proof from size 0, even 0 -> 0."""
    with pytest.raises(ProofError):
        verify_consistency(sha256, 0, 0, ROOTS[0], ROOTS[0], [])
    with pytest.raises(ProofError):
        verify_consistency(sha256, 0, 3, ROOTS[0], ROOTS[3], [])
    with pytest.raises(ProofError):
        consistency_proof(sha256, LEAF_HASHES[:3], 0)
