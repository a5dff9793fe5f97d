"""The commit rule, at its edge, in both checkers: the bundle verifier and block sync's check_commit.

proof-format.md §5: every signer is a validator, signs once, and its precommit verifies;
anything else refuses the whole certificate, even when the rest is enough. The signers' power
must be strictly more than two thirds of the set's: ``3 * signed > 2 * total``. Exactly two
thirds is not enough. Every case runs through both checkers, with unequal powers, so a
checker that counts heads, counts a repeat, skips a bad signature or accepts 2/3 fails here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from zhongshu.codec import encode
from zhongshu.crypto import get_suite
from zhongshu.ledger.commit import InvalidCommit, check_commit
from zhongshu.ledger.evidence_args import EvidencePut
from zhongshu.ledger.hashing import (
    compute_block_hash,
    compute_genesis_hash,
    compute_receipt_root,
    compute_tx_hash,
    compute_tx_root,
    compute_validator_set_hash,
)
from zhongshu.ledger.proof import ProofInvalid, build_bundle, verify_bundle
from zhongshu.ledger.types import (
    PRECOMMIT,
    STATUS_OK,
    Block,
    ChainParams,
    CommitCertificate,
    CommitSig,
    Genesis,
    Header,
    Receipt,
    Transaction,
    TxBody,
    Validator,
    ValidatorSet,
    Vote,
)

CHAIN_ID = "commit-rule"
GENESIS_TIME = 1_700_000_000_000


class SignedBlock:
    """Block 1 of a chain whose validators have the given powers, with one evidence deposit."""

    def __init__(self, suite_name: str, powers: tuple[int, ...]) -> None:
        self.suite = get_suite(suite_name)
        h = self.suite.hasher()
        self.keys = [self.suite.generate_private_key() for _ in powers]
        self.vset = ValidatorSet(
            [
                Validator(k.public_bytes(), p, f"v{i}")
                for i, (k, p) in enumerate(zip(self.keys, powers, strict=True))
            ]
        )
        genesis = Genesis(CHAIN_ID, suite_name, GENESIS_TIME, self.vset, ChainParams())
        genesis_hash = compute_genesis_hash(h, genesis)
        client = self.suite.generate_private_key()
        args = encode(EvidencePut(self.suite.hash(b"deed"), "deed.pdf", {}, b""))
        fields = (CHAIN_ID, genesis_hash, client.public_bytes(), "evidence", "put", args, 10, 1)
        tx = Transaction(*fields, signature=client.sign(encode(TxBody(*fields))))
        self.receipts = [Receipt(compute_tx_hash(h, tx), STATUS_OK, b"", "", [])]
        header = Header(
            CHAIN_ID,
            1,
            GENESIS_TIME + 1000,
            genesis_hash,
            1,
            compute_tx_root(h, [tx]),
            compute_receipt_root(h, self.receipts),
            b"\x00" * 32,
            h(b""),
            compute_validator_set_hash(h, self.vset),
            self.keys[0].public_bytes(),
        )
        self.block = Block(header, [tx])
        self.block_hash = compute_block_hash(h, header)
        self.sign_bytes = encode(Vote(PRECOMMIT, CHAIN_ID, 1, 0, self.block_hash))

    def sig(self, i: int) -> CommitSig:
        """Validator ``i``'s precommit for the block."""
        return CommitSig(self.keys[i].public_bytes(), self.keys[i].sign(self.sign_bytes))

    def cert(self, sigs: list[CommitSig]) -> CommitCertificate:
        return CommitCertificate(1, 0, self.block_hash, sigs)


def by_bundle(b: SignedBlock, cert: CommitCertificate) -> int:
    """The bundle verifier's verdict: the signed power, or ProofInvalid."""
    bundle = build_bundle(b.suite.name, b.block, b.receipts, 0, cert, b.vset)
    return verify_bundle(bundle, trusted=None).signed_power


def by_block_sync(b: SignedBlock, cert: CommitCertificate) -> int:
    """Block sync's verdict: the signed power, or InvalidCommit."""
    return check_commit(b.suite, CHAIN_ID, b.vset, cert, b.block_hash, 1)


CHECKERS: list[tuple[Callable[[SignedBlock, CommitCertificate], int], type[Exception]]] = [
    (by_bundle, ProofInvalid),
    (by_block_sync, InvalidCommit),
]
CHECKER_IDS = ["bundle", "block-sync"]

# (powers, signers, signed power or None when refused). Totals are multiples of 3, so the
# exact two-thirds line is reachable; where power and head count disagree, power wins.
THRESHOLD_CASES = [
    ((1, 1, 1), (0, 1), None),  # 2 of 3: exactly two thirds
    ((1, 1, 1), (0, 1, 2), 3),
    ((4, 1, 1), (0,), None),  # one validator holding exactly two thirds
    ((4, 1, 1), (0, 1), 5),
    ((4, 1, 1), (1, 2), None),
    ((2, 2, 1, 1), (0, 2, 3), None),  # 3 of 4 heads, but 4 of 6 power: exactly two thirds
    ((2, 2, 1, 1), (0, 1), None),
    ((2, 2, 1, 1), (0, 1, 3), 5),
    ((5, 1, 1, 2), (0, 3), 7),  # 2 of 4 heads, 7 of 9 power
    ((5, 1, 1, 2), (0, 1), None),  # 6 of 9: exactly two thirds
    ((10**12, 2 * 10**12, 3 * 10**12), (1, 2), 5 * 10**12),
    ((10**12, 2 * 10**12, 3 * 10**12), (0, 2), None),  # 4 of 6 (x 10^12)
]

_BLOCKS: dict[tuple[int, ...], SignedBlock] = {}


