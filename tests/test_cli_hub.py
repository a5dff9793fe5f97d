"""The hub's command line and read routes, against a real node serving the chain ``hub``.

The node (SoloNode over a home made by ``init_single_home(chain_id="hub")``) and its gateway,
with ``hub_router`` included as the node process will include it, run in a uvicorn server on a
background thread; the fixture initialises the hub (``hub.init`` signed by the node's validator
key, nodes ``node0`` and ``node1``). The commands run through the real entry
(``zhongshu.cli.main.main``), in this process for speed, or as processes where the terminal
matters (the table, an unreachable gateway). Every check reads the outcome back from the hub
through the read routes, or computes it independently (a business chain's genesis, by hand).

A stand-in for the node's chain starter (a watcher in the server's loop) starts the business
chains whose only validator is ``node0`` and deposits one record on each, so ``chain create``'s
wait for the first block is exercised end to end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import re
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from conftest import free_port, run_cli
from zhongshu.cli.exits import REFUSED, UNREACHABLE, USAGE, UsageProblem
from zhongshu.cli.hub import read_public_key, wait_for_height
from zhongshu.cli.main import main
from zhongshu.crypto import get_suite
from zhongshu.gateway.app import create_app
from zhongshu.gateway.hub_routes import hub_router
from zhongshu.hub import derive_genesis_from_state, list_chains
from zhongshu.hub.factory import registry_for
from zhongshu.hub.registry import HubInit
from zhongshu.hub.roles import NodeKeys
from zhongshu.ledger.genesis import genesis_to_json
from zhongshu.ledger.hashing import compute_genesis_hash
from zhongshu.ledger.types import ChainParams, Genesis, Validator, ValidatorSet
from zhongshu.node.chain import ChainNode
from zhongshu.node.home import KEY_FILE, init_single_home, load_home
from zhongshu.node.signer import Signer
from zhongshu.node.solo_node import SoloNode
from zhongshu.sdk import Client, PrivateKey, evidence_tx, load_app, load_key, new_key, save_key

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parents[1] / "docs"
SERVE_TIMEOUT = 30.0
"""Seconds the in-process node may take to start serving."""


# -- the node ---------------------------------------------------------------------------------


@dataclass
class HubServer:
    """A node serving ``hub`` (and the business chains the stand-in starter starts) in a thread."""

    home: Path
    port: int
    chains: dict[str, ChainNode] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)
    failure: list[BaseException] = field(default_factory=list)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="hub-node", daemon=True)
        self.thread.start()
        # Serving, or failed: whichever comes first.
        assert self.ready.wait(SERVE_TIMEOUT), "the hub node did not start"
        assert not self.failure, self.failure

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(SERVE_TIMEOUT)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self.failure.append(exc)
        finally:
            # A server that stopped (or never started) no longer keeps start() waiting.
            self.ready.set()

    async def _serve(self) -> None:
        config, genesis, key = load_home(self.home)
        hub = SoloNode(
            genesis,
            config.data_dir,
            Signer(key, self.home / "signer_state.json"),
            verify_workers=1,
            registry=registry_for("hub"),
        )
        self.chains["hub"] = hub
        app = create_app(self.chains)
        app.include_router(hub_router(hub))
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_config=None, log_level="warning", lifespan="off"
            )
        )
        tasks = [asyncio.create_task(hub.run()), asyncio.create_task(self._start_chains(hub, key))]
        announce = asyncio.create_task(self._announce())
        try:
            await self.server.serve()
        finally:
            for task in [*tasks, announce]:
                task.cancel()
            await asyncio.gather(*tasks, announce, return_exceptions=True)
            await asyncio.get_running_loop().shutdown_default_executor()
            for node in self.chains.values():
                node.close()

    async def _announce(self) -> None:
        assert self.server is not None
        while not self.server.started:
            await asyncio.sleep(0.01)
        self.ready.set()

    async def _start_chains(self, hub: ChainNode, key: PrivateKey) -> None:
        """Stand-in for the node's chain starter: serve each new chain whose one validator is
        node0 (this node), from the genesis its hub record derives, and deposit one record."""
        started: list[asyncio.Task[None]] = []
        try:
            while True:
                with hub.store.state_reader() as read:
                    records = list_chains(read)
                    new = [
                        (r.name, derive_genesis_from_state(read, r.name))
                        for r in records
                        if r.validators == ["node0"] and r.status == "active" and r.name not in self.chains
                    ]
                for name, genesis in new:
                    node = SoloNode(
                        genesis,
                        self.home / f"chain-{name}",
                        Signer(key, self.home / f"signer-{name}.json"),
                        verify_workers=1,
                    )
                    self.chains[name] = node
                    started.append(asyncio.create_task(node.run()))
                    depositor = new_key(genesis.suite)
                    tx = evidence_tx(depositor, name, node.genesis_hash, b"\x01" * 32, "first.pdf", 1000)
                    await node.submit([tx])
                await asyncio.sleep(0.02)
        finally:
            for task in started:
                task.cancel()
            await asyncio.gather(*started, return_exceptions=True)


@dataclass(frozen=True)
class Hub:
    """The running hub and the keys the tests act with."""

    server: HubServer
    root: Path
    operator: Path
    """The operator's key file (hub.init named it)."""
    validator: PrivateKey
    node1: NodeKeys

    @property
    def url(self) -> str:
        return self.server.url

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10.0)

    def read(self, path: str) -> Any:
        response = self.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    def new_key_file(self, name: str, suite: str = "sm") -> Path:
        path = self.root / f"{name}.pem"
        save_key(path, new_key(suite))
        return path


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root = tmp_path_factory.mktemp("hub-cli")
    home = root / "home"
    init_single_home(home, suite="sm", chain_id="hub", port=free_port(), now_ms=time.time_ns() // 1_000_000)
    server = HubServer(home, free_port())
    server.start()
    try:
        validator = load_key(home / KEY_FILE)
        operator = root / "operator.pem"
        save_key(operator, new_key("sm"))
        node0 = NodeKeys("node0", validator.public_bytes(), new_key("intl").public_bytes())
        node1 = NodeKeys("node1", new_key("sm").public_bytes(), new_key("intl").public_bytes())
        with Client(server.url, "hub") as client:
            init = HubInit(load_key(operator).public_bytes(), [node0, node1])
            receipt = client.submit(client.sign(validator, "hub", "init", init)).receipts[0]
        assert receipt.ok and receipt.height == 1, receipt
        yield Hub(server, root, operator, validator, node1)
    finally:
        server.stop()


# -- running the command line -----------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    def ok(self) -> str:
        assert self.code == 0, f"exit {self.code}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        return self.stdout

    def error(self, code: int) -> str:
        """The one ``error:`` line of a run that exited with ``code``."""
        assert self.code == code, f"exit {self.code}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), self.stderr
        assert "Traceback" not in self.stderr + self.stdout
        return lines[0].removeprefix("error: ")


def zhongshu(*args: str | Path) -> Run:
    """``zhongshu ARGS`` through the real entry, in this process."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(a) for a in args])
    return Run(code, stdout.getvalue(), stderr.getvalue())


def public_pem(raw: bytes) -> bytes:
    """An SM2 public key as a PEM SubjectPublicKeyInfo, written by Tongsuo (not by our code)."""
    from tongsuopy.crypto import serialization
    from tongsuopy.crypto.asymciphers import ec

    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SM2(), raw)
    return bytes(
        key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


# -- shared records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Org:
    org_id: str
    admin: Path
    """An admin's key file (given to org create as a private PEM file)."""
    second_admin: bytes
    """The other admin's public key (given as hex)."""


@pytest.fixture(scope="module")
def court(hub: Hub) -> Org:
    admin = hub.new_key_file("court-admin")
    second = new_key("sm").public_bytes()
    stdout = zhongshu(
        "org", "create", "court", "--name", "市中级人民法院", "--admin", admin, "--admin", second.hex(),
        "--key", hub.operator, "--api", hub.url,
    ).ok()  # fmt: skip
    assert stdout.startswith("organization court created at hub height "), stdout
    assert "(2 admins)" in stdout
    return Org("court", admin, second)


@dataclass(frozen=True)
class Chain:
    name: str
    hub_height: int
    stdout: str


@pytest.fixture(scope="module")
def records(hub: Hub, court: Org) -> Chain:
    """A business chain on both nodes with court as member, created without waiting."""
    stdout = zhongshu(
        "chain", "create", "records", "--org", "court", "--block-interval-ms", "500", "--no-wait",
        "--key", hub.operator, "--api", hub.url,
    ).ok()  # fmt: skip
    first = stdout.splitlines()[0]
    assert first.startswith("chain records created at hub height ") and first.endswith("(suite sm)"), stdout
    return Chain("records", int(first.split()[6]), stdout)


def register(hub: Hub, court: Org, out: Path, *grants: str) -> tuple[str, str]:
    """``app register`` of a new app of court into ``out``; its id and the whole stdout."""
    args = [a for g in grants for a in ("--grant", g)]
    stdout = zhongshu(
        "app", "register", "court", "Case filing", *args, "--rps", "50", "--txs-per-day", "20000",
        "--key", court.admin, "--out", out, "--api", hub.url,
    ).ok()  # fmt: skip
    first = stdout.splitlines()[0]
    assert first.startswith("app app-") and " registered for court at hub height " in first, stdout
    return first.split()[1], stdout


# -- organizations and members ----------------------------------------------------------------


def test_org_create_records_the_org_and_its_admins(hub: Hub, court: Org) -> None:
    org = hub.read("/v1/hub/orgs/court")
    admin = load_key(court.admin).public_hex()
    assert org["name"] == "市中级人民法院" and org["status"] == "active"
    # Both admins, in the order given: one from its PEM file, one from hex.
    assert org["admins"] == [admin, court.second_admin.hex()]
    member = hub.read(f"/v1/hub/members/{admin}")
    assert (member["org_id"], member["role"]) == ("court", "org-admin")
    assert member["added_by"] == load_key(hub.operator).public_hex()


def test_member_add_by_an_org_admin_from_a_public_key_file(hub: Hub, court: Org) -> None:
    raw = new_key("sm").public_bytes()
    pem = hub.root / "clerk.pub.pem"
    pem.write_bytes(public_pem(raw))
    stdout = zhongshu(
        "member", "add", pem, "--org", "court", "--role", "member", "--key", court.admin, "--api", hub.url
    ).ok()
    assert stdout.startswith(f"member {raw.hex()[:16]}... added to court as member at hub height ")
    member = hub.read(f"/v1/hub/members/{raw.hex()}")
    assert (member["public_key"], member["org_id"], member["role"]) == (raw.hex(), "court", "member")
    assert member["added_by"] == load_key(court.admin).public_hex()


def test_an_org_admin_cannot_grant_a_hub_wide_role(hub: Hub, court: Org) -> None:
    key = new_key("sm").public_hex()
    reason = zhongshu(
        "member", "add", key, "--org", "court", "--role", "regulator", "--key", court.admin, "--api", hub.url
    ).error(REFUSED)
    assert "hub.member.add failed" in reason
    assert "only the operator may grant the role regulator" in reason
    assert hub.get(f"/v1/hub/members/{key}").status_code == 404


def test_an_unknown_org_is_refused(hub: Hub, court: Org) -> None:
    key = new_key("sm").public_hex()
    reason = zhongshu(
        "member", "add", key, "--org", "nowhere", "--role", "member", "--key", hub.operator, "--api", hub.url
    ).error(REFUSED)
    assert "not found: no organization 'nowhere'" in reason
    reason = zhongshu(
        "chain", "create", "ghosts", "--org", "nowhere", "--no-wait", "--key", hub.operator, "--api", hub.url
    ).error(REFUSED)
    assert "not found: no organization 'nowhere'" in reason
    assert hub.get("/v1/hub/chains/ghosts").status_code == 404


def test_org_disable(hub: Hub) -> None:
    admin = new_key("sm").public_hex()
    zhongshu("org", "create", "bank", "--name", "City Bank", "--admin", admin, "--key", hub.operator,
             "--api", hub.url).ok()  # fmt: skip
    stdout = zhongshu("org", "disable", "bank", "--key", hub.operator, "--api", hub.url).ok()
    assert stdout.startswith("organization bank disabled at hub height ")
    assert hub.read("/v1/hub/orgs/bank")["status"] == "disabled"
    # Final: a second disable is a conflict.
    reason = zhongshu("org", "disable", "bank", "--key", hub.operator, "--api", hub.url).error(REFUSED)
    assert "conflict: organization 'bank' is already disabled" in reason


# -- chains -----------------------------------------------------------------------------------


def test_chain_create_records_the_chain_and_its_genesis(hub: Hub, records: Chain) -> None:
    # The genesis built by hand from the rule of docs/hub.md §5, not by derive_genesis.
    block_time = hub.read(f"/v1/chains/hub/blocks/{records.hub_height}")["time"]
    expected = Genesis(
        "records",
        "sm",
        block_time,
        ValidatorSet(
            [Validator(hub.validator.public_bytes(), 1, "node0"), Validator(hub.node1.sm_key, 1, "node1")]
        ),
        ChainParams(block_interval_ms=500),
    )
    genesis_hash = compute_genesis_hash(get_suite("sm").hasher(), expected).hex()
    view = hub.read("/v1/hub/chains/records")
    assert view == {
        "name": "records",
        "suite": "sm",
        "validators": ["node0", "node1"],
        "params": genesis_to_json(expected)["params"],
        "orgs": ["court"],
        "status": "active",
        "height": records.hub_height,
        "time": block_time,
        "stopped_height": 0,
        "genesis_hash": genesis_hash,
    }
    assert hub.read("/v1/hub/chains/records/genesis") == genesis_to_json(expected)
    # --no-wait prints the record and the genesis hash.
    assert f"genesis hash  {genesis_hash}" in records.stdout
    assert "validators    node0, node1" in records.stdout
    assert "block every   500 ms" in records.stdout


def test_chain_create_waits_for_the_first_block(hub: Hub, court: Org) -> None:
    stdout = zhongshu(
        "chain", "create", "filings", "--validators", "node0", "--block-interval-ms", "20",
        "--timeout", "20", "--key", hub.operator, "--api", hub.url,
    ).ok()  # fmt: skip
    lines = stdout.splitlines()
    assert lines[-1].startswith("first block after ") and lines[-1].endswith(" s"), stdout
    seconds = float(lines[-1].split()[3])
    print(f"chain create -> first block: {seconds:.2f} s")
    # The chain the node serves starts from the genesis the hub record derives.
    served = hub.read("/v1/chains/filings/status")
    assert served["height"] >= 1
    assert f"genesis hash  {served['genesis_hash']}" in stdout
    assert hub.read("/v1/hub/chains/filings")["genesis_hash"] == served["genesis_hash"]


def test_chain_create_without_a_first_block_in_time(hub: Hub) -> None:
    # Both nodes validate it and no node here starts it: no first block comes.
    reason = zhongshu(
        "chain", "create", "idle", "--timeout", "0.3", "--key", hub.operator, "--api", hub.url
    ).error(REFUSED)
    assert reason.startswith("chain idle was created at hub height ")
    assert "shows no block of it within 0.3 s" in reason
    assert hub.read("/v1/hub/chains/idle")["validators"] == ["node0", "node1"]


def test_an_org_admin_cannot_create_a_chain(hub: Hub, court: Org) -> None:
    reason = zhongshu(
        "chain", "create", "mine", "--validators", "node0", "--no-wait", "--key", court.admin,
        "--api", hub.url,
    ).error(REFUSED)  # fmt: skip
    assert reason.startswith("hub.chain.create failed at hub height ")
    assert reason.endswith("not allowed: only the operator may create a chain")
    assert hub.get("/v1/hub/chains/mine").status_code == 404


def test_chain_list(hub: Hub, records: Chain) -> None:
    listed = json.loads(zhongshu("chain", "list", "--json", "--api", hub.url).ok())
    assert listed == hub.read("/v1/hub/chains")["items"]
    chain = next(c for c in listed if c["name"] == "records")
    # The table, as a terminal shows it (a process with a wide terminal).
    result = run_cli("chain", "list", "--api", hub.url)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["name", "suite", "status", "validators", "genesis", "hash"]
    by_name = {row.split()[0]: row.split() for row in rows[:-1]}
    assert by_name["records"] == ["records", "sm", "active", "node0,node1", chain["genesis_hash"]]
    assert rows[-1] == f"{len(listed)} chains"


def test_chain_stop(hub: Hub) -> None:
    zhongshu("chain", "create", "archive", "--validators", "node1", "--no-wait", "--key", hub.operator,
             "--api", hub.url).ok()  # fmt: skip
    stdout = zhongshu("chain", "stop", "archive", "--key", hub.operator, "--api", hub.url).ok()
    assert stdout.startswith("chain archive stopped at hub height ")
    view = hub.read("/v1/hub/chains/archive")
    assert view["status"] == "stopped" and view["stopped_height"] == int(stdout.split()[-1])
    reason = zhongshu("chain", "stop", "archive", "--key", hub.operator, "--api", hub.url).error(REFUSED)
    assert "conflict: chain 'archive' is already stopped" in reason


# -- applications -----------------------------------------------------------------------------


def test_app_register_writes_its_key_and_config(hub: Hub, court: Org, records: Chain) -> None:
    out = hub.root / "filing-app"
    app_id, stdout = register(hub, court, out, "records:evidence:put,get", "records:hub-notes")
    key_file, config = out / "app_key.pem", out / "app.json"
    assert f"key     {key_file}" in stdout and f"config  {config}" in stdout
    assert json.loads(config.read_text()) == {"app_id": app_id, "key_file": "app_key.pem"}
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    app = hub.read(f"/v1/hub/apps/{app_id}")
    public = load_key(key_file).public_hex()
    # The SDK reads the pair as the app's credentials.
    credentials = load_app(config)
    assert (credentials.app_id, credentials.key.public_hex()) == (app_id, public)
    assert (app["org_id"], app["name"], app["status"], app["public_key"]) == (
        "court",
        "Case filing",
        "active",
        public,
    )
    assert app["grants"] == [
        {"chain": "records", "contract": "evidence", "methods": ["put", "get"]},
        {"chain": "records", "contract": "hub-notes", "methods": ["*"]},
    ]
    assert app["quota"] == {"requests_per_second": 50, "txs_per_day": 20000}
    assert app["keys"] == [
        {"public_key": public, "status": "current", "since_height": app["height"], "until_height": 0}
    ]
    # Nothing is overwritten: a second registration into the same directory is refused up front.
    before = key_file.read_bytes()
    reason = zhongshu(
        "app", "register", "court", "Again", "--grant", "records:evidence", "--key", court.admin,
        "--out", out, "--api", hub.url,
    ).error(USAGE)  # fmt: skip
    assert reason == f"{key_file} exists; refusing to overwrite it"
    assert key_file.read_bytes() == before


def test_app_rotate_key_retires_the_old_key(hub: Hub, court: Org, records: Chain) -> None:
    out = hub.root / "rotating-app"
    app_id, _ = register(hub, court, out, "records:evidence")
    old = load_key(out / "app_key.pem").public_hex()
    stdout = zhongshu("app", "rotate-key", app_id, "--key", court.admin, "--out", out, "--api", hub.url).ok()
    rotated_at = int(stdout.splitlines()[0].split("hub height ")[1].split(";")[0])
    new_file = out / "app_key-2.pem"
    assert f"key     {new_file}" in stdout
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o600
    assert json.loads((out / "app.json").read_text()) == {"app_id": app_id, "key_file": "app_key-2.pem"}
    new = load_key(new_file).public_hex()
    assert load_app(out / "app.json").key.public_hex() == new
    app = hub.read(f"/v1/hub/apps/{app_id}")
    assert app["public_key"] == new
    assert [(k["public_key"], k["status"], k["until_height"]) for k in app["keys"]] == [
        (old, "retired", rotated_at),
        (new, "current", 0),
    ]
    shown = zhongshu("app", "show", app_id, "--api", hub.url).ok()
    assert f"{old} retired (from hub height {app['height']} until {rotated_at})" in shown
    assert f"{new} current (from hub height {rotated_at})" in shown
    # The retired key no longer rotates: only the current key or an admin may.
    again = zhongshu(
        "app", "rotate-key", app_id, "--key", out / "app_key.pem", "--out", out, "--api", hub.url
    )
    assert "only an admin of 'court' or the app's current key may rotate its key" in again.error(REFUSED)
    # The refused rotation left no key behind.
    assert not (out / "app_key-3.pem").exists()


def test_app_disable(hub: Hub, court: Org, records: Chain) -> None:
    app_id, _ = register(hub, court, hub.root / "closing-app", "records:evidence")
    stdout = zhongshu("app", "disable", app_id, "--key", hub.operator, "--api", hub.url).ok()
    assert stdout.startswith(f"app {app_id} disabled at hub height ")
    app = hub.read(f"/v1/hub/apps/{app_id}")
    assert app["status"] == "disabled" and app["disabled_height"] == int(stdout.split()[-1])
    reason = zhongshu("app", "disable", app_id, "--key", court.admin, "--api", hub.url).error(REFUSED)
    assert f"conflict: application {app_id} is already disabled" in reason


@pytest.mark.parametrize(
    "grant",
    [
        "records",
        "records:evidence:",
        "records::put",
        "records:evidence:put,,get",
        "a:b:c:d",
        "records:evidence:*,put",
    ],
)
def test_a_bad_grant_is_a_usage_error(hub: Hub, court: Org, grant: str) -> None:
    out = hub.root / "bad-grant"
    reason = zhongshu(
        "app",
        "register",
        "court",
        "X",
        "--grant",
        grant,
        "--key",
        court.admin,
        "--out",
        out,
        "--api",
        hub.url,
    ).error(USAGE)
    assert "grant" in reason
    # Nothing was written or registered.
    assert not (out / "app_key.pem").exists() and not (out / "app.json").exists()


def test_an_unreachable_gateway(hub: Hub, court: Org) -> None:
    api = f"http://127.0.0.1:{free_port()}"
    result = run_cli("org", "disable", "court", "--key", hub.operator, "--api", api)
    assert result.returncode == UNREACHABLE, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach the gateway at {api}"), result.stderr
    assert zhongshu("chain", "list", "--api", api).error(UNREACHABLE).startswith("cannot reach the gateway")


# -- read routes ------------------------------------------------------------------------------


def test_nodes_route(hub: Hub) -> None:
    nodes = hub.read("/v1/hub/nodes")
    assert nodes["next_cursor"] is None
    assert [n["name"] for n in nodes["items"]] == ["node0", "node1"]
    assert nodes["items"][0]["sm_key"] == hub.validator.public_hex()
    assert nodes["items"][1] == {
        "name": "node1",
        "sm_key": hub.node1.sm_key.hex(),
        "intl_key": hub.node1.intl_key.hex(),
    }


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/v1/hub/chains/nowhere", "nowhere"),
        ("/v1/hub/chains/nowhere/genesis", "nowhere"),
        ("/v1/hub/orgs/nowhere", "nowhere"),
        ("/v1/hub/apps/app-0123456789abcdef", "app-0123456789abcdef"),
        ("/v1/hub/members/04" + "ab" * 64, "04abababab"),
    ],
)
def test_an_unknown_name_is_a_not_found_problem(hub: Hub, path: str, named: str) -> None:
    response = hub.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["type"], problem["status"], problem["instance"]) == ("/problems/not-found", 404, path)
    assert named in problem["detail"]


