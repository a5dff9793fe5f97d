"""What the gateway answers, as typed values: the JSON of docs/access-spec.md, field by field.

Byte strings stay lowercase hex, as the API writes them, so a hash read here can be passed
straight back (``client.get_tx(receipt.tx_hash)``). Fields the gateway adds in a later version
are ignored when decoding, so an older SDK keeps working against a newer gateway.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from zhongshu.sdk.errors import UnexpectedResponse

Suite = Literal["sm", "intl"]


class ChainStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /v1/chains/{chain}/status``: where a chain is now."""

    chain_id: str
    """The chain's name on its network, e.g. ``main``."""
    suite: Suite
    """``sm`` (SM2/SM3) or ``intl`` (Ed25519/SHA-256): the keys and hash the chain uses."""
    height: int
    """Height of the latest block, 0 before the first."""
    latest_block_hash: str | None
    """Hash (hex) of the latest block; None before the first."""
    latest_block_time: int | None
    """Time of the latest block, milliseconds since the Unix epoch; None before the first."""
    genesis_hash: str
    """Genesis hash (hex) every transaction for this chain signs."""
    validators: int = 0
    """Number of validators."""
    mempool_txs: int = 0
    """Transactions waiting in this node's mempool."""
    mempool_bytes: int = 0
    """Their size in bytes."""
    metrics: dict[str, int | float] = {}
    """Where the node's time goes, summed since it started (names may change between versions)."""
    consensus: dict[str, Any] | None = None
    """On a networked node: height, round and step in progress, peers."""


class ChainPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of ``GET /v1/chains``."""

    items: list[ChainStatus]
    """The chains of this page, by chain id."""
    next_cursor: str | None
    """Pass back as ``cursor`` for the next page; None when there is nothing more now."""


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """An event a contract emitted while executing a transaction."""

    contract: str
    """The contract that emitted it."""
    name: str
    """The event's name."""
    data: Any = None
    """Its data, decoded from MessagePack (byte strings as hex)."""


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What executing a transaction gave: the receipt proper."""

    status: Literal["ok", "failed"]
    """``ok``, or ``failed`` (the transaction is in its block but changed nothing)."""
    result: Any = None
    """The method's result, decoded from MessagePack (byte strings as hex); None if none."""
    error: str = ""
    """Why it failed; empty when ok."""
    events: list[Event] = []
    """The events it emitted, in order (none when failed)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class DepositResult(msgspec.Struct, frozen=True, kw_only=True):
    """The result of an ``evidence.put``: where the digest was first deposited."""

    digest: str
    """The digest deposited (hex)."""
    height: int
    """Height of the block of the digest's first deposit."""
    time: int
    """That block's time, milliseconds since the Unix epoch."""
    tx_hash: str
    """The transaction (hex) of the first deposit."""
    duplicate: bool
    """True when the digest had been deposited before: height, time and tx_hash are the first's."""


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """A committed transaction: where it is, and its outcome."""

    tx_hash: str
    """The transaction's hash (hex)."""
    height: int
    """Height of the block holding it."""
    index: int
    """Its position in that block."""
    time: int
    """The block's time, milliseconds since the Unix epoch."""
    receipt: Outcome
    """What executing it gave."""

    @property
    def ok(self) -> bool:
        """True when the transaction succeeded (``receipt.status == "ok"``)."""
        return self.receipt.ok

    def deposit(self) -> DepositResult:
        """The result of a successful ``evidence.put``; UnexpectedResponse for anything else."""
        try:
            return msgspec.convert(self.receipt.result, DepositResult)
        except msgspec.ValidationError as exc:
            raise UnexpectedResponse(200, f"the receipt holds no deposit result ({exc})") from None


