"""Proof bundles: a chain built by hand, bundles that verify, and every alteration refused."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zhongshu.codec import encode, encode_json
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.ledger.evidence_args import EvidencePut
from zhongshu.ledger.genesis import genesis_from_json
from zhongshu.ledger.hashing import (
    compute_block_hash,
    compute_genesis_hash,
    compute_receipt_root,
    compute_state_root,
    compute_tx_hash,
    compute_tx_root,
    compute_validator_set_hash,
)
from zhongshu.ledger.history import HistoryAccumulator
from zhongshu.ledger.proof import FORMAT, ProofInvalid, build_bundle, verify_bundle
from zhongshu.ledger.types import (
    PRECOMMIT,
    STATUS_FAILED,
    STATUS_OK,
    Block,
    ChainParams,
    CommitCertificate,
    CommitSig,
    Event,
    Genesis,
    Header,
    Receipt,
    Transaction,
    TxBody,
    Validator,
    ValidatorSet,
    Vote,
)

CHAIN_ID = "city-evidence"
GENESIS_TIME = 1_700_000_000_000
SUITES = ["sm", "intl"]


class Chain:
    """A tiny chain assembled by hand: 4 validators of power 1, blocks signed by 3 of them."""

    def __init__(self, suite_name: str, powers: tuple[int, ...] = (1, 1, 1, 1)) -> None:
        self.suite = get_suite(suite_name)
        self.h = self.suite.hasher()
        self.keys = [self.suite.generate_private_key() for _ in powers]
        self.client = self.suite.generate_private_key()
        self.vset = ValidatorSet(
            [
                Validator(k.public_bytes(), p, f"v{i}")
                for i, (k, p) in enumerate(zip(self.keys, powers, strict=True))
            ]
        )
        self.genesis = Genesis(CHAIN_ID, suite_name, GENESIS_TIME, self.vset, ChainParams())
        self.history = HistoryAccumulator(self.h)
        self.blocks: list[Block] = []
        self.receipts: list[list[Receipt]] = []
        self.commits: list[CommitCertificate] = []
        self.hashes: list[bytes] = []
        self.state_root = b"\x00" * 32
        self.nonce = 0

    def tx(
        self,
        contract: str,
        method: str,
        args: bytes,
        *,
        chain_id: str = CHAIN_ID,
        genesis_hash: bytes | None = None,
    ) -> Transaction:
        self.nonce += 1
        genesis = compute_genesis_hash(self.h, self.genesis) if genesis_hash is None else genesis_hash
        fields = (chain_id, genesis, self.client.public_bytes(), contract, method, args, 1000, self.nonce)
        return Transaction(*fields, signature=self.client.sign(encode(TxBody(*fields))))

    def evidence_tx(
        self, name: str, *, chain_id: str = CHAIN_ID, genesis_hash: bytes | None = None
    ) -> Transaction:
        args = EvidencePut(self.suite.hash(name.encode()), name, {"case": "2024-001"}, b"")
        return self.tx("evidence", "put", encode(args), chain_id=chain_id, genesis_hash=genesis_hash)

    def receipt(self, tx: Transaction, status: int = STATUS_OK) -> Receipt:
        tx_hash = compute_tx_hash(self.h, tx)
        if status != STATUS_OK:
            return Receipt(tx_hash, status, b"", "the contract refused it", [])
        event = Event(tx.contract, "done", encode({"tx": tx_hash}))
        return Receipt(tx_hash, STATUS_OK, encode({"ok": True}), "", [event])

    def add_block(self, txs: list[Transaction], receipts: list[Receipt] | None = None) -> Block:
        height = len(self.blocks) + 1
        receipts = receipts if receipts is not None else [self.receipt(tx) for tx in txs]
        self.state_root = compute_state_root(self.h, self.state_root, [(b"k%d" % height, b"v")])
        prev = self.hashes[-1] if self.hashes else compute_genesis_hash(self.h, self.genesis)
        header = Header(
            CHAIN_ID,
            height,
            GENESIS_TIME + 1000 * height,
            prev,
            len(txs),
            compute_tx_root(self.h, txs),
            compute_receipt_root(self.h, receipts),
            self.state_root,
            self.history.root(),
            compute_validator_set_hash(self.h, self.vset),
            self.keys[height % len(self.keys)].public_bytes(),
        )
        block = Block(header, txs)
        block_hash = compute_block_hash(self.h, header)
        self.blocks.append(block)
        self.receipts.append(receipts)
        self.commits.append(self.sign_commit(height, block_hash, self.keys[:3]))
        self.hashes.append(block_hash)
        self.history.append(block_hash)
        return block

    def sign_commit(
        self, height: int, block_hash: bytes, keys: list[PrivateKey], round_: int = 0
    ) -> CommitCertificate:
        vote = encode(Vote(PRECOMMIT, CHAIN_ID, height, round_, block_hash))
        return CommitCertificate(
            height, round_, block_hash, [CommitSig(k.public_bytes(), k.sign(vote)) for k in keys]
        )

    def bundle(
        self,
        height: int,
        index: int,
        *,
        commit: CommitCertificate | None | str = "own",
        anchor: int | None = None,
    ) -> dict[str, Any]:
        anchor_arg = None
        if anchor is not None:
            anchor_arg = (self.blocks[anchor - 1].header, self.commits[anchor - 1], self.hashes[: anchor - 1])
        cert = self.commits[height - 1] if commit == "own" else commit
        assert not isinstance(cert, str)
        return build_bundle(
            self.suite.name,
            self.blocks[height - 1],
            self.receipts[height - 1],
            index,
            cert,
            self.vset,
            anchor=anchor_arg,
        )


def make_chain(suite_name: str) -> Chain:
    """Five blocks; block h holds h transactions (tree sizes 1..5); block 3 ends with a non-evidence tx."""
    chain = Chain(suite_name)
    for height in range(1, 6):
        txs = [chain.evidence_tx(f"file-{height}-{i}.pdf") for i in range(height)]
        if height == 3:
            txs[-1] = chain.tx("kv", "set", encode(["key", "value"]))
        chain.add_block(txs)
    return chain


@pytest.fixture(scope="module", params=SUITES)
def chain(request: pytest.FixtureRequest) -> Chain:
    return make_chain(request.param)


@pytest.fixture(scope="module")
def sm_chain() -> Chain:
    return make_chain("sm")


def commit_json(cert: CommitCertificate) -> dict[str, Any]:
    """A commit certificate as a bundle lists it (written here independently of the builder)."""
    return {
        "height": cert.height,
        "round": cert.round,
        "block_hash": cert.block_hash.hex(),
        "signatures": [
            {"validator": s.validator.hex(), "signature": s.signature.hex()} for s in cert.signatures
        ],
    }


def roundtrip(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle as a third party receives it: through JSON."""
    out: dict[str, Any] = json.loads(encode_json(bundle))
    return out


