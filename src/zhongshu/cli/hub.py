"""Running the hub from the command line: organizations, members, applications and chains.

Each write command signs one hub transaction with ``--key`` (the operator's or an org admin's
PEM key, docs/hub.md §3), submits it to the chain ``hub`` at ``--api`` and waits for its commit
(SDK, ``wait=commit``). A failed receipt or a refusal is one ``error:`` line with exit 1; bad
arguments exit 2 before anything is sent (the contract's own limits are checked here first);
an unreachable gateway exits 3. The read commands (``app show``, ``chain list``) and the
defaults that need hub state (``chain create``'s validators) use the hub's read routes
(``GET /v1/hub/...``, zhongshu.gateway.hub_routes).

``app register`` and ``app rotate-key`` write the app's key before they register it, so a key
the hub knows is never lost; a registration that fails removes the key it wrote.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from zhongshu.cli.common import api_option, format_time, friendly, json_option, out, print_json
from zhongshu.cli.exits import Refused, UsageProblem

if TYPE_CHECKING:
    from zhongshu.crypto import PrivateKey
    from zhongshu.sdk import Receipt

T = TypeVar("T")

HUB_CHAIN = "hub"
"""The chain id of the hub chain, where every command here sends its transaction."""
APP_KEY_FILE = "app_key.pem"
APP_CONFIG_FILE = "app.json"
"""``{"app_id": ..., "key_file": ...}``: what the SDK reads (key_file relative to the JSON's directory)."""
DEFAULT_RPS = 100
DEFAULT_TXS_PER_DAY = 1_000_000
FIRST_BLOCK_WAIT = 30.0
"""Seconds ``chain create`` waits for the new chain's first block by default."""
POLL_FIRST = 0.02
"""Seconds before the second look at a new chain's status; doubled up to POLL_MAX."""
POLL_MAX = 0.25
READ_TIMEOUT = 30.0
"""Seconds a read route may take."""

HEX_KEY = re.compile(r"(?:[0-9a-fA-F]{2}){32}|(?:[0-9a-fA-F]{2}){65}")
"""A public key in hex: Ed25519 (32 bytes) or SM2 (65 bytes, 04 || x || y)."""
SPKI_PREFIXES = {
    bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200"): "sm",
    bytes.fromhex("302a300506032b6570032100"): "intl",
}
"""DER SubjectPublicKeyInfo of an SM2 (uncompressed point) or Ed25519 key, up to the key bytes."""
APP_ID = re.compile(r"app-[0-9a-f]{16}")


# -- arguments --------------------------------------------------------------------------------


def read_public_key(value: str) -> bytes:
    """A public key given as hex, or as a PEM file holding a private key (its public half) or a
    public key (SubjectPublicKeyInfo); UsageProblem for anything else."""
    from zhongshu.crypto import CryptoError, get_suite, load_private_key_pem

    # Hex digits of a key's length are the key itself; anything else names a file.
    if HEX_KEY.fullmatch(value):
        return bytes.fromhex(value)
    path = Path(value)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise UsageProblem(
            f"{value!r} is neither a public key in hex (64 or 130 digits) nor a readable PEM file "
            f"({exc.strerror or exc})"
        ) from None
    # A private key file gives its public half.
    if b"PRIVATE KEY-----" in pem:
        try:
            return load_private_key_pem(pem).public_bytes()
        except CryptoError as exc:
            raise UsageProblem(f"{path}: {exc}") from None
    der = _pem_body(pem, "PUBLIC KEY", path)
    # A public key file holds the SubjectPublicKeyInfo of an SM2 or an Ed25519 key.
    for prefix, suite in SPKI_PREFIXES.items():
        if der.startswith(prefix):
            key = der[len(prefix) :]
            # The bytes after the prefix are a valid key of that suite.
            try:
                get_suite(suite).check_public_key(key)
            except CryptoError as exc:
                raise UsageProblem(f"{path}: {exc}") from None
            return key
    raise UsageProblem(f"{path} holds no SM2 or Ed25519 public key")


def _pem_body(pem: bytes, label: str, path: Path) -> bytes:
    """The DER inside a PEM block of ``label``; UsageProblem if there is none."""
    begin, end = f"-----BEGIN {label}-----".encode(), f"-----END {label}-----".encode()
    start, stop = pem.find(begin), pem.find(end)
    # One block of the label, its end after its start.
    if start < 0 or stop < start:
        raise UsageProblem(f"{path} is not a PEM file with a {label}")
    try:
        return base64.b64decode(b"".join(pem[start + len(begin) : stop].split()), validate=True)
    except binascii.Error:
        raise UsageProblem(f"{path}: the PEM block is not base64") from None


def parse_grant(value: str) -> Any:
    """``CHAIN:CONTRACT[:METHOD,METHOD|*]`` as a Grant; methods left out mean ``*`` (every method)."""
    from zhongshu.hub.registry import ALL_METHODS, Grant

    parts = value.split(":")
    # Two or three fields, none empty.
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageProblem(f"--grant {value!r} is not CHAIN:CONTRACT or CHAIN:CONTRACT:METHOD,METHOD or :*")
    methods = parts[2].split(",") if len(parts) == 3 else [ALL_METHODS]
    # Each method is named (no empty item from a stray comma).
    if not all(methods):
        raise UsageProblem(f"--grant {value!r} has an empty method name")
    return Grant(parts[0], parts[1], methods)


def check_hub_args(check: Callable[[T], None], args: T, what: str) -> T:
    """``args`` once the contract's own limits (its ``Method.check``) accept them; UsageProblem
    with the contract's message otherwise, before anything is signed or sent."""
    from zhongshu.execution.errors import ExecutionError

    try:
        check(args)
    except ExecutionError as exc:
        raise UsageProblem(f"{what}: {exc}") from None
    return args


def check_app_id(app_id: str) -> str:
    # An app id is what `app register` printed: app- and 16 lowercase hex digits.
    if not APP_ID.fullmatch(app_id):
        raise UsageProblem(f"{app_id!r} is not an app id ('app-' and 16 lowercase hex digits)")
    return app_id


def key_option() -> Any:
    return typer.Option(..., "--key", help="PEM private key that signs (operator or org admin).")


# -- talking to the hub -----------------------------------------------------------------------


def submit_hub(api: str, key_file: Path, contract: str, method: str, args: Any) -> Receipt:
    """Sign ``contract.method(args)`` with the key in ``key_file``, submit it to the hub and wait
    for its commit; its receipt if it succeeded, Refused with the contract's reason if not."""
    from zhongshu.sdk import Client, load_key

    signer = load_key(key_file)
    with Client(api, HUB_CHAIN) as client:
        tx = client.sign(signer, contract, method, args)
        receipt = client.submit(tx).receipts[0]
    # A committed transaction can still fail: the hub refused it (its receipt says why).
    if not receipt.ok:
        raise Refused(f"{contract}.{method} failed at hub height {receipt.height}: {receipt.receipt.error}")
    return receipt


def hub_get(api: str, path: str, kind: type[T]) -> T:
    """GET a read route of the hub (``/v1/hub/...``) as ``kind``; the SDK's errors on failure."""
    import httpx

    from zhongshu.sdk.calls import get
    from zhongshu.sdk.transport import FAILURES, connection_failed, read_response, request_args

    call = get(path, kind)
    url = api.rstrip("/")
    try:
        with httpx.Client(base_url=url, timeout=READ_TIMEOUT) as http:
            response = http.request(**request_args(call, READ_TIMEOUT))
    except FAILURES as exc:
        raise connection_failed(url, exc) from None
    result: T = read_response(call, response)
    return result


def record_of(receipt: Receipt, tag: str) -> list[Any]:
    """The record a hub method returned (its canonical array, tag first); Refused if the receipt
    holds something else."""
    result = receipt.receipt.result
    # The method returned the record it wrote.
    if not isinstance(result, list) or not result or result[0] != tag:
        raise Refused(f"the receipt of tx {receipt.tx_hash} holds no {tag} record: {result!r}")
    return result


def wait_for_height(
    read_height: Callable[[], int | None],
    height: int,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Poll ``read_height`` (None: the chain is not served yet) until it reaches ``height``;
    False when ``timeout`` seconds pass first."""
    deadline = clock() + timeout
    delay = POLL_FIRST
    while True:
        current = read_height()
        if current is not None and current >= height:
            return True
        left = deadline - clock()
        if left <= 0:
            return False
        sleep(min(delay, left))
        delay = min(2 * delay, POLL_MAX)


def served_height(api: str, chain: str) -> Callable[[], int | None]:
    """Reads the height of ``chain`` at ``api``; None while the node serves no such chain."""
    from zhongshu.sdk import ApiError, Client

    def read() -> int | None:
        with Client(api, chain) as client:
            try:
                return client.status().height
            except ApiError as exc:
                if exc.code == "unknown-chain":
                    return None
                raise

    return read


# -- files ------------------------------------------------------------------------------------


def free_path(path: Path) -> Path:
    """``path``, refused (UsageProblem) if something is there already: nothing is overwritten."""
    # Nothing is at the path yet.
    if path.exists():
        raise UsageProblem(f"{path} exists; refusing to overwrite it")
    return path


def write_new(path: Path, text: str) -> None:
    """Create ``path`` with ``text``; refused if it appeared meanwhile (O_EXCL)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    except OSError as exc:
        raise UsageProblem(f"cannot write {path}: {exc.strerror or exc}") from None


def app_config(app_id: str, key_file: str) -> str:
    """The text of app.json (format fixed: the SDK reads it)."""
    return json.dumps({"app_id": app_id, "key_file": key_file}, indent=2) + "\n"


@contextmanager
def new_key_file(path: Path) -> Iterator[PrivateKey]:
    """A fresh SM2 key saved (0600) at ``path`` before the body runs; removed if the body fails,
    so only keys the hub took stay on disk."""
    from zhongshu.sdk import new_key, save_key

    key = new_key("sm")
    save_key(path, key)
    try:
        yield key
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def out_dir(path: Path) -> Path:
    """``--out DIR``, created if missing."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageProblem(f"cannot create {path}: {exc.strerror or exc}") from None
    return path


def next_key_file(directory: Path) -> Path:
    """``app_key.pem``, or the first free ``app_key-N.pem`` (N from 2) when a key is there."""
    path = directory / APP_KEY_FILE
    n = 2
    while path.exists():
        path = directory / f"app_key-{n}.pem"
        n += 1
    return path


def say(*lines: str) -> None:
    for line in lines:
        out.print(line, highlight=False, markup=False)


# -- organizations and members ----------------------------------------------------------------


@friendly
def org_create(
    org_id: str = typer.Argument(..., help="Organization id: 2-31 of a-z, 0-9, '-', a letter first."),
    name: str = typer.Option(..., "--name", help="Display name, e.g. 市大数据中心."),
    admin: list[str] = typer.Option(
        ..., "--admin", help="An admin: public key (hex) or PEM file; repeat for more (1 to 16)."
    ),
    key: Path = key_option(),
    api: str = api_option(),
) -> None:
    """Create an organization with its admins (operator only)."""
    from zhongshu.hub.roles import OrgCreate, check_org_create

    admins = [read_public_key(a) for a in admin]
    args = check_hub_args(check_org_create, OrgCreate(org_id, name, admins), "org create")
    receipt = submit_hub(api, key, "hub.org", "create", args)
    plural = "" if len(admins) == 1 else "s"
    say(f"organization {org_id} created at hub height {receipt.height} ({len(admins)} admin{plural})")


@friendly
def org_disable(
    org_id: str = typer.Argument(..., help="Organization id."),
    key: Path = key_option(),
    api: str = api_option(),
) -> None:
    """Disable an organization for good: its admins, members and apps lose every right
    (operator or regulator)."""
    from zhongshu.hub.roles import OrgDisable, check_org_disable

    args = check_hub_args(check_org_disable, OrgDisable(org_id), "org disable")
    receipt = submit_hub(api, key, "hub.org", "disable", args)
    say(f"organization {org_id} disabled at hub height {receipt.height}")


@friendly
def member_add(
    member: str = typer.Argument(..., help="The member's public key (hex) or PEM file."),
    org: str = typer.Option(..., "--org", help="Organization id."),
    role: str = typer.Option(..., "--role", help="member, org-admin, app, regulator or operator."),
    key: Path = key_option(),
    api: str = api_option(),
) -> None:
    """Give a key a role in an organization (the operator: any role; an org admin: member,
    org-admin or app)."""
    from zhongshu.hub.roles import MemberAdd, check_member_add

    public = read_public_key(member)
    args = check_hub_args(check_member_add, MemberAdd(public, org, role), "member add")
    receipt = submit_hub(api, key, "hub.member", "add", args)
    say(f"member {public.hex()[:16]}... added to {org} as {role} at hub height {receipt.height}")


# -- applications -----------------------------------------------------------------------------


@friendly
def app_register(
    org_id: str = typer.Argument(..., help="The owning organization."),
    name: str = typer.Argument(..., help="The app's display name."),
    grant: list[str] = typer.Option(
        [], "--grant", help="CHAIN:CONTRACT[:METHOD,METHOD|*] (default methods: *); repeat for more."
    ),
    rps: int = typer.Option(DEFAULT_RPS, "--rps", help="Requests per second allowed."),
    txs_per_day: int = typer.Option(DEFAULT_TXS_PER_DAY, "--txs-per-day", help="Transactions per day."),
    key: Path = key_option(),
    out_to: Path = typer.Option(..., "--out", help="Directory for app_key.pem and app.json."),
    api: str = api_option(),
) -> None:
    """Register an application (an admin of its organization): a new SM2 key is made for it and
    written with app.json to --out."""
    from zhongshu.hub.registry import AppRegister, Quota, check_app_register, compute_app_id

    grants = [parse_grant(g) for g in grant]
    directory = out_dir(out_to)
    key_path = free_path(directory / APP_KEY_FILE)
    config_path = free_path(directory / APP_CONFIG_FILE)
    with new_key_file(key_path) as app_key:
        args = AppRegister(org_id, name, app_key.public_bytes(), grants, Quota(rps, txs_per_day))
        check_hub_args(check_app_register, args, "app register")
        receipt = submit_hub(api, key, "hub.app", "register", args)
    app_id = str(record_of(receipt, "hub.app")[1])
    # The id is the rule's (docs/hub.md): H(["hub.app", org, name, tx hash]) with the hub's hash.
    expected = compute_app_id(_signer_suite(key), org_id, name, bytes.fromhex(receipt.tx_hash))
    if app_id != expected:
        raise Refused(f"the hub recorded app id {app_id}, the rule gives {expected}")
    write_new(config_path, app_config(app_id, APP_KEY_FILE))
    say(
        f"app {app_id} registered for {org_id} at hub height {receipt.height}",
        f"key     {key_path}",
        f"config  {config_path}",
    )


def _signer_suite(key_file: Path) -> str:
    from zhongshu.sdk import load_key

    return load_key(key_file).suite.name


@friendly
def app_rotate_key(
    app_id: str = typer.Argument(..., help="The app id (app-...)."),
    key: Path = key_option(),
    out_to: Path = typer.Option(..., "--out", help="Directory for the new key and app.json."),
    api: str = api_option(),
) -> None:
    """Give an app a new SM2 key (an admin of its organization, or the app's current key); the
    old key is retired. The new key goes to --out, and app.json there names it."""
    from zhongshu.hub.registry import AppRotateKey, check_app_rotate_key

    check_app_id(app_id)
    directory = out_dir(out_to)
    config_path = directory / APP_CONFIG_FILE
    if config_path.exists():
        # An app.json there is this app's: the rotation updates it, never another app's.
        held = _read_config(config_path).get("app_id")
        if held != app_id:
            raise UsageProblem(f"{config_path} is the config of {held!r}, not of {app_id}")
    key_path = next_key_file(directory)
    with new_key_file(key_path) as app_key:
        args = check_hub_args(
            check_app_rotate_key, AppRotateKey(app_id, app_key.public_bytes()), "app rotate-key"
        )
        receipt = submit_hub(api, key, "hub.app", "rotate-key", args)
    _replace_config(config_path, app_config(app_id, key_path.name))
    say(
        f"app {app_id}: new key at hub height {receipt.height}; the old key is retired",
        f"key     {key_path}",
        f"config  {config_path}",
    )


def _read_config(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageProblem(f"cannot read {path}: {exc}") from None
    # An app config is a JSON object (the SDK's credentials file).
    if not isinstance(value, dict):
        raise UsageProblem(f"{path} is not an app config (a JSON object)")
    return value


def _replace_config(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a temporary file renamed over it)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_new(temporary, text)
    os.replace(temporary, path)


@friendly
def app_disable(
    app_id: str = typer.Argument(..., help="The app id (app-...)."),
    key: Path = key_option(),
    api: str = api_option(),
) -> None:
    """Disable an app for good (an admin of its organization, the operator or a regulator)."""
    from zhongshu.hub.registry import AppDisable, check_app_disable

    args = check_hub_args(check_app_disable, AppDisable(check_app_id(app_id)), "app disable")
    receipt = submit_hub(api, key, "hub.app", "disable", args)
    say(f"app {app_id} disabled at hub height {receipt.height}")


@friendly
def app_show(
    app_id: str = typer.Argument(..., help="The app id (app-...)."),
    api: str = api_option(),
    as_json: bool = json_option(),
) -> None:
    """An app's organization, status, keys (current and retired), grants and quota."""
    view = hub_get(api, f"/v1/hub/apps/{check_app_id(app_id)}", dict)
    if as_json:
        print_json(view)
        return
    quota = view["quota"]
    lines = [
        ("app", f"{view['app_id']} ({view['name']})"),
        ("org", view["org_id"]),
        (
            "status",
            view["status"] + (f" at hub height {view['disabled_height']}" if view["disabled_height"] else ""),
        ),
        ("registered", f"hub height {view['height']}, {format_time(view['time'])}"),
        ("quota", f"{quota['requests_per_second']} requests/s, {quota['txs_per_day']} txs/day"),
    ]
    for g in view["grants"]:
        lines.append(("grant", f"{g['chain']}:{g['contract']}:{','.join(g['methods'])}"))
    for k in view["keys"]:
        until = f" until {k['until_height']}" if k["until_height"] else ""
        lines.append(("key", f"{k['public_key']} {k['status']} (from hub height {k['since_height']}{until})"))
    width = max(len(n) for n, _ in lines)
    say(*(f"{n.ljust(width)}  {v}" for n, v in lines))


# -- chains -----------------------------------------------------------------------------------


@friendly
def chain_create(
    name: str = typer.Argument(..., help="Chain id: 2-31 of a-z, 0-9, '-', a letter first."),
    suite: str = typer.Option("sm", help="sm (SM2/SM3) or intl (Ed25519/SHA-256)."),
    validators: str = typer.Option(
        None, help="Comma-separated node names (default: every node registered on the hub)."
    ),
    org: list[str] = typer.Option([], "--org", help="A member organization; repeat for more."),
    block_interval_ms: int = typer.Option(None, help="Target time between blocks (default 200)."),
    key: Path = typer.Option(..., "--key", help="PEM private key of the operator."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the chain's first block."),
    timeout: float = typer.Option(FIRST_BLOCK_WAIT, help="Seconds to wait for the first block."),
    api: str = api_option(),
    as_json: bool = json_option(),
) -> None:
    """Create a business chain (operator only); with --wait, until its first block is committed
    on the --api node, then print how long that took from the create."""
    from zhongshu.hub.chains import ChainCreate, check_chain_create
    from zhongshu.ledger.types import ChainParams

    # The wait is a positive number of seconds.
    if not timeout > 0:
        raise UsageProblem(f"--timeout {timeout:g} is not a positive number of seconds")
    if validators is None:
        names = [n["name"] for n in hub_get(api, "/v1/hub/nodes", dict)["items"]]
        # The default needs registered nodes, which hub.init writes.
        if not names:
            raise Refused("the hub has no registered nodes (hub.init has not run); name --validators")
    else:
        names = [v.strip() for v in validators.split(",")]
    params = ChainParams() if block_interval_ms is None else ChainParams(block_interval_ms=block_interval_ms)
    args = check_hub_args(
        check_chain_create, ChainCreate(name, suite, names, params, list(org)), "chain create"
    )
    started = time.monotonic()
    receipt = submit_hub(api, key, "hub.chain", "create", args)
    view = hub_get(api, f"/v1/hub/chains/{name}", dict)
    first_block: float | None = None
    if wait:
        if not wait_for_height(served_height(api, name), 1, timeout):
            raise Refused(
                f"chain {name} was created at hub height {receipt.height}, but {api} shows no block of "
                f"it within {timeout:g} s; look with `zhongshu status --chain {name} --api {api}`"
            )
        first_block = time.monotonic() - started
        _check_served_genesis(api, name, view["genesis_hash"])
    if as_json:
        print_json({"chain": view, "hub_height": receipt.height, "first_block_seconds": first_block})
        return
    _print_chain(view, receipt.height)
    if first_block is not None:
        say(f"first block after {first_block:.2f} s")


def _check_served_genesis(api: str, name: str, genesis_hash: str) -> None:
    from zhongshu.sdk import Client

    with Client(api, name) as client:
        served = client.status().genesis_hash
    # The node runs the chain from the genesis its hub record derives, nothing else.
    if served != genesis_hash:
        raise Refused(f"{api} runs chain {name} from genesis {served}, its hub record derives {genesis_hash}")


def _print_chain(view: dict[str, Any], hub_height: int) -> None:
    params = view["params"]
    say(
        f"chain {view['name']} created at hub height {hub_height} (suite {view['suite']})",
        f"validators    {', '.join(view['validators'])}",
        f"orgs          {', '.join(view['orgs']) or '-'}",
        f"block every   {params['block_interval_ms']} ms",
        f"genesis time  {format_time(view['time'])}",
        f"genesis hash  {view['genesis_hash']}",
    )


@friendly
def chain_list(api: str = api_option(), as_json: bool = json_option()) -> None:
    """Every business chain on the hub: name, suite, status, validators, genesis hash."""
    from rich.markup import escape
    from rich.table import Table

    chains = hub_get(api, "/v1/hub/chains", dict)["items"]
    if as_json:
        print_json(chains)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("name", "suite", "status", "validators", "genesis hash"):
        table.add_column(column)
    for c in chains:
        # Cells are Rich markup: names from the hub are escaped.
        table.add_row(
            escape(c["name"]), c["suite"], c["status"], escape(",".join(c["validators"])), c["genesis_hash"]
        )
    out.print(table, highlight=False)
    say(f"{len(chains)} chain{'' if len(chains) == 1 else 's'}")


@friendly
def chain_stop(
    name: str = typer.Argument(..., help="The chain to stop."),
    key: Path = typer.Option(..., "--key", help="PEM private key of the operator."),
    api: str = api_option(),
) -> None:
    """Stop a business chain for good (operator only); its record stays on the hub."""
    from zhongshu.hub.chains import ChainStop, check_chain_stop

    args = check_hub_args(check_chain_stop, ChainStop(name), "chain stop")
    receipt = submit_hub(api, key, "hub.chain", "stop", args)
    say(f"chain {name} stopped at hub height {receipt.height}")
