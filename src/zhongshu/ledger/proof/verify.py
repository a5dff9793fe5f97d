"""Verifying a bundle offline: each check is one function with a one-line comment per rule."""

from __future__ import annotations

from typing import Any, BinaryIO

from zhongshu.codec import DecodeError, encode
from zhongshu.crypto import Suite, get_suite
from zhongshu.ledger.evidence_args import DIGEST_ALGORITHM_KEY, EvidencePut, digest_algorithm
from zhongshu.ledger.hashing import (
    compute_block_hash,
    compute_genesis_hash,
    compute_tx_hash,
    compute_validator_set_hash,
)
from zhongshu.ledger.merkle import (
    ProofError,
    hash_leaf,
    verify_inclusion,
)
from zhongshu.ledger.proof.common import (
    PUBLIC_KEY_SIZES,
    SIGNATURE_SIZES,
    ProofInvalid,
    VerifiedProof,
    _evidence_args,
)
from zhongshu.ledger.proof.digest import digest_file
from zhongshu.ledger.proof.reader import (
    _Bundle,
    _Certified,
    _Commit,
    _decode,
    _read_bundle,
    check_size,
)
from zhongshu.ledger.types import (
    HASH_SIZE,
    PRECOMMIT,
    STATUS_OK,
    Genesis,
    Header,
    Receipt,
    Transaction,
    ValidatorSet,
    Vote,
)


def _check_inclusion(
    suite: Suite, index: int, size: int, leaf: bytes, path: list[bytes], root: bytes, what: str
) -> None:
    h = suite.hasher()
    try:
        verify_inclusion(h, index, size, hash_leaf(h, leaf), path, root)
    except ProofError as exc:
        raise ProofInvalid(f"{what}: {exc}") from None


def _check_header_sizes(suite: Suite, header: Header, where: str) -> None:
    """Every hash of a header is 32 bytes and its proposer is a public key of the suite."""
    for name in ("prev_hash", "tx_root", "receipt_root", "state_root", "history_root", "validator_set_hash"):
        check_size(getattr(header, name), HASH_SIZE, f"{where} {name}")
    check_size(header.proposer, PUBLIC_KEY_SIZES[suite.name], f"{where} proposer")


def _check_transaction(suite: Suite, p: _Bundle) -> tuple[Transaction, bytes]:
    """The transaction and its hash."""
    # The transaction decodes canonically and tx.hash is the hash of its sign-bytes.
    tx = _decode(p.tx, Transaction, "tx.encoded")
    # Its genesis hash, sender key and signature have the sizes of the suite.
    check_size(tx.genesis_hash, HASH_SIZE, "tx.encoded genesis_hash")
    check_size(tx.sender, PUBLIC_KEY_SIZES[suite.name], "tx.encoded sender")
    check_size(tx.signature, SIGNATURE_SIZES[suite.name], "tx.encoded signature")
    tx_hash = compute_tx_hash(suite.hasher(), tx)
    if tx_hash != p.tx_hash:
        raise ProofInvalid("tx.hash is not the hash of tx.encoded: the bundle was altered")
    # The sender signed it.
    if not suite.verify(tx.sender, tx.sign_bytes(), tx.signature):
        raise ProofInvalid("the sender's signature on the transaction does not verify")
    return tx, tx_hash


def _check_block_header(suite: Suite, p: _Certified) -> Header:
    """The block header, decoded and matching the bundle's readable block fields."""
    # The header decodes canonically and hashes to block.hash.
    header = _decode(p.header, Header, "block.header")
    _check_header_sizes(suite, header, "block.header")
    if compute_block_hash(suite.hasher(), header) != p.block_hash:
        raise ProofInvalid("block.hash is not the hash of block.header: the bundle was altered")
    # block.height and block.time are the header's own, and the height is a real one.
    if (p.height, p.time) != (header.height, header.time) or header.height < 1:
        raise ProofInvalid("block.height or block.time differs from the encoded header")
    return header


