"""Core ledger types. Their canonical encodings (zhongshu.codec) are what is hashed and signed.

Every hashed or signed struct is an array-like, tagged msgspec Struct: it encodes as a
MessagePack array whose first element is its tag ("tx", "header", "vote", ...), so bytes
signed as one kind can never be read as another.
"""

from __future__ import annotations

import msgspec

from zhongshu.codec import encode

HASH_SIZE = 32

PREVOTE = 1
PRECOMMIT = 2

STATUS_OK = 0
STATUS_FAILED = 1


class TxBody(msgspec.Struct, array_like=True, frozen=True, tag="tx"):
    """The signed part of a transaction; its encoding is the sign-bytes, its hash the tx hash."""

    chain_id: str
    """The chain this transaction is for; a node refuses any other chain's."""
    genesis_hash: bytes
    """Hash of that chain's genesis (32 bytes): two chains that share a name still differ here."""
    sender: bytes
    """The sender's public key (SM2: 65 bytes 04||x||y; Ed25519: 32 bytes)."""
    contract: str
    """Name of the contract called, e.g. ``evidence``."""
    method: str
    """Method of that contract, e.g. ``put``."""
    args: bytes
    """The canonical MessagePack of the method's argument struct."""
    valid_until: int
    """Last block height that may include the transaction."""
    nonce: int
    """A client-chosen 64-bit number that makes otherwise equal transactions distinct."""


class Transaction(msgspec.Struct, array_like=True, frozen=True, tag="tx"):
    """A signed transaction: the body's fields followed by the signature."""

    chain_id: str
    genesis_hash: bytes
    sender: bytes
    contract: str
    method: str
    args: bytes
    valid_until: int
    nonce: int
    signature: bytes
    """Signature by ``sender`` over the encoded TxBody (SM2: DER r,s; Ed25519: 64 bytes)."""

    def body(self) -> TxBody:
        return TxBody(
            self.chain_id,
            self.genesis_hash,
            self.sender,
            self.contract,
            self.method,
            self.args,
            self.valid_until,
            self.nonce,
        )

    def sign_bytes(self) -> bytes:
        return encode(self.body())


class Event(msgspec.Struct, array_like=True, frozen=True, tag="event"):
    """Something a contract reports about a transaction, delivered to subscribers."""

    contract: str
    name: str
    data: bytes
    """Canonical MessagePack of the event's data."""


class Receipt(msgspec.Struct, array_like=True, frozen=True, tag="receipt"):
    """The outcome of one transaction, in block order."""

    tx_hash: bytes
    status: int
    """0 success, 1 failed (the transaction stays in the block; its writes are dropped)."""
    result: bytes
    """Canonical MessagePack of the method's result (empty when failed)."""
    error: str
    """Why it failed; empty on success."""
    events: list[Event]


class Header(msgspec.Struct, array_like=True, frozen=True, tag="header"):
    """A block header; its hash is the block hash."""

    chain_id: str
    height: int
    """1 for the first block."""
    time: int
    """Milliseconds since the Unix epoch, chosen by the proposer, strictly increasing."""
    prev_hash: bytes
    """Hash of the previous header; the genesis hash for height 1."""
    tx_count: int
    tx_root: bytes
    """RFC 6962 root over the encoded transactions."""
    receipt_root: bytes
    """RFC 6962 root over the encoded receipts."""
    state_root: bytes
    """Root of the state map (a sparse Merkle tree over every key and value of the chain's state)
    after this block, docs/state-map.md; on a node run without the map (for measuring only), a
    hash chain over each block's writes instead."""
    history_root: bytes
    """RFC 6962 root over the hashes of blocks 1 .. height-1 (empty tree at height 1)."""
    validator_set_hash: bytes
    """Hash of the encoded ValidatorSet that signs this block."""
    proposer: bytes
    """Public key of the validator that proposed the block."""


class Vote(msgspec.Struct, array_like=True, frozen=True, tag="vote"):
    """The sign-bytes of a prevote or precommit."""

    kind: int
    """1 prevote, 2 precommit."""
    chain_id: str
    height: int
    round: int
    block_hash: bytes
    """Empty for a vote for no block (nil)."""


class CommitSig(msgspec.Struct, array_like=True, frozen=True):
    validator: bytes
    """The validator's public key."""
    signature: bytes
    """Its signature over Vote(PRECOMMIT, chain_id, height, round, block_hash)."""


class CommitCertificate(msgspec.Struct, array_like=True, frozen=True, tag="commit"):
    """Precommits of more than 2/3 of the voting power for one block."""

    height: int
    round: int
    block_hash: bytes
    signatures: list[CommitSig]

    def vote(self, chain_id: str) -> Vote:
        return Vote(PRECOMMIT, chain_id, self.height, self.round, self.block_hash)


class Validator(msgspec.Struct, array_like=True, frozen=True):
    public_key: bytes
    power: int
    """Voting power, a positive integer."""
    name: str = ""


class ValidatorSet(msgspec.Struct, array_like=True, frozen=True, tag="validators"):
    validators: list[Validator]

    def total_power(self) -> int:
        return sum(v.power for v in self.validators)

    def power_of(self, public_key: bytes) -> int:
        for v in self.validators:
            if v.public_key == public_key:
                return v.power
        return 0


class ChainParams(msgspec.Struct, array_like=True, frozen=True):
    block_interval_ms: int = 200
    """Target time between blocks."""
    max_block_txs: int = 5000
    max_block_bytes: int = 8 * 1024 * 1024
    max_tx_bytes: int = 96 * 1024


class Genesis(msgspec.Struct, array_like=True, frozen=True, tag="genesis"):
    """Everything a chain starts from; its hash is the prev_hash of block 1."""

    chain_id: str
    suite: str
    """``sm`` or ``intl``."""
    time: int
    validators: ValidatorSet
    params: ChainParams


class Block(msgspec.Struct, array_like=True, frozen=True, tag="block"):
    header: Header
    txs: list[Transaction]