@pytest.mark.parametrize("path", ["/v1/hub/apps/app-XYZ", "/v1/hub/members/0x04ab", "/v1/hub/members/zz"])
def test_a_malformed_name_is_a_bad_request_problem(hub: Hub, path: str) -> None:
    response = hub.get(path)
    assert response.status_code == 400
    assert response.json()["type"] == "/problems/bad-request"


def test_app_show_of_an_unknown_app(hub: Hub) -> None:
    reason = zhongshu("app", "show", "app-0123456789abcdef", "--api", hub.url).error(REFUSED)
    assert "404 not-found" in reason and "app-0123456789abcdef" in reason


# -- pieces -----------------------------------------------------------------------------------


def test_public_keys_from_hex_and_pem_files(tmp_path: Path) -> None:
    sm, intl = new_key("sm"), new_key("intl")
    private = tmp_path / "sm.pem"
    save_key(private, sm)
    public = tmp_path / "sm.pub.pem"
    public.write_bytes(public_pem(sm.public_bytes()))
    intl_public = tmp_path / "intl.pub.pem"
    der = bytes.fromhex("302a300506032b6570032100") + intl.public_bytes()
    intl_public.write_text(
        "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n"
    )
    assert read_public_key(sm.public_hex()) == sm.public_bytes()
    assert read_public_key(sm.public_hex().upper()) == sm.public_bytes()
    assert read_public_key(str(private)) == sm.public_bytes()
    assert read_public_key(str(public)) == sm.public_bytes()
    assert read_public_key(str(intl_public)) == intl.public_bytes()
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    for value in ("04ab", str(tmp_path / "missing.pem"), str(bad)):
        with pytest.raises(UsageProblem):
            read_public_key(value)


