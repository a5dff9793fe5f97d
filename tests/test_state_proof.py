"""State proof bundles (zhongshu-state-proof/1): built from a real chain, verified, and every
alteration refused; the worked example of docs/proof-format.md §9 rebuilt byte for byte."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import run_cli
from zhongshu.codec import encode
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.ledger import smt
from zhongshu.ledger.evidence_args import EVIDENCE_KEY_PREFIX, EvidenceRecord
from zhongshu.ledger.genesis import genesis_from_json, save_genesis
from zhongshu.ledger.hashing import (
    compute_block_hash,
    compute_genesis_hash,
    compute_tx_hash,
    compute_validator_set_hash,
)
from zhongshu.ledger.proof import (
    STATE_FORMAT,
    ProofInvalid,
    build_state_bundle,
    load_bundle,
    verify_state_bundle,
)
from zhongshu.ledger.smt import MemoryNodeStore, SparseMerkleTree
from zhongshu.ledger.types import (
    PRECOMMIT,
    Block,
    ChainParams,
    CommitCertificate,
    CommitSig,
    Genesis,
    Header,
    Validator,
    ValidatorSet,
    Vote,
)
from zhongshu.node.chain import ChainNode
from zhongshu.node.signer import Signer
from zhongshu.sdk.tx import evidence_tx

CHAIN_ID = "city-evidence"
GENESIS_TIME = 1_700_000_000_000
FAR = 10**9
DOC = Path(__file__).resolve().parents[1] / "docs" / "proof-format.md"

FILES = {
    1: b"contract 2024-001, signed copy",
    2: b"minutes of the 3 March meeting",
    4: b"a file deposited only at height 4",
}
"""The file deposited in block h (block 3 and 5 deposit random digests)."""
NEVER = b"a file nobody deposited"


class StateChain:
    """A real ChainNode of 4 validators (power 1 each), blocks certified by 3 of them."""

    def __init__(self, suite_name: str, data: Path) -> None:
        self.suite = get_suite(suite_name)
        self.keys = [self.suite.generate_private_key() for _ in range(4)]
        self.client = self.suite.generate_private_key()
        self.vset = ValidatorSet([Validator(k.public_bytes(), 1, f"v{i}") for i, k in enumerate(self.keys)])
        self.genesis = Genesis(CHAIN_ID, suite_name, GENESIS_TIME, self.vset, ChainParams())
        self.node = ChainNode(
            self.genesis, data / "data", Signer(self.keys[0], data / "signer.json"), verify_workers=1
        )

    def add_block(self, deposits: list[tuple[bytes, str | None]]) -> None:
        """Block ``height + 1`` holding one evidence.put per (digest, algorithm)."""
        node = self.node
        height = node.height + 1
        txs = [
            evidence_tx(self.client, CHAIN_ID, node.genesis_hash, d, f"file-{height}", FAR, algorithm=a)
            for d, a in deposits
        ]
        hashes = [compute_tx_hash(node.hash, tx) for tx in txs]
        built = node.execute_block(
            height, GENESIS_TIME + 1000 * height, txs, hashes, self.keys[0].public_bytes()
        )
        assert all(r.status == 0 for r in built.receipts), built.receipts
        vote = encode(Vote(PRECOMMIT, CHAIN_ID, height, 0, built.block_hash))
        commit = CommitCertificate(
            height, 0, built.block_hash, [CommitSig(k.public_bytes(), k.sign(vote)) for k in self.keys[:3]]
        )
        asyncio.run(node.store_block(built, commit))

    def bundle(
        self, key: bytes, height: int, *, anchor: int | None = None, commit: bool = True
    ) -> dict[str, Any]:
        at = self.node.prove_state(key, height)
        anchor_arg = None
        if anchor is not None:
            newer = self.node.load_block(anchor)
            anchor_arg = (newer.block.header, newer.commit, self.node.store.load_block_hashes(anchor - 1))
        return roundtrip(
            build_state_bundle(
                self.suite.name,
                key,
                at.value,
                at.proof,
                at.record.block,
                at.record.commit if commit else None,
                self.vset,
                anchor=anchor_arg,
            )
        )


def roundtrip(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle as a verifier reads it: through JSON text."""
    value: dict[str, Any] = load_bundle(json.dumps(bundle))
    return value