# ------------------------------------------------------------------------------------------------
# Valid bundles


def test_valid_bundle_verifies(chain: Chain) -> None:
    bundle = roundtrip(chain.bundle(3, 1))
    assert bundle["format"] == FORMAT
    proof = verify_bundle(bundle, trusted=None)
    tx = chain.blocks[2].txs[1]
    assert proof.chain_id == CHAIN_ID
    assert (proof.height, proof.time) == (3, GENESIS_TIME + 3000)
    assert proof.tx_hash == compute_tx_hash(chain.h, tx)
    assert proof.block_hash == chain.hashes[2]
    assert proof.digest == chain.suite.hash(b"file-3-1.pdf")
    assert proof.name == "file-3-1.pdf"
    assert (proof.signed_power, proof.total_power) == (3, 4)
    assert proof.anchor_height is None and not proof.trusted
    trusted = verify_bundle(bundle, trusted=chain.genesis, file_digest=chain.suite.hash(b"file-3-1.pdf"))
    assert trusted.trusted


def test_every_transaction_of_every_block_verifies(chain: Chain) -> None:
    for height, block in enumerate(chain.blocks, start=1):
        for index in range(len(block.txs)):
            proof = verify_bundle(roundtrip(chain.bundle(height, index)), trusted=chain.genesis)
            assert (proof.height, proof.tx_hash) == (height, compute_tx_hash(chain.h, block.txs[index]))


def test_non_evidence_transaction_has_no_digest(chain: Chain) -> None:
    bundle = chain.bundle(3, 2)
    assert bundle["evidence"] is None
    assert verify_bundle(bundle, trusted=chain.genesis).digest is None
    with pytest.raises(ProofInvalid, match="deposits no digest"):
        verify_bundle(bundle, trusted=None, file_digest=b"\x01" * 32)


