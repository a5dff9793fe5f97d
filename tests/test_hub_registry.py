"""The hub chain's system contracts, run through the executor with real SM2-signed transactions.

Each test starts a hub on a dict-backed state: ``hub.init`` at height 1 by the genesis's first
validator, then one transaction per block. The permission table of docs/hub.md is checked as one
parametrized test (every actor against every action); then the life of organizations, members,
apps and chains, the refusals of bad arguments, and the derivation of a business chain's genesis.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from zhongshu.codec import decode, encode
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.execution.errors import InvalidArguments
from zhongshu.execution.executor import apply_transactions
from zhongshu.execution.registry import Registry
from zhongshu.hub import (
    ChainSpecError,
    build_hub_registry,
    derive_genesis,
    derive_genesis_from_state,
    get_app,
    get_app_by_key,
    get_chain,
    get_member,
    get_org,
    hub_genesis_writes,
    is_granted,
    list_chains,
    list_nodes,
)
from zhongshu.hub.chains import ChainCreate, ChainRecord, ChainStop
from zhongshu.hub.registry import (
    AppDisable,
    AppRecord,
    AppRegister,
    AppRotateKey,
    Grant,
    HubInit,
    Quota,
    compute_app_id,
    hub_contracts,
)
from zhongshu.hub.roles import MemberAdd, NodeKeys, OrgCreate, OrgDisable, OrgRecord
from zhongshu.ledger.genesis import genesis_from_json, genesis_to_json
from zhongshu.ledger.hashing import compute_genesis_hash, compute_tx_hash
from zhongshu.ledger.types import STATUS_OK, ChainParams, Genesis, Receipt, Validator, ValidatorSet
from zhongshu.sdk.tx import sign_tx

SM = get_suite("sm")
INTL = get_suite("intl")
HUB_TIME = 1_700_000_000_000
PARAMS = ChainParams(200, 1000, 1024 * 1024, 64 * 1024)
QUOTA = Quota(50, 100_000)


def _new_key() -> PrivateKey:
    return SM.generate_private_key()


@dataclass
class Hub:
    """A hub chain on a dict: each ``call`` signs a transaction and commits it as one block."""

    genesis: Genesis
    registry: Registry
    state: dict[bytes, bytes] = field(default_factory=dict)
    height: int = 0
    nonce: int = 0

    def call(self, key: PrivateKey, contract: str, method: str, args: Any) -> Receipt:
        (receipt,) = self.block([(key, contract, method, args)])
        return receipt

    def block(self, calls: list[tuple[PrivateKey, str, str, Any]]) -> list[Receipt]:
        """Commit one block of the given calls; return their receipts."""
        self.height += 1
        genesis_hash = compute_genesis_hash(SM.hash, self.genesis)
        txs = []
        for key, contract, method, args in calls:
            self.nonce += 1
            txs.append(sign_tx(key, "hub", genesis_hash, contract, method, args, 10_000, self.nonce))
        hashes = [compute_tx_hash(SM.hash, tx) for tx in txs]
        time = HUB_TIME + 1000 * self.height
        outcome = apply_transactions(self.registry, self.state.get, "hub", self.height, time, txs, hashes)
        for k, v in outcome.writes.items():
            if v is None:
                self.state.pop(k, None)
            else:
                self.state[k] = v
        return outcome.receipts

    def ok(self, key: PrivateKey, contract: str, method: str, args: Any) -> bytes:
        """Call, require success, return the encoded result."""
        receipt = self.call(key, contract, method, args)
        assert receipt.status == STATUS_OK, receipt.error
        return receipt.result

    def read(self, key: bytes) -> bytes | None:
        return self.state.get(key)


def _nodes(n: int) -> tuple[list[PrivateKey], list[NodeKeys]]:
    keys = [_new_key() for _ in range(n)]
    intl = [INTL.generate_private_key() for _ in range(n)]
    return keys, [NodeKeys(f"node{i}", keys[i].public_bytes(), intl[i].public_bytes()) for i in range(n)]


@dataclass
class World:
    """A hub with the cast of the permission table in place."""

    hub: Hub
    node_keys: list[PrivateKey]
    nodes: list[NodeKeys]
    keys: dict[str, PrivateKey]
    app_id: str


def _hub(n_nodes: int = 3) -> tuple[Hub, list[PrivateKey], list[NodeKeys], PrivateKey]:
    node_keys, nodes = _nodes(n_nodes)
    genesis = Genesis(
        "hub", "sm", HUB_TIME, ValidatorSet([Validator(nodes[0].sm_key, 1, "node0")]), ChainParams()
    )
    hub = Hub(genesis, build_hub_registry(genesis))
    operator = _new_key()
    hub.ok(node_keys[0], "hub", "init", HubInit(operator.public_bytes(), nodes))
    return hub, node_keys, nodes, operator


def _world() -> World:
    """Orgs gov, bank, reg; a chain 'court' of gov; an app of gov granted court/evidence.put."""
    hub, node_keys, nodes, operator = _hub()
    k = {name: _new_key() for name in ("org-admin", "other-admin", "member", "regulator", "app-member")}
    k["operator"] = operator
    k["op-member"] = _new_key()
    k["stranger"] = _new_key()
    k["app"] = _new_key()
    hub.ok(operator, "hub.org", "create", OrgCreate("gov", "市政务服务中心", [k["org-admin"].public_bytes()]))
    hub.ok(operator, "hub.org", "create", OrgCreate("bank", "城市银行", [k["other-admin"].public_bytes()]))
    hub.ok(operator, "hub.org", "create", OrgCreate("reg", "监管局", [_new_key().public_bytes()]))
    hub.ok(operator, "hub.member", "add", MemberAdd(k["regulator"].public_bytes(), "reg", "regulator"))
    hub.ok(operator, "hub.member", "add", MemberAdd(k["op-member"].public_bytes(), "reg", "operator"))
    hub.ok(k["org-admin"], "hub.member", "add", MemberAdd(k["member"].public_bytes(), "gov", "member"))
    hub.ok(k["org-admin"], "hub.member", "add", MemberAdd(k["app-member"].public_bytes(), "gov", "app"))
    hub.ok(operator, "hub.chain", "create", ChainCreate("court", "sm", ["node0", "node1"], PARAMS, ["gov"]))
    raw = hub.ok(
        k["org-admin"],
        "hub.app",
        "register",
        AppRegister("gov", "e-filing", k["app"].public_bytes(), [Grant("court", "evidence", ["put"])], QUOTA),
    )
    app = decode(raw, AppRecord, canonical=False)
    return World(hub, node_keys, nodes, k, app.app_id)


# --- the permission table -----------------------------------------------------------------

ACTORS = [
    "operator",
    "op-member",
    "org-admin",
    "other-admin",
    "member",
    "regulator",
    "app-member",
    "app",
    "stranger",
]

Action = Callable[[World], tuple[str, str, Any]]

ACTIONS: dict[str, Action] = {
    "org.create": lambda w: (
        "hub.org",
        "create",
        OrgCreate("new-org", "新机构", [_new_key().public_bytes()]),
    ),
    "org.disable": lambda w: ("hub.org", "disable", OrgDisable("bank")),
    "member.add member": lambda w: (
        "hub.member",
        "add",
        MemberAdd(_new_key().public_bytes(), "gov", "member"),
    ),
    "member.add org-admin": lambda w: (
        "hub.member",
        "add",
        MemberAdd(_new_key().public_bytes(), "gov", "org-admin"),
    ),
    "member.add regulator": lambda w: (
        "hub.member",
        "add",
        MemberAdd(_new_key().public_bytes(), "gov", "regulator"),
    ),
    "member.add operator": lambda w: (
        "hub.member",
        "add",
        MemberAdd(_new_key().public_bytes(), "gov", "operator"),
    ),
    "app.register": lambda w: (
        "hub.app",
        "register",
        AppRegister("gov", "another", _new_key().public_bytes(), [Grant("court", "evidence", ["*"])], QUOTA),
    ),
    "app.rotate-key": lambda w: ("hub.app", "rotate-key", AppRotateKey(w.app_id, _new_key().public_bytes())),
    "app.disable": lambda w: ("hub.app", "disable", AppDisable(w.app_id)),
    "chain.create": lambda w: ("hub.chain", "create", ChainCreate("tax", "sm", ["node2"], PARAMS, ["gov"])),
    "chain.stop": lambda w: ("hub.chain", "stop", ChainStop("court")),
}

OPERATORS = {"operator", "op-member"}
ALLOWED: dict[str, set[str]] = {
    "org.create": OPERATORS,
    "org.disable": OPERATORS | {"regulator"},
    "member.add member": OPERATORS | {"org-admin"},
    "member.add org-admin": OPERATORS | {"org-admin"},
    "member.add regulator": OPERATORS,
    "member.add operator": OPERATORS,
    "app.register": {"org-admin"},
    "app.rotate-key": {"org-admin", "app"},
    "app.disable": OPERATORS | {"org-admin", "regulator"},
    "chain.create": OPERATORS,
    "chain.stop": OPERATORS,
}
REFUSAL: dict[str, str] = {
    "org.create": "not allowed: only the operator may create an organization",
    "org.disable": "not allowed: only the operator or a regulator may disable an organization",
    "member.add member": "not allowed: only the operator or an admin of 'gov' may add its members",
    "member.add org-admin": "not allowed: only the operator or an admin of 'gov' may add its members",
    "member.add regulator": "not allowed: only the operator or an admin of 'gov' may add its members",
    "member.add operator": "not allowed: only the operator or an admin of 'gov' may add its members",
    "app.register": "not allowed: only an admin of 'gov' may register its applications",
    "app.rotate-key": "not allowed: only an admin of 'gov' or the app's current key may rotate its key",
    "app.disable": "not allowed: only an admin of 'gov', the operator or a regulator may disable an app",
    "chain.create": "not allowed: only the operator may create a chain",
    "chain.stop": "not allowed: only the operator may stop a chain",
}
# An org-admin reaches the role check, which names the hub-wide role.
REFUSAL_OVERRIDES = {
    ("member.add regulator", "org-admin"): "not allowed: only the operator may grant the role regulator",
    ("member.add operator", "org-admin"): "not allowed: only the operator may grant the role operator",
}


def test_the_table_covers_every_hub_method() -> None:
    methods = {f"{c.name}.{m}" for c in hub_contracts() if c.name != "hub" for m in c.methods}
    assert methods == {f"hub.{a.split()[0]}" for a in ACTIONS}
    assert set(build_hub_registry().names()) == {c.name for c in hub_contracts()} | {"evidence"}


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_permission_table(action: str, actor: str) -> None:
    world = _world()
    contract, method, args = ACTIONS[action](world)
    receipt = world.hub.call(world.keys[actor], contract, method, args)
    if actor in ALLOWED[action]:
        assert receipt.status == STATUS_OK, receipt.error
    else:
        assert receipt.error == REFUSAL_OVERRIDES.get((action, actor), REFUSAL[action])
        assert receipt.result == b"" and receipt.events == []


def test_a_refused_call_writes_nothing() -> None:
    world = _world()
    before = dict(world.hub.state)
    receipt = world.hub.call(world.keys["member"], *ACTIONS["chain.create"](world))
    assert receipt.status != STATUS_OK
    assert world.hub.state == before


# --- hub.init ------------------------------------------------------------------------------


def test_init_writes_exactly_the_hub_genesis_state() -> None:
    hub, _, nodes, operator = _hub()
    assert hub.state == hub_genesis_writes(operator.public_bytes(), nodes, "sm")
    assert list_nodes(hub.read) == nodes


def test_init_runs_once_by_the_first_validator() -> None:
    node_keys, nodes = _nodes(2)
    genesis = Genesis(
        "hub", "sm", HUB_TIME, ValidatorSet([Validator(nodes[0].sm_key, 1, "n")]), ChainParams()
    )
    operator = _new_key().public_bytes()
    init = HubInit(operator, nodes)
    hub = Hub(genesis, build_hub_registry(genesis))
    stranger, second = hub.block([(node_keys[1], "hub", "init", init), (node_keys[0], "hub", "init", init)])[
        :2
    ]
    assert stranger.error == "not allowed: only the genesis's first validator may initialise the hub"
    assert second.status == STATUS_OK
    again = hub.call(node_keys[0], "hub", "init", init)
    assert again.error == "conflict: the hub is already initialised"
    twice = Hub(genesis, build_hub_registry(genesis))
    receipts = twice.block([(node_keys[0], "hub", "init", init)] * 2)
    assert receipts[1].error == "conflict: the hub is already initialised"
    # An empty block first (a heartbeat while the first validator was down) does not lock the hub.
    late = Hub(genesis, build_hub_registry(genesis))
    late.block([])
    assert late.call(node_keys[0], "hub", "init", init).status == STATUS_OK
    unbound = Hub(genesis, build_hub_registry())
    assert unbound.call(node_keys[0], "hub", "init", init).error.startswith("not allowed: hub.init needs")


def test_init_refuses_bad_keys_and_a_hub_validator_outside_the_nodes() -> None:
    node_keys, nodes = _nodes(2)
    genesis = Genesis(
        "hub", "sm", HUB_TIME, ValidatorSet([Validator(nodes[0].sm_key, 1, "n")]), ChainParams()
    )
    off_curve = b"\x04" + b"\x01" * 64
    cases = {
        "operator key: the SM2 public key is not a point on the curve": HubInit(off_curve, nodes),
        "is not among the nodes": HubInit(_new_key().public_bytes(), nodes[1:]),
        "nodes lists a name twice": HubInit(_new_key().public_bytes(), [nodes[0], nodes[0]]),
        "needs a 65-byte SM2 key": HubInit(
            _new_key().public_bytes(), [NodeKeys("node0", b"\x04", b"x" * 32)]
        ),
    }
    for expected, init in cases.items():
        hub = Hub(genesis, build_hub_registry(genesis))
        receipt = hub.call(node_keys[0], "hub", "init", init)
        assert expected in receipt.error
        assert hub.state == {}


# --- organizations and members -------------------------------------------------------------


def test_org_create_records_the_org_and_its_admins_as_members() -> None:
    world = _world()
    org = get_org(world.hub.read, "gov")
    assert org is not None
    assert (org.name, org.admins, org.status) == (
        "市政务服务中心",
        [world.keys["org-admin"].public_bytes()],
        "active",
    )
    admin = get_member(world.hub.read, world.keys["org-admin"].public_bytes())
    assert admin is not None and (admin.org_id, admin.role) == ("gov", "org-admin")
    member = get_member(world.hub.read, world.keys["member"].public_bytes())
    assert member is not None and (member.org_id, member.role) == ("gov", "member")
    assert member.added_by == world.keys["org-admin"].public_bytes()


def test_an_added_org_admin_joins_the_admins_and_may_act() -> None:
    world = _world()
    second = _new_key()
    world.hub.ok(
        world.keys["org-admin"], "hub.member", "add", MemberAdd(second.public_bytes(), "gov", "org-admin")
    )
    org = get_org(world.hub.read, "gov")
    assert org is not None and org.admins[-1] == second.public_bytes()
    world.hub.ok(second, "hub.member", "add", MemberAdd(_new_key().public_bytes(), "gov", "member"))


def test_org_and_member_conflicts() -> None:
    world = _world()
    op, hub = world.keys["operator"], world.hub
    taken = hub.call(op, "hub.org", "create", OrgCreate("gov", "again", [_new_key().public_bytes()]))
    assert taken.error == "conflict: organization 'gov' already exists"
    member = world.keys["member"].public_bytes()
    twice = hub.call(op, "hub.member", "add", MemberAdd(member, "bank", "member"))
    assert twice.error.startswith("conflict: key") and "already a member of 'gov'" in twice.error
    app_key = world.keys["app"].public_bytes()
    as_admin = hub.call(op, "hub.org", "create", OrgCreate("new-org", "x", [app_key]))
    assert "belongs to an application" in as_admin.error
    ed25519 = INTL.generate_private_key().public_bytes()
    wrong_suite = hub.call(op, "hub.member", "add", MemberAdd(ed25519, "gov", "member"))
    assert "is not a sm public key" in wrong_suite.error
    missing = hub.call(op, "hub.member", "add", MemberAdd(_new_key().public_bytes(), "nope", "member"))
    assert missing.error == "not found: no organization 'nope'"
    bad_role = hub.call(op, "hub.member", "add", MemberAdd(_new_key().public_bytes(), "gov", "king"))
    assert bad_role.error.startswith("role 'king' is not one of operator, org-admin")


def test_a_disabled_org_loses_its_admins_and_apps() -> None:
    world = _world()
    hub = world.hub
    assert is_granted(hub.read, world.app_id, "court", "evidence", "put")
    hub.ok(world.keys["regulator"], "hub.org", "disable", OrgDisable("gov"))
    org = get_org(hub.read, "gov")
    assert org is not None and org.status == "disabled"
    assert not is_granted(hub.read, world.app_id, "court", "evidence", "put")
    refused = hub.call(
        world.keys["org-admin"], "hub.member", "add", MemberAdd(_new_key().public_bytes(), "gov", "member")
    )
    assert refused.error == "not allowed: only the operator or an admin of 'gov' may add its members"
    by_app = hub.call(
        world.keys["app"], "hub.app", "rotate-key", AppRotateKey(world.app_id, _new_key().public_bytes())
    )
    assert by_app.error == "conflict: organization 'gov' is disabled"
    again = hub.call(world.keys["operator"], "hub.org", "disable", OrgDisable("gov"))
    assert again.error == "conflict: organization 'gov' is already disabled"


# --- applications --------------------------------------------------------------------------


def test_app_register_derives_its_id_and_answers_who_holds_a_key() -> None:
    world = _world()
    app = get_app(world.hub.read, world.app_id)
    assert app is not None
    assert app.app_id.startswith("app-") and len(app.app_id) == 20
    assert (app.org_id, app.name, app.status, app.quota) == ("gov", "e-filing", "active", QUOTA)
    assert app.public_key == world.keys["app"].public_bytes()
    view = get_app_by_key(world.hub.read, world.keys["app"].public_bytes())
    assert view is not None and view.current and view.app.app_id == world.app_id
    assert get_app_by_key(world.hub.read, world.keys["stranger"].public_bytes()) is None


def test_app_id_is_a_hash_of_org_name_and_tx_hash() -> None:
    a = compute_app_id("sm", "gov", "e-filing", b"\x01" * 32)
    assert a == "app-" + SM.hash(encode(["hub.app", "gov", "e-filing", b"\x01" * 32]))[:8].hex()
    assert a != compute_app_id("sm", "gov", "e-filing", b"\x02" * 32)
    assert a != compute_app_id("sm", "bank", "e-filing", b"\x01" * 32)


def test_is_granted_follows_grants_chain_and_status() -> None:
    world = _world()
    read = world.hub.read
    assert is_granted(read, world.app_id, "court", "evidence", "put")
    assert not is_granted(read, world.app_id, "court", "evidence", "delete")
    assert not is_granted(read, world.app_id, "court", "rights", "put")
    assert not is_granted(read, world.app_id, "other", "evidence", "put")
    assert not is_granted(read, "app-0000000000000000", "court", "evidence", "put")
    raw = world.hub.ok(
        world.keys["org-admin"],
        "hub.app",
        "register",
        AppRegister("gov", "all", _new_key().public_bytes(), [Grant("court", "evidence", ["*"])], QUOTA),
    )
    star = decode(raw, AppRecord, canonical=False).app_id
    assert is_granted(read, star, "court", "evidence", "anything")
    assert not is_granted(read, star, "court", "rights", "put")
    world.hub.ok(world.keys["operator"], "hub.chain", "stop", ChainStop("court"))
    assert not is_granted(read, star, "court", "evidence", "put")


def test_grants_need_an_active_chain_of_the_org() -> None:
    world = _world()
    admin = world.keys["other-admin"]

    def register(chain: str) -> str:
        args = AppRegister("bank", "x", _new_key().public_bytes(), [Grant(chain, "evidence", ["put"])], QUOTA)
        return world.hub.call(admin, "hub.app", "register", args).error

    assert register("court") == "not allowed: organization 'bank' is not a member of chain 'court'"
    assert register("nowhere") == "not found: no chain 'nowhere'"
    world.hub.ok(
        world.keys["operator"], "hub.chain", "create", ChainCreate("loan", "sm", ["node0"], PARAMS, ["bank"])
    )
    assert register("loan") == ""
    world.hub.ok(world.keys["operator"], "hub.chain", "stop", ChainStop("loan"))
    assert register("loan") == "conflict: chain 'loan' is stopped"


def test_rotation_keeps_the_old_key_known_as_old() -> None:
    world = _world()
    hub, old = world.hub, world.keys["app"]
    new = _new_key()
    hub.ok(old, "hub.app", "rotate-key", AppRotateKey(world.app_id, new.public_bytes()))
    app = get_app(hub.read, world.app_id)
    assert app is not None and app.public_key == new.public_bytes()
    assert [(k.public_key, k.since_height, k.until_height) for k in app.keys] == [
        (old.public_bytes(), app.height, hub.height),
        (new.public_bytes(), hub.height, 0),
    ]
    old_view = get_app_by_key(hub.read, old.public_bytes())
    assert old_view is not None and not old_view.current and old_view.app.app_id == world.app_id
    new_view = get_app_by_key(hub.read, new.public_bytes())
    assert new_view is not None and new_view.current
    # The old key lost the app's rights; the new key has them; an org admin may rotate too.
    stale = hub.call(old, "hub.app", "rotate-key", AppRotateKey(world.app_id, _new_key().public_bytes()))
    assert stale.error.startswith("not allowed: only an admin of 'gov' or the app's current key")
    back = hub.call(new, "hub.app", "rotate-key", AppRotateKey(world.app_id, old.public_bytes()))
    assert back.error.endswith("already belongs to an application")
    hub.ok(
        world.keys["org-admin"],
        "hub.app",
        "rotate-key",
        AppRotateKey(world.app_id, _new_key().public_bytes()),
    )
    app = get_app(hub.read, world.app_id)
    assert app is not None and len(app.keys) == 3 and app.keys[1].until_height == hub.height


def test_disable_is_final() -> None:
    world = _world()
    hub = world.hub
    hub.ok(world.keys["regulator"], "hub.app", "disable", AppDisable(world.app_id))
    app = get_app(hub.read, world.app_id)
    assert app is not None and (app.status, app.disabled_height) == ("disabled", hub.height)
    assert not is_granted(hub.read, world.app_id, "court", "evidence", "put")
    again = hub.call(world.keys["operator"], "hub.app", "disable", AppDisable(world.app_id))
    assert again.error == f"conflict: application {world.app_id} is already disabled"
    rotate = hub.call(
        world.keys["app"], "hub.app", "rotate-key", AppRotateKey(world.app_id, _new_key().public_bytes())
    )
    assert rotate.error == f"conflict: application {world.app_id} is disabled"
    missing = hub.call(world.keys["operator"], "hub.app", "disable", AppDisable("app-00000000000000ff"))
    assert missing.error == "not found: no application 'app-00000000000000ff'"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (AppRegister("gov", "", b"\x04" * 65, [], QUOTA), "app name must be 1 to 128 bytes"),
        (AppRegister("gov", "x", b"\x04" * 64, [], QUOTA), "app key must be a 65-byte SM2 public key"),
        (AppRegister("gov", "x", b"\x04" + b"\x01" * 64, [], QUOTA), "not a point on the curve"),
        (AppRegister("gov", "x", b"", [Grant("court", "e", ["*", "put"])], QUOTA), "either '*' alone"),
        (AppRegister("gov", "x", b"", [Grant("court", "e", [])], QUOTA), "a grant names 1 to 64 methods"),
        (AppRegister("gov", "x", b"", [Grant("court", "e", ["a"])] * 2, QUOTA), "(chain, contract) twice"),
        (AppRegister("gov", "x", b"", [], Quota(0, 10)), "quota requests_per_second must be from 1"),
        (AppRegister("gov", "x", b"", [], Quota(1, 10**10)), "quota txs_per_day must be from 1"),
        (AppRotateKey("app-XYZ", b"\x04" * 65), "is not 'app-' and 16 lowercase hex digits"),
    ],
)
def test_app_argument_refusals(args: Any, message: str) -> None:
    world = _world()
    if isinstance(args, AppRegister) and args.public_key == b"":
        args = msgspec.structs.replace(args, public_key=_new_key().public_bytes())
    contract, method = ("hub.app", "register") if isinstance(args, AppRegister) else ("hub.app", "rotate-key")
    receipt = world.hub.call(world.keys["org-admin"], contract, method, args)
    assert message in receipt.error
    # The stateless limits are the method's check too: admission refuses the same.
    if "curve" not in message:
        with pytest.raises(InvalidArguments, match=re.escape(message)):
            world.hub.registry.get_method(contract, method).check_args(args)


# --- business chains -----------------------------------------------------------------------


def test_chain_create_and_stop() -> None:
    world = _world()
    hub, op = world.hub, world.keys["operator"]
    created_height = hub.height + 1
    hub.ok(op, "hub.chain", "create", ChainCreate("tax", "intl", ["node2", "node0"], PARAMS, ["gov", "bank"]))
    tax = get_chain(hub.read, "tax")
    assert tax is not None
    assert (tax.suite, tax.validators, tax.orgs, tax.status) == (
        "intl",
        ["node2", "node0"],
        ["gov", "bank"],
        "active",
    )
    assert (tax.height, tax.time) == (created_height, HUB_TIME + 1000 * created_height)
    assert [c.name for c in list_chains(hub.read)] == ["court", "tax"]
    hub.ok(op, "hub.chain", "stop", ChainStop("tax"))
    stopped = get_chain(hub.read, "tax")
    assert stopped is not None and (stopped.status, stopped.stopped_height) == ("stopped", hub.height)
    assert (
        hub.call(op, "hub.chain", "stop", ChainStop("tax")).error
        == "conflict: chain 'tax' is already stopped"
    )
    assert hub.call(op, "hub.chain", "stop", ChainStop("nope")).error == "not found: no chain 'nope'"
    reuse = hub.call(op, "hub.chain", "create", ChainCreate("tax", "sm", ["node0"], PARAMS, []))
    assert reuse.error == "conflict: chain 'tax' already exists"
    assert [c.name for c in list_chains(hub.read)] == ["court", "tax"]


def _create(name: str = "ok-chain", **changes: Any) -> ChainCreate:
    return msgspec.structs.replace(ChainCreate(name, "sm", ["node0"], PARAMS, ["gov"]), **changes)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (_create("Court"), "chain name 'Court' must be 2 to 31 characters"),
        (_create("a"), "chain name 'a' must be 2 to 31 characters"),
        (_create("1abc"), "chain name '1abc' must be 2 to 31"),
        (_create("bad_name"), "chain name 'bad_name' must be 2 to 31"),
        (_create("x" * 32), "must be 2 to 31 characters"),
        (_create("hub"), "chain name 'hub' is the hub chain's own"),
        (_create(suite="rsa"), "suite 'rsa' is not one of sm, intl"),
        (_create(validators=[]), "a chain has 1 to 64 validators, got 0"),
        (_create(validators=["node0", "node0"]), "validators lists a node twice"),
        (_create(validators=["node9"]), "not found: no node named 'node9' (registered: node0, node1, node2)"),
        (_create(orgs=["nope"]), "not found: no organization 'nope'"),
        (_create(orgs=["gov", "gov"]), "orgs lists an organization twice"),
        (_create("court"), "conflict: chain 'court' already exists"),
        (
            _create(params=ChainParams(5, 1000, 1 << 20, 1 << 16)),
            "block_interval_ms must be from 10 to 60000, got 5",
        ),
        (
            _create(params=ChainParams(200, 0, 1 << 20, 1 << 16)),
            "max_block_txs must be from 1 to 100000, got 0",
        ),
        (_create(params=ChainParams(200, 10, 1 << 30, 1 << 16)), "max_block_bytes must be from 65536"),
        (
            _create(params=ChainParams(200, 10, 1 << 17, 1 << 18)),
            "max_tx_bytes 262144 exceeds max_block_bytes",
        ),
    ],
)
def test_chain_create_refusals(args: ChainCreate, message: str) -> None:
    world = _world()
    before = dict(world.hub.state)
    receipt = world.hub.call(world.keys["operator"], "hub.chain", "create", args)
    assert message in receipt.error
    assert world.hub.state == before


def test_execution_is_deterministic() -> None:
    """Two hubs fed the same signed transactions end with the same bytes."""
    world = _world()
    op = world.keys["operator"]
    calls = [
        (op, "hub.chain", "create", ChainCreate("tax", "sm", ["node1"], PARAMS, ["gov"])),
        (op, "hub.chain", "create", ChainCreate("tax", "sm", ["node1"], PARAMS, ["gov"])),
        (world.keys["org-admin"], "hub.app", "disable", AppDisable(world.app_id)),
    ]
    copy = Hub(
        world.hub.genesis, build_hub_registry(world.hub.genesis), dict(world.hub.state), world.hub.height
    )
    copy.nonce = world.hub.nonce
    a, b = world.hub.block(calls), copy.block(calls)
    assert [r.status for r in a] == [STATUS_OK, 1, STATUS_OK]
    assert [encode(r) for r in a] == [encode(r) for r in b]
    assert world.hub.state == copy.state


# --- genesis derivation --------------------------------------------------------------------


def test_derived_genesis_is_the_record_and_the_nodes_keys() -> None:
    world = _world()
    op = world.keys["operator"]
    world.hub.ok(op, "hub.chain", "create", ChainCreate("tax", "intl", ["node2", "node0"], PARAMS, ["gov"]))
    record = get_chain(world.hub.read, "tax")
    assert record is not None
    genesis = derive_genesis(record, world.nodes)
    assert genesis == Genesis(
        "tax",
        "intl",
        record.time,
        ValidatorSet(
            [Validator(world.nodes[2].intl_key, 1, "node2"), Validator(world.nodes[0].intl_key, 1, "node0")]
        ),
        PARAMS,
    )
    court = get_chain(world.hub.read, "court")
    assert court is not None
    assert [v.public_key for v in derive_genesis(court, world.nodes).validators.validators] == [
        world.nodes[0].sm_key,
        world.nodes[1].sm_key,
    ]
    assert derive_genesis_from_state(world.hub.read, "tax") == genesis
    with pytest.raises(ChainSpecError, match="the hub holds no chain 'nope'"):
        derive_genesis_from_state(world.hub.read, "nope")
    with pytest.raises(ChainSpecError, match="names the node 'node2', which is not given"):
        derive_genesis(record, world.nodes[:2])


def test_derived_genesis_passes_the_genesis_file_rules() -> None:
    world = _world()
    court = get_chain(world.hub.read, "court")
    assert court is not None
    genesis = derive_genesis(court, world.nodes)
    doc = json.loads(json.dumps(genesis_to_json(genesis)))
    assert genesis_from_json(doc) == genesis


_RECORD = ChainRecord("court", "sm", ["node0", "node1"], PARAMS, ["gov"], "active", 7, HUB_TIME + 7000)


def test_derivation_is_deterministic_and_every_field_counts() -> None:
    _, nodes = _nodes(3)
    base = compute_genesis_hash(SM.hash, derive_genesis(_RECORD, nodes))
    same = ChainRecord(**msgspec.structs.asdict(_RECORD))
    assert compute_genesis_hash(SM.hash, derive_genesis(same, list(reversed(nodes)))) == base
    assert encode(derive_genesis(same, nodes)) == encode(derive_genesis(_RECORD, nodes))
    changes: dict[str, Any] = {
        "name": "court2",
        "suite": "intl",
        "validators": ["node1", "node0"],
        "params": msgspec.structs.replace(PARAMS, max_block_txs=999),
        "time": HUB_TIME + 7001,
    }
    for name, value in changes.items():
        changed = msgspec.structs.replace(_RECORD, **{name: value})
        assert compute_genesis_hash(SM.hash, derive_genesis(changed, nodes)) != base, name
    # Fields that are not the chain's start leave the genesis alone.
    for name, value in {"orgs": ["bank"], "status": "stopped", "height": 8, "stopped_height": 9}.items():
        changed = msgspec.structs.replace(_RECORD, **{name: value})
        assert compute_genesis_hash(SM.hash, derive_genesis(changed, nodes)) == base, name
    other_keys = [msgspec.structs.replace(nodes[0], sm_key=_new_key().public_bytes()), *nodes[1:]]
    assert compute_genesis_hash(SM.hash, derive_genesis(_RECORD, other_keys)) != base


def test_records_are_tagged_and_canonical() -> None:
    world = _world()
    raw = world.hub.state[b"hub/o/gov"]
    assert decode(raw, OrgRecord) == get_org(world.hub.read, "gov")
    assert msgspec.msgpack.decode(raw)[0] == "hub.org"
    assert msgspec.msgpack.decode(world.hub.state[b"hub/c/court"])[0] == "hub.chain"
    assert msgspec.msgpack.decode(encode(_create()))[0] == "hub.chain.create"
