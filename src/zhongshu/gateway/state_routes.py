"""Point-in-time reads of a chain's state, each with a proof against that height's header.

``GET /v1/chains/{chain}/state/{key}`` answers a key's value (or its absence) after block
``height`` (default: the newest); with ``proof=true`` it carries the offline state bundle
(``zhongshu-state-proof/1``, docs/proof-format.md) that ``zhongshu verify`` checks. Evidence
by digest at a height is the same read of the key ``ev/d/<digest>`` (docs/state-layout.md),
answered by ``evidence_at`` for the evidence route.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query
from pydantic import Field

from zhongshu.codec import DecodeError, decode
from zhongshu.gateway.evidence_index import evidence_view
from zhongshu.gateway.openapi import answers
from zhongshu.gateway.schemas import EvidenceRecord, Hex, Schema
from zhongshu.ledger.evidence_args import EVIDENCE_KEY_PREFIX
from zhongshu.ledger.evidence_args import EvidenceRecord as Record
from zhongshu.node import errors
from zhongshu.node.chain import ChainNode, StateAt

MAX_KEY_BYTES = 1024
"""The longest state key a read names (keys the contracts write are far shorter)."""

HEIGHT = Query(None, ge=1, description="the height to read at (default: the newest block)")
PROOF = Query(False, description="true: include the offline state bundle (docs/proof-format.md)")
ANCHOR = Query("", description="`latest`: with proof, prove the block through the newest header too")


class StateBundle(Schema):
    """The offline state bundle, checked by `zhongshu verify` (docs/proof-format.md)."""

    format: str = Field(description="zhongshu-state-proof/<version>")
    suite: str
    chain_id: str
    state: dict[str, Any]
    block: dict[str, Any]
    commit: dict[str, Any] | None
    validator_set: dict[str, Any]
    anchor: dict[str, Any] | None


class StateValue(Schema):
    """A key's value, or its absence, after block ``height``."""

    chain_id: str
    key: Hex = Field(description="the state key (docs/state-layout.md)")
    height: int = Field(description="the block after which the state was read")
    present: bool
    value: Hex | None = Field(description="the value's bytes; null when the key was absent")
    proof: StateBundle | None = Field(description="with proof=true: the offline state bundle")


class EvidenceAt(Schema):
    """Whether a digest was deposited as of block ``height``: its record, or its absence."""

    digest: Hex
    height: int = Field(description="the block after which the state was read")
    present: bool
    record: EvidenceRecord | None = Field(description="the deposit; null when none was made by then")
    proof: StateBundle | None = Field(description="with proof=true: the offline state bundle")


def read_state(node: ChainNode, key: bytes, height: int | None) -> StateAt:
    """The state of ``key`` at ``height`` with its proof; NotFound for a height with no block."""
    if height is not None and height > node.height:
        raise errors.NotFound(f"no block at height {height} (chain height is {node.height})")
    if node.height == 0:
        raise errors.NotFound(f"chain {node.chain_id!r} has no block yet: no state to prove")
    return node.prove_state(key, height)


def _key_param(value: str) -> bytes:
    # The key is lowercase or uppercase hex digits, nothing else, 1 to MAX_KEY_BYTES bytes.
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if not raw or raw.hex() != value.lower():
        raise errors.BadRequest(
            f"key must be the state key's bytes in hex, e.g. 65762f64..., not {value[:80]!r}"
        )
    if len(raw) > MAX_KEY_BYTES:
        raise errors.BadRequest(f"key of {len(raw)} bytes is longer than {MAX_KEY_BYTES}")
    return raw


def evidence_at(
    node: ChainNode, digest: bytes, height: int | None, proof: bool, anchor: str
) -> dict[str, Any]:
    """The evidence route's answer at a height: the record or its absence, with the bundle."""
    state = read_state(node, EVIDENCE_KEY_PREFIX + digest, height)
    record = None
    if state.value is not None:
        try:
            record = evidence_view(decode(state.value, Record, canonical=False))
        except DecodeError as exc:
            raise RuntimeError(f"the evidence record of {digest.hex()} does not decode: {exc}") from None
    return {
        "digest": digest.hex(),
        "height": state.record.block.header.height,
        "present": record is not None,
        "record": record,
        "proof": node.build_state_proof(state, anchor_latest=anchor == "latest") if proof else None,
    }


def state_router(chain_of: Callable[[str], ChainNode]) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/v1/chains/{chain}/state/{key}",
        responses=answers(
            StateValue,
            "unknown-chain",
            "bad-request",
            "not-found",
            "invalid-request",
            "no-state-map",
            "state-pruned",
        ),
    )
    async def get_state(
        chain: str, key: str, height: int | None = HEIGHT, proof: bool = PROOF, anchor: str = ANCHOR
    ) -> Any:
        """A key's value (or absence) after block ``height``; ``proof=true`` adds the bundle."""
        node = chain_of(chain)
        state = read_state(node, _key_param(key), height)
        return {
            "chain_id": node.chain_id,
            "key": state.key.hex(),
            "height": state.record.block.header.height,
            "present": state.value is not None,
            "value": None if state.value is None else state.value.hex(),
            "proof": node.build_state_proof(state, anchor_latest=anchor == "latest") if proof else None,
        }

    return router