def signed_block(powers: tuple[int, ...]) -> SignedBlock:
    """One block per set of powers, shared by the cases (keys are slow to make in sm)."""
    if powers not in _BLOCKS:
        _BLOCKS[powers] = SignedBlock("intl", powers)
    return _BLOCKS[powers]


@pytest.mark.parametrize("checker", CHECKERS, ids=CHECKER_IDS)
@pytest.mark.parametrize(("powers", "signers", "expected"), THRESHOLD_CASES)
def test_strictly_more_than_two_thirds_of_the_power(
    checker: tuple[Callable[[SignedBlock, CommitCertificate], int], type[Exception]],
    powers: tuple[int, ...],
    signers: tuple[int, ...],
    expected: int | None,
) -> None:
    check, refused = checker
    b = signed_block(powers)
    cert = b.cert([b.sig(i) for i in signers])
    if expected is None:
        with pytest.raises(refused, match=f"{sum(powers[i] for i in signers)} of {sum(powers)}"):
            check(b, cert)
    else:
        assert check(b, cert) == expected


def _outsider(b: SignedBlock) -> CommitSig:
    key = b.suite.generate_private_key()
    return CommitSig(key.public_bytes(), key.sign(b.sign_bytes))


def _bad_signature(b: SignedBlock, i: int) -> CommitSig:
    """Validator ``i``'s signature over the precommit of another round: well formed, wrong."""
    other = encode(Vote(PRECOMMIT, CHAIN_ID, 1, 1, b.block_hash))
    return CommitSig(b.keys[i].public_bytes(), b.keys[i].sign(other))


def _flipped(b: SignedBlock, i: int) -> CommitSig:
    good = b.sig(i)
    return CommitSig(good.validator, bytes([good.signature[0] ^ 1]) + good.signature[1:])


POWERS = (2, 2, 1, 1)
# Certificates that must be refused whole, each with what the refusal names.
BAD_CASES: list[tuple[str, Callable[[SignedBlock], list[CommitSig]]]] = [
    # An unknown signer, beside signers that alone have 5 of 6.
    ("unknown-beside-enough", lambda b: [b.sig(0), b.sig(1), b.sig(2), _outsider(b)]),
    # An unknown signer first: nothing after it may make up for it.
    ("unknown-first", lambda b: [_outsider(b), b.sig(0), b.sig(1), b.sig(2), b.sig(3)]),
    # 4 of 6 plus a repeat of a power-2 signer: counted twice it would be 6 of 6.
    ("repeat-tips-over", lambda b: [b.sig(0), b.sig(2), b.sig(3), b.sig(0)]),
    # Everyone signed, and one of them twice: a repeat is an error, not skipped.
    ("repeat-beside-enough", lambda b: [b.sig(0), b.sig(1), b.sig(2), b.sig(3), b.sig(3)]),
    # The same validator twice with two different valid-looking signatures (SM2/retries).
    ("repeat-other-bytes", lambda b: [b.sig(0), b.sig(1), b.sig(2), _bad_signature(b, 2)]),
    # A signature over another round's precommit, beside signers that have 5 of 6.
    ("bad-beside-enough", lambda b: [b.sig(0), b.sig(1), b.sig(2), _bad_signature(b, 3)]),
    # A bad signature that would tip it over: 4 of 6 good, the power-2 one broken.
    ("bad-tips-over", lambda b: [_flipped(b, 1), b.sig(0), b.sig(2), b.sig(3)]),
    # A validator's key with another validator's signature.
    (
        "swapped",
        lambda b: [b.sig(0), b.sig(1), CommitSig(b.keys[2].public_bytes(), b.sig(3).signature), b.sig(3)],
    ),
]
BAD_REASON = {
    "unknown-beside-enough": r"not (in the validator set|a validator)",
    "unknown-first": r"not (in the validator set|a validator)",
    "repeat-tips-over": r"(each may sign once|signs twice)",
    "repeat-beside-enough": r"(each may sign once|signs twice)",
    "repeat-other-bytes": r"(each may sign once|signs twice)",
    "bad-beside-enough": r"does not verify",
    "bad-tips-over": r"does not verify",
    "swapped": r"does not verify",
}


@pytest.mark.parametrize("checker", CHECKERS, ids=CHECKER_IDS)
@pytest.mark.parametrize(("name", "make"), BAD_CASES, ids=[name for name, _ in BAD_CASES])
def test_an_unknown_repeated_or_badly_signed_signer_refuses_the_whole_certificate(
    checker: tuple[Callable[[SignedBlock, CommitCertificate], int], type[Exception]],
    name: str,
    make: Callable[[SignedBlock], list[CommitSig]],
) -> None:
    check, refused = checker
    b = signed_block(POWERS)
    with pytest.raises(refused, match=BAD_REASON[name]):
        check(b, b.cert(make(b)))
    # Without the offending entry the rest is judged by power alone (the case is not moot).
    assert check(b, b.cert([b.sig(0), b.sig(1), b.sig(2)])) == 5


@pytest.mark.parametrize("checker", CHECKERS, ids=CHECKER_IDS)
def test_sm2_signatures_follow_the_same_rule(
    checker: tuple[Callable[[SignedBlock, CommitCertificate], int], type[Exception]],
) -> None:
    check, refused = checker
    b = SignedBlock("sm", (1, 1, 1))
    assert check(b, b.cert([b.sig(0), b.sig(1), b.sig(2)])) == 3
    with pytest.raises(refused, match="2 of 3"):
        check(b, b.cert([b.sig(0), b.sig(2)]))
    with pytest.raises(refused, match="does not verify"):
        check(b, b.cert([b.sig(0), b.sig(1), _flipped(b, 2)]))
