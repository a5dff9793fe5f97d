"""The hub chain's contracts: ``hub.init``, organizations, members, applications and chains.

State keys of applications (the others: hub/roles.py and hub/chains.py):
  ``hub/a/<app id>``      -> AppRecord
  ``hub/ak/<public key>`` -> the app id (UTF-8), for every key an app has held, current or old

The hub starts from a genesis (ledger types, unchanged) that holds no state. Its initial state
(operator, nodes) is written by one transaction, ``hub.init``, at height 1, signed by the first
validator of that genesis: the registry is built with the genesis to know that key. docs/hub.md
has the permission table and the reasons.
"""

from __future__ import annotations

import re

import msgspec

from zhongshu.codec import decode, encode
from zhongshu.contracts import evidence
from zhongshu.crypto import InvalidKey, get_suite
from zhongshu.execution.context import CallContext, StateReader
from zhongshu.execution.errors import InvalidArguments
from zhongshu.execution.registry import Contract, Handler, Method, Registry
from zhongshu.hub import chains, roles
from zhongshu.hub.chains import STATUS_STOPPED, get_chain
from zhongshu.hub.roles import (
    MAX_NODES,
    STATUS_ACTIVE,
    STATUS_DISABLED,
    Conflict,
    NodeKeys,
    NotAllowed,
    NotFound,
    Operator,
    app_key_index,
    check_key_size,
    check_name,
    check_text,
    get_member,
    get_operator,
    get_org,
    hub_genesis_writes,
    is_operator,
    is_org_admin,
    is_regulator,
)
from zhongshu.ledger.types import Genesis

ALL_METHODS = "*"
MAX_GRANTS = 64
MAX_METHODS = 64
MAX_IDENTIFIER = 64
"""Longest contract or method name in a grant, in bytes."""
QUOTA_BOUNDS = {"requests_per_second": (1, 100_000), "txs_per_day": (1, 1_000_000_000)}
APP_ID_PATTERN = re.compile(r"app-[0-9a-f]{16}")
SM2_KEY_SIZE = 65


class HubInit(msgspec.Struct, array_like=True, frozen=True, tag="hub.init"):
    operator: bytes
    """The operator's key, a key of the hub chain's suite."""
    nodes: list[NodeKeys]
    """Every node the hub runs, with both validator keys."""


class Grant(msgspec.Struct, array_like=True, frozen=True):
    chain: str
    """A business chain whose member organizations include the app's."""
    contract: str
    methods: list[str]
    """Method names, or ``["*"]`` for every method of the contract."""


class Quota(msgspec.Struct, array_like=True, frozen=True):
    requests_per_second: int
    txs_per_day: int


class AppKey(msgspec.Struct, array_like=True, frozen=True):
    public_key: bytes
    since_height: int
    """Hub height at which the key became the app's."""
    until_height: int = 0
    """Hub height of the rotation that retired it; 0 for the current key."""


class AppRecord(msgspec.Struct, array_like=True, frozen=True, tag="hub.app"):
    app_id: str
    """``app-`` + the first 16 hex digits of H(["hub.app", org id, name, tx hash]), H the hub's hash."""
    org_id: str
    name: str
    public_key: bytes
    """The current SM2 key (65 bytes) the app authenticates with at the gateway."""
    grants: list[Grant]
    quota: Quota
    status: str
    """``active`` or ``disabled`` (final)."""
    keys: list[AppKey]
    """Every key the app has held, oldest first; the last is the current one."""
    height: int
    time: int
    disabled_height: int = 0


class AppRegister(msgspec.Struct, array_like=True, frozen=True, tag="hub.app.register"):
    org_id: str
    name: str
    public_key: bytes
    grants: list[Grant]
    quota: Quota


class AppRotateKey(msgspec.Struct, array_like=True, frozen=True, tag="hub.app.rotate-key"):
    app_id: str
    public_key: bytes
    """The new SM2 key."""


class AppDisable(msgspec.Struct, array_like=True, frozen=True, tag="hub.app.disable"):
    app_id: str


class AppKeyView(msgspec.Struct, frozen=True):
    """What the hub knows of one key: the app that holds or held it."""

    app: AppRecord
    current: bool
    """False for a key the app rotated away from: it must no longer authenticate."""


def app_key(app_id: str) -> bytes:
    return b"hub/a/" + app_id.encode()


def get_app(read: StateReader, app_id: str) -> AppRecord | None:
    """The app's record: its current key is ``public_key``, its status ``status``."""
    raw = read(app_key(app_id))
    return None if raw is None else decode(raw, AppRecord, canonical=False)