def evidence_key(content: bytes, algorithm: str = "sha256") -> bytes:
    return EVIDENCE_KEY_PREFIX + hashlib.new(algorithm, content).digest()


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StateChain]:
    """Five blocks: file 1 (sha256) at 1, file 2 (sha512, named) at 2, file 4 at 4."""
    c = StateChain("intl", tmp_path_factory.mktemp("state-chain"))
    try:
        c.add_block([(hashlib.sha256(FILES[1]).digest(), None)])
        c.add_block([(hashlib.sha512(FILES[2]).digest(), "sha512")])
        c.add_block([(bytes(range(32)), None)])
        c.add_block([(hashlib.sha256(FILES[4]).digest(), None)])
        c.add_block([(bytes(range(1, 33)), None)])
        yield c
    finally:
        c.node.close()


# ------------------------------------------------------------------------------------------------
# Bundles that verify


def test_present_evidence_key_verifies(chain: StateChain) -> None:
    key = evidence_key(FILES[1])
    bundle = chain.bundle(key, 5)
    assert bundle["format"] == STATE_FORMAT and bundle["state"]["value"] is not None
    for trusted in (None, chain.genesis):
        proven = verify_state_bundle(copy.deepcopy(bundle), trusted=trusted)
        assert (proven.height, proven.key, proven.trusted) == (5, key, trusted is not None)
        assert proven.evidence is not None
        assert (proven.evidence.height, proven.evidence.name) == (1, "file-1")
        assert proven.evidence.owner == chain.client.public_bytes()
        assert (proven.signed_power, proven.total_power, proven.anchor_height) == (3, 4, None)
    with_file = verify_state_bundle(bundle, trusted=chain.genesis, file=io.BytesIO(FILES[1]))
    assert (with_file.file_checked, with_file.algorithm) == (True, "sha256")


def test_named_hash_of_a_deposit_decides_the_file_check(chain: StateChain) -> None:
    bundle = chain.bundle(evidence_key(FILES[2], "sha512"), 3)
    proven = verify_state_bundle(bundle, trusted=chain.genesis, file=io.BytesIO(FILES[2]))
    assert proven.algorithm == "sha512" and proven.evidence is not None and proven.evidence.height == 2
    with pytest.raises(ProofInvalid, match="is not the key's digest"):
        verify_state_bundle(bundle, trusted=None, file=io.BytesIO(FILES[1]))


def test_absent_key_verifies_and_a_file_was_not_deposited(chain: StateChain) -> None:
    key = evidence_key(NEVER)
    bundle = chain.bundle(key, 5)
    assert bundle["state"]["value"] is None
    proven = verify_state_bundle(bundle, trusted=chain.genesis, file=io.BytesIO(NEVER))
    assert (proven.value, proven.evidence, proven.algorithm) == (None, None, "sha256")
    with pytest.raises(ProofInvalid, match="is not the key's digest"):
        verify_state_bundle(bundle, trusted=None, file=io.BytesIO(FILES[1]))
    # Any key may be proven absent; only an evidence key takes a file.
    other = chain.bundle(b"no/such/key", 5)
    assert verify_state_bundle(other, trusted=None).value is None
    with pytest.raises(ProofInvalid, match="not of an evidence key"):
        verify_state_bundle(other, trusted=None, file=io.BytesIO(NEVER))


def test_old_height_shows_the_state_then(chain: StateChain) -> None:
    key = evidence_key(FILES[4])
    before = chain.bundle(key, 3)
    assert verify_state_bundle(before, trusted=chain.genesis, file=io.BytesIO(FILES[4])).value is None
    after = verify_state_bundle(chain.bundle(key, 4), trusted=chain.genesis)
    assert after.evidence is not None and after.evidence.height == 4 and after.height == 4


def test_anchored_bundle_verifies(chain: StateChain) -> None:
    key = evidence_key(FILES[1])
    for commit in (True, False):
        bundle = chain.bundle(key, 2, anchor=5, commit=commit)
        assert (bundle["commit"] is not None) == commit and bundle["anchor"]["height"] == 5
        proven = verify_state_bundle(bundle, trusted=chain.genesis, file=io.BytesIO(FILES[1]))
        assert (proven.height, proven.anchor_height, proven.file_checked) == (2, 5, True)


