"""Signed application access at the gateway (docs/access-spec.md, *Who signs*, *Quotas*).

One real uvicorn server, in a thread, serves a hub chain ``hub`` (the hub's contracts) and a
business chain ``biz`` (the built-in ones), both real SoloNodes, with ``AppGate(hub)`` as the
gateway's ``access``. The hub is set up with real signed transactions through that server
(which also shows that hub-chain transactions need no app signature): ``hub.init`` by its
validator at height 1, then as operator two organizations and the chains ``biz`` and ``other``,
then applications with grants and quotas. Every refusal of the gate is then met through HTTP
with its problem code and status; deposits go through httpx and through the SDK.

The gate's clock is the test's (``Clock``): frozen for the rate and quota tests, the wall clock
otherwise. Anything the test changes in the gate runs in the server's event loop (``in_loop``).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from conftest import free_port, wait_for
from zhongshu.codec import encode_json
from zhongshu.crypto import PrivateKey
from zhongshu.gateway.access import (
    APP_HEADER,
    NONCE_HEADER,
    NonceWindow,
    ReplayedNonce,
    canonical_query,
    new_nonce,
    sign_request,
)
from zhongshu.gateway.app import APP_ACCESS_CODES, create_app
from zhongshu.gateway.appauth import (
    DAY_MS,
    AppAuthRequired,
    AppDisabled,
    AppGate,
    AppRefused,
    ChainNotGranted,
    ContractNotGranted,
    QuotaExceeded,
    RateLimited,
    RetiredKey,
    UnknownApp,
    seconds_to_next_utc_midnight,
)
from zhongshu.gateway.problems import PROBLEM_TYPES
from zhongshu.hub import get_app_by_key
from zhongshu.hub.chains import ChainCreate, ChainStop
from zhongshu.hub.registry import AppDisable, AppRegister, AppRotateKey, Grant, HubInit, Quota
from zhongshu.hub.roles import NodeKeys, OrgCreate, OrgDisable
from zhongshu.ledger.evidence_args import EvidencePut
from zhongshu.ledger.genesis import load_genesis
from zhongshu.ledger.types import ChainParams, Transaction
from zhongshu.node.home import init_single_home, load_home
from zhongshu.node.signer import Signer
from zhongshu.node.solo_node import SoloNode
from zhongshu.node.txcheck import tx_to_json
from zhongshu.sdk import ApiError, AppCredentials, AsyncClient, Client, new_key
from zhongshu.sdk.tx import sign_tx

T = TypeVar("T")

HTTP_TIMEOUT = 30.0
VALID_UNTIL = 1_000_000
TXS = "/v1/chains/{chain}/txs"
ROOMY = Quota(100, 1000)
"""Room enough that only the rate and quota tests meet their limits."""


class Clock:
    """The gate's clock: the wall clock, or a frozen time the test moves itself."""

    def __init__(self) -> None:
        self.frozen_ms: int | None = None

    def __call__(self) -> int:
        return self.frozen_ms if self.frozen_ms is not None else time.time_ns() // 1_000_000