def get_app_by_key(read: StateReader, public_key: bytes) -> AppKeyView | None:
    """The app that holds or held ``public_key``, and whether the key is still its current one."""
    raw = read(app_key_index(public_key))
    app = None if raw is None else get_app(read, raw.decode())
    return None if app is None else AppKeyView(app, app.public_key == public_key)


def is_granted(read: StateReader, app_id: str, chain: str, contract: str, method: str) -> bool:
    """May the app call ``contract.method`` on ``chain``: the app and its organization active,
    the chain active with the organization among its members, and a grant naming the chain,
    the contract and the method (or ``*``)."""
    app = get_app(read, app_id)
    if app is None or app.status != STATUS_ACTIVE:
        return False
    org = get_org(read, app.org_id)
    record = get_chain(read, chain)
    if org is None or org.status != STATUS_ACTIVE or record is None or record.status != STATUS_ACTIVE:
        return False
    if app.org_id not in record.orgs:
        return False
    return any(
        g.chain == chain and g.contract == contract and (ALL_METHODS in g.methods or method in g.methods)
        for g in app.grants
    )


def check_init(args: HubInit) -> None:
    """Limits of ``hub.init``: an operator key, 1 to 256 nodes of distinct names and keys."""
    check_key_size(args.operator, "operator key")
    if not 1 <= len(args.nodes) <= MAX_NODES:
        raise InvalidArguments(f"the hub has 1 to {MAX_NODES} nodes, got {len(args.nodes)}")
    for node in args.nodes:
        check_name(node.name, "node name")
        # Each node has a key of each suite's size.
        if len(node.sm_key) != SM2_KEY_SIZE or len(node.intl_key) != 32:
            raise InvalidArguments(f"node {node.name!r} needs a 65-byte SM2 key and a 32-byte Ed25519 key")
    # Names and keys are each used once.
    if len({n.name for n in args.nodes}) != len(args.nodes):
        raise InvalidArguments("nodes lists a name twice")
    if len({k for n in args.nodes for k in (n.sm_key, n.intl_key)}) != 2 * len(args.nodes):
        raise InvalidArguments("nodes lists a key twice")


def _make_init(genesis: Genesis | None) -> Handler:
    def init(ctx: CallContext, args: HubInit) -> Operator:
        """Write the hub's initial state (hub_genesis_writes): once, before any other hub
        record, signed by the genesis's first validator; every hub validator is among the nodes.

        Not bound to height 1: the hub's validators make an empty block when the heartbeat is
        due (nodes started long after ``network init``), and a hub must stay initialisable then.
        Until it is, every other hub method is refused (no operator, no organization)."""
        check_init(args)
        # The registry knows the genesis whose first validator may initialise.
        if genesis is None:
            raise NotAllowed("hub.init needs the hub's genesis, and this registry was built without one")
        # Only on the hub chain the registry was built for.
        if ctx.chain_id != genesis.chain_id:
            raise NotAllowed(f"hub.init runs on the hub chain {genesis.chain_id!r}, not {ctx.chain_id!r}")
        # Only the key the genesis names first.
        if ctx.sender != genesis.validators.validators[0].public_key:
            raise NotAllowed("only the genesis's first validator may initialise the hub")
        # Only once.
        if get_operator(ctx.state.get) is not None:
            raise Conflict("the hub is already initialised")
        # The operator's key is one of the hub's suite; each node's keys are valid for theirs.
        checks = [(genesis.suite, args.operator, "operator key")]
        for node in args.nodes:
            checks += [("sm", node.sm_key, f"node {node.name} SM2 key")]
            checks += [("intl", node.intl_key, f"node {node.name} Ed25519 key")]
        for suite, key, what in checks:
            try:
                get_suite(suite).check_public_key(key)
            except InvalidKey as exc:
                raise InvalidArguments(f"hub.init: {what}: {exc}") from None
        # Every validator of the hub chain is one of the registered nodes.
        node_keys = {n.key_for(genesis.suite) for n in args.nodes}
        for v in genesis.validators.validators:
            if v.public_key not in node_keys:
                raise InvalidArguments(
                    f"hub validator {v.name or v.public_key.hex()[:16]!r} is not among the nodes"
                )
        for key, value in hub_genesis_writes(args.operator, list(args.nodes), genesis.suite).items():
            ctx.state.set(key, value)
        ctx.emit("initialised", {"operator": args.operator, "nodes": [n.name for n in args.nodes]})
        return Operator(args.operator, genesis.suite)

    return init


def _check_sm2_key(public_key: bytes, what: str) -> None:
    # An application authenticates at the gateway with an SM2 key.
    if len(public_key) != SM2_KEY_SIZE:
        raise InvalidArguments(f"{what} must be a 65-byte SM2 public key, got {len(public_key)} bytes")