def test_builder_refuses_inputs_that_do_not_fit(chain: StateChain) -> None:
    key = evidence_key(FILES[4])
    at = chain.node.prove_state(key, 3)
    later = chain.node.load_block(4)
    h = chain.suite.name
    with pytest.raises(ValueError, match="does not show"):
        build_state_bundle(h, key, at.value, at.proof, later.block, later.commit, chain.vset)
    with pytest.raises(ValueError, match="does not show"):
        build_state_bundle(h, key, b"x", at.proof, at.record.block, at.record.commit, chain.vset)
    with pytest.raises(ValueError, match="needs the block's commit"):
        build_state_bundle(h, key, at.value, at.proof, at.record.block, None, chain.vset)
    with pytest.raises(ValueError, match="another block"):
        build_state_bundle(h, key, at.value, at.proof, at.record.block, later.commit, chain.vset)


# ------------------------------------------------------------------------------------------------
# Specific ways to be wrong


def test_absence_does_not_pass_for_presence_nor_presence_for_absence(chain: StateChain) -> None:
    present = chain.bundle(evidence_key(FILES[1]), 5)
    absent = chain.bundle(evidence_key(NEVER), 5)
    swapped = copy.deepcopy(present)
    swapped["state"]["value"] = None
    with pytest.raises(ProofInvalid, match="does not prove the absence"):
        verify_state_bundle(swapped, trusted=None)
    claimed = copy.deepcopy(absent)
    claimed["state"]["value"] = present["state"]["value"]
    with pytest.raises(ProofInvalid, match="does not prove the key's value"):
        verify_state_bundle(claimed, trusted=None)
    # The proof of one key is not the proof of another, present or absent.
    moved = copy.deepcopy(present)
    moved["state"]["key"] = absent["state"]["key"]
    moved["state"]["key_hash"] = absent["state"]["key_hash"]
    with pytest.raises(ProofInvalid, match="does not prove"):
        verify_state_bundle(moved, trusted=None)


def test_another_key_in_an_absence_bundle_is_refused_by_key_hash(chain: StateChain) -> None:
    """An absence proof also proves every key whose hash shares its path prefix; key_hash
    binds the bundle to the one key it was built for."""
    bundle = chain.bundle(evidence_key(NEVER), 4)
    h = chain.suite.hasher()
    proof = smt.decode_proof(bytes.fromhex(bundle["state"]["proof"]))
    path = h(bytes.fromhex(bundle["state"]["key"]))
    assert 0 < proof.depth <= 16
    # Another digest nobody deposited whose key's hash starts with the same path bits.
    other = next(
        key
        for key in (evidence_key(i.to_bytes(4, "big")) for i in range(1 << 20))
        if all(smt.get_bit(h(key), i) == smt.get_bit(path, i) for i in range(proof.depth))
        and (proof.leaf is None or proof.leaf.key_hash != h(key))
    )
    # The proof alone does show that key's absence too.
    state_root = chain.node.load_block(4).block.header.state_root
    assert smt.verify_proof(h, state_root, other, None, proof)
    moved = copy.deepcopy(bundle)
    moved["state"]["key"] = other.hex()
    with pytest.raises(ProofInvalid, match="state.key_hash is not the hash of state.key"):
        verify_state_bundle(moved, trusted=chain.genesis)
    rehashed = copy.deepcopy(bundle)
    rehashed["state"]["key_hash"] = h(other).hex()
    with pytest.raises(ProofInvalid, match="state.key_hash is not the hash of state.key"):
        verify_state_bundle(rehashed, trusted=chain.genesis)


def test_state_of_height_h_under_the_header_of_h_plus_1_fails(chain: StateChain) -> None:
    key = evidence_key(FILES[4])
    for h in (3, 4):
        old, new = chain.bundle(key, h), chain.bundle(key, h + 1)
        mixed = copy.deepcopy(new)
        mixed["state"] = old["state"]
        with pytest.raises(ProofInvalid, match="under the block's state_root"):
            verify_state_bundle(mixed, trusted=None)