def test_anchored_bundle_verifies(chain: Chain) -> None:
    bundle = roundtrip(chain.bundle(2, 1, anchor=5))
    assert bundle["anchor"]["height"] == 5 and bundle["commit"] is not None
    proof = verify_bundle(bundle, trusted=chain.genesis)
    assert (proof.height, proof.anchor_height, proof.block_hash) == (2, 5, chain.hashes[1])
    # One recent signed header is enough: the block's own commit may be left out.
    bare = roundtrip(chain.bundle(2, 1, commit=None, anchor=5))
    assert bare["commit"] is None
    assert verify_bundle(bare, trusted=chain.genesis).anchor_height == 5
    # Every older block, including the first, is proved by the same header.
    for height in range(1, 5):
        assert verify_bundle(chain.bundle(height, 0, anchor=5), trusted=None).height == height


# ------------------------------------------------------------------------------------------------
# The walk: alter every value of a valid bundle, one at a time; each alteration must be refused.

HEX_DIGITS = "0123456789abcdef"
KeyPath = tuple[str | int, ...]


def is_hex(s: str) -> bool:
    return len(s) % 2 == 0 and len(s) > 0 and all(c in HEX_DIGITS for c in s)


def flip(s: str, pos: int) -> str:
    return s[:pos] + HEX_DIGITS[int(s[pos], 16) ^ 1] + s[pos + 1 :]