def check_app_register(args: AppRegister) -> None:
    """Limits of ``hub.app.register``: org id, name, an SM2 key's size, at most 64 grants of
    distinct (chain, contract) with 1 to 64 methods (``*`` alone), quotas in QUOTA_BOUNDS."""
    check_name(args.org_id, "org id")
    check_text(args.name, "app name")
    _check_sm2_key(args.public_key, "app key")
    if len(args.grants) > MAX_GRANTS:
        raise InvalidArguments(f"an app has at most {MAX_GRANTS} grants, got {len(args.grants)}")
    for g in args.grants:
        check_name(g.chain, "grant chain")
        if not 1 <= len(g.contract.encode()) <= MAX_IDENTIFIER:
            raise InvalidArguments(f"grant contract must be 1 to {MAX_IDENTIFIER} bytes")
        if not 1 <= len(g.methods) <= MAX_METHODS:
            raise InvalidArguments(f"a grant names 1 to {MAX_METHODS} methods, got {len(g.methods)}")
        if any(not 1 <= len(m.encode()) <= MAX_IDENTIFIER for m in g.methods):
            raise InvalidArguments(f"grant method names must be 1 to {MAX_IDENTIFIER} bytes")
        # "*" stands alone: every method.
        if ALL_METHODS in g.methods and len(g.methods) != 1:
            raise InvalidArguments("a grant's methods are either '*' alone or a list of names")
        if len(set(g.methods)) != len(g.methods):
            raise InvalidArguments(f"grant on {g.chain}/{g.contract} lists a method twice")
    # One grant per (chain, contract).
    if len({(g.chain, g.contract) for g in args.grants}) != len(args.grants):
        raise InvalidArguments("grants lists a (chain, contract) twice")
    for field, (low, high) in QUOTA_BOUNDS.items():
        value = getattr(args.quota, field)
        if not low <= value <= high:
            raise InvalidArguments(f"quota {field} must be from {low} to {high}, got {value}")


def _check_new_app_key(read: StateReader, public_key: bytes) -> None:
    # The key is a point of SM2.
    try:
        get_suite("sm").check_public_key(public_key)
    except InvalidKey as exc:
        raise InvalidArguments(f"app key: {exc}") from None
    # One key, one identity: no app has held it, no member holds it.
    if read(app_key_index(public_key)) is not None:
        raise Conflict(f"key {public_key.hex()[:16]}… already belongs to an application")
    if get_member(read, public_key) is not None:
        raise Conflict(f"key {public_key.hex()[:16]}… is a member's key")


def compute_app_id(hash_name: str, org_id: str, name: str, tx_hash: bytes) -> str:
    """``app-`` + the first 16 hex digits of H(canonical ["hub.app", org id, name, tx hash])."""
    return "app-" + get_suite(hash_name).hash(encode(["hub.app", org_id, name, tx_hash]))[:8].hex()


def app_register(ctx: CallContext, args: AppRegister) -> AppRecord:
    """Register an application of an organization (an admin of that organization only)."""
    check_app_register(args)
    read = ctx.state.get
    # Only an admin of the owning (active) organization registers its apps.
    if not is_org_admin(read, ctx.sender, args.org_id):
        raise NotAllowed(f"only an admin of {args.org_id!r} may register its applications")
    _check_new_app_key(read, args.public_key)
    # Each grant is on an active chain of which the organization is a member.
    for g in args.grants:
        record = get_chain(read, g.chain)
        if record is None:
            raise NotFound(f"no chain {g.chain!r}")
        if record.status == STATUS_STOPPED:
            raise Conflict(f"chain {g.chain!r} is stopped")
        if args.org_id not in record.orgs:
            raise NotAllowed(f"organization {args.org_id!r} is not a member of chain {g.chain!r}")
    op = get_operator(read)
    app_id = compute_app_id(op.suite if op else "sm", args.org_id, args.name, ctx.tx_hash)
    # Ids do not collide (a 64-bit prefix of a hash over a unique tx hash).
    if get_app(read, app_id) is not None:
        raise Conflict(f"application id {app_id} is taken")
    app = AppRecord(
        app_id,
        args.org_id,
        args.name,
        args.public_key,
        list(args.grants),
        args.quota,
        STATUS_ACTIVE,
        [AppKey(args.public_key, ctx.height)],
        ctx.height,
        ctx.time,
    )
    ctx.state.set(app_key(app_id), encode(app))
    ctx.state.set(app_key_index(args.public_key), app_id.encode())
    ctx.emit("app-registered", {"app_id": app_id, "org_id": args.org_id, "name": args.name})
    return app