def test_tx_bundle_format_and_trust_of_another_chain_are_refused(chain: StateChain) -> None:
    bundle = chain.bundle(evidence_key(FILES[1]), 5)
    renamed = copy.deepcopy(bundle)
    renamed["format"] = "zhongshu-proof/2"
    with pytest.raises(ProofInvalid, match="this verifier reads zhongshu-state-proof/1"):
        verify_state_bundle(renamed, trusted=None)
    other = Genesis("other", "intl", GENESIS_TIME, chain.vset, ChainParams())
    with pytest.raises(ProofInvalid, match="trusted genesis for 'other'"):
        verify_state_bundle(bundle, trusted=other)
    keys = [chain.suite.generate_private_key() for _ in range(4)]
    foreign = ValidatorSet([Validator(k.public_bytes(), 1, f"v{i}") for i, k in enumerate(keys)])
    with pytest.raises(ProofInvalid, match="not the trusted genesis's validator set"):
        verify_state_bundle(bundle, trusted=Genesis(CHAIN_ID, "intl", GENESIS_TIME, foreign, ChainParams()))


def test_a_value_under_an_evidence_key_must_be_its_record(tmp_path: Path) -> None:
    """A state map (signed by a validator) holding junk or another digest's record under ev/d/."""
    suite = get_suite("intl")
    key = suite.generate_private_key()
    digest = hashlib.sha256(b"x").digest()
    for value, reason in (
        (b"junk", "not a canonical EvidenceRecord"),
        (_record(bytes(32)), "another digest"),
    ):
        bundle = _signed_bundle(key, {EVIDENCE_KEY_PREFIX + digest: value}, EVIDENCE_KEY_PREFIX + digest)
        with pytest.raises(ProofInvalid, match=reason):
            verify_state_bundle(bundle, trusted=None)
    good = _signed_bundle(key, {EVIDENCE_KEY_PREFIX + digest: _record(digest)}, EVIDENCE_KEY_PREFIX + digest)
    assert verify_state_bundle(good, trusted=None).evidence is not None


def _record(digest: bytes) -> bytes:
    return encode(EvidenceRecord(digest, "x.txt", {}, b"", bytes(32), 1, GENESIS_TIME, bytes(32)))


def _signed_bundle(key: PrivateKey, state: dict[bytes, bytes | None], proven: bytes) -> dict[str, Any]:
    """Block 1 of a one-validator chain whose state map is ``state``, and the bundle of ``proven``."""
    suite = get_suite("intl")
    h = suite.hasher()
    store = MemoryNodeStore()
    tree = SparseMerkleTree(h, store)
    root, nodes = tree.apply(bytes(32), 0, state, 1)
    store.put_nodes(nodes)
    vset = ValidatorSet([Validator(key.public_bytes(), 1, "v0")])
    empty = h(b"")
    header = Header(
        CHAIN_ID,
        1,
        GENESIS_TIME + 1000,
        empty,
        0,
        empty,
        empty,
        root,
        empty,
        compute_validator_set_hash(h, vset),
        key.public_bytes(),
    )
    block_hash = compute_block_hash(h, header)
    sig = key.sign(encode(Vote(PRECOMMIT, CHAIN_ID, 1, 0, block_hash)))
    commit = CommitCertificate(1, 0, block_hash, [CommitSig(key.public_bytes(), sig)])
    return build_state_bundle(
        "intl", proven, state.get(proven), tree.prove(root, 1, proven), Block(header, []), commit, vset
    )


# ------------------------------------------------------------------------------------------------
# Every single-value change is refused

KeyPath = tuple[str | int, ...]
HEX = re.compile(r"(?:[0-9a-f]{2})+")