class SubmitResult(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /v1/chains/{chain}/txs``: admitted (``pending``) or, with wait, ``committed``."""

    status: Literal["pending", "committed"]
    """``pending`` (202: admitted, not yet committed) or ``committed`` (200, with receipts)."""
    tx_hashes: list[str] = []
    """The transactions' hashes (hex), in order, when pending."""
    receipts: list[Receipt] = []
    """The transactions' receipts, in order, when committed."""

    @property
    def hashes(self) -> list[str]:
        """The transactions' hashes (hex) in order, pending or committed."""
        return self.tx_hashes or [r.tx_hash for r in self.receipts]


class SignedTx(msgspec.Struct, frozen=True, kw_only=True):
    """A signed transaction as the API carries it (docs/access-spec.md, *Transactions*)."""

    chain_id: str
    """The chain it is for."""
    genesis_hash: str
    """The genesis hash (hex) of the chain's network, which the signature covers."""
    sender: str
    """The signer's public key (hex)."""
    contract: str
    method: str
    args: str
    """Canonical MessagePack (hex) of the method's argument struct."""
    valid_until: int
    """Last block height that may include it."""
    nonce: int
    """Any unsigned 64-bit integer (the JSON carries it as text above 2^53 - 1; read here as an int)."""
    signature: str
    """The signature (hex) over the sign-bytes."""


class TxView(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /v1/chains/{chain}/txs/{hash}``: a transaction, and its receipt once committed."""

    hash: str
    """The transaction's hash (hex)."""
    status: Literal["pending", "committed"]
    """``pending`` (in the mempool) or ``committed``."""
    tx: SignedTx
    """The signed transaction as submitted (byte fields as hex)."""
    args_decoded: Any = None
    """``tx.args`` decoded from MessagePack (byte strings as hex)."""
    height: int | None = None
    """Height of the block holding it, when committed."""
    index: int | None = None
    """Its position in that block, when committed."""
    time: int | None = None
    """The block's time, when committed."""
    receipt: Outcome | None = None
    """What executing it gave, when committed."""


class HeaderView(msgspec.Struct, frozen=True, kw_only=True):
    """A block header (hashes and keys as hex)."""

    chain_id: str
    height: int
    time: int
    """Milliseconds since the Unix epoch, chosen by the proposer."""
    prev_hash: str
    """Hash of the previous block."""
    tx_count: int
    tx_root: str
    """Merkle root of the block's transaction hashes."""
    receipt_root: str
    """Merkle root of the block's receipts."""
    state_root: str
    """Root of the state after the block."""
    history_root: str
    """Root of the hashes of every earlier block."""
    validator_set_hash: str
    """Hash of the validator set that certifies the block."""
    proposer: str
    """The proposer's public key."""


class CommitSignature(msgspec.Struct, frozen=True, kw_only=True):
    """One validator's precommit in a commit certificate."""

    validator: str
    """The validator's public key (hex)."""
    signature: str
    """Its signature (hex)."""


class CommitView(msgspec.Struct, frozen=True, kw_only=True):
    """A commit certificate: more than 2/3 of the voting power signed the block."""

    height: int
    round: int
    """The consensus round that committed the block."""
    block_hash: str
    signatures: list[CommitSignature]


class BlockView(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /v1/chains/{chain}/blocks/{height}``."""

    height: int
    hash: str
    """The block's hash (hex): the hash of its header."""
    time: int
    """Milliseconds since the Unix epoch."""
    tx_count: int
    txs: list[str]
    """The transaction hashes (hex), in block order."""
    header: HeaderView
    commit: CommitView


class EvidenceRecord(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /v1/chains/{chain}/evidence/{digest}``: one deposited digest."""

    digest: str
    """The file digest deposited (hex, 32, 48 or 64 bytes)."""
    name: str
    """The name given with it, e.g. the file's name."""
    metadata: dict[str, str]
    """Free text pairs given with it; ``algorithm`` names the digest's hash when set."""
    payload: str
    """The payload (hex) given with it, up to 64 KiB."""
    owner: str
    """The depositor's public key (hex)."""
    height: int
    """Height of the block of the deposit."""
    time: int
    """That block's time, milliseconds since the Unix epoch."""
    tx_hash: str
    """The deposit transaction (hex)."""


class EvidencePage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of ``GET /v1/chains/{chain}/evidence?owner=...``, oldest first."""

    items: list[EvidenceRecord]
    next_cursor: str | None
    """Pass back as ``cursor`` for the next page; None when there is nothing more now."""


class ProofBundle(msgspec.Struct, frozen=True, kw_only=True):
    """An offline proof bundle (docs/proof-format.md), as fetched: ``verify_proof`` takes it.

    ``document`` is the bundle's JSON value exactly as the gateway sent it (read strictly: no
    repeated key, strict UTF-8), so saving it and verifying it later checks the same bytes'
    meaning; the properties only read it.
    """

    document: dict[str, Any]
    """The bundle's JSON object."""

    @property
    def format(self) -> str:
        return str(self.document.get("format", ""))

    @property
    def chain_id(self) -> str:
        return str(self.document.get("chain_id", ""))

    @property
    def suite(self) -> str:
        return str(self.document.get("suite", ""))


class StateValue(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /v1/chains/{chain}/state/{key}``: a key's value, or its absence, at a height."""

    chain_id: str
    key: str
    """The state key (hex; docs/state-layout.md)."""
    height: int
    """The block after which the state was read."""
    present: bool
    value: str | None
    """The value (hex); None when the key was absent."""
    proof: ProofBundle | None = None
    """With ``proof=True``: the offline state bundle (``zhongshu-state-proof/1``)."""


class EvidenceAt(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /v1/chains/{chain}/evidence/{digest}?height=H``: a deposit, or none, as of a height."""

    digest: str
    height: int
    """The block after which the state was read."""
    present: bool
    record: EvidenceRecord | None
    """The deposit; None when the digest was not deposited by then."""
    proof: ProofBundle | None = None
    """With ``proof=True``: the offline state bundle proving the record or its absence."""


__all__ = [
    "BlockView",
    "ChainPage",
    "ChainStatus",
    "CommitSignature",
    "CommitView",
    "DepositResult",
    "EvidenceAt",
    "EvidencePage",
    "EvidenceRecord",
    "Event",
    "HeaderView",
    "Outcome",
    "ProofBundle",
    "StateValue",
    "Receipt",
    "SignedTx",
    "SubmitResult",
    "TxView",
]