def _check_app_id(app_id: str) -> None:
    if not APP_ID_PATTERN.fullmatch(app_id):
        raise InvalidArguments(f"app id {app_id!r} is not 'app-' and 16 lowercase hex digits")


def check_app_rotate_key(args: AppRotateKey) -> None:
    _check_app_id(args.app_id)
    _check_sm2_key(args.public_key, "new app key")


def _load_app(read: StateReader, app_id: str) -> AppRecord:
    app = get_app(read, app_id)
    if app is None:
        raise NotFound(f"no application {app_id!r}")
    return app


def app_rotate_key(ctx: CallContext, args: AppRotateKey) -> AppRecord:
    """Replace an app's key (an admin of its organization, or the app's current key); the old
    key stays known as old."""
    check_app_rotate_key(args)
    read = ctx.state.get
    app = _load_app(read, args.app_id)
    # The app itself (current key only) or an admin of its organization.
    if ctx.sender != app.public_key and not is_org_admin(read, ctx.sender, app.org_id):
        raise NotAllowed(f"only an admin of {app.org_id!r} or the app's current key may rotate its key")
    # A disabled app keeps its last key.
    if app.status != STATUS_ACTIVE:
        raise Conflict(f"application {app.app_id} is {app.status}")
    # A disabled organization's apps lose every right, this one included.
    org = get_org(read, app.org_id)
    if org is None or org.status != STATUS_ACTIVE:
        raise Conflict(f"organization {app.org_id!r} is disabled")
    _check_new_app_key(read, args.public_key)
    keys = [*app.keys[:-1], msgspec.structs.replace(app.keys[-1], until_height=ctx.height)]
    keys.append(AppKey(args.public_key, ctx.height))
    rotated = msgspec.structs.replace(app, public_key=args.public_key, keys=keys)
    ctx.state.set(app_key(app.app_id), encode(rotated))
    ctx.state.set(app_key_index(args.public_key), app.app_id.encode())
    ctx.emit("app-key-rotated", {"app_id": app.app_id, "public_key": args.public_key})
    return rotated


def check_app_disable(args: AppDisable) -> None:
    _check_app_id(args.app_id)


def app_disable(ctx: CallContext, args: AppDisable) -> AppRecord:
    """Disable an app for good (an admin of its organization, the operator or a regulator)."""
    check_app_disable(args)
    read = ctx.state.get
    app = _load_app(read, args.app_id)
    # An admin of the owning organization, the operator or a regulator.
    allowed = (
        is_org_admin(read, ctx.sender, app.org_id)
        or is_operator(read, ctx.sender)
        or is_regulator(read, ctx.sender)
    )
    if not allowed:
        raise NotAllowed(f"only an admin of {app.org_id!r}, the operator or a regulator may disable an app")
    if app.status != STATUS_ACTIVE:
        raise Conflict(f"application {app.app_id} is already {app.status}")
    disabled = msgspec.structs.replace(app, status=STATUS_DISABLED, disabled_height=ctx.height)
    ctx.state.set(app_key(app.app_id), encode(disabled))
    ctx.emit("app-disabled", {"app_id": app.app_id})
    return disabled


def hub_contracts(genesis: Genesis | None = None) -> list[Contract]:
    """The hub chain's system contracts; ``genesis`` is the hub's, whose first validator may
    run ``hub.init`` (without it, ``hub.init`` is refused)."""
    return [
        Contract("hub", {"init": Method("init", HubInit, _make_init(genesis), check_init)}),
        Contract(
            "hub.org",
            {
                "create": Method("create", roles.OrgCreate, roles.org_create, roles.check_org_create),
                "disable": Method("disable", roles.OrgDisable, roles.org_disable, roles.check_org_disable),
            },
        ),
        Contract(
            "hub.member",
            {"add": Method("add", roles.MemberAdd, roles.member_add, roles.check_member_add)},
        ),
        Contract(
            "hub.app",
            {
                "register": Method("register", AppRegister, app_register, check_app_register),
                "rotate-key": Method("rotate-key", AppRotateKey, app_rotate_key, check_app_rotate_key),
                "disable": Method("disable", AppDisable, app_disable, check_app_disable),
            },
        ),
        Contract(
            "hub.chain",
            {
                "create": Method(
                    "create", chains.ChainCreate, chains.chain_create, chains.check_chain_create
                ),
                "stop": Method("stop", chains.ChainStop, chains.chain_stop, chains.check_chain_stop),
            },
        ),
    ]


def build_hub_registry(genesis: Genesis | None = None) -> Registry:
    """The hub chain's registry: evidence and the hub's system contracts."""
    registry = Registry()
    registry.register(evidence.CONTRACT)
    for contract in hub_contracts(genesis):
        registry.register(contract)
    return registry