def leaves(node: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    """Every scalar of the JSON value (string, number, null), with its path."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from leaves(value, (*path, i))
    else:
        yield path, node


def lists(node: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, list[Any]]]:
    if isinstance(node, list):
        yield path, node
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in children:
        yield from lists(value, (*path, key))


def variants(value: Any) -> Iterator[tuple[str, Any]]:
    """Other values for one scalar: every hex string with a byte flipped at its start, middle and
    end, other text, numbers off by one, and null for a value and a value for null."""
    if value is None:
        yield from (("00", "00"), ("empty hex", ""), ("zero", 0))
        return
    if isinstance(value, int):
        yield "+1", value + 1
        if value > 0:
            yield "-1", value - 1
        yield "as string", str(value)
    elif HEX.fullmatch(value):
        size = len(value) // 2
        for pos in sorted({0, size // 2, size - 1}):
            flipped = bytearray.fromhex(value)
            flipped[pos] ^= 0x01
            yield f"flip byte {pos}", flipped.hex()
        yield "drop the last byte", value[:-2]
        yield "append a byte", value + "00"
    else:
        yield "other text", value + "x"
    yield "null", None


def at(root: Any, path: KeyPath) -> Any:
    for key in path:
        root = root[key]
    return root


def mutations(bundle: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every single-value change: each scalar replaced, each list element dropped or repeated."""
    for path, value in leaves(bundle):
        for label, new in variants(value):
            altered = copy.deepcopy(bundle)
            at(altered, path[:-1])[path[-1]] = new
            yield f"{path}: {label}", altered
    for path, items in lists(bundle):
        for i in range(len(items)):
            dropped = copy.deepcopy(bundle)
            del at(dropped, path)[i]
            yield f"{path}: drop item {i}", dropped
            repeated = copy.deepcopy(bundle)
            at(repeated, path).insert(i, copy.deepcopy(items[i]))
            yield f"{path}: repeat item {i}", repeated


@pytest.fixture(scope="module")
def walked(chain: StateChain) -> dict[str, dict[str, Any]]:
    """The bundles walked: a present key, anchored with the block's commit; an absent key."""
    return {
        "present-anchored": chain.bundle(evidence_key(FILES[1]), 3, anchor=5),
        "absent": chain.bundle(evidence_key(NEVER), 4),
    }


@pytest.mark.parametrize("which", ["present-anchored", "absent"])
def test_every_single_value_change_is_refused(
    chain: StateChain, walked: dict[str, dict[str, Any]], which: str
) -> None:
    bundle = walked[which]
    # The unaltered bundle verifies, so each refusal below is caused by its alteration.
    verify_state_bundle(copy.deepcopy(bundle), trusted=chain.genesis)
    paths = {path for path, _ in leaves(bundle)}
    for needed in [
        ("state", "key"),
        ("state", "key_hash"),
        ("state", "proof"),
        ("state", "value"),
        ("block", "header"),
        ("commit", "signatures", 2, "signature"),
    ]:
        assert needed in paths
    accepted = []
    count = 0
    for label, altered in mutations(bundle):
        count += 1
        for trusted in (None, chain.genesis):
            try:
                verify_state_bundle(copy.deepcopy(altered), trusted=trusted)
            except ProofInvalid as exc:
                assert exc.reason and "\n" not in exc.reason
            else:
                accepted.append(f"{label} (trusted={trusted is not None})")
    assert not accepted, f"{len(accepted)} alterations were accepted: {accepted[:10]}"
    assert count > 4 * len(paths)


def test_cli_verifies_state_bundles_and_refuses_altered_ones(
    chain: StateChain, walked: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    genesis = tmp_path / "genesis.json"
    save_genesis(genesis, chain.genesis)
    deposited, never = tmp_path / "deposited.txt", tmp_path / "never.txt"
    deposited.write_bytes(FILES[1])
    never.write_bytes(NEVER)
    present, absent = tmp_path / "present.json", tmp_path / "absent.json"
    present.write_text(json.dumps(walked["present-anchored"]))
    absent.write_text(json.dumps(walked["absent"]))

    ok = run_cli("verify", present, "--file", deposited, "--trust", genesis)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("VALID: state of chain city-evidence at height 3"), ok.stdout
    assert "name 'file-1' deposited at height 1" in ok.stdout
    assert "the file was deposited at height 1" in ok.stdout
    assert "proven by the header at height 5" in ok.stdout and "warning" not in ok.stdout
    ok = run_cli("verify", absent, "--file", never)
    assert ok.returncode == 0, ok.stderr
    assert ": absent" in ok.stdout and "was not deposited as of height 4" in ok.stdout
    assert "warning: no --trust" in ok.stdout
    wrong_file = run_cli("verify", absent, "--file", deposited)
    assert wrong_file.returncode == 1 and wrong_file.stderr.startswith("INVALID: ")

    # A sample of the walk's alterations, each one line on stderr and exit status 1.
    sample = list(mutations(walked["present-anchored"]))[::23]
    assert len(sample) >= 8
    for i, (label, altered) in enumerate(sample):
        path = tmp_path / f"altered-{i}.json"
        path.write_text(json.dumps(altered))
        result = run_cli("verify", path, "--trust", genesis)
        assert result.returncode == 1, f"{label}: {result.stdout}"
        assert (
            result.stdout == "" and result.stderr.startswith("INVALID: ") and result.stderr.count("\n") == 1
        )


# ------------------------------------------------------------------------------------------------
# The document's worked example (docs/proof-format.md §9.5), rebuilt byte for byte

TEST1_SECRET = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
TEST1_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


def _example(key: bytes, value: bytes | None) -> tuple[dict[str, Any], Genesis]:
    """§9.5: block 1 of §2's chain ``demo`` over the state map {a: 1, b: 2, c: 3}."""
    h = get_suite("intl").hasher()
    signer = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(TEST1_SECRET))
    public = bytes.fromhex(TEST1_PUBLIC)
    validators = [{"public_key": TEST1_PUBLIC, "power": 1, "name": "v0"}]
    genesis = genesis_from_json(
        {"chain_id": "demo", "suite": "intl", "time": 1_700_000_000_000, "validators": validators}
    )
    store = MemoryNodeStore()
    tree = SparseMerkleTree(h, store)
    root, nodes = tree.apply(bytes(32), 0, {b"a": b"1", b"b": b"2", b"c": b"3"}, 1)
    store.put_nodes(nodes)
    empty = h(b"")
    vset_hash = compute_validator_set_hash(h, genesis.validators)
    header = Header(
        "demo",
        1,
        1_700_000_001_000,
        compute_genesis_hash(h, genesis),
        0,
        empty,
        empty,
        root,
        empty,
        vset_hash,
        public,
    )
    block_hash = compute_block_hash(h, header)
    signature = signer.sign(encode(Vote(PRECOMMIT, "demo", 1, 0, block_hash)))
    commit = CommitCertificate(1, 0, block_hash, [CommitSig(public, signature)])
    proof = tree.prove(root, 1, key)
    bundle = build_state_bundle("intl", key, value, proof, Block(header, []), commit, genesis.validators)
    return roundtrip(bundle), genesis


def test_worked_example_of_the_document() -> None:
    text = DOC.read_text()
    section = text[text.index("### 9.5 Worked example") :]
    shown = json.loads(re.search(r"```json\n(.*?)\n```", section, re.S).group(1))  # type: ignore[union-attr]
    bundle, genesis = _example(b"b", b"2")
    assert bundle == shown
    # The header's hex, the block hash and the sign-bytes shown in the section.
    assert "9ca6686561646572a464656d6f01cf0000018bcfe56be8c4203fbe7424" in bundle["block"]["header"]
    assert bundle["block"]["hash"] in section
    vote = encode(Vote(PRECOMMIT, "demo", 1, 0, bytes.fromhex(bundle["block"]["hash"]))).hex()
    assert vote in section
    # The proof is the membership proof of b printed in docs/state-map.md.
    state_map = (DOC.parent / "state-map.md").read_text().replace("\n", "")
    assert bundle["state"]["proof"] in state_map
    proven = verify_state_bundle(copy.deepcopy(bundle), trusted=genesis)
    assert (proven.key, proven.value, proven.trusted, proven.signed_power) == (b"b", b"2", True, 1)
    # As the section says: key_hash is SHA-256("b"); value null fails; key d alone fails; the
    # absence of d verifies.
    assert bundle["state"]["key_hash"] == hashlib.sha256(b"b").hexdigest()
    renamed = copy.deepcopy(shown)
    shown["state"]["value"] = None
    with pytest.raises(ProofInvalid, match="does not prove the absence"):
        verify_state_bundle(shown, trusted=genesis)
    renamed["state"]["key"] = "64"
    with pytest.raises(ProofInvalid, match="state.key_hash is not the hash of state.key"):
        verify_state_bundle(renamed, trusted=genesis)
    absent, _ = _example(b"d", None)
    assert len(bytes.fromhex(absent["state"]["proof"])) == 84
    assert absent["state"]["proof"] in state_map
    assert absent["state"]["key_hash"] == hashlib.sha256(b"d").hexdigest()
    assert verify_state_bundle(absent, trusted=genesis).value is None