def test_wait_for_height_polls_until_the_height_or_the_deadline() -> None:
    now = [0.0]
    heights: list[int | None] = [None, None, 0, 1]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    assert wait_for_height(lambda: heights.pop(0), 1, 5.0, lambda: now[0], sleep)
    assert heights == [] and slept == [0.02, 0.04, 0.08]
    now[0] = 0.0
    slept.clear()
    assert not wait_for_height(lambda: None, 1, 1.0, lambda: now[0], sleep)
    assert sum(slept) == pytest.approx(1.0) and max(slept) == 0.25


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"^```.*?^```$", text, re.S | re.M)


def _table_rows(text: str) -> list[tuple[int, list[str]]]:
    """Each table row's cell count and code spans: what a translation must keep as it is."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [(len(re.split(r"(?<!\\)\|", row)), re.findall(r"`[^`]*`", row)) for row in rows]


def test_the_chinese_page_keeps_the_code_and_tables() -> None:
    english, chinese = (DOCS / "hub.md").read_text(), (DOCS / "zh" / "hub.md").read_text()
    assert _code_blocks(english) and _code_blocks(chinese) == _code_blocks(english)
    assert _table_rows(english) and _table_rows(chinese) == _table_rows(english)
    # The headings, section for section.
    assert [h.split()[1] for h in re.findall(r"^## .*$", chinese, re.M)] == [
        h.split()[1] for h in re.findall(r"^## .*$", english, re.M)
    ]
