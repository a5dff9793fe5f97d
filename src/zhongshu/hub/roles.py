"""The hub chain's who's who: its operator and nodes, organizations, and members with roles.

State keys (values are the canonical MessagePack of the tagged records below):
  ``hub/op``             -> Operator     (written once, by ``hub.init``)
  ``hub/n/<node name>``  -> NodeKeys     (a node's SM2 and Ed25519 validator keys)
  ``hub/nl``             -> NameList     (every node name, in the order ``hub.init`` gave them)
  ``hub/o/<org id>``     -> OrgRecord
  ``hub/m/<public key>`` -> MemberRecord (one organization and one role per key)

Who may do what is in docs/hub.md; the predicates here (``is_operator``, ``is_regulator``,
``is_org_admin``) are that table's rows, read from state only.
"""

from __future__ import annotations

import re

import msgspec

from zhongshu.codec import decode, encode
from zhongshu.crypto import InvalidKey, get_suite
from zhongshu.execution.context import CallContext, StateReader
from zhongshu.execution.errors import ExecutionError, InvalidArguments

NAME_PATTERN = re.compile(r"[a-z][a-z0-9-]{1,30}")
"""Ids of organizations and names of chains and nodes: 2 to 31 of a-z, 0-9 and '-', a letter first."""
MAX_TEXT = 128
MAX_ADMINS = 16
MAX_NODES = 256
PUBLIC_KEY_SIZES = (65, 32)
"""SM2 (04 || x || y) and Ed25519 public keys."""

ROLE_OPERATOR = "operator"
ROLE_ORG_ADMIN = "org-admin"
ROLE_MEMBER = "member"
ROLE_REGULATOR = "regulator"
ROLE_APP = "app"
ROLES = (ROLE_OPERATOR, ROLE_ORG_ADMIN, ROLE_MEMBER, ROLE_REGULATOR, ROLE_APP)
HUB_WIDE_ROLES = (ROLE_OPERATOR, ROLE_REGULATOR)
"""Roles only the operator may grant: they act on every organization."""

STATUS_ACTIVE = "active"
STATUS_DISABLED = "disabled"

OPERATOR_KEY = b"hub/op"
NODE_LIST_KEY = b"hub/nl"


class NotAllowed(ExecutionError):
    """The sender's role does not permit the call."""

    def __init__(self, why: str) -> None:
        super().__init__(f"not allowed: {why}")


class NotFound(ExecutionError):
    """The call names a record the hub does not hold."""

    def __init__(self, what: str) -> None:
        super().__init__(f"not found: {what}")


class Conflict(ExecutionError):
    """The call clashes with what the hub already holds (a taken name, a record in the wrong status)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"conflict: {what}")


class NodeKeys(msgspec.Struct, array_like=True, frozen=True, tag="hub.node"):
    """A node the hub runs, with a validator key of each suite."""

    name: str
    """The node's name, e.g. ``node0`` (NAME_PATTERN)."""
    sm_key: bytes
    """Its SM2 validator key, 65 bytes 04 || x || y: used on chains of suite ``sm``."""
    intl_key: bytes
    """Its Ed25519 validator key, 32 bytes: used on chains of suite ``intl``."""

    def key_for(self, suite: str) -> bytes:
        """The node's validator key on a chain of ``suite``."""
        return self.sm_key if suite == "sm" else self.intl_key


class Operator(msgspec.Struct, array_like=True, frozen=True, tag="hub.operator"):
    public_key: bytes
    """The hub operator's key, a key of the hub chain's suite."""
    suite: str
    """The hub chain's suite: members' keys are keys of this suite (they sign hub transactions)."""


class NameList(msgspec.Struct, array_like=True, frozen=True, tag="hub.names"):
    names: list[str]


class OrgRecord(msgspec.Struct, array_like=True, frozen=True, tag="hub.org"):
    org_id: str
    """Chosen by the operator (NAME_PATTERN), never reused."""
    name: str
    """A display name, e.g. 市大数据中心."""
    admins: list[bytes]
    """Keys with role org-admin in this organization, in the order they were granted."""
    status: str
    """``active`` or ``disabled``: a disabled organization's keys and apps lose every right."""
    height: int
    """Hub height of creation."""
    time: int


class MemberRecord(msgspec.Struct, array_like=True, frozen=True, tag="hub.member"):
    public_key: bytes
    org_id: str
    role: str
    """One of ROLES."""
    added_by: bytes
    """The key that added the member."""
    height: int
    time: int


class OrgCreate(msgspec.Struct, array_like=True, frozen=True, tag="hub.org.create"):
    org_id: str
    name: str
    admins: list[bytes]
    """1 to 16 keys; each becomes a member of the organization with role org-admin."""


class OrgDisable(msgspec.Struct, array_like=True, frozen=True, tag="hub.org.disable"):
    org_id: str