def _check_header(suite: Suite, p: _Bundle, tx: Transaction) -> Header:
    """The block header, which holds the transaction's chain id."""
    header = _check_block_header(suite, p)
    # One chain throughout: the header's, the transaction's and the bundle's chain id agree.
    if not header.chain_id == tx.chain_id == p.chain_id:
        raise ProofInvalid(
            f"chain ids disagree: bundle {p.chain_id!r}, header {header.chain_id!r}, tx {tx.chain_id!r}"
        )
    return header


def _check_evidence(
    p: _Bundle, tx: Transaction, header: Header, file_digest: bytes | None, file: BinaryIO | None
) -> tuple[EvidencePut, str] | None:
    """The deposit's arguments and its digest's hash for an ``evidence.put``, else None."""
    try:
        args = _evidence_args(tx)
    except DecodeError as exc:
        raise ProofInvalid(f"the evidence.put arguments do not decode: {exc}") from None
    # The evidence summary is exactly what the arguments and the header say (or null).
    truth = None if args is None else (args.digest, args.name, header.height, header.time)
    if p.evidence != truth:
        raise ProofInvalid("the evidence summary differs from what the transaction and header say")
    if args is None:
        if file_digest is not None or file is not None:
            raise ProofInvalid("a file was given, but this proof's transaction deposits no digest")
        return None
    # The digest names a hash this format knows (or its size implies one), and has its size.
    algorithm = digest_algorithm(args, p.suite)
    if algorithm is None:
        named = args.metadata.get(DIGEST_ALGORITHM_KEY)
        raise ProofInvalid(
            f"the deposit's digest of {len(args.digest)} bytes is not a digest of "
            + (f"the hash it names ({named!r})" if named is not None else "32, 48 or 64 bytes")
        )
    # The file checked is the file deposited, hashed as the deposit says.
    if file is not None:
        file_digest = digest_file(algorithm, file)
    if file_digest is not None and file_digest != args.digest:
        raise ProofInvalid(
            f"the file's {algorithm} digest {file_digest.hex()} is not in this proof, "
            f"which deposited {args.digest.hex()}"
        )
    return args, algorithm


def _check_in_block(suite: Suite, p: _Bundle, header: Header, tx_hash: bytes) -> None:
    """The transaction and its successful receipt are in the block."""
    # The transaction is leaf tx.index of the header's tx tree of tx_count leaves.
    _check_inclusion(
        suite,
        p.tx_index,
        header.tx_count,
        p.tx,
        p.tx_path,
        header.tx_root,
        "the transaction is not in the block's tx_root",
    )
    # The receipt is the same leaf of the receipt tree.
    _check_inclusion(
        suite,
        p.tx_index,
        header.tx_count,
        p.receipt,
        p.receipt_path,
        header.receipt_root,
        "the receipt is not in the block's receipt_root",
    )
    # The receipt decodes canonically, is this transaction's, and says it succeeded.
    receipt = _decode(p.receipt, Receipt, "receipt.encoded")
    if receipt.tx_hash != tx_hash:
        raise ProofInvalid("the receipt is for another transaction")
    if receipt.status != STATUS_OK:
        raise ProofInvalid(f"the transaction failed on chain ({receipt.error or 'no reason given'})")


