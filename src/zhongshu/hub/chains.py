"""Business chains on the hub: their records, ``hub.chain.create``/``stop``, and their geneses.

State keys:
  ``hub/c/<chain name>`` -> ChainRecord
  ``hub/cl``             -> NameList (every chain name, in order of creation)

A chain's genesis is not stored: ``derive_genesis`` computes it from the record and the nodes'
keys, so every node that reads the same hub state starts the chain from the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from zhongshu.codec import decode, encode
from zhongshu.crypto import SUITE_NAMES
from zhongshu.execution.context import CallContext, StateReader
from zhongshu.execution.errors import InvalidArguments
from zhongshu.hub.roles import (
    STATUS_ACTIVE,
    Conflict,
    NameList,
    NodeKeys,
    NotAllowed,
    NotFound,
    check_name,
    get_node,
    get_org,
    is_operator,
    list_nodes,
)
from zhongshu.ledger.types import ChainParams, Genesis, Validator, ValidatorSet

HUB_CHAIN = "hub"
"""The hub chain's own name, which no business chain may take."""
STATUS_STOPPED = "stopped"
MAX_VALIDATORS = 64
MAX_CHAIN_ORGS = 256
CHAIN_LIST_KEY = b"hub/cl"

PARAM_BOUNDS = {
    "block_interval_ms": (10, 60_000),
    "max_block_txs": (1, 100_000),
    "max_block_bytes": (64 * 1024, 64 * 1024 * 1024),
    "max_tx_bytes": (1024, 4 * 1024 * 1024),
}
"""Inclusive bounds of each block parameter a business chain may ask for."""


class ChainRecord(msgspec.Struct, array_like=True, frozen=True, tag="hub.chain"):
    name: str
    """The chain id (NAME_PATTERN, not ``hub``); never reused, not even after a stop."""
    suite: str
    """``sm`` or ``intl``."""
    validators: list[str]
    """Names of registered nodes, in order; each validates with power 1."""
    params: ChainParams
    orgs: list[str]
    """Member organizations: only their applications may be granted access to the chain."""
    status: str
    """``active`` or ``stopped``."""
    height: int
    """Hub height of the creating transaction."""
    time: int
    """Time of the creating hub block: the chain's genesis time."""
    stopped_height: int = 0
    """Hub height of the stop; 0 while active."""


class ChainCreate(msgspec.Struct, array_like=True, frozen=True, tag="hub.chain.create"):
    name: str
    suite: str
    validators: list[str]
    params: ChainParams
    orgs: list[str]


class ChainStop(msgspec.Struct, array_like=True, frozen=True, tag="hub.chain.stop"):
    name: str


def chain_key(name: str) -> bytes:
    return b"hub/c/" + name.encode()


def get_chain(read: StateReader, name: str) -> ChainRecord | None:
    raw = read(chain_key(name))
    return None if raw is None else decode(raw, ChainRecord, canonical=False)


def list_chain_names(read: StateReader) -> list[str]:
    raw = read(CHAIN_LIST_KEY)
    return [] if raw is None else decode(raw, NameList, canonical=False).names


def list_chains(read: StateReader) -> list[ChainRecord]:
    """Every business chain the hub created, stopped ones included, in order of creation."""
    return [c for c in (get_chain(read, n) for n in list_chain_names(read)) if c is not None]


def check_params(params: ChainParams) -> None:
    """Each block parameter within PARAM_BOUNDS, and a transaction no larger than a block."""
    for field, (low, high) in PARAM_BOUNDS.items():
        value = getattr(params, field)
        if not low <= value <= high:
            raise InvalidArguments(f"{field} must be from {low} to {high}, got {value}")
    # A transaction must fit in a block.
    if params.max_tx_bytes > params.max_block_bytes:
        raise InvalidArguments(
            f"max_tx_bytes {params.max_tx_bytes} exceeds max_block_bytes {params.max_block_bytes}"
        )


