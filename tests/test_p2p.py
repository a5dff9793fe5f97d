"""P2P: real mutual TLS 1.3 over loopback sockets, real certificates from ``init_network``.

Every scenario runs transports in one event loop; nothing is mocked. Waits poll a condition
until a deadline (``wait_until``); no sleep stands in for synchronisation. Hostile peers are
either real ``Transport``s with bad files or hand-written clients that speak the documented
wire format (docs/p2p.md) with one field wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
import stat
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature

from zhongshu.codec import decode, encode
from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.ledger.genesis import load_genesis
from zhongshu.p2p.frames import (
    AUTH,
    DEFAULT_MAX_FRAME,
    HEADER,
    HELLO,
    MESSAGE,
    FrameError,
    FrameTooLarge,
    encode_frame,
    read_frame,
    write_frame,
)
from zhongshu.p2p.netinit import (
    CA_CERT_FILE,
    CA_DIR,
    CA_KEY_FILE,
    NetworkInitError,
    init_network,
    load_transport_config,
)
from zhongshu.p2p.pki import (
    NetworkCA,
    PKIError,
    TLSFiles,
    cert_der,
    cert_sha256,
    client_context,
    create_network_ca,
    generate_tls_key,
    issue_node_cert,
    load_certificate,
    validator_key_of,
)
from zhongshu.p2p.transport import (
    PROTOCOL_VERSION,
    Hello,
    Transport,
    TransportConfig,
    TransportError,
    auth_sign_bytes,
)

NOW_MS = 1_767_225_600_000
"""2026-01-01T00:00:00Z: genesis time and certificate issue time of the test networks."""
SCENARIO_TIMEOUT = 30.0
WAIT = 5.0
MIB = 1024 * 1024


# -- harness ------------------------------------------------------------------------------


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(scenario, SCENARIO_TIMEOUT))


async def wait_until(condition: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` until it is truthy; fail the test at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.01)


_LISTENERS: dict[int, socket.socket] = {}
"""Listening sockets bound by ``make_network``, by port, until a Node takes its own."""


@pytest.fixture(autouse=True)
def _close_unused_listeners() -> Iterator[None]:
    yield
    for sock in _LISTENERS.values():
        sock.close()
    _LISTENERS.clear()


def make_network(tmp_path: Path, n: int = 4, suite: str = "sm") -> tuple[list[Path], list[TransportConfig]]:
    """``init_network`` in tmp_path, with the p2p ports moved to loopback sockets bound (and held) here."""
    homes = init_network(tmp_path / "net", n, suite, 20000, NOW_MS)
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(n)]
    ports = [int(sock.getsockname()[1]) for sock in listeners]
    _LISTENERS.update(zip(ports, listeners, strict=True))
    configs = []
    for i, home in enumerate(homes):
        cfg = load_transport_config(home)
        peers = tuple(replace(p, port=ports[int(p.name.removeprefix("node"))]) for p in cfg.peers)
        configs.append(replace(cfg, listen_port=ports[i], peers=peers))
    return homes, configs


class Node:
    """A transport under test and what it received; optionally never finishes with one peer's messages."""

    def __init__(self, config: TransportConfig, *, block_from: bytes | None = None) -> None:
        self.config = config
        self.listener = _LISTENERS.pop(config.listen_port, None)
        """The socket bound for this node's port; None when restarting (the transport binds again)."""
        self.key = config.validator_key.public_bytes()
        self.inbox: list[tuple[bytes, bytes]] = []
        self.block_from = block_from
        self._never = asyncio.Event()
        on_message = self._on_message_blocking if block_from is not None else self._on_message
        self.transport = Transport(config, on_message)

    def _on_message(self, peer: bytes, body: bytes) -> None:
        self.inbox.append((peer, body))

    async def _on_message_blocking(self, peer: bytes, body: bytes) -> None:
        self.inbox.append((peer, body))
        if peer == self.block_from:
            await self._never.wait()

    def got(self, sender: Node, body: bytes) -> bool:
        return (sender.key, body) in self.inbox

    def connected(self) -> set[bytes]:
        return {p.validator for p in self.transport.peers()}


