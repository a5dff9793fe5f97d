"""Read routes over the hub chain's committed state: chains, organizations, apps, nodes, members.

``hub_router(hub)`` answers from the hub node's store (``state_reader``, one consistent snapshot
per request) through the query helpers of ``zhongshu.hub``; nothing here writes. A business
chain's genesis is derived from its record and the nodes' keys exactly as its validators derive
it (``derive_genesis``), so ``genesis_hash`` here is the hash every validator starts the chain
from. Keys and hashes are lowercase hex; unknown names are ``not-found`` problems and malformed
ones ``bad-request`` (the gateway's handler of ``errors.Refused`` writes the problem document).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter
from pydantic import Field

from zhongshu.crypto import get_suite
from zhongshu.gateway.openapi import answers
from zhongshu.gateway.schemas import Genesis, Hash, Hex, Schema
from zhongshu.hub import (
    AppRecord,
    ChainRecord,
    MemberRecord,
    NodeKeys,
    OrgRecord,
    derive_genesis,
    get_app,
    get_chain,
    get_member,
    get_org,
    list_chains,
    list_nodes,
)
from zhongshu.hub.registry import APP_ID_PATTERN
from zhongshu.ledger.genesis import genesis_to_json
from zhongshu.ledger.hashing import compute_genesis_hash
from zhongshu.node import errors
from zhongshu.node.chain import ChainNode

Reader = Callable[[bytes], bytes | None]

KEY_CURRENT = "current"
KEY_RETIRED = "retired"


# -- schemas (for the OpenAPI document) -------------------------------------------------------


class HubParams(Schema):
    block_interval_ms: int
    max_block_txs: int
    max_block_bytes: int
    max_tx_bytes: int


class HubChain(Schema):
    """A business chain's hub record, with the hash of the genesis its validators start it from."""

    name: str
    suite: str = Field(description="sm or intl")
    validators: list[str] = Field(description="node names, in order; each validates with power 1")
    params: HubParams
    orgs: list[str] = Field(description="member organizations: only their apps may be granted the chain")
    status: str = Field(description="active or stopped")
    height: int = Field(description="hub height of the creating transaction")
    time: int = Field(description="time of the creating hub block (the chain's genesis time), ms")
    stopped_height: int = Field(description="hub height of the stop; 0 while active")
    genesis_hash: Hash = Field(description="hash of the derived genesis (GET .../genesis)")


class HubChainPage(Schema):
    """Every business chain, in order of creation, in one page."""

    items: list[HubChain]
    next_cursor: str | None = Field(description="always null: every chain is in the page")


class HubOrg(Schema):
    """An organization: its admins' keys and status."""

    org_id: str
    name: str
    admins: list[Hex]
    status: str = Field(description="active or disabled")
    height: int
    time: int


class HubGrant(Schema):
    chain: str
    contract: str
    methods: list[str] = Field(description='method names, or ["*"] for every method')


class HubQuota(Schema):
    requests_per_second: int
    txs_per_day: int


class HubAppKey(Schema):
    public_key: Hex
    status: str = Field(description="current, or retired by a rotation")
    since_height: int
    until_height: int = Field(description="hub height of the rotation that retired it; 0 if current")


class HubApp(Schema):
    """An application: its current SM2 key, every key it held, grants, quota and status."""

    app_id: str
    org_id: str
    name: str
    public_key: Hex = Field(description="the current SM2 key")
    grants: list[HubGrant]
    quota: HubQuota
    status: str = Field(description="active or disabled")
    keys: list[HubAppKey] = Field(description="oldest first; the last is the current one")
    height: int
    time: int
    disabled_height: int


class HubNode(Schema):
    name: str
    sm_key: Hex = Field(description="SM2 validator key (65 bytes), used on chains of suite sm")
    intl_key: Hex = Field(description="Ed25519 validator key (32 bytes), used on chains of suite intl")


class HubNodePage(Schema):
    """Every node the hub registered, in registration order, in one page."""

    items: list[HubNode]
    next_cursor: str | None = Field(description="always null: every node is in the page")


class HubMember(Schema):
    """A key's role in an organization."""

    public_key: Hex
    org_id: str
    role: str
    added_by: Hex
    height: int
    time: int


# -- views ------------------------------------------------------------------------------------


def chain_view(record: ChainRecord, nodes: Iterable[NodeKeys]) -> dict[str, Any]:
    """A chain record as JSON, with the hash of the genesis derived from it and ``nodes``."""
    genesis = derive_genesis(record, nodes)
    genesis_hash = compute_genesis_hash(get_suite(record.suite).hasher(), genesis)
    return {
        "name": record.name,
        "suite": record.suite,
        "validators": list(record.validators),
        "params": genesis_to_json(genesis)["params"],
        "orgs": list(record.orgs),
        "status": record.status,
        "height": record.height,
        "time": record.time,
        "stopped_height": record.stopped_height,
        "genesis_hash": genesis_hash.hex(),
    }


def org_view(org: OrgRecord) -> dict[str, Any]:
    return {
        "org_id": org.org_id,
        "name": org.name,
        "admins": [k.hex() for k in org.admins],
        "status": org.status,
        "height": org.height,
        "time": org.time,
    }