def check_chain_create(args: ChainCreate) -> None:
    """Limits of ``hub.chain.create``: a name of NAME_PATTERN other than ``hub``, a known suite,
    1 to 64 distinct validators, block parameters in bounds, at most 256 distinct member orgs."""
    check_name(args.name, "chain name")
    # The hub chain's name is taken.
    if args.name == HUB_CHAIN:
        raise InvalidArguments(f"chain name {HUB_CHAIN!r} is the hub chain's own")
    # The suite is one a chain can use.
    if args.suite not in SUITE_NAMES:
        raise InvalidArguments(f"suite {args.suite!r} is not one of {', '.join(SUITE_NAMES)}")
    # A chain has at least one validator, and a bounded number.
    if not 1 <= len(args.validators) <= MAX_VALIDATORS:
        raise InvalidArguments(f"a chain has 1 to {MAX_VALIDATORS} validators, got {len(args.validators)}")
    for name in args.validators:
        check_name(name, "validator node")
    # No node validates twice.
    if len(set(args.validators)) != len(args.validators):
        raise InvalidArguments("validators lists a node twice")
    check_params(args.params)
    if len(args.orgs) > MAX_CHAIN_ORGS:
        raise InvalidArguments(f"a chain has at most {MAX_CHAIN_ORGS} member organizations")
    for org_id in args.orgs:
        check_name(org_id, "org id")
    if len(set(args.orgs)) != len(args.orgs):
        raise InvalidArguments("orgs lists an organization twice")


def chain_create(ctx: CallContext, args: ChainCreate) -> ChainRecord:
    """Record a new business chain (operator only); its validators' nodes start it from
    ``derive_genesis`` once this transaction is committed."""
    check_chain_create(args)
    read = ctx.state.get
    # Only the operator creates chains.
    if not is_operator(read, ctx.sender):
        raise NotAllowed("only the operator may create a chain")
    # Chain names are never reused, not even a stopped chain's.
    if get_chain(read, args.name) is not None:
        raise Conflict(f"chain {args.name!r} already exists")
    # Every validator is a node the hub registered.
    for name in args.validators:
        if get_node(read, name) is None:
            known = ", ".join(n.name for n in list_nodes(read)) or "none"
            raise NotFound(f"no node named {name!r} (registered: {known})")
    # Every member organization exists and is active.
    for org_id in args.orgs:
        org = get_org(read, org_id)
        if org is None:
            raise NotFound(f"no organization {org_id!r}")
        if org.status != STATUS_ACTIVE:
            raise Conflict(f"organization {org_id!r} is {org.status}")
    record = ChainRecord(
        args.name,
        args.suite,
        list(args.validators),
        args.params,
        list(args.orgs),
        STATUS_ACTIVE,
        ctx.height,
        ctx.time,
    )
    ctx.state.set(chain_key(args.name), encode(record))
    ctx.state.set(CHAIN_LIST_KEY, encode(NameList([*list_chain_names(read), args.name])))
    ctx.emit("chain-created", {"name": args.name, "suite": args.suite, "validators": args.validators})
    return record


def check_chain_stop(args: ChainStop) -> None:
    check_name(args.name, "chain name")


def chain_stop(ctx: CallContext, args: ChainStop) -> ChainRecord:
    """Stop a business chain (operator only): its nodes stop producing blocks; the record stays."""
    check_chain_stop(args)
    read = ctx.state.get
    # Only the operator stops chains.
    if not is_operator(read, ctx.sender):
        raise NotAllowed("only the operator may stop a chain")
    record = get_chain(read, args.name)
    if record is None:
        raise NotFound(f"no chain {args.name!r}")
    # A chain stops once; stopping is final.
    if record.status != STATUS_ACTIVE:
        raise Conflict(f"chain {args.name!r} is already {record.status}")
    stopped = msgspec.structs.replace(record, status=STATUS_STOPPED, stopped_height=ctx.height)
    ctx.state.set(chain_key(args.name), encode(stopped))
    ctx.emit("chain-stopped", {"name": args.name})
    return stopped


class ChainSpecError(ValueError):
    """A chain record whose genesis cannot be derived from the nodes given."""


def derive_genesis(record: ChainRecord, nodes: Iterable[NodeKeys]) -> Genesis:
    """A business chain's genesis, a pure function of its hub record and the nodes' keys.

    chain id = the record's name; suite = its suite; time = the creating hub block's time;
    validators = the named nodes in the record's order, each with its key of the chain's suite,
    power 1 and its node name; params = the record's. Raise ChainSpecError if a named node is
    missing from ``nodes``.
    """
    by_name = {n.name: n for n in nodes}
    validators = []
    for name in record.validators:
        node = by_name.get(name)
        # Each validator is among the nodes given.
        if node is None:
            raise ChainSpecError(f"chain {record.name!r} names the node {name!r}, which is not given")
        validators.append(Validator(node.key_for(record.suite), 1, name))
    return Genesis(record.name, record.suite, record.time, ValidatorSet(validators), record.params)


def derive_genesis_from_state(read: StateReader, name: str) -> Genesis:
    """The genesis of the hub's chain ``name``, from hub state; ChainSpecError if it has none."""
    record = get_chain(read, name)
    if record is None:
        raise ChainSpecError(f"the hub holds no chain {name!r}")
    return derive_genesis(record, list_nodes(read))