class Cluster:
    """Nodes closed at the end of the scenario, whatever happens."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def add(self, config: TransportConfig, **kw: Any) -> Node:
        node = Node(config, **kw)
        self.nodes.append(node)
        return node

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(n.transport.close() for n in self.nodes))


async def start_all(nodes: list[Node]) -> None:
    """Listen on all, then dial from all: every pair dials both ways at once."""
    for n in nodes:
        await n.transport.listen(n.listener)
    for n in nodes:
        n.transport.dial()


def mesh_complete(nodes: list[Node]) -> bool:
    """Every pair has one connection, and both ends describe the same TCP connection."""
    for a in nodes:
        mine = {p.validator: p for p in a.transport.peers()}
        for b in nodes:
            if b is a:
                continue
            theirs = {p.validator: p for p in b.transport.peers()}
            ab, ba = mine.get(b.key), theirs.get(a.key)
            if ab is None or ba is None:
                return False
            if ab.outbound == ba.outbound or ab.address != ba.local_address or ab.local_address != ba.address:
                return False
    return True


def settled(nodes: list[Node]) -> bool:
    """A full mesh with no handshake left anywhere that could still replace a connection."""
    return mesh_complete(nodes) and all(n.transport.handshakes_in_progress == 0 for n in nodes)


def write_node_files(
    directory: Path, ca: NetworkCA, ca_cert_pem: bytes, name: str, key: PrivateKey
) -> TLSFiles:
    """TLS files for a node with validator key ``key`` and a certificate from ``ca``."""
    directory.mkdir(parents=True)
    tls_key = generate_tls_key()
    files = TLSFiles(directory / "ca.pem", directory / "tls_cert.pem", directory / "tls_key.pem")
    files.ca_cert.write_bytes(ca_cert_pem)
    files.key.write_bytes(tls_key)
    files.cert.write_bytes(issue_node_cert(ca, name, key.public_bytes(), tls_key, now_ms=NOW_MS))
    return files


async def open_tls(port: int, files: TLSFiles) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=client_context(files))


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)


async def expect_closed(reader: asyncio.StreamReader) -> None:
    """The peer closed the connection: the next read ends the stream or fails."""
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError, ssl.SSLError)):
        await asyncio.wait_for(read_frame(reader), WAIT)


# -- network init ---------------------------------------------------------------------------


def test_network_init_writes_homes_that_fit_together(tmp_path: Path) -> None:
    out = tmp_path / "net"
    homes = init_network(out, 4, "sm", 7700, NOW_MS)
    assert homes == [out / f"node{i}" for i in range(4)]
    ca_pem = (out / CA_DIR / CA_CERT_FILE).read_bytes()
    ca_cert = load_certificate(ca_pem)
    # The CA key exists only in DIR/ca, readable by the owner only.
    assert stat.S_IMODE((out / CA_DIR / CA_KEY_FILE).stat().st_mode) == 0o600
    assert not any(p.name == CA_KEY_FILE for h in homes for p in h.iterdir())
    genesis_bytes = {(h / "genesis.json").read_bytes() for h in homes}
    assert len(genesis_bytes) == 1, "every home must hold the same genesis.json"
    genesis = load_genesis(homes[0] / "genesis.json")
    assert genesis.chain_id == "main" and genesis.suite == "sm" and genesis.time == NOW_MS
    assert [(v.name, v.power) for v in genesis.validators.validators] == [(f"node{i}", 1) for i in range(4)]
    for i, home in enumerate(homes):
        for secret in ("node_key.pem", "tls_key.pem"):
            assert stat.S_IMODE((home / secret).stat().st_mode) == 0o600, f"{home / secret} is not 0600"
        assert (home / "ca.pem").read_bytes() == ca_pem
        cert = load_certificate((home / "tls_cert.pem").read_bytes())
        cert.verify_directly_issued_by(ca_cert)
        cfg = load_transport_config(home)
        own = cfg.validator_key.public_bytes()
        assert validator_key_of(cert) == own == genesis.validators.validators[i].public_key
        doc = json.loads((home / "config.json").read_text())
        assert (doc["api_host"], doc["api_port"]) == ("127.0.0.1", 7700 + i)
        assert (doc["p2p_host"], doc["p2p_port"]) == ("127.0.0.1", 7800 + i)
        assert [(p["name"], p["port"]) for p in doc["peers"]] == [
            (f"node{j}", 7800 + j) for j in range(4) if j != i
        ]
        assert {bytes.fromhex(p["validator"]) for p in doc["peers"]} == cfg.validators - {own}


def test_network_init_refuses_to_overwrite_or_bad_arguments(tmp_path: Path) -> None:
    init_network(tmp_path / "net", 2, "intl", 7700, NOW_MS)
    before = (tmp_path / "net" / "node0" / "node_key.pem").read_bytes()
    with pytest.raises(NetworkInitError, match="already exists"):
        init_network(tmp_path / "net", 2, "intl", 7700, NOW_MS)
    assert (tmp_path / "net" / "node0" / "node_key.pem").read_bytes() == before
    with pytest.raises(NetworkInitError, match="--nodes"):
        init_network(tmp_path / "zero", 0, "sm", 7700, NOW_MS)
    with pytest.raises(NetworkInitError, match="--base-port"):
        init_network(tmp_path / "high", 4, "sm", 65500, NOW_MS)
    assert not (tmp_path / "zero").exists() and not (tmp_path / "high").exists()


# -- PKI and frames -------------------------------------------------------------------------


def test_validator_key_must_be_named_exactly_once(tmp_path: Path) -> None:
    ca_pem, ca_key = create_network_ca("test", now_ms=NOW_MS)
    ca = NetworkCA.from_pem(ca_pem, ca_key)
    key = get_suite("intl").generate_private_key()
    cert = issue_node_cert(ca, "n", key.public_bytes(), generate_tls_key(), now_ms=NOW_MS)
    assert validator_key_of(cert) == key.public_bytes()
    assert validator_key_of(cert_der(cert)) == key.public_bytes()
    with pytest.raises(PKIError, match="subjectAltName"):
        validator_key_of(ca_pem)
    with pytest.raises(PKIError, match="validator public key"):
        issue_node_cert(ca, "n", b"", generate_tls_key())
    with pytest.raises(PKIError, match="P-256"):
        issue_node_cert(ca, "n", key.public_bytes(), key.encode_pem())


def test_transport_refuses_a_certificate_for_another_validator_key(tmp_path: Path) -> None:
    _, configs = make_network(tmp_path, 2, "intl")
    swapped = replace(configs[0], tls=configs[1].tls)
    with pytest.raises(TransportError, match="names another validator key"):
        Transport(swapped, lambda peer, body: None)


def test_frames_round_trip_and_refuse_oversized_before_reading_the_body() -> None:
    async def scenario() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(encode_frame(MESSAGE, b"abc") + encode_frame(HELLO, b""))
        assert await read_frame(reader) == (MESSAGE, b"abc")
        assert await read_frame(reader) == (HELLO, b"")
        # Only the header of a too-large frame is there: the reader must refuse without waiting for the body.
        reader.feed_data(HEADER.pack(1025))
        with pytest.raises(FrameTooLarge):
            await asyncio.wait_for(read_frame(reader, 1024), 1.0)
        empty = asyncio.StreamReader()
        empty.feed_data(HEADER.pack(0))
        with pytest.raises(FrameError, match="empty"):
            await read_frame(empty)
        ended = asyncio.StreamReader()
        ended.feed_data(encode_frame(MESSAGE, b"xyz")[:-1])
        ended.feed_eof()
        with pytest.raises(asyncio.IncompleteReadError):
            await read_frame(ended)

    run(scenario())
    assert encode_frame(AUTH, b"\x01\x02") == b"\x00\x00\x00\x03\x02\x01\x02"
    assert len(encode_frame(MESSAGE, bytes(DEFAULT_MAX_FRAME - 1))) == DEFAULT_MAX_FRAME + HEADER.size
    with pytest.raises(FrameTooLarge):
        encode_frame(MESSAGE, bytes(DEFAULT_MAX_FRAME))


# -- connecting -----------------------------------------------------------------------------


@pytest.mark.parametrize("suite", ["sm", "intl"])
def test_network_connects_broadcasts_and_sends(tmp_path: Path, suite: str) -> None:
    _, configs = make_network(tmp_path, 4, suite)

    async def scenario() -> None:
        async with Cluster() as cluster:
            nodes = [cluster.add(c) for c in configs]
            await start_all(nodes)
            await wait_until(lambda: settled(nodes), "a full mesh of 4 nodes")
            for a in nodes:
                for p in a.transport.peers():
                    assert p.tls_version == "TLSv1.3"
                    # Both sides dialled; the kept connection is the one dialled by the lower key.
                    dialler, other = (a.key, p.validator) if p.outbound else (p.validator, a.key)
                    assert dialler < other

            assert nodes[0].transport.broadcast(b"to everyone") == 3
            await wait_until(lambda: all(n.got(nodes[0], b"to everyone") for n in nodes[1:]), "the broadcast")
            assert not nodes[0].inbox

            bodies = [b"%d" % i for i in range(200)]
            for body in bodies:
                assert nodes[1].transport.send(nodes[2].key, body)
            await wait_until(lambda: all(nodes[2].got(nodes[1], b) for b in bodies), "200 messages")
            assert [b for k, b in nodes[2].inbox if k == nodes[1].key] == bodies, "order per peer is kept"
            assert not any(k == nodes[1].key for k, _ in nodes[3].inbox), "send reaches only its peer"
            assert nodes[2].transport.metrics.frames_in >= 201
            assert nodes[1].transport.metrics.frames_out >= 200
            assert nodes[0].transport.metrics.rejected_handshakes == 0

    run(scenario())


def test_peer_with_a_certificate_from_another_ca_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="zhongshu.p2p")
    _, configs = make_network(tmp_path, 4)
    foreign_pem, foreign_key = create_network_ca("another network", now_ms=NOW_MS)
    foreign = NetworkCA.from_pem(foreign_pem, foreign_key)
    # The impostor holds node3's real validator key and address, but a certificate of another CA.
    # It trusts the network's CA, so as a client it goes on to present that certificate.
    files = write_node_files(tmp_path / "impostor", foreign, foreign_pem, "node3", configs[3].validator_key)
    files = replace(files, ca_cert=configs[3].tls.ca_cert)

    async def scenario() -> None:
        async with Cluster() as cluster:
            honest = [cluster.add(c) for c in configs[:3]]
            impostor = cluster.add(replace(configs[3], tls=files))
            await start_all([*honest, impostor])
            await wait_until(lambda: mesh_complete(honest), "the honest nodes' mesh")
            # Refused both ways: as a client it does not verify, and as a server it does not either.
            await wait_until(
                lambda: all(n.transport.metrics.rejected.get("tls", 0) >= 2 for n in honest),
                "every honest node to refuse the impostor inbound and outbound",
            )
            assert not impostor.transport.peers()
            assert all(impostor.key not in n.connected() for n in honest)

    run(scenario())
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    for node in ("node0", "node1", "node2"):
        for direction in ("inbound", "outbound"):
            assert any(
                f"p2p {node}: refused {direction} peer" in m and "certificate verify failed" in m
                for m in refusals
            ), f"{node} logged no {direction} refusal of the foreign certificate"


@pytest.mark.parametrize("case", ["unknown validator", "wrong chain"])
def test_peer_outside_the_validator_set_or_chain_is_refused(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="zhongshu.p2p")
    homes, configs = make_network(tmp_path, 4)
    if case == "unknown validator":
        # A valid certificate of the network's own CA, for a key that is not a validator.
        ca_pem = (homes[0].parent / CA_DIR / CA_CERT_FILE).read_bytes()
        ca = NetworkCA.from_pem(ca_pem, (homes[0].parent / CA_DIR / CA_KEY_FILE).read_bytes())
        key = get_suite("sm").generate_private_key()
        outsider = replace(
            configs[3],
            validator_key=key,
            tls=write_node_files(tmp_path / "outsider", ca, ca_pem, "node3", key),
        )
    else:
        # node3's own key and certificate, on another chain.
        outsider = replace(configs[3], chain_id="other")

    async def scenario() -> None:
        async with Cluster() as cluster:
            honest = [cluster.add(c) for c in configs[:3]]
            stranger = cluster.add(outsider)
            await start_all([*honest, stranger])
            await wait_until(lambda: mesh_complete(honest), "the honest nodes' mesh")
            await wait_until(
                lambda: all(n.transport.metrics.rejected.get(case, 0) >= 1 for n in honest),
                f"every honest node to refuse the peer for {case!r}",
            )
            assert not stranger.transport.peers()
            assert all(len(n.connected()) == 2 and stranger.key not in n.connected() for n in honest)

    run(scenario())
    assert "refused inbound peer 127.0.0.1:" in caplog.text and case in caplog.text


def test_dialled_address_must_be_served_by_the_configured_validator(tmp_path: Path) -> None:
    _, configs = make_network(tmp_path, 3)
    node2 = configs[0].peers[1]
    assert node2.name == "node2"
    # node0 believes node2 listens where node1 does.
    misdirected = replace(configs[0], peers=(replace(node2, port=configs[1].listen_port),))

    async def scenario() -> None:
        async with Cluster() as cluster:
            dialler = cluster.add(misdirected)
            listener = cluster.add(replace(configs[1], peers=()))
            await start_all([listener, dialler])
            await wait_until(
                lambda: dialler.transport.metrics.rejected.get("unexpected validator", 0) >= 2,
                "node0 to refuse node1 at node2's address, twice (with backoff)",
            )
            assert not dialler.transport.peers()

    run(scenario())


@pytest.mark.parametrize("suite", ["sm", "intl"])
@pytest.mark.parametrize("case", ["honest", "bad signature", "key mismatch"])
def test_handshake_needs_the_validator_key_the_certificate_names(
    tmp_path: Path, suite: str, case: str
) -> None:
    _, configs = make_network(tmp_path, 4, suite)
    cfg3 = configs[3]
    own_key = cfg3.validator_key.public_bytes()
    other = get_suite(suite).generate_private_key()
    # honest: HELLO and AUTH by node3's key. bad signature: AUTH by another key. key mismatch: HELLO names it.
    hello_key = other.public_bytes() if case == "key mismatch" else own_key
    signer = other if case == "bad signature" else cfg3.validator_key

    async def scenario() -> None:
        async with Cluster() as cluster:
            server = cluster.add(replace(configs[0], peers=()))
            await server.transport.start(server.listener)
            reader, writer = await open_tls(server.transport.port, cfg3.tls)
            try:
                tls = writer.get_extra_info("ssl_object")
                assert tls.version() == "TLSv1.3"
                server_fp = cert_sha256(tls.getpeercert(binary_form=True))
                own_fp = cert_sha256(cert_der(cfg3.tls.cert.read_bytes()))
                kind, body = await read_frame(reader)
                assert kind == HELLO
                hello = decode(body, Hello)
                assert (hello.version, hello.chain_id, hello.validator) == (
                    PROTOCOL_VERSION,
                    "main",
                    server.key,
                )
                nonce = os.urandom(32)
                await write_frame(writer, HELLO, encode(Hello(PROTOCOL_VERSION, "main", hello_key, nonce)))
                if case == "key mismatch":
                    await expect_closed(reader)
                else:
                    kind, signature = await read_frame(reader)
                    assert kind == AUTH
                    # The server's AUTH checks with the layout of docs/p2p.md, and only with it.
                    signed = auth_sign_bytes("main", hello.nonce, nonce, server_fp, own_fp)
                    assert get_suite(suite).verify(server.key, signed, signature)
                    swapped = auth_sign_bytes("main", nonce, hello.nonce, server_fp, own_fp)
                    assert not get_suite(suite).verify(server.key, swapped, signature)
                    mine = auth_sign_bytes("main", nonce, hello.nonce, own_fp, server_fp)
                    await write_frame(writer, AUTH, signer.sign(mine))
                    if case == "honest":
                        await wait_until(lambda: own_key in server.connected(), "the server to accept node3")
                        await write_frame(writer, MESSAGE, b"hello from node3")
                        await wait_until(
                            lambda: (own_key, b"hello from node3") in server.inbox, "the message"
                        )
                    else:
                        await expect_closed(reader)
            finally:
                await close_writer(writer)
            metrics = server.transport.metrics
            if case == "honest":
                assert metrics.rejected_handshakes == 0
            else:
                await wait_until(lambda: metrics.rejected.get(case) == 1, f"a refusal for {case!r}")
                assert not server.transport.peers()

    run(scenario())


def test_tls_below_1_3_is_refused(tmp_path: Path) -> None:
    _, configs = make_network(tmp_path, 2)
    files = configs[1].tls

    async def scenario() -> None:
        async with Cluster() as cluster:
            server = cluster.add(replace(configs[0], peers=()))
            await server.transport.start(server.listener)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_verify_locations(cafile=str(files.ca_cert))
            ctx.load_cert_chain(str(files.cert), str(files.key))
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await asyncio.open_connection("127.0.0.1", server.transport.port, ssl=ctx)
            await wait_until(lambda: server.transport.metrics.rejected.get("tls") == 1, "the TLS refusal")

    run(scenario())


def test_client_without_a_certificate_is_refused_in_tls(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="zhongshu.p2p")
    _, configs = make_network(tmp_path, 2)

    async def scenario() -> None:
        async with Cluster() as cluster:
            server = cluster.add(replace(configs[0], peers=()))
            await server.transport.start(server.listener)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.load_verify_locations(cafile=str(configs[1].tls.ca_cert))
            # TLS 1.3: the client finishes its side first and learns of the refusal on its first read.
            reader, writer = await asyncio.open_connection("127.0.0.1", server.transport.port, ssl=ctx)
            try:
                await expect_closed(reader)
            finally:
                await close_writer(writer)
            await wait_until(lambda: server.transport.metrics.rejected.get("tls") == 1, "the TLS refusal")
            assert server.transport.metrics.frames_out == 0

    run(scenario())
    assert "TLS handshake failed" in caplog.text and "certificate" in caplog.text


# -- limits ---------------------------------------------------------------------------------


def test_oversized_frame_drops_that_connection_and_the_node_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="zhongshu.p2p")
    _, configs = make_network(tmp_path, 3)
    big = 8 * MIB
    # node0 reads frames up to DEFAULT_MAX_FRAME; the others may send larger ones.
    configs = [
        replace(configs[0], max_frame=DEFAULT_MAX_FRAME),
        replace(configs[1], max_frame=big),
        replace(configs[2], max_frame=big),
    ]
    huge = bytes(5 * MIB)

    async def scenario() -> None:
        async with Cluster() as cluster:
            n0, n1, n2 = (cluster.add(c) for c in configs)
            await start_all([n0, n1, n2])
            await wait_until(lambda: settled([n0, n1, n2]), "the mesh")
            assert n2.transport.send(n0.key, huge)
            await wait_until(lambda: n0.transport.metrics.oversized_frames == 1, "node0 to refuse the frame")
            # node0 still serves node1, both ways.
            n1.transport.send(n0.key, b"still here")
            n0.transport.send(n1.key, b"still serving")
            await wait_until(
                lambda: n0.got(n1, b"still here") and n1.got(n0, b"still serving"), "node0<->node1"
            )

            # node2 reconnects (backoff) and small messages flow again.
            def delivered() -> bool:
                n2.transport.send(n0.key, b"after")
                return n0.got(n2, b"after")

            await wait_until(delivered, "node2's next message after reconnecting")
            assert not any(len(body) >= DEFAULT_MAX_FRAME for _, body in n0.inbox)

    run(scenario())
    assert "oversized frame" in caplog.text


def test_a_peer_that_never_reads_does_not_grow_the_queue_past_its_bound(tmp_path: Path) -> None:
    _, configs = make_network(tmp_path, 3)
    bound, byte_bound = 64, MIB
    sender_cfg = replace(configs[0], max_frame=64 * 1024, queue_messages=bound, queue_bytes=byte_bound)
    payload = bytes(16 * 1024)

    async def scenario() -> None:
        async with Cluster() as cluster:
            sender = cluster.add(sender_cfg)
            # node1 takes the first message from node0 and never returns: its socket fills up.
            slow = cluster.add(configs[1], block_from=sender.key)
            fast = cluster.add(configs[2])
            await start_all([sender, slow, fast])
            await wait_until(lambda: settled([sender, slow, fast]), "the mesh")
            for _ in range(5000):
                sender.transport.broadcast(payload)
                queues = {p.validator: p for p in sender.transport.peers()}
                for p in queues.values():
                    assert p.queued_messages <= bound and p.queued_bytes <= byte_bound
                if queues[slow.key].dropped >= 300:
                    break
                await asyncio.sleep(0)
            else:
                pytest.fail("5000 messages (80 MiB) to a peer that never reads were never dropped")
            assert sender.transport.metrics.dropped >= 300
            # Dropping the oldest keeps the slow peer connected and the others served.
            assert slow.key in sender.connected()
            sender.transport.send(fast.key, b"marker")
            await wait_until(lambda: fast.got(sender, b"marker"), "the fast peer to be served")
            assert [b for k, b in slow.inbox if k == sender.key] == [payload]

    run(scenario())


def test_a_stalled_peer_is_disconnected(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="zhongshu.p2p")
    _, configs = make_network(tmp_path, 2)
    sender_cfg = replace(
        configs[0], max_frame=64 * 1024, queue_messages=16, queue_bytes=MIB, stall_timeout=0.3
    )

    async def scenario() -> None:
        async with Cluster() as cluster:
            sender = cluster.add(sender_cfg)
            slow = cluster.add(configs[1], block_from=sender.key)
            await start_all([sender, slow])
            await wait_until(lambda: settled([sender, slow]), "the connection")

            def flooded() -> bool:
                for _ in range(64):
                    sender.transport.broadcast(bytes(16 * 1024))
                return sender.transport.metrics.stalled >= 1

            await wait_until(flooded, "the sender to give up on the stalled peer")

    run(scenario())
    assert "stalled: accepted no data for 0.3 s" in caplog.text


def test_a_restarted_peer_is_reconnected_and_messages_flow_again(tmp_path: Path) -> None:
    _, configs = make_network(tmp_path, 3, "intl")

    async def scenario() -> None:
        async with Cluster() as cluster:
            nodes = [cluster.add(c) for c in configs]
            await start_all(nodes)
            await wait_until(lambda: settled(nodes), "the mesh")
            loop = asyncio.get_running_loop()
            failures = [n.transport.metrics.dial_failures for n in nodes[:2]]
            down_since = loop.time()
            await nodes[2].transport.close()
            # While node2 is down the others keep redialling and fail; the waits before the three
            # attempts are at least 0.05 + 0.1 + 0.2 s (backoff from 0.1 s, doubling, drawn from [d/2, d]).
            await wait_until(
                lambda: all(
                    n.transport.metrics.dial_failures >= f + 3
                    for n, f in zip(nodes[:2], failures, strict=True)
                ),
                "three failed redials from each of node0 and node1",
            )
            assert loop.time() - down_since >= 0.35
            assert all(nodes[2].key not in n.connected() for n in nodes[:2])
            assert not nodes[0].transport.send(nodes[2].key, b"lost")
            assert nodes[0].transport.metrics.unroutable == 1

            restarted = cluster.add(configs[2])
            await restarted.transport.start()
            again = [nodes[0], nodes[1], restarted]
            await wait_until(lambda: settled(again), "the mesh with the restarted node")
            assert nodes[0].transport.send(restarted.key, b"welcome back")
            restarted.transport.broadcast(b"hello again")
            await wait_until(
                lambda: (
                    restarted.got(nodes[0], b"welcome back")
                    and all(n.got(restarted, b"hello again") for n in nodes[:2])
                ),
                "messages to and from the restarted node",
            )
            assert not restarted.got(nodes[0], b"lost")

    run(scenario())


def test_certificates_verify_only_against_their_own_ca(tmp_path: Path) -> None:
    homes = init_network(tmp_path / "a", 2, "sm", 7700, NOW_MS)
    other = init_network(tmp_path / "b", 1, "sm", 7700, NOW_MS)
    cert = load_certificate((homes[1] / "tls_cert.pem").read_bytes())
    own_ca = load_certificate((homes[0] / "ca.pem").read_bytes())
    other_ca = load_certificate((other[0] / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(own_ca)
    assert other_ca.subject != own_ca.subject, "each network's CA has its own name"
    with pytest.raises(ValueError, match="subject does not match"):
        cert.verify_directly_issued_by(other_ca)
    # Two CAs with one name are still told apart by their keys.
    ca_pem, ca_key = create_network_ca("same name", now_ms=NOW_MS)
    twin_pem, _ = create_network_ca("same name", now_ms=NOW_MS)
    key = get_suite("sm").generate_private_key()
    issued = issue_node_cert(NetworkCA.from_pem(ca_pem, ca_key), "n", key.public_bytes(), generate_tls_key())
    load_certificate(issued).verify_directly_issued_by(load_certificate(ca_pem))
    with pytest.raises(InvalidSignature):
        load_certificate(issued).verify_directly_issued_by(load_certificate(twin_pem))
