"""The shapes of the API's bodies, for the OpenAPI document only.

The routes build their JSON with the views (``views.py``, ``evidence_index.py``) and encode it
with msgspec; these pydantic models declare what that JSON is, field by field, with the names
of docs/access-spec.md. No request or response passes through them: the transaction body is
still decoded by msgspec (``TxJSON``), which ``TxBody`` mirrors field for field (a test keeps
the two equal).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from zhongshu.node.txcheck import U64_TEXT

HEX_PATTERN = "^([0-9a-fA-F]{2})*$"

Hex = Annotated[str, Field(pattern=HEX_PATTERN, description="bytes as hex digits (the API writes lowercase)")]
Hash = Annotated[str, Field(pattern=HEX_PATTERN, description="a hash (SM3 or SHA-256, 32 bytes) as hex")]
U64 = (
    Annotated[int, Field(ge=0, lt=2**64)]
    | Annotated[str, Field(pattern=f"^({U64_TEXT})$", description="below 2^64, as decimal text")]
)
"""An unsigned 64-bit integer in JSON: the gateway writes a number up to 2^53 - 1 and decimal
text above (a reader of numbers as doubles rounds those); it takes either form for any value."""
Cursor = Annotated[
    str | None,
    Field(description="pass back unchanged as ?cursor= for the next page; null: nothing more now"),
]


class Schema(BaseModel):
    """Base of the API's schemas: the fields the gateway writes, more may come in later versions."""

    model_config = ConfigDict(extra="allow")


# -- problems ---------------------------------------------------------------------------


class BatchError(Schema):
    index: int = Field(description="position of the refused transaction in the batch")
    type: str = Field(description="its problem code, e.g. duplicate")
    detail: str


class Problem(Schema):
    """An RFC 9457 problem document (application/problem+json)."""

    type: str = Field(description="/problems/<code>: GET it for the code's description")
    title: str
    status: int = Field(description="the HTTP status")
    detail: str = Field(description="what went wrong and what to do about it")
    instance: str | None = Field(None, description="the request path")
    tx_hashes: list[Hash] | None = Field(
        None, description="commit-timeout: the transactions admitted, which may still commit"
    )
    errors: list[BatchError] | None = Field(None, description="batch-refused: each refused transaction")


class ProblemType(Schema):
    """One problem code the gateway can answer with."""

    type: str = Field(description="the URI a problem document of this code carries: /problems/<code>")
    code: str
    title: str
    status: int = Field(description="the HTTP status it comes with")
    description: str = Field(description="when it happens and what to do")


class ProblemTypePage(Schema):
    """Every problem code, in one page."""

    items: list[ProblemType]
    next_cursor: Cursor


# -- chains -----------------------------------------------------------------------------


class Metrics(Schema):
    """Where the node's time goes, summed since it started."""

    submit_requests: int
    verified_signatures: int
    verify_seconds: float
    verify_cpu_seconds: float = Field(
        description="CPU time the worker processes spent checking keys and signatures"
    )
    execute_seconds: float
    store_seconds: float
    map_worker_blocks: int = Field(
        description="Blocks whose state map update ran in the map worker process (large blocks)"
    )
    map_worker_cpu_seconds: float = Field(description="CPU time those updates took in the map worker process")
    blocks: int
    committed_txs: int
    process_cpu_seconds: float = Field(
        description="CPU time of the node: its process (every thread) and its worker processes"
    )
    workers_cpu_seconds: float = Field(
        description="CPU time of the worker processes alone (admission, signature checks, state map)"
    )


class ChainStatus(Schema):
    chain_id: str
    suite: Literal["sm", "intl"] = Field(description="sm: SM2/SM3; intl: Ed25519/SHA-256")
    height: int = Field(description="height of the latest block, 0 before the first")
    latest_block_hash: Hash | None
    latest_block_time: int | None = Field(description="milliseconds since the Unix epoch")
    genesis_hash: Hash = Field(description="what every transaction for this chain signs")
    validators: int = Field(description="number of validators")
    mempool_txs: int
    mempool_bytes: int
    metrics: Metrics
    consensus: dict[str, Any] | None = Field(
        None, description="networked nodes only: height, round and step in progress, peers"
    )


class ChainPage(Schema):
    items: list[ChainStatus]
    next_cursor: Cursor


class GenesisValidator(Schema):
    public_key: Hex
    power: int
    name: str


class GenesisParams(Schema):
    block_interval_ms: int
    max_block_txs: int
    max_block_bytes: int
    max_tx_bytes: int


class Genesis(Schema):
    """The genesis document, as the node's genesis.json holds it."""

    chain_id: str
    suite: Literal["sm", "intl"]
    time: int = Field(description="milliseconds since the Unix epoch")
    validators: list[GenesisValidator]
    params: GenesisParams


# -- transactions -----------------------------------------------------------------------