def leaves(node: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from leaves(value, (*path, i))
    elif node is not None:
        yield path, node


def containers(node: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    if isinstance(node, dict | list):
        yield path, node
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            yield from containers(value, (*path, key))


def variants(value: Any) -> Iterator[tuple[str, Any, bool]]:
    """(label, new value, whether the new value has the wrong JSON type) for one leaf."""
    assert isinstance(value, str | int) and not isinstance(value, bool), value
    if isinstance(value, int):
        yield "+1", value + 1, False
        if value > 0:
            yield "-1", value - 1, False
        yield "as string", str(value), True
    else:
        yield "append a char", value + "a", False
        if is_hex(value):
            for pos in sorted({0, len(value) // 2, len(value) - 1}):
                yield f"flip hex digit {pos}", flip(value, pos), False
            yield "append a byte", value + "00", False
            yield "uppercase", value.upper() if value.upper() != value else value + "A", False
        yield "as number", 7, True
    yield "null", None, True


def at(root: Any, path: KeyPath) -> Any:
    node = root
    for key in path:
        node = node[key]
    return node


def dotted(path: KeyPath) -> str:
    """('commit', 'signatures', 0, 'signature') -> 'commit.signatures[0].signature'."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


def mutations(bundle: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str | None]]:
    """Every single-step alteration of ``bundle``: (label, altered copy, field the reason must name)."""
    for path, value in leaves(bundle):
        for label, new, wrong_type in variants(value):
            b = copy.deepcopy(bundle)
            at(b, path[:-1])[path[-1]] = new
            yield f"{dotted(path)}: {label}", b, dotted(path) if wrong_type else None
    for path, node in containers(bundle):
        if path:
            b = copy.deepcopy(bundle)
            at(b, path[:-1])[path[-1]] = [] if isinstance(node, dict) else {}
            yield f"{dotted(path)}: wrong container type", b, dotted(path)
        if isinstance(node, dict):
            for key in node:
                b = copy.deepcopy(bundle)
                del at(b, path)[key]
                yield f"{dotted(path)}: delete {key!r}", b, dotted((*path, key))
            b = copy.deepcopy(bundle)
            at(b, path)["unexpected"] = "x"
            yield f"{dotted(path)}: add a key", b, dotted((*path, "unexpected"))
        else:
            for i in range(len(node)):
                b = copy.deepcopy(bundle)
                del at(b, path)[i]
                yield f"{dotted(path)}: drop item {i}", b, None
                b = copy.deepcopy(bundle)
                at(b, path).append(copy.deepcopy(node[i]))
                yield f"{dotted(path)}: repeat item {i}", b, None


@pytest.mark.parametrize("anchored", [False, True], ids=["plain", "anchored"])
def test_walk_every_alteration_is_refused(chain: Chain, anchored: bool) -> None:
    bundle = roundtrip(chain.bundle(2, 1, anchor=5) if anchored else chain.bundle(3, 1))
    # The unaltered bundle verifies, so each refusal below is caused by its alteration.
    verify_bundle(copy.deepcopy(bundle), trusted=chain.genesis)
    n_leaves = sum(1 for _ in leaves(bundle))
    assert n_leaves > (50 if anchored else 30)
    accepted, unnamed = [], []
    count = 0
    for label, altered, field in mutations(bundle):
        count += 1
        assert altered != bundle, label
        try:
            verify_bundle(altered, trusted=None)
        except ProofInvalid as exc:
            assert exc.reason and "\n" not in exc.reason
            # A missing, unexpected or mistyped field is named in the reason.
            if field is not None and field not in exc.reason:
                unnamed.append(f"{label} -> {exc.reason}")
        else:
            accepted.append(label)
    assert not accepted, f"{len(accepted)} alterations were accepted: {accepted[:10]}"
    assert not unnamed, f"{len(unnamed)} reasons do not name the field: {unnamed[:5]}"
    assert count > 5 * n_leaves


def test_walk_reaches_inside_signatures_and_paths(sm_chain: Chain) -> None:
    bundle = sm_chain.bundle(2, 1, anchor=5)
    paths = {path for path, _ in leaves(bundle)}
    for expected in [
        ("commit", "signatures", 2, "signature"),
        ("anchor", "commit", "signatures", 0, "validator"),
        ("anchor", "history_path", 0),
        ("tx", "path", 0),
        ("receipt", "path", 0),
        ("validator_set", "validators", 3, "name"),
        ("evidence", "digest"),
    ]:
        assert expected in paths


# ------------------------------------------------------------------------------------------------
# Specific ways to be wrong


def test_wrong_file_digest_fails(chain: Chain) -> None:
    bundle = chain.bundle(4, 2)
    digest = chain.suite.hash(b"file-4-2.pdf")
    assert verify_bundle(bundle, trusted=None, file_digest=digest).digest == digest
    with pytest.raises(ProofInvalid, match="not in this proof"):
        verify_bundle(bundle, trusted=None, file_digest=chain.suite.hash(b"file-4-1.pdf"))


def test_two_of_four_signatures_are_not_enough(chain: Chain) -> None:
    two = chain.sign_commit(3, chain.hashes[2], chain.keys[1:3])
    with pytest.raises(ProofInvalid, match="2 of 4 voting power"):
        verify_bundle(chain.bundle(3, 1, commit=two), trusted=None)
    three = chain.sign_commit(3, chain.hashes[2], chain.keys[1:4])
    assert verify_bundle(chain.bundle(3, 1, commit=three), trusted=None).signed_power == 3


def test_duplicated_signature_does_not_count_twice(chain: Chain) -> None:
    two = chain.sign_commit(3, chain.hashes[2], chain.keys[:2])
    padded = CommitCertificate(3, 0, chain.hashes[2], [*two.signatures, two.signatures[1]])
    with pytest.raises(ProofInvalid, match="each may sign once"):
        verify_bundle(chain.bundle(3, 1, commit=padded), trusted=None)
    # Even when the others already reach 2/3, a repeated signature is an error, not skipped.
    three = chain.commits[2]
    repeated = CommitCertificate(3, 0, chain.hashes[2], [*three.signatures, three.signatures[0]])
    with pytest.raises(ProofInvalid, match="each may sign once"):
        verify_bundle(chain.bundle(3, 1, commit=repeated), trusted=None)


def test_signature_by_an_outsider_fails(chain: Chain) -> None:
    outsider = chain.suite.generate_private_key()
    cert = chain.sign_commit(3, chain.hashes[2], [*chain.keys[:3], outsider])
    with pytest.raises(ProofInvalid, match="not in the validator set"):
        verify_bundle(chain.bundle(3, 1, commit=cert), trusted=None)


def test_signature_for_another_round_fails(chain: Chain) -> None:
    cert = chain.commits[2]
    other = chain.sign_commit(3, chain.hashes[2], chain.keys[:1], round_=1)
    mixed = CommitCertificate(3, 0, chain.hashes[2], [other.signatures[0], *cert.signatures[1:]])
    with pytest.raises(ProofInvalid, match=r"signatures\[0\] by validator .* does not verify"):
        verify_bundle(chain.bundle(3, 1, commit=mixed), trusted=None)


def test_trusted_genesis_with_other_validators_fails(chain: Chain) -> None:
    bundle = chain.bundle(3, 1)
    other = Chain(chain.suite.name)
    with pytest.raises(ProofInvalid, match="trusted genesis's validator set"):
        verify_bundle(bundle, trusted=other.genesis)
    fewer = Genesis(
        CHAIN_ID, chain.suite.name, GENESIS_TIME, ValidatorSet(chain.vset.validators[:3]), ChainParams()
    )
    with pytest.raises(ProofInvalid, match="trusted genesis's validator set"):
        verify_bundle(bundle, trusted=fewer)
    for changed in [
        Genesis("other-chain", chain.suite.name, GENESIS_TIME, chain.vset, ChainParams()),
        Genesis(
            CHAIN_ID, "intl" if chain.suite.name == "sm" else "sm", GENESIS_TIME, chain.vset, ChainParams()
        ),
    ]:
        with pytest.raises(ProofInvalid, match="trusted genesis"):
            verify_bundle(bundle, trusted=changed)


def test_signers_of_a_set_the_header_does_not_name_fail(chain: Chain) -> None:
    # A self-consistent forgery: another set signs, and the bundle lists that set.
    other = Chain(chain.suite.name)
    bundle = chain.bundle(3, 1)
    vote = encode(Vote(PRECOMMIT, CHAIN_ID, 3, 0, chain.hashes[2]))
    bundle["commit"]["signatures"] = [
        {"validator": k.public_hex(), "signature": k.sign(vote).hex()} for k in other.keys
    ]
    bundle["validator_set"] = {
        "encoded": encode(other.vset).hex(),
        "validators": [
            {"public_key": v.public_key.hex(), "power": v.power, "name": v.name}
            for v in other.vset.validators
        ],
    }
    with pytest.raises(ProofInvalid, match="not the one the block header names"):
        verify_bundle(bundle, trusted=None)


def test_voting_power_not_the_number_of_signatures_counts() -> None:
    weighted = Chain("sm", powers=(5, 1, 1, 1))
    weighted.add_block([weighted.evidence_tx("a.pdf")])
    block_hash = weighted.hashes[0]
    # 5 + 1 of 8: 18 > 16, enough with two signatures.
    two = weighted.sign_commit(1, block_hash, weighted.keys[:2])
    assert verify_bundle(weighted.bundle(1, 0, commit=two), trusted=weighted.genesis).signed_power == 6
    # 1 + 1 + 1 of 8: three signatures, not enough.
    three = weighted.sign_commit(1, block_hash, weighted.keys[1:])
    with pytest.raises(ProofInvalid, match="3 of 8 voting power"):
        verify_bundle(weighted.bundle(1, 0, commit=three), trusted=None)


def test_validator_with_no_power_makes_the_set_invalid() -> None:
    odd = Chain("sm", powers=(1, 1, 1, 0))
    odd.add_block([odd.evidence_tx("a.pdf")])
    with pytest.raises(ProofInvalid, match="non-positive power"):
        verify_bundle(odd.bundle(1, 0), trusted=None)


def test_transaction_with_a_bad_sender_signature_fails() -> None:
    # A block that (wrongly) holds a transaction whose signature is not the sender's.
    odd = Chain("sm")
    good = odd.evidence_tx("a.pdf")
    bad = msgspec.structs.replace(odd.evidence_tx("b.pdf"), signature=good.signature)
    odd.add_block([good, bad])
    verify_bundle(odd.bundle(1, 0), trusted=None)
    with pytest.raises(ProofInvalid, match="sender's signature"):
        verify_bundle(odd.bundle(1, 1), trusted=None)


def test_evidence_put_with_arguments_that_do_not_decode_fails() -> None:
    odd = Chain("sm")
    odd.add_block([odd.tx("evidence", "put", encode(["not", "evidence"]))])
    with pytest.raises(ProofInvalid, match="evidence.put arguments do not decode"):
        verify_bundle(odd.bundle(1, 0), trusted=None)


def test_commit_for_another_block_fails(chain: Chain) -> None:
    # Valid signatures, but for block 4, presented as the commit of block 3.
    bundle = chain.bundle(3, 1)
    bundle["commit"] = chain.bundle(4, 0)["commit"]
    with pytest.raises(ProofInvalid, match="commit.block_hash is not the hash of the header"):
        verify_bundle(bundle, trusted=None)
    # Valid signatures over block 3's hash, but at another height.
    bundle["commit"] = commit_json(chain.sign_commit(9, chain.hashes[2], chain.keys[:3]))
    with pytest.raises(ProofInvalid, match="commit.height 9 is not the header's height 3"):
        verify_bundle(bundle, trusted=None)


def test_anchor_of_another_chain_fails(sm_chain: Chain) -> None:
    # The validators sign, for this chain, a header that names another chain.
    real = sm_chain.blocks[4].header
    foreign = msgspec.structs.replace(real, chain_id="another-chain")
    foreign_hash = compute_block_hash(sm_chain.h, foreign)
    commit = sm_chain.sign_commit(5, foreign_hash, sm_chain.keys[:3])
    block = sm_chain.blocks[1]
    bundle = build_bundle(
        "sm",
        block,
        sm_chain.receipts[1],
        0,
        None,
        sm_chain.vset,
        anchor=(foreign, commit, sm_chain.hashes[:4]),
    )
    with pytest.raises(ProofInvalid, match="anchor header is for chain 'another-chain'"):
        verify_bundle(bundle, trusted=None)


def test_block_commit_under_another_validator_set_is_refused() -> None:
    # Block 1 is signed under set A; the set then changes (new names), and block 3 anchors block 1.
    changing = Chain("sm")
    changing.add_block([changing.evidence_tx("a.pdf")])
    changing.vset = ValidatorSet(
        [msgspec.structs.replace(v, name=v.name + "-b") for v in changing.vset.validators]
    )
    changing.add_block([changing.evidence_tx("b.pdf")])
    changing.add_block([changing.evidence_tx("c.pdf")])
    bundle = changing.bundle(1, 0, anchor=3)
    # The builder leaves out the block's own commit: the bundled set cannot check it.
    assert bundle["commit"] is None
    assert verify_bundle(bundle, trusted=None).anchor_height == 3
    bundle["commit"] = commit_json(changing.commits[0])
    with pytest.raises(ProofInvalid, match="block names another validator set"):
        verify_bundle(bundle, trusted=None)


def test_non_canonical_encoding_is_named_as_such(sm_chain: Chain) -> None:
    bundle = sm_chain.bundle(3, 1)
    raw = bytes.fromhex(bundle["tx"]["encoded"])
    assert raw[0] == 0x9A  # fixarray of 10: the tag and nine fields
    # The same array written as an array 16: the same value, but not its one canonical encoding.
    bundle["tx"]["encoded"] = (b"\xdc\x00\x0a" + raw[1:]).hex()
    with pytest.raises(ProofInvalid, match="tx.encoded is not a canonical Transaction"):
        verify_bundle(bundle, trusted=None)


def test_reasons_say_what_to_fix(sm_chain: Chain) -> None:
    cases: list[tuple[KeyPath, Any, str]] = [
        (("tx",), [], "tx must be a JSON object"),
        (("tx", "path", 0), "00" * 33, r"tx.path\[0\] must be 32 bytes, not 33"),
        (("block", "hash"), "AB" * 32, "block.hash must be lowercase hex"),
        (("commit", "round"), True, "commit.round must be an integer"),
        (("validator_set", "validators"), "v0", "validator_set.validators must be a JSON array"),
    ]
    for path, value, reason in cases:
        bundle = sm_chain.bundle(3, 1)
        at(bundle, path[:-1])[path[-1]] = value
        with pytest.raises(ProofInvalid, match=reason):
            verify_bundle(bundle, trusted=None)


def test_wrong_chain_id_fails(chain: Chain) -> None:
    bundle = chain.bundle(3, 1)
    bundle["chain_id"] = "another-chain"
    with pytest.raises(ProofInvalid, match="chain ids disagree"):
        verify_bundle(bundle, trusted=None)
    # A transaction signed for another chain, in an otherwise well-formed, signed block.
    odd = Chain(chain.suite.name)
    odd.add_block([odd.evidence_tx("a.pdf"), odd.evidence_tx("b.pdf", chain_id="another-chain")])
    assert verify_bundle(odd.bundle(1, 0), trusted=odd.genesis).height == 1
    with pytest.raises(ProofInvalid, match="chain ids disagree"):
        verify_bundle(odd.bundle(1, 1), trusted=odd.genesis)


def test_bundle_of_a_same_named_network_fails_with_its_genesis(chain: Chain) -> None:
    # Another network: the same chain name, suite and validators, created a moment later.
    twin = Genesis(CHAIN_ID, chain.suite.name, GENESIS_TIME + 1, chain.vset, ChainParams())
    bundle = roundtrip(chain.bundle(3, 1))
    proof = verify_bundle(bundle, trusted=chain.genesis)
    assert proof.genesis_hash == compute_genesis_hash(chain.h, chain.genesis)
    with pytest.raises(ProofInvalid, match="signed for another network's chain"):
        verify_bundle(bundle, trusted=twin)


def test_transaction_naming_another_genesis_fails_with_trust(chain: Chain) -> None:
    # A block (wrongly) holds a transaction signed for the same name on another network.
    odd = Chain(chain.suite.name)
    twin = Genesis(CHAIN_ID, chain.suite.name, GENESIS_TIME + 1, odd.vset, ChainParams())
    foreign = compute_genesis_hash(odd.h, twin)
    odd.add_block([odd.evidence_tx("a.pdf"), odd.evidence_tx("b.pdf", genesis_hash=foreign)])
    assert verify_bundle(odd.bundle(1, 0), trusted=odd.genesis).height == 1
    # Without trust there is no genesis to compare with: the hash is reported, not checked.
    assert verify_bundle(odd.bundle(1, 1), trusted=None).genesis_hash == foreign
    with pytest.raises(ProofInvalid, match=f"names genesis hash {foreign.hex()}"):
        verify_bundle(odd.bundle(1, 1), trusted=odd.genesis)


def test_failed_transaction_fails(sm_chain: Chain) -> None:
    odd = Chain("sm")
    txs = [odd.evidence_tx("a.pdf"), odd.evidence_tx("b.pdf")]
    odd.add_block(txs, [odd.receipt(txs[0]), odd.receipt(txs[1], STATUS_FAILED)])
    verify_bundle(odd.bundle(1, 0), trusted=None)
    with pytest.raises(ProofInvalid, match="failed on chain"):
        verify_bundle(odd.bundle(1, 1), trusted=None)


def test_receipt_of_another_transaction_fails() -> None:
    odd = Chain("sm")
    txs = [odd.evidence_tx("a.pdf"), odd.evidence_tx("b.pdf")]
    odd.add_block(txs, [odd.receipt(txs[1]), odd.receipt(txs[0])])
    with pytest.raises(ProofInvalid, match="receipt is for another transaction"):
        verify_bundle(odd.bundle(1, 0), trusted=None)


def test_missing_commit_without_anchor_fails(sm_chain: Chain) -> None:
    bundle = sm_chain.bundle(3, 1)
    bundle["commit"] = None
    with pytest.raises(ProofInvalid, match="nothing certifies the block"):
        verify_bundle(bundle, trusted=None)


def test_evidence_summary_must_match_presence(sm_chain: Chain) -> None:
    evidence = sm_chain.bundle(3, 1)
    summary = evidence["evidence"]
    evidence["evidence"] = None
    with pytest.raises(ProofInvalid, match="evidence summary"):
        verify_bundle(evidence, trusted=None)
    plain = sm_chain.bundle(3, 2)
    plain["evidence"] = summary
    with pytest.raises(ProofInvalid):
        verify_bundle(plain, trusted=None)


@pytest.mark.parametrize(
    "bad", [None, [], "bundle", 3, {}, {"format": FORMAT}, {"format": FORMAT, "suite": "sm"}]
)
def test_not_a_bundle_fails(bad: Any) -> None:
    with pytest.raises(ProofInvalid):
        verify_bundle(bad, trusted=None)


def test_builder_refuses_inputs_that_do_not_fit(sm_chain: Chain) -> None:
    block = sm_chain.blocks[2]
    with pytest.raises(ValueError, match="another block"):
        build_bundle("sm", block, sm_chain.receipts[2], 0, sm_chain.commits[1], sm_chain.vset)
    with pytest.raises(ValueError, match="outside"):
        build_bundle("sm", block, sm_chain.receipts[2], 3, sm_chain.commits[2], sm_chain.vset)
    with pytest.raises(ValueError, match="disagree"):
        build_bundle("sm", block, sm_chain.receipts[1], 0, sm_chain.commits[2], sm_chain.vset)
    with pytest.raises(ValueError, match="needs the block's commit"):
        build_bundle("sm", block, sm_chain.receipts[2], 0, None, sm_chain.vset)
    old = (sm_chain.blocks[1].header, sm_chain.commits[1], sm_chain.hashes[:1])
    with pytest.raises(ValueError, match="newer"):
        build_bundle("sm", block, sm_chain.receipts[2], 0, sm_chain.commits[2], sm_chain.vset, anchor=old)


# ------------------------------------------------------------------------------------------------
# The format document's worked examples are what the code computes.

DOC = Path(__file__).resolve().parents[1] / "docs" / "proof-format.md"
RFC8032_TEST1_SECRET = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_TEST1_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


def annotated_bytes(text: str, marker: str) -> bytes:
    """The bytes of the one annotated dump (a code block) of the page that contains ``marker``."""
    (dump,) = [block for block in text.split("```") if marker in block]
    return bytes.fromhex("".join(re.findall(r"^((?:[0-9a-f]{2} )*[0-9a-f]{2})", dump, flags=re.M)))


def test_documented_examples_match_the_code() -> None:
    text = DOC.read_text()
    sm, intl = get_suite("sm"), get_suite("intl")
    sm_vote = encode(Vote(PRECOMMIT, "demo", 5, 0, sm.hash(b"abc")))
    assert len(sm_vote) == 48
    assert sm_vote.hex() in text
    assert sm.hash(sm_vote).hex() in text
    # The annotated dump, read back byte by byte, is the same 48 bytes.
    assert annotated_bytes(text, "(kind = precommit)") == sm_vote
    nil_vote = encode(Vote(PRECOMMIT, "demo", 300, 1, b""))
    assert nil_vote.hex() == "96a4766f746502a464656d6fcd012c01c400"
    assert "96 a4766f7465 02 a464656d6f cd012c 01 c400" in text
    intl_vote = encode(Vote(PRECOMMIT, "demo", 5, 0, intl.hash(b"abc")))
    assert intl_vote.hex() in text
    public = RFC8032_TEST1_PUBLIC
    signature = re.search(r"Ed25519 signature is\s+`([0-9a-f]{128})`", text)
    assert signature and public in text
    assert intl.verify(bytes.fromhex(public), intl_vote, bytes.fromhex(signature.group(1)))


def test_documented_genesis_hash_and_transaction_match_the_code() -> None:
    text = DOC.read_text()
    intl = get_suite("intl")
    public = bytes.fromhex(RFC8032_TEST1_PUBLIC)
    # The genesis.json of the example, read as a node reads it, encodes to the documented bytes.
    (doc,) = [block.removeprefix("json") for block in text.split("```") if '"chain_id": "demo"' in block]
    genesis = genesis_from_json(json.loads(doc))
    assert genesis == Genesis(
        "demo", "intl", 1_700_000_000_000, ValidatorSet([Validator(public, 1, "v0")]), ChainParams()
    )
    encoded_genesis = encode(genesis)
    assert annotated_bytes(text, 'fixstr, 7 bytes: "genesis"') == encoded_genesis
    assert encoded_genesis.hex() in text
    genesis_hash = compute_genesis_hash(intl.hasher(), genesis)
    assert f"the **genesis hash** of this chain, is\n`{genesis_hash.hex()}`" in text
    # The deposit signs that genesis hash; its bytes, hash and signature are the documented ones.
    args = encode(EvidencePut(intl.hash(b"abc"), "a.txt", {}, b""))
    body = TxBody("demo", genesis_hash, public, "evidence", "put", args, 100, 1)
    sign_bytes = encode(body)
    assert annotated_bytes(text, "bin8, 32 bytes follow            (genesis_hash)") == sign_bytes
    assert sign_bytes.hex() in text
    assert compute_tx_hash(intl.hasher(), body).hex() in text
    signature = re.search(
        r"signature over it \(the Transaction's last element\) is\s+`([0-9a-f]{128})`", text
    )
    assert signature and intl.verify(public, sign_bytes, bytes.fromhex(signature.group(1)))
    secret = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC8032_TEST1_SECRET))
    assert secret.sign(sign_bytes).hex() == signature.group(1)