class Server(uvicorn.Server):
    """uvicorn in a thread: no signal handlers of its own."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Env:
    """The running server, its nodes and gate, and the cast the hub knows."""

    url: str
    host: str
    hub: SoloNode
    biz: SoloNode
    gate: AppGate
    clock: Clock
    loop: asyncio.AbstractEventLoop
    http: httpx.Client
    home: Path
    keys: dict[str, PrivateKey] = field(default_factory=dict)
    """Hub actors (validator, operator, gov-admin, bank-admin) and every app's key, by name."""
    apps: dict[str, str] = field(default_factory=dict)
    """App ids, by name."""

    def in_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the server's event loop (the gate's thread) and return its result."""
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(HTTP_TIMEOUT)

    def hub_call(self, signer: str, contract: str, method: str, args: Any) -> None:
        """A hub transaction, unsigned by any app, committed and successful."""
        with Client(self.url, "hub") as client:
            receipt = client.submit(client.sign(self.keys[signer], contract, method, args)).receipts[0]
        assert receipt.ok, receipt.receipt.error


def evidence(key: PrivateKey, env: Env, method: str = "put", contract: str = "evidence") -> Transaction:
    """An evidence.put (or another call) on ``biz`` signed by ``key``."""
    args = EvidencePut(os.urandom(32), "scan.pdf", {}, b"")
    return sign_tx(key, "biz", env.biz.genesis_hash, contract, method, args, VALID_UNTIL)


def json_body(*txs: Transaction) -> bytes:
    items = [tx_to_json(tx) for tx in txs]
    return encode_json(items[0] if len(items) == 1 else items)


def signed(
    env: Env,
    app: str,
    body: bytes,
    *,
    key: PrivateKey | None = None,
    chain: str = "biz",
    query: Sequence[tuple[str, str]] = (),
    nonce: str | None = None,
    timestamp_ms: int | None = None,
    app_id: str | None = None,
) -> httpx.Request:
    """A POST txs signed as the app ``app`` (or ``app_id``) with its key (or ``key``)."""
    path = TXS.format(chain=chain)
    query_string = canonical_query(list(query))
    headers = sign_request(
        key or env.keys[app],
        "POST",
        env.host,
        path,
        list(query),
        env.clock() if timestamp_ms is None else timestamp_ms,
        nonce or new_nonce(),
        app_id or env.apps[app],
        body,
    )
    headers["content-type"] = "application/json"
    url = env.url + path + (f"?{query_string}" if query_string else "")
    return httpx.Request("POST", url, content=body, headers=headers)


def send(env: Env, request: httpx.Request) -> httpx.Response:
    """Send ``request`` (again, byte for byte, if it was sent before)."""
    again = httpx.Request(request.method, request.url, content=request.content, headers=request.headers)
    return env.http.send(again)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The answer is the problem ``code`` at ``status``; a 401 names the signing scheme."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["type"] == f"/problems/{code}", problem
    assert problem["status"] == status and problem["title"] == PROBLEM_TYPES[code].title
    if status == 401:
        assert response.headers["www-authenticate"] == "ZHONGSHU-SM2-SM3"
    return problem


def accepted(response: httpx.Response) -> None:
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"


# -- the server ----------------------------------------------------------------------------


def _node(base: Path, chain_id: str, registry: str | None) -> tuple[SoloNode, PrivateKey]:
    home = base / chain_id
    init_single_home(home, chain_id=chain_id, port=free_port(), now_ms=time.time_ns() // 1_000_000)
    config, genesis, key = load_home(home)
    extra = {"registry": registry} if registry else {}
    node = SoloNode(
        genesis, config.data_dir, Signer(key, home / "signer_state.json"), verify_workers=1, **extra
    )
    return node, key


def _set_up_hub(env: Env) -> None:
    """hub.init, two organizations, the chains biz and other, and the apps, by real transactions."""
    k = env.keys
    for name in ("operator", "gov-admin", "bank-admin"):
        k[name] = new_key("sm")
    nodes = [NodeKeys("node0", k["validator"].public_bytes(), new_key("intl").public_bytes())]
    env.hub_call("validator", "hub", "init", HubInit(k["operator"].public_bytes(), nodes))
    env.hub_call(
        "operator", "hub.org", "create", OrgCreate("gov", "市政务服务中心", [k["gov-admin"].public_bytes()])
    )
    env.hub_call(
        "operator", "hub.org", "create", OrgCreate("bank", "城市银行", [k["bank-admin"].public_bytes()])
    )
    for chain, orgs in (("biz", ["gov", "bank"]), ("other", ["gov"])):
        env.hub_call(
            "operator", "hub.chain", "create", ChainCreate(chain, "sm", ["node0"], ChainParams(), orgs)
        )
    every = [Grant("biz", "evidence", ["*"])]
    apps: dict[str, tuple[str, list[Grant], Quota]] = {
        "main": ("gov-admin", every, ROOMY),
        "narrow": ("gov-admin", [Grant("biz", "evidence", ["put"])], ROOMY),
        "elsewhere": ("gov-admin", [Grant("other", "evidence", ["*"])], ROOMY),
        "rotating": ("gov-admin", every, ROOMY),
        "doomed": ("gov-admin", every, ROOMY),
        "metered": ("gov-admin", every, Quota(1, 1000)),
        "daily": ("gov-admin", every, Quota(100, 2)),
        "bank-app": ("bank-admin", every, ROOMY),
    }
    with Client(env.url, "hub") as client:
        txs = []
        for name, (admin, grants, quota) in apps.items():
            k[name] = new_key("sm")
            org = "bank" if admin == "bank-admin" else "gov"
            register = AppRegister(org, name, k[name].public_bytes(), grants, quota)
            txs.append(client.sign(k[admin], "hub.app", "register", register))
        for receipt in client.submit(txs).receipts:
            assert receipt.ok, receipt.receipt.error
    with env.hub.store.state_reader() as read:
        for name in apps:
            view = get_app_by_key(read, k[name].public_bytes())
            assert view is not None and view.current
            env.apps[name] = view.app.app_id


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("app-access")
    hub, hub_key = _node(base, "hub", "zhongshu.hub:build_hub_registry")
    biz, biz_key = _node(base, "biz", None)
    clock = Clock()
    gate = AppGate(hub, clock_ms=clock)
    app = create_app({"hub": hub, "biz": biz}, access=gate, node_key=hub_key)
    port = free_port()
    server = Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False
        )
    )
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        loops.append(asyncio.get_running_loop())
        producers = [asyncio.create_task(node.run()) for node in (hub, biz)]
        try:
            await server.serve()
        finally:
            for task in producers:
                task.cancel()
            await asyncio.gather(*producers, return_exceptions=True)
            await asyncio.get_running_loop().shutdown_default_executor()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="gated-gateway", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, HTTP_TIMEOUT, "the gated gateway to serve")
        with httpx.Client(timeout=HTTP_TIMEOUT) as http:
            host = f"127.0.0.1:{port}"
            environment = Env(f"http://{host}", host, hub, biz, gate, clock, loops[0], http, base)
            environment.keys["validator"] = hub_key
            _set_up_hub(environment)
            yield environment
    finally:
        server.should_exit = True
        thread.join(HTTP_TIMEOUT)
        hub.close()
        biz.close()


# -- what passes ---------------------------------------------------------------------------


def test_an_app_deposits_its_own_transaction(env: Env) -> None:
    tx = evidence(env.keys["main"], env)
    response = send(env, signed(env, "main", json_body(tx), query=[("wait", "commit")]))
    assert response.status_code == 200, response.text
    (receipt,) = response.json()["receipts"]
    assert receipt["receipt"]["status"] == "ok"


def test_an_app_relays_a_transaction_its_user_signed(env: Env) -> None:
    user = new_key("sm")
    tx = evidence(user, env)
    assert tx.sender == user.public_bytes() != env.keys["main"].public_bytes()
    response = send(env, signed(env, "main", json_body(tx), query=[("wait", "commit"), ("timeout", "20")]))
    assert response.status_code == 200, response.text
    assert response.json()["receipts"][0]["receipt"]["status"] == "ok"


def test_the_sdk_signs_as_the_app_and_checks_the_answers(env: Env) -> None:
    trusted = load_genesis(env.home / "hub" / "genesis.json")
    app = AppCredentials(env.apps["main"], env.keys["main"])
    user = new_key("sm")
    # trusted= checks the node's signatures of the answers; the node here is the hub's validator.
    with Client(env.url, "biz", app=app, trusted=trusted) as client:
        receipt = client.put_evidence(user, os.urandom(32), "relayed.pdf")
        assert receipt.ok, receipt.receipt.error
        own = client.put_evidence(env.keys["main"], os.urandom(32), "own.pdf", {"dept": "court"})
        assert own.ok and client.get_tx(own.tx_hash).status == "committed"
    # Without app=, the same call is refused.
    with Client(env.url, "biz") as client, pytest.raises(ApiError) as refused:
        client.put_evidence(user, os.urandom(32), "unsigned.pdf")
    assert (refused.value.status, refused.value.code) == (401, "app-auth-required")


def test_the_async_sdk_signs_as_the_app(env: Env) -> None:
    app = AppCredentials(env.apps["main"], env.keys["main"])

    async def deposit() -> list[bool]:
        async with AsyncClient(env.url, "biz", app=app) as client:
            receipts = await asyncio.gather(
                *(client.put_evidence(new_key("sm"), os.urandom(32), f"a{i}.pdf") for i in range(3))
            )
            return [r.ok for r in receipts]

    assert asyncio.run(deposit()) == [True, True, True]


def test_every_get_stays_public(env: Env) -> None:
    user = new_key("sm")
    with Client(env.url, "biz", app=AppCredentials(env.apps["main"], env.keys["main"])) as client:
        receipt = client.put_evidence(user, os.urandom(32), "public.pdf")
    digest = receipt.deposit().digest
    paths = [
        "/healthz",
        "/problems",
        "/problems/unknown-app",
        "/v1/chains",
        "/v1/chains/biz/status",
        "/v1/chains/biz/genesis",
        f"/v1/chains/biz/blocks/{receipt.height}",
        f"/v1/chains/biz/txs/{receipt.tx_hash}",
        f"/v1/chains/biz/txs/{receipt.tx_hash}/proof",
        f"/v1/chains/biz/evidence/{digest}",
        f"/v1/chains/biz/evidence?owner={user.public_hex()}",
        "/v1/chains/hub/status",
    ]
    for path in paths:
        response = env.http.get(env.url + path)
        assert response.status_code == 200, (path, response.text)
    assert env.http.get(f"{env.url}/v1/chains/biz/evidence/{digest}").json()["name"] == "public.pdf"
    with env.http.stream("GET", f"{env.url}/v1/chains/biz/events") as stream:
        assert stream.status_code == 200
        assert next(stream.iter_bytes()).startswith(b": subscribed")


def test_a_hub_chain_transaction_needs_no_app_signature(env: Env) -> None:
    # A hub transaction is authorized by its signer's role on the hub, not by an application.
    with Client(env.url, "hub") as client:
        tx = client.sign(
            env.keys["operator"], "evidence", "put", EvidencePut(os.urandom(32), "charter.pdf", {}, b"")
        )
    response = env.http.post(f"{env.url}/v1/chains/hub/txs", content=json_body(tx))
    accepted(response)
    assert APP_HEADER not in response.request.headers


# -- authentication refusals ---------------------------------------------------------------


def test_an_unsigned_post_to_a_business_chain_needs_an_app(env: Env) -> None:
    body = json_body(evidence(new_key("sm"), env))
    assert_problem(env.http.post(f"{env.url}/v1/chains/biz/txs", content=body), 401, "app-auth-required")
    # A nonce alone asks for a signed answer, not for access.
    alone = env.http.post(f"{env.url}/v1/chains/biz/txs", content=body, headers={NONCE_HEADER: new_nonce()})
    assert_problem(alone, 401, "app-auth-required")


def test_malformed_auth_headers(env: Env) -> None:
    request = signed(env, "main", json_body(evidence(env.keys["main"], env)))
    request.headers[NONCE_HEADER] = request.headers[NONCE_HEADER].upper()
    problem = assert_problem(send(env, request), 401, "malformed-auth")
    assert "X-Zhongshu-Nonce" in problem["detail"]
    del request.headers["x-zhongshu-signature"]
    assert "X-Zhongshu-Signature" in assert_problem(send(env, request), 401, "malformed-auth")["detail"]


def test_an_unknown_app(env: Env) -> None:
    body = json_body(evidence(env.keys["main"], env))
    request = signed(env, "main", body, app_id="app-0000000000000000", key=new_key("sm"))
    problem = assert_problem(send(env, request), 401, "unknown-app")
    assert "app-0000000000000000" in problem["detail"]


def test_a_bad_signature(env: Env) -> None:
    body = json_body(evidence(env.keys["main"], env))
    # Another key's signature.
    assert_problem(send(env, signed(env, "main", body, key=new_key("sm"))), 401, "bad-signature")
    # The app's signature over another body.
    request = signed(env, "main", body)
    # (JSON with a newline more: the same transaction, other bytes.)
    headers = {k: v for k, v in request.headers.items() if k != "content-length"}
    changed = httpx.Request("POST", request.url, content=body + b"\n", headers=headers)
    assert_problem(env.http.send(changed), 401, "bad-signature")


def test_a_stale_request(env: Env) -> None:
    body = json_body(evidence(env.keys["main"], env))
    old = env.clock() - 300_001
    problem = assert_problem(send(env, signed(env, "main", body, timestamp_ms=old)), 401, "stale-request")
    assert str(old) in problem["detail"]
    ahead = env.clock() + 400_000
    assert_problem(send(env, signed(env, "main", body, timestamp_ms=ahead)), 401, "stale-request")


def test_the_same_request_twice_is_a_replay(env: Env) -> None:
    request = signed(env, "main", json_body(evidence(env.keys["main"], env)))
    accepted(send(env, request))
    assert_problem(send(env, request), 401, "replayed-nonce")


def test_a_nonce_accepted_by_another_node_is_a_replay_here(env: Env) -> None:
    request = signed(env, "main", json_body(evidence(env.keys["main"], env)))
    nonce, timestamp = request.headers[NONCE_HEADER], int(request.headers["x-zhongshu-timestamp"])
    # Another hub node accepted this request and gossiped its nonce.
    env.in_loop(lambda: env.gate.remember_nonce(env.apps["main"], nonce, timestamp))
    assert_problem(send(env, request), 401, "replayed-nonce")


def test_accepted_nonces_are_handed_to_gossip(env: Env) -> None:
    seen: list[tuple[str, str, int]] = []

    def on_nonce(app_id: str, nonce: str, timestamp_ms: int) -> None:
        seen.append((app_id, nonce, timestamp_ms))

    env.in_loop(lambda: setattr(env.gate, "on_nonce", on_nonce))
    try:
        request = signed(env, "main", json_body(evidence(env.keys["main"], env)))
        accepted(send(env, request))
        # A refused request hands nothing on.
        send(env, signed(env, "main", request.content, key=new_key("sm")))
    finally:
        env.in_loop(lambda: setattr(env.gate, "on_nonce", None))
    nonce, timestamp = request.headers[NONCE_HEADER], int(request.headers["x-zhongshu-timestamp"])
    assert seen == [(env.apps["main"], nonce, timestamp)]
    # What one node hands out, another takes in: its window then holds the pair as seen.
    other = AppGate(env.hub, clock_ms=env.clock)
    other.remember_nonce(*seen[0])
    with pytest.raises(ReplayedNonce):
        other.nonces.check_and_remember(*seen[0], env.clock())


def test_a_full_nonce_window(env: Env) -> None:
    full = NonceWindow(max_entries=1)
    original = env.in_loop(lambda: env.gate.nonces)
    env.in_loop(lambda: setattr(env.gate, "nonces", full))
    try:
        accepted(send(env, signed(env, "main", json_body(evidence(env.keys["main"], env)))))
        response = send(env, signed(env, "main", json_body(evidence(env.keys["main"], env))))
    finally:
        env.in_loop(lambda: setattr(env.gate, "nonces", original))
    assert_problem(response, 503, "nonce-window-full")
    assert response.headers["retry-after"] == "1"


def test_a_key_rotated_away_from_is_retired(env: Env) -> None:
    old = env.keys["rotating"]
    new = new_key("sm")
    env.hub_call("gov-admin", "hub.app", "rotate-key", AppRotateKey(env.apps["rotating"], new.public_bytes()))
    body = json_body(evidence(old, env))
    problem = assert_problem(send(env, signed(env, "rotating", body, key=old)), 401, "retired-key")
    assert old.public_hex()[:16] in problem["detail"]
    accepted(send(env, signed(env, "rotating", body, key=new)))
    # A key the app never held is still a bad signature.
    assert_problem(send(env, signed(env, "rotating", body, key=new_key("sm"))), 401, "bad-signature")


def test_a_disabled_app(env: Env) -> None:
    body = json_body(evidence(env.keys["doomed"], env))
    accepted(send(env, signed(env, "doomed", body)))
    env.hub_call("gov-admin", "hub.app", "disable", AppDisable(env.apps["doomed"]))
    assert_problem(
        send(env, signed(env, "doomed", json_body(evidence(env.keys["doomed"], env)))), 403, "app-disabled"
    )


def test_an_app_of_a_disabled_organization(env: Env) -> None:
    accepted(send(env, signed(env, "bank-app", json_body(evidence(env.keys["bank-app"], env)))))
    env.hub_call("operator", "hub.org", "disable", OrgDisable("bank"))
    problem = assert_problem(
        send(env, signed(env, "bank-app", json_body(evidence(env.keys["bank-app"], env)))),
        403,
        "app-disabled",
    )
    assert "'bank'" in problem["detail"]


# -- grants --------------------------------------------------------------------------------


def test_a_chain_not_granted(env: Env) -> None:
    body = json_body(evidence(env.keys["elsewhere"], env))
    # Granted on chain other only.
    problem = assert_problem(send(env, signed(env, "elsewhere", body)), 403, "chain-not-granted")
    assert "'biz'" in problem["detail"]
    # A chain name nobody serves or granted.
    assert_problem(send(env, signed(env, "main", body, chain="nowhere")), 403, "chain-not-granted")


def test_a_chain_granted_but_not_served_here_or_stopped(env: Env) -> None:
    tx = sign_tx(
        env.keys["elsewhere"],
        "other",
        b"\x00" * 32,
        "evidence",
        "put",
        EvidencePut(os.urandom(32), "x", {}, b""),
        VALID_UNTIL,
    )
    assert_problem(send(env, signed(env, "elsewhere", json_body(tx), chain="other")), 404, "unknown-chain")
    # Once the hub stops the chain, its grants give nothing.
    env.hub_call("operator", "hub.chain", "stop", ChainStop("other"))
    assert_problem(
        send(env, signed(env, "elsewhere", json_body(tx), chain="other")), 403, "chain-not-granted"
    )


def test_a_contract_or_method_not_granted(env: Env) -> None:
    narrow = env.keys["narrow"]
    accepted(send(env, signed(env, "narrow", json_body(evidence(narrow, env)))))
    other_method = json_body(evidence(narrow, env, method="erase"))
    problem = assert_problem(send(env, signed(env, "narrow", other_method)), 403, "contract-not-granted")
    assert "evidence.erase" in problem["detail"]
    other_contract = json_body(evidence(narrow, env, contract="rights", method="put"))
    problem = assert_problem(send(env, signed(env, "narrow", other_contract)), 403, "contract-not-granted")
    assert "rights.put" in problem["detail"]
    # One call outside the grant refuses the whole batch.
    batch = json_body(evidence(narrow, env), evidence(narrow, env, method="erase"))
    assert_problem(send(env, signed(env, "narrow", batch)), 403, "contract-not-granted")


# -- rate and quota ------------------------------------------------------------------------


@contextmanager
def frozen(env: Env) -> Iterator[None]:
    env.clock.frozen_ms = time.time_ns() // 1_000_000
    try:
        yield
    finally:
        env.clock.frozen_ms = None


def test_requests_beyond_the_rate_are_limited(env: Env) -> None:
    with frozen(env):
        accepted(send(env, signed(env, "metered", json_body(evidence(env.keys["metered"], env)))))
        response = send(env, signed(env, "metered", json_body(evidence(env.keys["metered"], env))))
        assert_problem(response, 429, "rate-limited")
        assert response.headers["retry-after"] == "1"
        # Another app has its own bucket.
        accepted(send(env, signed(env, "main", json_body(evidence(env.keys["main"], env)))))
        assert env.clock.frozen_ms is not None
        env.clock.frozen_ms += 1000
        accepted(send(env, signed(env, "metered", json_body(evidence(env.keys["metered"], env)))))


def test_transactions_beyond_the_daily_quota(env: Env) -> None:
    key = env.keys["daily"]
    with frozen(env):
        first = signed(env, "daily", json_body(evidence(key, env)))
        accepted(send(env, first))
        # A refused submission (already pending) does not count.
        again = signed(env, "daily", first.content)
        assert send(env, again).status_code == 409
        accepted(send(env, signed(env, "daily", json_body(evidence(key, env)))))
        response = send(env, signed(env, "daily", json_body(evidence(key, env))))
        problem = assert_problem(response, 429, "quota-exceeded")
        now = env.clock()
        midnight = (now // 86_400_000 + 1) * 86_400_000
        assert response.headers["retry-after"] == str(math.ceil((midnight - now) / 1000))
        assert "2 transactions per UTC day" in problem["detail"]
        # The next UTC day starts a new count.
        assert env.clock.frozen_ms is not None
        env.clock.frozen_ms = midnight
        accepted(send(env, signed(env, "daily", json_body(evidence(key, env)))))


# -- the registry and the document ---------------------------------------------------------


def test_every_gate_refusal_is_a_registered_problem() -> None:
    kinds: list[type[AppRefused]] = [AppAuthRequired, UnknownApp, RetiredKey, AppDisabled]
    kinds += [ChainNotGranted, ContractNotGranted, RateLimited, QuotaExceeded]
    assert {k.code for k in kinds} == {k.code for k in AppRefused.__subclasses__()}
    for kind in kinds:
        assert PROBLEM_TYPES[kind.code].status == kind.http_status
        assert kind.code in APP_ACCESS_CODES
    assert set(APP_ACCESS_CODES) <= set(PROBLEM_TYPES)


def test_the_document_declares_the_access_problems_only_with_access(env: Env) -> None:
    gated = env.http.get(f"{env.url}/openapi.json").json()["paths"]["/v1/chains/{chain}/txs"]["post"]
    assert {"401", "403", "429"} <= set(gated["responses"])
    assert "/problems/quota-exceeded" in gated["responses"]["429"]["description"]
    plain = create_app({"biz": env.biz}).openapi()["paths"]["/v1/chains/{chain}/txs"]["post"]
    assert not {"401", "403", "429"} & set(plain["responses"])


def test_seconds_to_the_next_utc_midnight() -> None:
    assert seconds_to_next_utc_midnight(0) == 86_400
    assert seconds_to_next_utc_midnight(DAY_MS - 1) == 1
    assert seconds_to_next_utc_midnight(DAY_MS - 1500) == 2
    assert seconds_to_next_utc_midnight(5 * DAY_MS + 1000) == 86_399


def test_remember_nonce_takes_only_well_formed_gossip(env: Env) -> None:
    gate = AppGate(env.hub, clock_ms=env.clock)
    with pytest.raises(ValueError):
        gate.remember_nonce("app id with spaces", new_nonce(), env.clock())
    with pytest.raises(ValueError):
        gate.remember_nonce(env.apps["main"], "NOT-A-NONCE", env.clock())
    # Known twice, or too old for the window: taken quietly.
    nonce = new_nonce()
    gate.remember_nonce(env.apps["main"], nonce, env.clock())
    gate.remember_nonce(env.apps["main"], nonce, env.clock())
    gate.remember_nonce(env.apps["main"], new_nonce(), env.clock() - 10 * 60_000)
    assert len(gate.nonces) == 1