class MemberAdd(msgspec.Struct, array_like=True, frozen=True, tag="hub.member.add"):
    public_key: bytes
    org_id: str
    role: str


def node_key(name: str) -> bytes:
    return b"hub/n/" + name.encode()


def org_key(org_id: str) -> bytes:
    return b"hub/o/" + org_id.encode()


def member_key(public_key: bytes) -> bytes:
    return b"hub/m/" + public_key


def app_key_index(public_key: bytes) -> bytes:
    """``hub/ak/<public key>`` -> app id: every key an app has held, current or old."""
    return b"hub/ak/" + public_key


def get_operator(read: StateReader) -> Operator | None:
    raw = read(OPERATOR_KEY)
    return None if raw is None else decode(raw, Operator, canonical=False)


def get_node(read: StateReader, name: str) -> NodeKeys | None:
    raw = read(node_key(name))
    return None if raw is None else decode(raw, NodeKeys, canonical=False)


def list_nodes(read: StateReader) -> list[NodeKeys]:
    """Every node the hub registered, in registration order."""
    raw = read(NODE_LIST_KEY)
    names = [] if raw is None else decode(raw, NameList, canonical=False).names
    return [n for n in (get_node(read, name) for name in names) if n is not None]


def get_org(read: StateReader, org_id: str) -> OrgRecord | None:
    raw = read(org_key(org_id))
    return None if raw is None else decode(raw, OrgRecord, canonical=False)


def get_member(read: StateReader, public_key: bytes) -> MemberRecord | None:
    raw = read(member_key(public_key))
    return None if raw is None else decode(raw, MemberRecord, canonical=False)


def _active_role(read: StateReader, public_key: bytes) -> MemberRecord | None:
    """The key's member record if it and its organization are active."""
    member = get_member(read, public_key)
    if member is None:
        return None
    org = get_org(read, member.org_id)
    return member if org is not None and org.status == STATUS_ACTIVE else None


def is_operator(read: StateReader, public_key: bytes) -> bool:
    """The genesis operator key, or a member of an active organization with role operator."""
    op = get_operator(read)
    if op is not None and op.public_key == public_key:
        return True
    member = _active_role(read, public_key)
    return member is not None and member.role == ROLE_OPERATOR


def is_regulator(read: StateReader, public_key: bytes) -> bool:
    """A member of an active organization with role regulator."""
    member = _active_role(read, public_key)
    return member is not None and member.role == ROLE_REGULATOR


def is_org_admin(read: StateReader, public_key: bytes, org_id: str) -> bool:
    """One of the admins of ``org_id``, while that organization is active."""
    org = get_org(read, org_id)
    return org is not None and org.status == STATUS_ACTIVE and public_key in org.admins


def hub_genesis_writes(
    operator_key: bytes, node_keys: list[NodeKeys], suite: str = "sm"
) -> dict[bytes, bytes]:
    """The hub chain's initial state: its operator and every node's validator keys.

    ``hub.init`` writes exactly these entries; a node that installs initial state directly
    would use the same function, so both give the same bytes.
    """
    writes = {OPERATOR_KEY: encode(Operator(operator_key, suite))}
    for node in node_keys:
        writes[node_key(node.name)] = encode(node)
    writes[NODE_LIST_KEY] = encode(NameList([n.name for n in node_keys]))
    return writes


def check_name(value: str, what: str) -> None:
    """An id or name of NAME_PATTERN."""
    if not NAME_PATTERN.fullmatch(value):
        raise InvalidArguments(
            f"{what} {value!r} must be 2 to 31 characters of a-z, 0-9 and '-', starting with a letter"
        )


def check_text(value: str, what: str) -> None:
    """A display text of 1 to MAX_TEXT bytes."""
    if not value or len(value.encode()) > MAX_TEXT:
        raise InvalidArguments(f"{what} must be 1 to {MAX_TEXT} bytes, got {len(value.encode())}")


def check_key_size(public_key: bytes, what: str) -> None:
    """A key of one of the suites' sizes (its validity needs the hub's suite: see check_member_key)."""
    if len(public_key) not in PUBLIC_KEY_SIZES:
        raise InvalidArguments(
            f"{what} must be a 65-byte SM2 or 32-byte Ed25519 key, got {len(public_key)} bytes"
        )


def check_member_key(read: StateReader, public_key: bytes) -> None:
    """A valid key of the hub's suite that holds no role yet and is no app's key."""
    op = get_operator(read)
    # The hub was initialised: its suite is known.
    if op is None:
        raise Conflict("the hub is not initialised (hub.init has not run)")
    # The key is a key of the hub's suite: members sign hub transactions with it.
    try:
        get_suite(op.suite).check_public_key(public_key)
    except InvalidKey as exc:
        raise InvalidArguments(
            f"key {public_key.hex()[:16]}… is not a {op.suite} public key: {exc}"
        ) from None
    # One key, one identity: not a member already, not an app's key (current or old).
    existing = get_member(read, public_key)
    if existing is not None:
        raise Conflict(f"key {public_key.hex()[:16]}… is already a member of {existing.org_id!r}")
    if read(app_key_index(public_key)) is not None:
        raise Conflict(f"key {public_key.hex()[:16]}… belongs to an application")


