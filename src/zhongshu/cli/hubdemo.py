"""What ``zhongshu up`` sets up on a new local hub, so the quick start works at once.

On the hub's first start, signed with the operator key ``up`` wrote (DIR/operator_key.pem):

1. organization ``demo``, whose admin key is written to DIR/demo/admin_key.pem;
2. business chain ``main`` (the suite of ``up --suite``) on every node, with ``demo`` a member;
3. application ``demo-app`` of ``demo`` (signed by its admin), granted every evidence method on
   ``main``; its SM2 key and credentials file are DIR/demo/app_key.pem and DIR/demo/app.json.

Each step is skipped when its result is there already (an organization or chain that exists,
an app.json on disk), so an ``up`` interrupted half-way completes the rest the next time.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from zhongshu.crypto import PrivateKey, get_suite, load_private_key_pem
from zhongshu.hub.chains import ChainCreate
from zhongshu.hub.homes import OPERATOR_KEY_FILE
from zhongshu.hub.registry import AppRegister, Grant, Quota
from zhongshu.hub.roles import OrgCreate
from zhongshu.ledger.genesis import load_genesis
from zhongshu.ledger.types import ChainParams
from zhongshu.sdk import Client

DEMO_DIR = "demo"
DEMO_ORG = "demo"
DEMO_CHAIN = "main"
DEMO_APP = "demo-app"
ADMIN_KEY_FILE = "admin_key.pem"
APP_KEY_FILE = "app_key.pem"
APP_FILE = "app.json"
DEMO_QUOTA = Quota(requests_per_second=10_000, txs_per_day=100_000_000)
READY_SECONDS = 60.0


class DemoError(RuntimeError):
    """The demo organization, chain or app could not be set up."""


@dataclass(frozen=True)
class Demo:
    operator_key: Path
    admin_key: Path
    app_file: Path
    app_id: str
    chain: str
    first_block_seconds: float | None
    """Seconds from submitting the chain's creation to its first block; None if it existed."""
    suite: str
    """The demo chain's suite."""


def _key_file(path: Path, suite: str) -> PrivateKey:
    """The key in ``path``, or a new key of ``suite`` written there (0600)."""
    if path.exists():
        return load_private_key_pem(path.read_bytes())
    key = get_suite(suite).generate_private_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.encode_pem())
    return key


def _commit(client: Client, key: PrivateKey, contract: str, method: str, args: object) -> str | None:
    """Submit one hub transaction and wait for it; its error (None when it succeeded)."""
    receipt = client.submit(client.sign(key, contract, method, args)).receipts[0]
    return None if receipt.ok else receipt.receipt.error


def _exists(api: str, path: str) -> bool:
    """Whether the hub holds the record at ``path`` (a read route under /v1/hub)."""
    return httpx.get(f"{api}/v1/hub/{path}", timeout=10).status_code == 200


def _wait_initialised(client: Client, operator: PrivateKey, admin: PrivateKey, deadline: float) -> bool:
    """Create the demo organization once the hub knows its operator; False if it existed."""
    if _exists(client.url, f"orgs/{DEMO_ORG}"):
        return False
    org = OrgCreate(DEMO_ORG, "Demo organization", [admin.public_bytes()])
    while True:
        error = _commit(client, operator, "hub.org", "create", org)
        if error is None:
            return True
        if error.startswith("conflict"):
            return False
        # Until hub.init is committed there is no operator: every hub method is refused.
        if time.monotonic() > deadline:
            raise DemoError(f"the hub refused the demo organization: {error}")
        time.sleep(0.2)


def ensure_demo(root: Path, api: str, suite: str) -> Demo:
    """Set up (or find) the demo organization, chain and app of the hub in ``root``."""
    deadline = time.monotonic() + READY_SECONDS
    directory = root / DEMO_DIR
    directory.mkdir(exist_ok=True)
    hub_genesis = load_genesis(root / "node0" / "genesis.json")
    operator = load_private_key_pem((root / OPERATOR_KEY_FILE).read_bytes())
    admin = _key_file(directory / ADMIN_KEY_FILE, hub_genesis.suite)
    first_block: float | None = None
    with Client(api, "hub") as client:
        _wait_initialised(client, operator, admin, deadline)
        nodes = [v.name for v in hub_genesis.validators.validators]
        started = time.monotonic()
        create = ChainCreate(DEMO_CHAIN, suite, nodes, ChainParams(), [DEMO_ORG])
        created = False
        if not _exists(api, f"chains/{DEMO_CHAIN}"):
            error = _commit(client, operator, "hub.chain", "create", create)
            if error is not None and not error.startswith("conflict"):
                raise DemoError(f"the hub refused the demo chain: {error}")
            created = error is None
        app_file = directory / APP_FILE
        if not app_file.exists():
            app_key_path = directory / APP_KEY_FILE
            if app_key_path.exists():
                app_key_path.unlink()
            app_key = _key_file(app_key_path, "sm")
            grant = Grant(DEMO_CHAIN, "evidence", ["*"])
            register = AppRegister(DEMO_ORG, DEMO_APP, app_key.public_bytes(), [grant], DEMO_QUOTA)
            receipt = client.submit(client.sign(admin, "hub.app", "register", register)).receipts[0]
            if not receipt.ok:
                raise DemoError(f"the hub refused the demo app: {receipt.receipt.error}")
            app_id = _app_id_of(receipt.receipt.result)
            app_file.write_text(json.dumps({"app_id": app_id, "key_file": APP_KEY_FILE}, indent=2) + "\n")
        app_id = json.loads(app_file.read_text())["app_id"]
    if created:
        _wait_first_block(api, deadline)
        first_block = time.monotonic() - started
    else:
        # A hub from an earlier run: its nodes bring the chain back as they start.
        _wait_first_block(api, deadline)
    # The first node wrote the chain's genesis (derived from the hub's record) when it started it.
    chain_suite = load_genesis(root / "node0" / "chains" / DEMO_CHAIN / "genesis.json").suite
    return Demo(
        root / OPERATOR_KEY_FILE,
        directory / ADMIN_KEY_FILE,
        app_file,
        app_id,
        DEMO_CHAIN,
        first_block,
        chain_suite,
    )


def _app_id_of(result: object) -> str:
    """The app id in a ``hub.app.register`` receipt's result: the new AppRecord, which the SDK
    gives decoded as its array form (the tag ``hub.app``, then the app id)."""
    # The result is an app record.
    if not isinstance(result, list) or len(result) < 2 or result[0] != "hub.app":
        raise DemoError(f"hub.app.register answered {result!r}, not an app record")
    return str(result[1])


def _wait_first_block(api: str, deadline: float) -> None:
    url = f"{api}/v1/chains/{DEMO_CHAIN}/status"
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url, timeout=2)
            if answer.status_code == 200 and answer.json()["height"] >= 1:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise DemoError(f"chain {DEMO_CHAIN} made no block within {READY_SECONDS:g} s; see the nodes' logs")