def app_view(app: AppRecord) -> dict[str, Any]:
    """An app record as JSON; each key it held is ``current`` or ``retired`` (by a rotation)."""
    return {
        "app_id": app.app_id,
        "org_id": app.org_id,
        "name": app.name,
        "public_key": app.public_key.hex(),
        "grants": [
            {"chain": g.chain, "contract": g.contract, "methods": list(g.methods)} for g in app.grants
        ],
        "quota": {
            "requests_per_second": app.quota.requests_per_second,
            "txs_per_day": app.quota.txs_per_day,
        },
        "status": app.status,
        "keys": [
            {
                "public_key": k.public_key.hex(),
                "status": KEY_CURRENT if k.public_key == app.public_key else KEY_RETIRED,
                "since_height": k.since_height,
                "until_height": k.until_height,
            }
            for k in app.keys
        ],
        "height": app.height,
        "time": app.time,
        "disabled_height": app.disabled_height,
    }


def node_view(node: NodeKeys) -> dict[str, Any]:
    return {"name": node.name, "sm_key": node.sm_key.hex(), "intl_key": node.intl_key.hex()}


def member_view(member: MemberRecord) -> dict[str, Any]:
    return {
        "public_key": member.public_key.hex(),
        "org_id": member.org_id,
        "role": member.role,
        "added_by": member.added_by.hex(),
        "height": member.height,
        "time": member.time,
    }


def parse_public_key(value: str) -> bytes:
    """A public key from the path: hex digits only; BadRequest otherwise."""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    # Hex digits and nothing else (no prefix, no spaces), at least one byte.
    if not raw or raw.hex() != value.lower():
        raise errors.BadRequest(f"a public key is hex digits (65 bytes SM2, 32 Ed25519), not {value[:80]!r}")
    return raw


# -- routes -----------------------------------------------------------------------------------


def hub_router(hub: ChainNode) -> APIRouter:
    """The read routes under ``/v1/hub`` over the committed state of ``hub`` (the node's hub chain)."""
    router = APIRouter(prefix="/v1/hub", tags=["hub"])

    @contextmanager
    def reading() -> Iterator[Reader]:
        with hub.store.state_reader() as read:
            yield read

    def chain_record(read: Reader, name: str) -> ChainRecord:
        record = get_chain(read, name)
        # The hub created a chain of that name (stopped ones included).
        if record is None:
            raise errors.NotFound(f"the hub holds no chain {name[:80]!r}; GET /v1/hub/chains lists them")
        return record

    @router.get("/chains", responses=answers(HubChainPage))
    async def hub_chains() -> Any:
        """Every business chain the hub created (stopped ones too), in order of creation."""
        with reading() as read:
            nodes = list_nodes(read)
            items = [chain_view(record, nodes) for record in list_chains(read)]
        return {"items": items, "next_cursor": None}

    @router.get("/chains/{name}", responses=answers(HubChain, "not-found"))
    async def hub_chain(name: str) -> Any:
        """One business chain's record and the hash of its derived genesis."""
        with reading() as read:
            return chain_view(chain_record(read, name), list_nodes(read))

    @router.get("/chains/{name}/genesis", responses=answers(Genesis, "not-found"))
    async def hub_chain_genesis(name: str) -> Any:
        """The genesis every validator of the chain derives from its hub record (the form of
        ``GET /v1/chains/{chain}/genesis``)."""
        with reading() as read:
            return genesis_to_json(derive_genesis(chain_record(read, name), list_nodes(read)))

    @router.get("/orgs/{org_id}", responses=answers(HubOrg, "not-found"))
    async def hub_org(org_id: str) -> Any:
        """An organization: name, admins' keys, status."""
        with reading() as read:
            org = get_org(read, org_id)
        # The hub holds the organization.
        if org is None:
            raise errors.NotFound(f"the hub holds no organization {org_id[:80]!r}")
        return org_view(org)

    @router.get("/apps/{app_id}", responses=answers(HubApp, "bad-request", "not-found"))
    async def hub_app(app_id: str) -> Any:
        """An application: current and retired keys, grants, quota, status."""
        # An app id is app- and 16 lowercase hex digits (what `app register` printed).
        if not APP_ID_PATTERN.fullmatch(app_id):
            raise errors.BadRequest(f"an app id is 'app-' and 16 lowercase hex digits, not {app_id[:80]!r}")
        with reading() as read:
            app = get_app(read, app_id)
        # The hub registered the app.
        if app is None:
            raise errors.NotFound(f"the hub holds no application {app_id!r}")
        return app_view(app)

    @router.get("/nodes", responses=answers(HubNodePage))
    async def hub_nodes() -> Any:
        """Every node the hub registered (``hub.init``), with its SM2 and Ed25519 keys."""
        with reading() as read:
            items = [node_view(n) for n in list_nodes(read)]
        return {"items": items, "next_cursor": None}

    @router.get("/members/{public_key}", responses=answers(HubMember, "bad-request", "not-found"))
    async def hub_member(public_key: str) -> Any:
        """A key's organization and role."""
        key = parse_public_key(public_key)
        with reading() as read:
            member = get_member(read, key)
        # The key holds a role in an organization.
        if member is None:
            raise errors.NotFound(f"the key {key.hex()[:16]}... is no member of any organization")
        return member_view(member)

    return router