def check_org_create(args: OrgCreate) -> None:
    """Limits of ``hub.org.create``: an id, a name, 1 to 16 distinct admin keys."""
    check_name(args.org_id, "org id")
    check_text(args.name, "org name")
    # An organization starts with at least one admin, and a bounded number of them.
    if not 1 <= len(args.admins) <= MAX_ADMINS:
        raise InvalidArguments(f"an organization has 1 to {MAX_ADMINS} admins, got {len(args.admins)}")
    for key in args.admins:
        check_key_size(key, "admin key")
    # No admin is listed twice.
    if len(set(args.admins)) != len(args.admins):
        raise InvalidArguments("admins lists a key twice")


def org_create(ctx: CallContext, args: OrgCreate) -> OrgRecord:
    """Create an organization and make each admin its member with role org-admin (operator only)."""
    check_org_create(args)
    read = ctx.state.get
    # Only the operator creates organizations.
    if not is_operator(read, ctx.sender):
        raise NotAllowed("only the operator may create an organization")
    # Org ids are never reused, not even a disabled organization's.
    if get_org(read, args.org_id) is not None:
        raise Conflict(f"organization {args.org_id!r} already exists")
    for key in args.admins:
        check_member_key(read, key)
    org = OrgRecord(args.org_id, args.name, list(args.admins), STATUS_ACTIVE, ctx.height, ctx.time)
    ctx.state.set(org_key(args.org_id), encode(org))
    for key in args.admins:
        member = MemberRecord(key, args.org_id, ROLE_ORG_ADMIN, ctx.sender, ctx.height, ctx.time)
        ctx.state.set(member_key(key), encode(member))
    ctx.emit("org-created", {"org_id": args.org_id, "name": args.name})
    return org


def check_org_disable(args: OrgDisable) -> None:
    check_name(args.org_id, "org id")


def org_disable(ctx: CallContext, args: OrgDisable) -> OrgRecord:
    """Disable an organization: its admins, members and apps lose every right (operator or regulator)."""
    check_org_disable(args)
    read = ctx.state.get
    # Only the operator or a regulator disables an organization.
    if not (is_operator(read, ctx.sender) or is_regulator(read, ctx.sender)):
        raise NotAllowed("only the operator or a regulator may disable an organization")
    org = get_org(read, args.org_id)
    if org is None:
        raise NotFound(f"no organization {args.org_id!r}")
    # Disabling is done once; it is final.
    if org.status != STATUS_ACTIVE:
        raise Conflict(f"organization {args.org_id!r} is already {org.status}")
    disabled = msgspec.structs.replace(org, status=STATUS_DISABLED)
    ctx.state.set(org_key(args.org_id), encode(disabled))
    ctx.emit("org-disabled", {"org_id": args.org_id})
    return disabled


def check_member_add(args: MemberAdd) -> None:
    """Limits of ``hub.member.add``: a key of a suite's size, an org id, one of ROLES."""
    check_key_size(args.public_key, "member key")
    check_name(args.org_id, "org id")
    if args.role not in ROLES:
        raise InvalidArguments(f"role {args.role!r} is not one of {', '.join(ROLES)}")


def member_add(ctx: CallContext, args: MemberAdd) -> MemberRecord:
    """Give a key a role in an organization: the operator grants any role, an org-admin of that
    organization any role but operator and regulator."""
    check_member_add(args)
    read = ctx.state.get
    operator = is_operator(read, ctx.sender)
    # The sender is the operator or an admin of the organization.
    if not operator and not is_org_admin(read, ctx.sender, args.org_id):
        raise NotAllowed(f"only the operator or an admin of {args.org_id!r} may add its members")
    # Hub-wide roles come from the operator only.
    if not operator and args.role in HUB_WIDE_ROLES:
        raise NotAllowed(f"only the operator may grant the role {args.role}")
    org = get_org(read, args.org_id)
    if org is None:
        raise NotFound(f"no organization {args.org_id!r}")
    # Members join active organizations only.
    if org.status != STATUS_ACTIVE:
        raise Conflict(f"organization {args.org_id!r} is {org.status}")
    check_member_key(read, args.public_key)
    member = MemberRecord(args.public_key, args.org_id, args.role, ctx.sender, ctx.height, ctx.time)
    ctx.state.set(member_key(args.public_key), encode(member))
    if args.role == ROLE_ORG_ADMIN:
        grown = msgspec.structs.replace(org, admins=[*org.admins, args.public_key])
        ctx.state.set(org_key(args.org_id), encode(grown))
    ctx.emit("member-added", {"org_id": args.org_id, "public_key": args.public_key, "role": args.role})
    return member