def _check_anchor(suite: Suite, p: _Certified, header: Header) -> tuple[Header, bytes, _Commit]:
    """The header the proof rests on, its hash and its commit: the anchor's, or the block's."""
    if p.anchor is None:
        # Without an anchor the block's own commit certifies it.
        if p.commit is None:
            raise ProofInvalid("commit is null and there is no anchor: nothing certifies the block")
        return header, p.block_hash, p.commit
    h = suite.hasher()
    # The anchor header decodes canonically and hashes to anchor.hash.
    anchor = _decode(p.anchor.header, Header, "anchor.header")
    _check_header_sizes(suite, anchor, "anchor.header")
    if compute_block_hash(h, anchor) != p.anchor.hash:
        raise ProofInvalid("anchor.hash is not the hash of anchor.header: the bundle was altered")
    # It is newer than the block, states its own height, and is of the same chain.
    if anchor.height != p.anchor.height or anchor.height <= header.height:
        raise ProofInvalid("anchor.height is not the anchor header's, or is not above the block's")
    if anchor.chain_id != p.chain_id:
        raise ProofInvalid(f"the anchor header is for chain {anchor.chain_id!r}, not {p.chain_id!r}")
    # The block hash is leaf height-1 of the anchor's history tree over blocks 1 .. anchor-1.
    _check_inclusion(
        suite,
        header.height - 1,
        anchor.height - 1,
        p.block_hash,
        p.anchor.history_path,
        anchor.history_root,
        "the block is not in the anchor header's history_root",
    )
    return anchor, p.anchor.hash, p.anchor.commit


def _check_genesis_hash(suite: Suite, tx: Transaction, trusted: Genesis) -> None:
    """The transaction was signed for the trusted genesis, not another network's chain of its name."""
    # The genesis hash in the transaction is the hash of the trusted genesis.
    genesis_hash = compute_genesis_hash(suite.hasher(), trusted)
    if tx.genesis_hash != genesis_hash:
        raise ProofInvalid(
            f"the transaction names genesis hash {tx.genesis_hash.hex() or '(empty)'}, the trusted "
            f"genesis hashes to {genesis_hash.hex()}: it was signed for another network's chain"
        )


def _check_validator_set(
    suite: Suite, p: _Certified, signed_header: Header, trusted: Genesis | None
) -> ValidatorSet:
    """The validator set named by the certified header (and by the trusted genesis)."""
    # The set decodes canonically and the readable listing is the encoded one.
    vset = _decode(p.validator_set, ValidatorSet, "validator_set.encoded")
    if encode(ValidatorSet(p.validators)) != p.validator_set:
        raise ProofInvalid("validator_set.validators differs from validator_set.encoded")
    # Each key appears once, each power is positive, and there is at least one validator.
    keys = [v.public_key for v in vset.validators]
    if not keys or len(set(keys)) != len(keys) or any(v.power <= 0 for v in vset.validators):
        raise ProofInvalid("the validator set is empty, repeats a key or has a non-positive power")
    # It is the set the certified header names.
    if compute_validator_set_hash(suite.hasher(), vset) != signed_header.validator_set_hash:
        which = "block header" if p.anchor is None else "anchor header"
        raise ProofInvalid(f"the validator set is not the one the {which} names")
    if trusted is not None:
        # Trusted: the genesis's suite and chain.
        if trusted.suite != p.suite:
            raise ProofInvalid(f"the bundle uses suite {p.suite!r}, the trusted genesis {trusted.suite!r}")
        if trusted.chain_id != p.chain_id:
            raise ProofInvalid(
                f"the bundle is for chain {p.chain_id!r}, the trusted genesis for {trusted.chain_id!r}"
            )
        # Trusted: the signers are the genesis's validators.
        if encode(trusted.validators) != p.validator_set:
            raise ProofInvalid("the validator set is not the trusted genesis's validator set")
    return vset


