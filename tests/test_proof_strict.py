"""Stricter proofs (issue 7): one JSON reading, fixed sizes, named digest hashes, a strict genesis.

Each test states one rule of docs/proof-format.md that the verifier before issue 7 did not apply.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from test_proof import Chain, make_chain, roundtrip
from zhongshu.codec import encode
from zhongshu.contracts.evidence import check_put
from zhongshu.execution.errors import InvalidArguments
from zhongshu.ledger.evidence_args import DIGEST_ALGORITHMS, EvidencePut
from zhongshu.ledger.genesis import GenesisError, genesis_to_json, load_genesis
from zhongshu.ledger.hashing import compute_block_hash
from zhongshu.ledger.proof import ProofInvalid, digest_file, load_bundle, verify_bundle
from zhongshu.ledger.types import Block, Validator, ValidatorSet


@pytest.fixture(scope="module")
def sm_chain() -> Chain:
    return make_chain("sm")


@pytest.fixture(scope="module")
def intl_chain() -> Chain:
    return make_chain("intl")


def deposit_chain(suite: str, args: list[EvidencePut]) -> Chain:
    """A one-block chain holding an ``evidence.put`` of each of ``args``, in order."""
    chain = Chain(suite)
    chain.add_block([chain.tx("evidence", "put", encode(a)) for a in args])
    return chain


def with_header(chain: Chain, **changes: Any) -> Chain:
    """``chain`` after its last block is replaced by one whose header has ``changes``, re-signed."""
    block = chain.blocks[-1]
    header = msgspec.structs.replace(block.header, **changes)
    block_hash = compute_block_hash(chain.h, header)
    chain.blocks[-1] = Block(header, block.txs)
    chain.hashes[-1] = block_hash
    chain.commits[-1] = chain.sign_commit(header.height, block_hash, chain.keys[:3])
    return chain


# ------------------------------------------------------------------------------------------------
# One reading: a key repeated at any depth is refused, naming the key.


def dumps_repeating(node: Any, path: tuple[str | int, ...], forged: Any) -> str:
    """``node`` as JSON text in which the key at ``path`` is written twice: ``forged``, then genuine."""
    if isinstance(node, dict):
        pairs = []
        for key, value in node.items():
            if path and path[0] == key and len(path) == 1:
                pairs.append(f"{json.dumps(key)}: {json.dumps(forged)}")
            inner = dumps_repeating(value, path[1:], forged) if path and path[0] == key else json.dumps(value)
            pairs.append(f"{json.dumps(key)}: {inner}")
        return "{" + ", ".join(pairs) + "}"
    if isinstance(node, list):
        items = [
            dumps_repeating(v, path[1:], forged) if path and path[0] == i else json.dumps(v)
            for i, v in enumerate(node)
        ]
        return "[" + ", ".join(items) + "]"
    return json.dumps(node)


def test_a_forged_evidence_object_before_the_genuine_one_is_refused(sm_chain: Chain) -> None:
    bundle = roundtrip(sm_chain.bundle(3, 1))
    forged = dict(bundle["evidence"], digest="00" * 32, name="forged.pdf")
    text = dumps_repeating(bundle, ("evidence",), forged)
    # Python keeps the last value, the genuine one: through json.loads the bundle verifies, while
    # a reader that keeps the first value would show the forgery.
    assert verify_bundle(json.loads(text), trusted=sm_chain.genesis).name == "file-3-1.pdf"
    with pytest.raises(ProofInvalid, match="the key 'evidence' appears twice"):
        load_bundle(text)


@pytest.mark.parametrize(
    "path",
    [
        ("format",),
        ("tx", "hash"),
        ("commit", "signatures", 0, "signature"),
        ("validator_set", "validators", 2, "name"),
        ("anchor", "commit", "signatures", 1, "validator"),
    ],
)
def test_a_repeated_key_at_any_depth_is_refused(sm_chain: Chain, path: tuple[str | int, ...]) -> None:
    bundle = roundtrip(sm_chain.bundle(2, 1, anchor=5))
    text = dumps_repeating(bundle, path, "forged")
    assert verify_bundle(json.loads(text), trusted=None)
    with pytest.raises(ProofInvalid, match=f"the key '{path[-1]}' appears twice"):
        load_bundle(text)


def test_a_genesis_with_a_repeated_key_is_refused(sm_chain: Chain, tmp_path: Path) -> None:
    doc = json.dumps(genesis_to_json(sm_chain.genesis))
    path = tmp_path / "genesis.json"
    path.write_text(doc.replace('"time": ', '"time": 1, "time": ', 1))
    with pytest.raises(GenesisError, match="the key 'time' appears twice"):
        load_genesis(path)
    name = sm_chain.genesis.validators.validators[0].name
    path.write_text(doc.replace(f'"name": "{name}"', f'"name": "x", "name": "{name}"', 1))
    with pytest.raises(GenesisError, match="the key 'name' appears twice"):
        load_genesis(path)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"format": "zhongshu-proof/2", "suite": "sm\xff"}', "not UTF-8 text: byte 0xff"),
        (b'{"format": "zhongshu-proof/2", "chain_id": "\\ud800"}', "lone surrogate"),
        (b'{"\\udfff": 1}', "lone surrogate"),
        (b'{"tx": {"index": NaN}}', "NaN is not a JSON value"),
        (b"\xef\xbb\xbf{}", "not JSON"),
        (b"[" * 100_000, "nested too deeply|not JSON"),
        (b'{"tx": 1' + b"0" * 5000 + b"}", "not JSON"),
        (b"", "not JSON"),
    ],
)
def test_text_that_is_not_strict_json_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(ProofInvalid, match=reason):
        load_bundle(data)


def test_lone_surrogates_given_as_values_are_refused_with_a_reason(sm_chain: Chain) -> None:
    bundle = roundtrip(sm_chain.bundle(3, 1))
    bundle["validator_set"]["validators"][0]["name"] = "v\ud800"
    with pytest.raises(ProofInvalid, match=r"validator_set.validators\[0\].name holds a lone surrogate"):
        verify_bundle(bundle, trusted=None)
    bundle = roundtrip(sm_chain.bundle(3, 1))
    bundle["tx"]["\udc00"] = 1
    with pytest.raises(ProofInvalid) as caught:
        verify_bundle(bundle, trusted=None)
    # The reason itself can be written out as UTF-8.
    caught.value.reason.encode("utf-8")


# ------------------------------------------------------------------------------------------------
# Every size the format fixes is checked.


@pytest.mark.parametrize("size", [31, 33, 0, 47, 65])
def test_an_evidence_digest_of_another_size_is_refused(size: int) -> None:
    chain = deposit_chain("sm", [EvidencePut(b"\x01" * size, "a.pdf", {}, b"")])
    with pytest.raises(ProofInvalid, match=f"evidence.digest must be 32, 48 or 64 bytes, not {size}"):
        verify_bundle(roundtrip(chain.bundle(1, 0)), trusted=chain.genesis)


@pytest.mark.parametrize("suite", ["sm", "intl"])
@pytest.mark.parametrize(
    ("field", "size", "reason"),
    [
        ("state_root", 31, "block.header state_root must be 32 bytes, not 31"),
        ("prev_hash", 33, "block.header prev_hash must be 32 bytes, not 33"),
        ("history_root", 0, "block.header history_root must be 32 bytes, not 0"),
        ("proposer", 31, "block.header proposer must be"),
    ],
)
def test_a_header_field_of_another_size_is_refused(suite: str, field: str, size: int, reason: str) -> None:
    chain = with_header(
        deposit_chain(suite, [EvidencePut(b"\x01" * 32, "a.pdf", {}, b"")]), **{field: b"\x07" * size}
    )
    with pytest.raises(ProofInvalid, match=reason):
        verify_bundle(roundtrip(chain.bundle(1, 0)), trusted=None)


@pytest.mark.parametrize("size", [31, 33])
def test_a_transaction_genesis_hash_of_another_size_is_refused(size: int) -> None:
    chain = Chain("intl")
    chain.add_block([chain.evidence_tx("a.pdf", genesis_hash=b"\x05" * size)])
    with pytest.raises(ProofInvalid, match=f"tx.encoded genesis_hash must be 32 bytes, not {size}"):
        verify_bundle(roundtrip(chain.bundle(1, 0)), trusted=None)


@pytest.mark.parametrize(("suite", "size"), [("sm", 64), ("sm", 66), ("intl", 31), ("intl", 65)])
def test_a_validator_key_of_another_size_is_refused(suite: str, size: int) -> None:
    # Three real validators sign (3 of 4); the fourth "key" is not a key of the suite at all.
    chain = Chain(suite)
    odd = Validator(b"\x04" + b"\x09" * (size - 1), 1, "odd")
    chain.vset = ValidatorSet([*chain.vset.validators[:3], odd])
    chain.add_block([chain.evidence_tx("a.pdf")])
    with pytest.raises(
        ProofInvalid, match=rf"validator_set.validators\[3\].public_key must be \d+ bytes, not {size}"
    ):
        verify_bundle(roundtrip(chain.bundle(1, 0)), trusted=None)


@pytest.mark.parametrize(("suite", "size"), [("sm", 7), ("sm", 73), ("intl", 63), ("intl", 65)])
def test_a_commit_signature_of_another_size_is_refused(suite: str, size: int) -> None:
    chain = Chain(suite)
    chain.add_block([chain.evidence_tx("a.pdf")])
    bundle = roundtrip(chain.bundle(1, 0))
    bundle["commit"]["signatures"][0]["signature"] = "30" * size
    with pytest.raises(
        ProofInvalid, match=r"commit.signatures\[0\].signature must be .*bytes, not " + str(size)
    ):
        verify_bundle(bundle, trusted=None)


# ------------------------------------------------------------------------------------------------
# A deposit names its digest's hash; the file is hashed with it.

FILE = b"the deed of land parcel 7\n" * 1000


def named_deposit(suite: str, algorithm: str | None, digest: bytes) -> tuple[Chain, dict[str, Any]]:
    meta = {} if algorithm is None else {"algorithm": algorithm}
    chain = deposit_chain(suite, [EvidencePut(digest, "deed.txt", meta, b"")])
    return chain, roundtrip(chain.bundle(1, 0))


def hashed(algorithm: str, data: bytes) -> bytes:
    return digest_file(algorithm, io.BytesIO(data))


@pytest.mark.parametrize("suite", ["sm", "intl"])
@pytest.mark.parametrize("algorithm", sorted(DIGEST_ALGORITHMS))
def test_a_file_is_checked_with_the_hash_the_deposit_names(suite: str, algorithm: str) -> None:
    chain, bundle = named_deposit(suite, algorithm, hashed(algorithm, FILE))
    proof = verify_bundle(bundle, trusted=chain.genesis, file=io.BytesIO(FILE))
    assert proof.algorithm == algorithm and proof.digest == hashed(algorithm, FILE)
    with pytest.raises(ProofInvalid, match=f"the file's {algorithm} digest .* is not in this proof"):
        verify_bundle(bundle, trusted=chain.genesis, file=io.BytesIO(FILE + b"x"))


def test_digests_are_the_standard_ones() -> None:
    for algorithm in ("sha256", "sha384", "sha512", "sha3-256", "sha3-384", "sha3-512"):
        assert hashed(algorithm, b"abc") == hashlib.new(algorithm.replace("-", "_"), b"abc").digest()
    assert hashed("sm3", b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


@pytest.mark.parametrize(
    ("suite", "size", "algorithm"),
    [("sm", 32, "sm3"), ("intl", 32, "sha256"), ("sm", 48, "sha384"), ("intl", 64, "sha512")],
)
def test_an_unnamed_digest_takes_the_hash_its_size_implies(suite: str, size: int, algorithm: str) -> None:
    chain, bundle = named_deposit(suite, None, hashed(algorithm, FILE))
    assert len(hashed(algorithm, FILE)) == size
    assert verify_bundle(bundle, trusted=chain.genesis, file=io.BytesIO(FILE)).algorithm == algorithm


@pytest.mark.parametrize(
    ("algorithm", "size", "reason"),
    [
        ("md5", 32, r"the hash it names \('md5'\)"),
        ("sha384", 32, r"the hash it names \('sha384'\)"),
        ("sm3", 64, "sm3"),
    ],
)
def test_a_deposit_naming_an_unknown_hash_or_the_wrong_size_is_refused(
    algorithm: str, size: int, reason: str
) -> None:
    args = EvidencePut(b"\x01" * size, "a.pdf", {"algorithm": algorithm}, b"")
    with pytest.raises(InvalidArguments):
        check_put(args)
    # A block that (wrongly) holds it anyway: the verifier refuses the bundle too.
    chain = deposit_chain("sm", [args])
    with pytest.raises(ProofInvalid, match=reason):
        verify_bundle(roundtrip(chain.bundle(1, 0)), trusted=chain.genesis)


def test_the_contract_accepts_every_named_hash_at_its_size() -> None:
    for algorithm, size in DIGEST_ALGORITHMS.items():
        check_put(EvidencePut(b"\x01" * size, "a.pdf", {"algorithm": algorithm}, b""))


# ------------------------------------------------------------------------------------------------
# The trusted genesis document is read as the format page specifies, field by field.


def write_genesis(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.update(time=str(d["time"])), "time must be an integer"),
        (lambda d: d.update(time=True), "time must be an integer"),
        (lambda d: d.update(time=1 << 64), "time must be an integer"),
        (lambda d: d.update(chain_id=7), "chain_id must be a string"),
        (lambda d: d.update(extra=1), "unknown field 'extra'"),
        (lambda d: d.pop("suite"), "lacks the field 'suite'"),
        (lambda d: d.update(validators=[]), "validators must be a non-empty JSON array"),
        (lambda d: d["validators"][0].update(power="1"), r"validators\[0\].power must be an integer"),
        (lambda d: d["validators"][0].update(power=0), r"validators\[0\].power must be positive"),
        (lambda d: d["validators"][0].pop("name"), r"validators\[0\] lacks the field 'name'"),
        (
            lambda d: d["validators"][0].update(public_key=d["validators"][0]["public_key"].upper()),
            "lowercase hex",
        ),
        (lambda d: d["validators"][0].update(public_key="04" * 33), "must be 65 bytes, not 33"),
        (lambda d: d["validators"].append(dict(d["validators"][0], name="again")), "public key twice"),
        (lambda d: d["params"].update(max_tx_bytes=-1), "params.max_tx_bytes must be an integer"),
        (lambda d: d["params"].update(block_time=1), "params has the unknown field 'block_time'"),
    ],
)
def test_a_genesis_that_breaks_the_format_is_refused(
    sm_chain: Chain, tmp_path: Path, change: Any, reason: str
) -> None:
    doc = genesis_to_json(sm_chain.genesis)
    assert load_genesis(write_genesis(tmp_path, doc)) == sm_chain.genesis
    changed = copy.deepcopy(doc)
    change(changed)
    with pytest.raises(GenesisError, match=reason):
        load_genesis(write_genesis(tmp_path, changed))


def test_a_genesis_without_params_takes_the_defaults(sm_chain: Chain, tmp_path: Path) -> None:
    doc = genesis_to_json(sm_chain.genesis)
    del doc["params"]
    assert load_genesis(write_genesis(tmp_path, doc)) == sm_chain.genesis
    doc["params"] = {"max_block_txs": 7}
    assert load_genesis(write_genesis(tmp_path, doc)).params.max_block_txs == 7


DOC = Path(__file__).resolve().parents[1] / "docs" / "proof-format.md"


def test_the_format_page_lists_exactly_the_digest_hashes_the_code_knows() -> None:
    text = DOC.read_text()
    section = text.split("### The digest's hash", 1)[1].split("###", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| [^|]+ \| (\d+) \|$", section, flags=re.M)
    assert {name: int(size) for name, size in rows} == DIGEST_ALGORITHMS


def test_the_worked_example_genesis_is_a_strict_genesis_document(tmp_path: Path) -> None:
    text = DOC.read_text()
    (doc,) = [block.removeprefix("json") for block in text.split("```") if '"chain_id": "demo"' in block]
    path = tmp_path / "genesis.json"
    path.write_text(doc)
    assert load_genesis(path).chain_id == "demo"
