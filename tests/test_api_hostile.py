"""The REST port against hostile clients, through a real node process.

Slow and silent connections are cut off at their deadline, connections over the cap are refused
at once, list routes answer bounded pages, malformed bytes and parameters are 4xx problem
documents, and none of it fills the node's log: at most one line per kind of condition and no
traceback. The commit-timeout problem tells the truth about pending transactions across a
restart.
"""

from __future__ import annotations

import json
import os
import resource
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import NodeProcess, wait_for
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.gateway.connections import REQUEST_GRACE, connection_cap
from zhongshu.gateway.paging import PAGE_BYTES, prefixes_after
from zhongshu.ledger.evidence_args import EvidencePut
from zhongshu.ledger.hashing import compute_tx_hash
from zhongshu.ledger.types import Transaction
from zhongshu.node.txcheck import tx_to_json
from zhongshu.sdk.client import sign_tx

SM = get_suite("sm")
FAR = 10**9
"""A valid_until far above any height these tests reach."""
PROBLEM = "application/problem+json"
HTTP_TIMEOUT = 30.0
CUT_OFF_SLACK = 10.0
"""Seconds past the request deadline by which the node must have closed a slow connection."""


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return SM.generate_private_key()


@pytest.fixture(scope="module")
def module_node(module_node: NodeProcess) -> NodeProcess:
    """The module's node, once its start-up banner is in its log (so logs watched later are its own)."""
    wait_for(lambda: "Press Ctrl-C to stop." in module_node.log(), HTTP_TIMEOUT, "the node's banner")
    return module_node


@pytest.fixture(scope="module")
def http(module_node: NodeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=module_node.api(), timeout=HTTP_TIMEOUT) as client:
        yield client


# -- helpers ------------------------------------------------------------------------------


def evidence(node: NodeProcess, key: PrivateKey, payload: bytes = b"") -> Transaction:
    """A signed evidence.put of a fresh random digest for ``node``'s chain."""
    genesis_hash = bytes.fromhex(node.status()["genesis_hash"])
    args = EvidencePut(os.urandom(32), "contract.pdf", {"dept": "court"}, payload)
    return sign_tx(key, "main", genesis_hash, "evidence", "put", args, FAR)


def tx_hash(tx: Transaction) -> str:
    return compute_tx_hash(SM.hasher(), tx).hex()


