"""A network on several machines, played on four loopback addresses (Linux routes all of 127/8).

``zhongshu network init --hosts 127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4`` writes the homes; the
four node processes then all use the same two ports, each on its own address, as nodes on four
machines would. Checked through the public API only: a deposit through node 2 at its own address
commits with a proof of at least three signatures, and every node holds the same block hashes.
Also: the address rules of ``plan_addresses``, the refusals of ``--hosts``, the certificates'
host names, and the systemd unit in deploy/.
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import cli_env, free_ports, genesis_hash_of, log_excerpt, run_cli, wait_for
from zhongshu.crypto import get_suite
from zhongshu.ledger.genesis import load_genesis
from zhongshu.ledger.proof import verify_bundle
from zhongshu.node.txcheck import tx_to_json
from zhongshu.p2p.netinit import NetworkInitError, parse_host, plan_addresses
from zhongshu.p2p.pki import host_names_of, validator_key_of
from zhongshu.sdk.client import evidence_tx

N = 4
HOSTS = [f"127.0.0.{i + 1}" for i in range(N)]
FAR = 1_000_000
REPO = Path(__file__).resolve().parent.parent


def _init(out: Path, base: int) -> subprocess.CompletedProcess[str]:
    """``zhongshu network init`` of four nodes on HOSTS."""
    return run_cli(
        "network", "init", "--nodes", N, "--out", out, "--base-port", base, "--hosts", ",".join(HOSTS)
    )


class HostNetwork:
    """Four node processes, node i serving its API at HOSTS[i]:base."""

    def __init__(self, root: Path, base: int) -> None:
        self.root = root
        self.base = base
        self.procs: list[subprocess.Popen[bytes]] = []

    def home(self, i: int) -> Path:
        return self.root / f"node{i}"

    def url(self, i: int) -> str:
        return f"http://{HOSTS[i]}:{self.base}/v1/chains/main"

    def start_all(self) -> None:
        for i in range(N):
            with open(self.root / f"node{i}.log", "ab") as log:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "zhongshu", "node", "start", "--home", str(self.home(i))],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=cli_env(),
                    )
                )

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()

    def status(self, i: int) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"{self.url(i)}/status", timeout=2)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def height(self, i: int) -> int:
        s = self.status(i)
        return int(s["height"]) if s else -1

    def logs(self) -> str:
        return "\n".join(
            f"--- node{i} ---\n" + log_excerpt((self.root / f"node{i}.log").read_text(errors="replace"), 3000)
            for i in range(N)
            if (self.root / f"node{i}.log").exists()
        )


@pytest.fixture
def hosts_network(tmp_path: Path) -> Iterator[HostNetwork]:
    base = free_ports([0, 100])
    made = _init(tmp_path / "net", base)
    assert made.returncode == 0, made.stdout + made.stderr
    for host in HOSTS:
        assert f"API http://{host}:{base}  P2P {host}:{base + 100}" in made.stdout, made.stdout
    net = HostNetwork(tmp_path / "net", base)
    net.start_all()
    try:
        wait_for(
            lambda: (
                all((s := net.status(i)) and len(s["consensus"]["peers"]) == N - 1 for i in range(N))
                or any(p.poll() is not None for p in net.procs)
            ),
            60,
            "four nodes serving on four addresses and connected to each other",
        )
        assert all(p.poll() is None for p in net.procs), net.logs()
        yield net
    finally:
        net.stop_all()


def test_four_nodes_on_four_loopback_addresses(hosts_network: HostNetwork) -> None:
    net = hosts_network
    names = {f"node{i}" for i in range(N)}
    # The same port on each address is a different node: its peers are the three others.
    for i in range(N):
        status = net.status(i)
        assert status is not None
        assert set(status["consensus"]["peers"]) == names - {f"node{i}"}
    # Nodes bind their own address, not all addresses: nothing answers on a fifth one.
    with socket.socket() as s, pytest.raises(OSError):
        s.settimeout(2)
        s.connect(("127.0.0.5", net.base + 100))

    # A deposit through node 2 at its own address commits.
    key = get_suite("sm").generate_private_key()
    genesis_path = net.root / "node0" / "genesis.json"
    tx = evidence_tx(key, "main", genesis_hash_of(genesis_path), os.urandom(32), "multihost", FAR)
    r = httpx.post(
        f"http://127.0.0.3:{net.base}/v1/chains/main/txs",
        json=tx_to_json(tx),
        params={"wait": "commit", "timeout": "20"},
        timeout=30,
    )
    assert r.status_code == 200, r.text + net.logs()
    receipt = r.json()["receipts"][0]
    tx_hash, height = receipt["tx_hash"], receipt["height"]

    # Its proof carries at least three of four signatures and verifies against the genesis.
    bundle = httpx.get(f"{net.url(2)}/txs/{tx_hash}/proof", timeout=5).json()
    assert len(bundle["commit"]["signatures"]) >= 3
    result = verify_bundle(bundle, trusted=load_genesis(genesis_path))
    assert result.signed_power >= 3 and result.total_power == N

    # Every node reaches that height and holds the same block hashes up to it.
    wait_for(
        lambda: min(net.height(i) for i in range(N)) >= height, 30, "every node at the deposit's height", 0.1
    )
    for h in range(1, height + 1):
        hashes = {httpx.get(f"{net.url(i)}/blocks/{h}", timeout=5).json()["hash"] for i in range(N)}
        assert len(hashes) == 1, f"fork at height {h}: {hashes}"
    for i in range(N):
        got = httpx.get(f"{net.url(i)}/txs/{tx_hash}", timeout=5).json()
        assert got["status"] == "committed" and got["height"] == height, (i, got)


def test_homes_for_several_hosts_bind_their_address_and_name_it(tmp_path: Path) -> None:
    made = _init(tmp_path / "net", 9000)
    assert made.returncode == 0, made.stderr
    for i, host in enumerate(HOSTS):
        home = tmp_path / "net" / f"node{i}"
        doc = json.loads((home / "config.json").read_text())
        # Node i binds its own address; every node uses the same two ports.
        assert (doc["api_host"], doc["p2p_host"], doc["api_port"], doc["p2p_port"]) == (
            host,
            host,
            9000,
            9100,
        )
        # Its peers are dialled at their addresses.
        assert [(p["name"], p["host"], p["port"]) for p in doc["peers"]] == [
            (f"node{j}", HOSTS[j], 9100) for j in range(N) if j != i
        ]
        # The certificate names the node and its address (an IP SAN) beside the validator key.
        cert = (home / "tls_cert.pem").read_bytes()
        assert host_names_of(cert) == [f"node{i}", host]
        validators = load_genesis(home / "genesis.json").validators.validators
        assert validator_key_of(cert) == validators[i].public_key


def test_refuses_a_wrong_number_of_hosts_or_a_bad_address(tmp_path: Path) -> None:
    cases = [
        (["--hosts", "127.0.0.1,127.0.0.2,127.0.0.3"], "names 3 addresses for 4 nodes"),
        (["--hosts", "127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5"], "names 5 addresses for 4 nodes"),
        (["--hosts", "127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.256"], "'127.0.0.256' is not an IPv4"),
        (["--hosts", "127.0.0.1,127.0.0.2,127.0.0.3,bad_name"], "'bad_name' is not an IPv4"),
        (["--hosts", "127.0.0.1,127.0.0.2,127.0.0.3,10.0.0.4:7700"], "'10.0.0.4:7700' is not an IPv4"),
        (["--hosts", "127.0.0.1,127.0.0.2,127.0.0.3,0.0.0.0"], "unspecified address"),
        (["--hosts", "127.0.0.1,127.0.0.2,,127.0.0.4"], "empty entry"),
        (["--hosts", ",".join(HOSTS), "--listen", "everywhere"], "--listen must be"),
    ]
    for extra, message in cases:
        out = tmp_path / "net"
        result = run_cli("network", "init", "--nodes", N, "--out", out, *extra)
        assert result.returncode == 1, (extra, result.stdout)
        assert message in result.stderr and result.stderr.count("\n") == 1, (extra, result.stderr)
        assert "Traceback" not in result.stderr
        assert not out.exists(), extra


def test_address_rules() -> None:
    # Without hosts: every node on 127.0.0.1, API P+i and p2p P+100+i, as before.
    local = plan_addresses(3, 7700)
    assert [(a.host, a.p2p_bind, a.api_bind, a.api_port, a.p2p_port) for a in local] == [
        ("127.0.0.1", "127.0.0.1", "127.0.0.1", 7700 + i, 7800 + i) for i in range(3)
    ]
    # Two nodes on one host: the second gets the next ports; the others keep P and P+100.
    shared = plan_addresses(3, 7700, ["10.0.0.1", "10.0.0.2", "10.0.0.1"])
    assert [(a.api_port, a.p2p_port) for a in shared] == [(7700, 7800), (7700, 7800), (7701, 7801)]
    # A DNS name binds all addresses; an IPv6 address binds itself and is bracketed in URLs.
    named = plan_addresses(2, 7700, ["Node0.Example.ORG.", "fd00::2"])
    assert [(a.host, a.p2p_bind) for a in named] == [("node0.example.org", "0.0.0.0"), ("fd00::2", "fd00::2")]
    assert named[0].api_url() == "http://node0.example.org:7700"
    assert named[1].api_url() == "http://[fd00::2]:7700" and named[1].p2p_endpoint() == "[fd00::2]:7800"
    # --listen any binds all addresses of the host's family; --api-local keeps the API on loopback.
    anywhere = plan_addresses(2, 7700, ["10.0.0.1", "fd00::2"], listen="any", api_local=True)
    assert [(a.p2p_bind, a.api_bind) for a in anywhere] == [("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1")]
    assert anywhere[0].api_url() == "http://127.0.0.1:7700"
    # Ports must fit: a second node on one host needs P+101, nodes on distinct hosts only P+100.
    with pytest.raises(NetworkInitError, match="--base-port"):
        plan_addresses(2, 65435, ["10.0.0.1", "10.0.0.1"])
    assert plan_addresses(2, 65435, ["10.0.0.1", "10.0.0.2"])[1].p2p_port == 65535
    assert parse_host(" 2001:DB8::1 ") == "2001:db8::1"
    for bad in ["", "::", "224.0.0.1", "fe80::1%eth0", "a..b", "-a.example", "x" * 64 + ".example", "1.2.3"]:
        with pytest.raises(NetworkInitError):
            parse_host(bad)


def test_systemd_unit_parses_and_starts_a_node() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(REPO / "deploy" / "zhongshu-node.service")
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/bin/zhongshu") and argv[1:4] == ["node", "start", "--home"], argv
    assert argv[4] == service["WorkingDirectory"] == "/var/lib/zhongshu/node"
    assert service["User"] == "zhongshu" and service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM" and service["NoNewPrivileges"] == "yes"
    # The node may write its home and nothing else of the file system.
    assert service["ProtectSystem"] == "strict" and "/var/lib/zhongshu" in service["ReadWritePaths"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