def _check_commit(
    suite: Suite, chain_id: str, c: _Commit, header: Header, header_hash: bytes, vset: ValidatorSet
) -> int:
    """The voting power whose precommits for ``header`` verify; raise unless it exceeds 2/3."""
    # The certificate is for this header: its block hash and its height.
    if c.block_hash != header_hash:
        raise ProofInvalid(f"{c.where}.block_hash is not the hash of the header it should certify")
    if c.height != header.height:
        raise ProofInvalid(f"{c.where}.height {c.height} is not the header's height {header.height}")
    powers = {v.public_key: v.power for v in vset.validators}
    sign_bytes = encode(Vote(PRECOMMIT, chain_id, c.height, c.round, c.block_hash))
    seen: set[bytes] = set()
    signed = 0
    for i, (key, signature) in enumerate(c.signatures):
        where = f"{c.where}.signatures[{i}]"
        # Each signer is a member of the validator set ...
        if key not in powers:
            raise ProofInvalid(f"{where} is by {key.hex()[:16]}.., which is not in the validator set")
        # ... that signs at most once (a duplicate never counts twice) ...
        if key in seen:
            raise ProofInvalid(f"{where} repeats validator {key.hex()[:16]}..: each may sign once")
        seen.add(key)
        # ... with a signature that verifies over the precommit's sign-bytes.
        if not suite.verify(key, sign_bytes, signature):
            raise ProofInvalid(f"{where} by validator {key.hex()[:16]}.. does not verify")
        signed += powers[key]
    total = vset.total_power()
    # Strictly more than 2/3 of the voting power precommitted: 3 * signed > 2 * total.
    if 3 * signed <= 2 * total:
        raise ProofInvalid(f"{c.where} carries {signed} of {total} voting power; more than 2/3 must sign")
    return signed


def _check_commits(
    suite: Suite,
    p: _Certified,
    header: Header,
    certified: tuple[Header, bytes, _Commit],
    vset: ValidatorSet,
) -> int:
    """The power that certified the header ``_check_anchor`` chose; the block's own commit too
    when an anchored bundle carries it (§7 step 12)."""
    signed_header, signed_hash, signed_commit = certified
    signed = _check_commit(suite, p.chain_id, signed_commit, signed_header, signed_hash, vset)
    if p.anchor is not None and p.commit is not None:
        # Anchored, the block's own commit is checked too, under the same validator set.
        if header.validator_set_hash != signed_header.validator_set_hash:
            raise ProofInvalid("commit is present but the block names another validator set")
        _check_commit(suite, p.chain_id, p.commit, header, p.block_hash, vset)
    return signed


def verify_bundle(
    bundle: Any,
    *,
    trusted: Genesis | None,
    file_digest: bytes | None = None,
    file: BinaryIO | None = None,
) -> VerifiedProof:
    """Check a proof bundle completely, offline; raise ProofInvalid at the first failing check.

    Valid means: the transaction and its successful receipt are in a block whose header is
    certified by more than 2/3 of the voting power of the validator set the header (or a newer
    anchor header proving it through its history root) names; with ``trusted``, that set, the
    chain and the genesis hash the transaction was signed for are the genesis's; with
    ``file_digest``, the transaction deposited that digest; with ``file`` (a binary stream), it
    deposited the file's digest by the hash the deposit names. Every readable field must equal
    what the encoded bytes say, and every byte string has the size the format fixes. Any
    ``bundle`` value that is not a valid bundle raises ProofInvalid; an OSError reading ``file``
    propagates.
    """
    p = _read_bundle(bundle)
    suite = get_suite(p.suite)
    tx, tx_hash = _check_transaction(suite, p)
    header = _check_header(suite, p, tx)
    deposit = _check_evidence(p, tx, header, file_digest, file)
    args, algorithm = (None, None) if deposit is None else deposit
    _check_in_block(suite, p, header, tx_hash)
    signed_header, signed_hash, signed_commit = _check_anchor(suite, p, header)
    vset = _check_validator_set(suite, p, signed_header, trusted)
    if trusted is not None:
        _check_genesis_hash(suite, tx, trusted)
    signed = _check_commits(suite, p, header, (signed_header, signed_hash, signed_commit), vset)
    return VerifiedProof(
        chain_id=p.chain_id,
        genesis_hash=tx.genesis_hash,
        height=header.height,
        time=header.time,
        tx_hash=tx_hash,
        block_hash=p.block_hash,
        digest=None if args is None else args.digest,
        signed_power=signed,
        total_power=vset.total_power(),
        name=None if args is None else args.name,
        anchor_height=None if p.anchor is None else signed_header.height,
        trusted=trusted is not None,
        algorithm=algorithm,
    )