class LogWatch:
    """What a node writes to its log from now on."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.start = node.log_path.stat().st_size

    def text(self) -> str:
        with self.node.log_path.open("rb") as log:
            log.seek(self.start)
            return log.read().decode(errors="replace")

    def assert_quiet(self, *, at_most: int = 1) -> None:
        """No traceback, and at most ``at_most`` lines, since the watch began."""
        text = self.text()
        assert "Traceback" not in text, text[-4000:]
        lines = [line for line in text.splitlines() if line.strip()]
        assert len(lines) <= at_most, text[-4000:]


def assert_serving(node: NodeProcess) -> None:
    """The node process lives and its status route answers."""
    assert node.proc is not None and node.proc.poll() is None, node.log()

    def answers() -> bool:
        try:
            return httpx.get(node.status_url, timeout=HTTP_TIMEOUT).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(answers, HTTP_TIMEOUT, "the status route to answer again")


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    problem = dict(response.json())
    assert problem["type"].endswith("/" + code), problem
    assert problem["status"] == status and problem["detail"].strip(), problem
    return problem


def connect(node: NodeProcess, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=HTTP_TIMEOUT)
    if data:
        sock.sendall(data)
    return sock


def readable(socks: list[socket.socket], timeout: float) -> list[socket.socket]:
    """The sockets with something to read (or closed by the node) within ``timeout`` seconds.

    ``poll``, not ``select``: the connection-cap test holds more descriptors than select takes.
    """
    poller = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    return [by_fd[fd] for fd, _ in poller.poll(timeout * 1000)]


def read_to_close(sock: socket.socket, timeout: float, on_idle: Callable[[], None] | None = None) -> bytes:
    """Everything the node sends until it closes the connection; fail if it is still open at the deadline.

    ``on_idle`` runs whenever a second passes with nothing to read (a client trickling bytes).
    """
    deadline = time.monotonic() + timeout
    received = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"the node kept the connection open for {timeout:g} s; got {received[:200]!r}")
        if not readable([sock], min(1.0, remaining)):
            if on_idle is not None:
                on_idle()
            continue
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one raw HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def assert_raw_problem(raw: bytes, status: int, code: str) -> dict[str, Any]:
    """``raw`` is one HTTP response carrying an RFC 9457 problem document."""
    got_status, headers, body = parse_response(raw)
    assert got_status == status, raw[:400]
    assert headers["content-type"].startswith(PROBLEM), raw[:400]
    problem = dict(json.loads(body))
    assert problem["type"].endswith("/" + code) and problem["status"] == status, problem
    return problem


# -- slow and silent clients --------------------------------------------------------------


@pytest.mark.slow
def test_slow_and_silent_connections_are_cut_off(module_node: NodeProcess) -> None:
    watch = LogWatch(module_node)
    silent = connect(module_node)
    slow_headers = connect(module_node, b"GET /v1/chains/main/status HTTP/1.1\r\nHost: x\r\n")
    slow_body = connect(
        module_node,
        b"POST /v1/chains/main/txs HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n[{",
    )
    trickle = connect(module_node, b"GET /v1/chains/main/status HTTP/1.1\r\n")
    # One short header line a second: bytes keep arriving, the request never ends.
    trickled = read_to_close(trickle, REQUEST_GRACE + CUT_OFF_SLACK, lambda: trickle.sendall(b"X-a: b\r\n"))
    answers = [trickled] + [read_to_close(s, CUT_OFF_SLACK) for s in (silent, slow_headers, slow_body)]
    for raw in answers:
        assert_raw_problem(raw, 408, "request-timeout")
    for sock in (silent, slow_headers, slow_body, trickle):
        sock.close()
    assert_serving(module_node)
    watch.assert_quiet()


@pytest.mark.slow
def test_connections_over_the_cap_are_refused_at_once(module_node: NodeProcess) -> None:
    cap = connection_cap(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    watch = LogWatch(module_node)
    extra = 8
    hoard = [connect(module_node) for _ in range(cap + extra)]
    try:
        # The connections past the cap are answered 503 and closed, well before any deadline.
        refused = readable(hoard, REQUEST_GRACE / 2)
        assert refused, f"none of {len(hoard)} connections was refused (cap {cap})"
        answer = read_to_close(refused[0], CUT_OFF_SLACK)
        problem = assert_raw_problem(answer, 503, "too-many-connections")
        assert str(cap) in problem["detail"]
        assert parse_response(answer)[1]["retry-after"].isdigit(), answer
        # None under the cap is refused (the module's own client may hold one more connection).
        first_refused = min(hoard.index(s) for s in readable(hoard, 0))
        assert first_refused >= cap - 2, f"connection {first_refused} refused under the cap of {cap}"
    finally:
        for sock in hoard:
            sock.close()
    assert_serving(module_node)
    watch.assert_quiet()


# -- malformed bytes and parameters -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "body",
    [
        b'{"chain_id": "\xff\xfe", "sender": "00"}',
        b'[{"chain_id": "ab\xc3"}]',
        b'{"chain_id": "main", "contract": "\xed\xa0\x80"}',
    ],
    ids=["bad-start-byte", "truncated-sequence", "surrogate"],
)
def test_non_utf8_inside_a_json_string(module_node: NodeProcess, http: httpx.Client, body: bytes) -> None:
    watch = LogWatch(module_node)
    response = http.post("/txs", content=body, headers={"content-type": "application/json"})
    problem = assert_problem(response, 400, "malformed-transaction")
    assert "UTF-8" in problem["detail"]
    assert_serving(module_node)
    watch.assert_quiet(at_most=0)


@pytest.mark.slow
@pytest.mark.parametrize("timeout", ["-1", "-inf", "inf", "nan", "0", "1e400", "3600"])
def test_commit_wait_timeout_out_of_range(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey, timeout: str
) -> None:
    tx = evidence(module_node, key)
    response = http.post("/txs", json=tx_to_json(tx), params={"wait": "commit", "timeout": timeout})
    problem = assert_problem(response, 400, "bad-request")
    assert "timeout" in problem["detail"]
    # Refused before admission: the transaction is neither pending nor committed.
    assert http.get(f"/txs/{tx_hash(tx)}").status_code == 404


@pytest.mark.slow
@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),
        b"GET /v1/chains HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"POST /v1/chains/main/txs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /v1/chains/main/txs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n[{"a\r\n5\r\n": 1}\r\nq\r\n',
    ],
    ids=["header-without-colon", "tls-hello", "bad-content-length", "bad-chunk-size", "bad-chunk-mid-body"],
)
def test_broken_framing(module_node: NodeProcess, data: bytes) -> None:
    watch = LogWatch(module_node)
    sock = connect(module_node, data)
    raw = read_to_close(sock, CUT_OFF_SLACK)
    sock.close()
    # A problem document, or a dropped connection: never a text/plain page or a 500.
    if raw:
        assert_raw_problem(raw, 400, "malformed-http")
    assert_serving(module_node)
    watch.assert_quiet()


def _abort(node: NodeProcess, data: bytes, *, reset: bool) -> None:
    sock = connect(node, data)
    if reset:
        # SO_LINGER 0: the close sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


@pytest.mark.slow
@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_aborted_uploads(module_node: NodeProcess, http: httpx.Client, reset: bool) -> None:
    watch = LogWatch(module_node)
    head = b"POST /v1/chains/main/txs HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
    _abort(module_node, head + b"Content-Length: 100000\r\n\r\n" + b"[" + b" " * 4000, reset=reset)
    _abort(module_node, head + b"Transfer-Encoding: chunked\r\n\r\n5\r\n[{}, \r\n", reset=reset)
    _abort(module_node, head + b"Content-Length: 10\r\n\r\n", reset=reset)
    # The node has handled the aborts once a later request on a new connection is answered.
    for _ in range(3):
        assert http.get("/status").status_code == 200
    assert_serving(module_node)
    watch.assert_quiet(at_most=0)


# -- bounded pages ------------------------------------------------------------------------


@pytest.mark.slow
def test_evidence_of_an_owner_comes_in_bounded_pages(
    module_node: NodeProcess, http: httpx.Client, key: PrivateKey
) -> None:
    owner = SM.generate_private_key()
    # Two blocks of deposits with large payloads: together well over one page's byte cap.
    deposited: list[str] = []
    for _ in range(2):
        txs = [evidence(module_node, owner, payload=os.urandom(60 * 1024)) for _ in range(12)]
        response = http.post(
            "/txs", json=[tx_to_json(t) for t in txs], params={"wait": "commit", "timeout": "30"}
        )
        assert response.status_code == 200, response.text
        deposited += [r["tx_hash"] for r in response.json()["receipts"]]

    def walk(limit: int) -> tuple[list[dict[str, Any]], int]:
        items: list[dict[str, Any]] = []
        params = {"owner": owner.public_hex(), "limit": str(limit)}
        for pages in range(1, 100):
            response = http.get("/evidence", params=params)
            assert response.status_code == 200, response.text
            # The byte cap holds (with room for the envelope).
            assert len(response.content) <= PAGE_BYTES + 200, len(response.content)
            page = response.json()
            assert 1 <= len(page["items"]) <= limit
            items += page["items"]
            if page["next_cursor"] is None:
                return items, pages
            params["cursor"] = page["next_cursor"]
        pytest.fail("the pages did not end")

    # 24 payloads of 60 KiB are 120 KiB each as hex: the byte cap, not the limit, ends the pages.
    items, pages = walk(1000)
    assert pages >= 3
    for limit in (1000, 5, 1):
        items, pages = walk(limit)
        # Every deposit exactly once, oldest first.
        assert sorted(i["tx_hash"] for i in items) == sorted(deposited)
        places = [(i["height"], deposited.index(i["tx_hash"])) for i in items]
        assert places == sorted(places)
        assert {i["owner"] for i in items} == {owner.public_hex()}
        assert pages >= len(items) / limit


@pytest.mark.slow
def test_list_parameters_are_checked(module_node: NodeProcess, http: httpx.Client, key: PrivateKey) -> None:
    owner = key.public_hex()
    for params, code in [
        ({"owner": owner, "limit": "0"}, "bad-request"),
        ({"owner": owner, "limit": "100000"}, "bad-request"),
        ({"owner": owner, "cursor": "zz"}, "bad-request"),
        ({"owner": owner, "cursor": "00" * 13}, "bad-request"),
        ({"owner": owner[:20]}, "invalid-public-key"),
    ]:
        assert_problem(http.get("/evidence", params=params), 400, code)
    chains = httpx.get(f"{module_node.url}/v1/chains", timeout=HTTP_TIMEOUT).json()
    assert [c["chain_id"] for c in chains["items"]] == ["main"] and chains["next_cursor"] is None
    # An owner with no deposits: an empty last page.
    empty = http.get("/evidence", params={"owner": SM.generate_private_key().public_hex()}).json()
    assert empty == {"items": [], "next_cursor": None}


@pytest.mark.slow
def test_a_flood_of_bad_requests_logs_one_line(module_node: NodeProcess) -> None:
    watch = LogWatch(module_node)
    for _ in range(100):
        sock = connect(module_node, b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
        read_to_close(sock, CUT_OFF_SLACK)
        sock.close()
    assert_serving(module_node)
    watch.assert_quiet()


@given(
    st.integers(0, 2**24 - 1).map(lambda n: n.to_bytes(3, "big")),
    st.integers(0, 2**24 - 1).map(lambda n: n.to_bytes(3, "big")),
    st.sets(st.integers(0, 2**24 - 1), max_size=40),
)
def test_prefixes_after_cover_exactly_the_keys_after(value: bytes, last: bytes, stored: set[int]) -> None:
    """The owner index's seek, against a brute-force filter of a store that scans by prefix."""
    keys = sorted(n.to_bytes(3, "big") for n in stored | {int.from_bytes(value, "big")})
    found = [k for head in prefixes_after(value, last) for k in keys if k.startswith(head)]
    # In order, all after ``value``, and every key up to ``last`` among them.
    assert found == sorted(found) and all(k > value for k in found)
    assert [k for k in found if k <= last] == [k for k in keys if value < k <= last]