class TxBody(BaseModel):
    """A transaction as the API takes it (docs/access-spec.md, *Transactions*)."""

    model_config = ConfigDict(extra="forbid")

    chain_id: str = Field(description="the chain, e.g. main; equals the chain in the URL")
    genesis_hash: Hex = Field(description="the chain's genesis hash (32 bytes), from its status")
    sender: Hex = Field(description="the signer's public key: SM2 65 bytes 04‖x‖y, Ed25519 32 bytes")
    contract: str = Field(description="e.g. evidence")
    method: str = Field(description="e.g. put")
    args: Hex = Field(description="canonical MessagePack of the method's argument struct")
    valid_until: U64 = Field(
        description="last block height that may include it (u64: a number, or decimal text above 2^53 - 1)"
    )
    nonce: U64 = Field(
        description="any u64, makes identical transactions distinct (a number, or decimal text above 2^53-1)"
    )
    signature: Hex = Field(description="signature over the sign-bytes")


class Event(Schema):
    contract: str
    name: str
    data: Any = Field(description="the event's data, decoded from MessagePack (bytes as hex)")


class Receipt(Schema):
    status: Literal["ok", "failed"]
    result: Any = Field(description="the method's result, decoded (bytes as hex); null if none")
    error: str = Field(description="why it failed; empty when ok")
    events: list[Event]


class CommittedTx(Schema):
    """Where a transaction committed, and its receipt."""

    tx_hash: Hash
    height: int
    index: int = Field(description="position in its block")
    time: int = Field(description="the block's time, milliseconds since the Unix epoch")
    receipt: Receipt


class SubmitPending(Schema):
    """202: admitted to the mempool, not yet committed."""

    status: Literal["pending"]
    tx_hashes: list[Hash]


class SubmitCommitted(Schema):
    """200 with ?wait=commit: all committed."""

    status: Literal["committed"]
    receipts: list[CommittedTx]


class TxView(Schema):
    """A transaction; its block position and receipt once committed."""

    hash: Hash
    status: Literal["pending", "committed"]
    tx: TxBody
    args_decoded: Any = Field(description="args decoded from MessagePack (bytes as hex)")
    tx_hash: Hash | None = Field(None, description="when committed")
    height: int | None = Field(None, description="when committed")
    index: int | None = Field(None, description="when committed")
    time: int | None = Field(None, description="when committed")
    receipt: Receipt | None = Field(None, description="when committed")


class ProofBundle(Schema):
    """The offline proof bundle, checked by `zhongshu verify` (docs/proof-format.md)."""

    format: str = Field(description="zhongshu-proof/<version>")
    suite: Literal["sm", "intl"]
    chain_id: str
    tx: dict[str, Any]
    receipt: dict[str, Any]
    block: dict[str, Any]
    commit: dict[str, Any] | None
    validator_set: dict[str, Any]
    evidence: dict[str, Any] | None
    anchor: dict[str, Any] | None


# -- blocks -----------------------------------------------------------------------------


class HeaderView(Schema):
    chain_id: str
    height: int
    time: int
    prev_hash: Hash
    tx_count: int
    tx_root: Hash
    receipt_root: Hash
    state_root: Hash
    history_root: Hash
    validator_set_hash: Hash
    proposer: Hex = Field(description="the proposer's public key")


class CommitSignature(Schema):
    validator: Hex = Field(description="the validator's public key")
    signature: Hex


class CommitView(Schema):
    """The commit certificate, as a proof bundle carries it."""

    height: int
    round: int
    block_hash: Hash
    signatures: list[CommitSignature]


class BlockView(Schema):
    height: int
    hash: Hash
    time: int
    tx_count: int
    txs: list[Hash] = Field(description="the transaction hashes, in block order")
    header: HeaderView
    commit: CommitView


# -- evidence ---------------------------------------------------------------------------


class EvidenceRecord(Schema):
    digest: Hex = Field(description="the file digest deposited (32, 48 or 64 bytes)")
    name: str
    metadata: dict[str, str]
    payload: Hex
    owner: Hex = Field(description="the depositor's public key")
    height: int
    time: int
    tx_hash: Hash = Field(description="the deposit transaction")


class EvidencePage(Schema):
    items: list[EvidenceRecord]
    next_cursor: Cursor


# -- health -----------------------------------------------------------------------------


class ChainHealth(Schema):
    height: int
    networked: bool = Field(description="true for a replica of a multi-node network")
    peers: int = Field(description="validators connected to this node")
    power: int = Field(description="voting power of this node and its connected peers")
    total_power: int
    quorum: bool = Field(description="more than 2/3 of the voting power is connected (always for one node)")


class Health(Schema):
    status: Literal["ok"]
    chains: dict[str, ChainHealth] = Field(description="by chain id")


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    Problem,
    ProblemType,
    ProblemTypePage,
    ChainStatus,
    ChainPage,
    Genesis,
    TxBody,
    SubmitPending,
    SubmitCommitted,
    TxView,
    ProofBundle,
    BlockView,
    EvidenceRecord,
    EvidencePage,
    Health,
)
"""Every model the document names (those no route names directly are added to its components)."""