# -- the truth about pending work ---------------------------------------------------------


@pytest.mark.slow
def test_commit_timeout_says_what_survives_a_restart(node: NodeProcess, key: PrivateKey) -> None:
    tx = evidence(node, key)
    response = httpx.post(
        node.api("/txs"),
        json=tx_to_json(tx),
        params={"wait": "commit", "timeout": "0.001"},
        timeout=HTTP_TIMEOUT,
    )
    problem = assert_problem(response, 504, "commit-timeout")
    assert problem["tx_hashes"] == [tx_hash(tx)]
    assert "stay pending" not in problem["detail"]
    assert "submit again" in problem["detail"] and "duplicate" in problem["detail"]
    # A restart forgets the mempool: the transaction is committed, or unknown and to be resubmitted.
    node.kill()
    node.restart()
    known = httpx.get(node.api(f"/txs/{tx_hash(tx)}"), timeout=HTTP_TIMEOUT)
    again = httpx.post(
        node.api("/txs"),
        json=tx_to_json(tx),
        params={"wait": "commit", "timeout": "30"},
        timeout=HTTP_TIMEOUT,
    )
    if known.status_code == 404:
        assert again.status_code == 200, again.text
    else:
        assert known.json()["status"] == "committed", known.text
        duplicate = assert_problem(again, 409, "duplicate")
        assert tx_hash(tx) in duplicate["detail"]


@pytest.mark.slow
def test_zz_the_log_holds_no_traceback(module_node: NodeProcess) -> None:
    """Runs last in this module: nothing above left a traceback in the node's log, even late."""
    assert_serving(module_node)
    assert "Traceback" not in module_node.log_path.read_text(errors="replace")
