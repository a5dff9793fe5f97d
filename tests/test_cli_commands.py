"""The commands a user reaches for, as processes against a real node: what each prints, and the
exit status of each failure (0 done, 1 refused, 2 usage or file, 3 unreachable, 4 not committed,
130 interrupted), always in one ``error:`` line and never with a traceback.

Also: files are hashed as a stream (a child's peak memory stays far below a 200 MB file), and
``zhongshu verify`` loads neither the gateway, the HTTP client nor Typer; its start-up time is printed,
not asserted (docs/performance.md, *verify start-up*).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import CLI_TIMEOUT, NodeProcess, cli_env, free_base, free_port, run_cli
from test_e2e_cli import ok, one_line_error

pytestmark = pytest.mark.slow

MiB = 1 << 20
BIG_FILE = 200 * MiB
PEAK_RSS_LIMIT = 120 * MiB
"""A command hashing BIG_FILE must stay under this (the interpreter and its libraries ~60-80 MB)."""
VERIFY_RUNS = 10
UNKNOWN_TX = "ab" * 32


def run_ok(*args: str | Path) -> str:
    return ok(run_cli(*args))


def failure(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one ``error:`` line of a run that exited with ``code``."""
    assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return one_line_error(result, "error:")


@dataclass(frozen=True)
class Deposit:
    """One file deposited with metadata through ``evidence put``."""

    node: NodeProcess
    key: Path
    public_key: str
    file: Path
    bundle: Path
    tx_hash: str
    height: int
    stdout: str


@pytest.fixture(scope="module")
def deposit(module_node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> Deposit:
    root = tmp_path_factory.mktemp("cli")
    key = root / "k.pem"
    public = run_ok("keys", "new", "--out", key).strip()
    file = root / "lease.pdf"
    file.write_bytes(b"%PDF-1.7 lease of shop 12\n" * 1000)
    bundle = root / "put-proof.json"
    stdout = run_ok(
        "evidence", "put", file, "--key", key, "--api", module_node.url, "--proof-out", bundle,
        "--metadata", "case=2024-001", "-m", "court=Pudong People's Court", "-m", "note=a=b",
    )  # fmt: skip
    accepted = re.search(r"^accepted ([0-9a-f]{64})$", stdout, re.MULTILINE)
    committed = re.search(r"^committed at height (\d+)$", stdout, re.MULTILINE)
    assert accepted and committed, stdout
    return Deposit(module_node, key, public, file, bundle, accepted.group(1), int(committed.group(1)), stdout)


# -- what each command prints --------------------------------------------------------------


def test_version() -> None:
    assert run_ok("--version").strip() == f"zhongshu {importlib.metadata.version('zhongshu')}"


def test_evidence_put_says_accepted_then_waits_then_committed(deposit: Deposit) -> None:
    lines = deposit.stdout.splitlines()
    assert lines[0] == f"accepted {deposit.tx_hash}"
    assert lines[1].startswith("waiting for the commit")
    assert lines[2] == f"committed at height {deposit.height}"
    assert f"proof written to {deposit.bundle}" in deposit.stdout
    assert run_ok("verify", deposit.bundle, "--file", deposit.file, "--trust", deposit.node.genesis_path)


def test_metadata_round_trip(deposit: Deposit) -> None:
    node = deposit.node
    record = json.loads(run_ok("evidence", "get", "--file", deposit.file, "--api", node.url, "--json"))
    assert record["tx_hash"] == deposit.tx_hash and record["owner"] == deposit.public_key
    assert record["metadata"] == {
        "algorithm": "sm3",
        "case": "2024-001",
        "court": "Pudong People's Court",
        "note": "a=b",
        "size": str(deposit.file.stat().st_size),
    }
    text = run_ok("evidence", "get", record["digest"], "--api", node.url)
    assert re.search(r"^  court\s+Pudong People's Court$", text, re.MULTILINE) and deposit.tx_hash in text


def test_status(deposit: Deposit) -> None:
    node = deposit.node
    text = run_ok("status", "--api", node.url)
    assert re.search(r"^height\s+\d+", text, re.MULTILINE), text
    assert "single validator" in text and "main (suite sm)" in text
    current = json.loads(run_ok("status", "--api", node.url, "--chain", "main", "--json"))
    assert current["chain_id"] == "main" and current["height"] >= deposit.height
    assert current["validators"] == 1 and current["consensus"] is None


def test_tx_get(deposit: Deposit) -> None:
    url = deposit.node.url
    text = run_ok("tx", "get", deposit.tx_hash, "--api", url)
    assert f"committed at height {deposit.height}" in text and "evidence.put" in text
    assert re.search(r"^receipt\s+ok$", text, re.MULTILINE), text
    view = json.loads(run_ok("tx", "get", deposit.tx_hash.upper(), "--api", url, "--json"))
    assert (view["hash"], view["status"], view["height"]) == (deposit.tx_hash, "committed", deposit.height)


def test_block_get(deposit: Deposit) -> None:
    url = deposit.node.url
    text = run_ok("block", "get", str(deposit.height), "--api", url)
    assert f"  {deposit.tx_hash}" in text.splitlines() and "1 signatures" in text
    block = json.loads(run_ok("block", "get", "latest", "--api", url, "--json"))
    assert block["height"] >= deposit.height and block["header"]["chain_id"] == "main"


def test_proof_get(deposit: Deposit, tmp_path: Path) -> None:
    bundle = tmp_path / "b.json"
    text = run_ok("proof", "get", deposit.tx_hash, "--out", bundle, "--api", deposit.node.url)
    assert str(bundle) in text
    assert json.loads(bundle.read_text()) == json.loads(deposit.bundle.read_text())
    valid = run_ok("verify", bundle, "--file", deposit.file, "--trust", deposit.node.genesis_path)
    assert valid.startswith("VALID") and "matches the file" in valid
    printed = json.loads(run_ok("proof", "get", deposit.tx_hash, "--api", deposit.node.url))
    assert printed["tx"]["hash"] == deposit.tx_hash


def test_evidence_list_pages_through(deposit: Deposit, tmp_path: Path) -> None:
    node = deposit.node
    for i in range(2):
        extra = tmp_path / f"extra{i}.txt"
        extra.write_text(f"extra {i}")
        run_ok("evidence", "put", extra, "--key", deposit.key, "--api", node.url)
    by_owner = json.loads(
        run_ok("evidence", "list", "--owner", deposit.public_key, "--api", node.url, "--json")
    )
    assert [r["tx_hash"] for r in by_owner][0] == deposit.tx_hash and len(by_owner) >= 3
    by_key = json.loads(run_ok("evidence", "list", "--key", deposit.key, "--api", node.url, "--json"))
    assert by_key == by_owner
    first_two = json.loads(
        run_ok("evidence", "list", "--key", deposit.key, "--limit", "2", "--api", node.url, "--json")
    )
    assert first_two == by_owner[:2]
    text = run_ok("evidence", "list", "--key", deposit.key, "--limit", "1", "--api", node.url)
    assert deposit.tx_hash in text and "1 record (more remain" in text


def test_keys_show(deposit: Deposit) -> None:
    text = run_ok("keys", "show", "--key", deposit.key)
    assert re.search(r"^suite\s+sm$", text, re.MULTILINE) and deposit.public_key in text
    shown = json.loads(run_ok("keys", "show", "--key", deposit.key, "--json"))
    assert shown == {"suite": "sm", "public_key": deposit.public_key}
    assert "PRIVATE" not in text


# -- failures: one line, the documented exit status ----------------------------------------


def test_the_node_refuses_unknown_things(module_node: NodeProcess) -> None:
    url = module_node.url
    assert "not-found" in failure(run_cli("tx", "get", UNKNOWN_TX, "--api", url), 1)
    assert "not-found" in failure(run_cli("proof", "get", UNKNOWN_TX, "--api", url), 1)
    assert "not-found" in failure(run_cli("block", "get", "99999999", "--api", url), 1)
    assert "not-found" in failure(run_cli("evidence", "get", "cd" * 32, "--api", url), 1)
    failure(run_cli("status", "--api", url, "--chain", "no-such-chain"), 1)


def test_a_node_that_is_down(tmp_path: Path, deposit: Deposit) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    for args in (
        ["status"],
        ["tx", "get", UNKNOWN_TX],
        ["block", "get", "1"],
        ["proof", "get", UNKNOWN_TX, "--out", tmp_path / "p.json"],
        ["evidence", "get", "cd" * 32],
        ["evidence", "list", "--owner", deposit.public_key],
        ["evidence", "put", deposit.file, "--key", deposit.key],
    ):
        assert "cannot reach the gateway" in failure(run_cli(*args, "--api", dead), 3), args
    assert not (tmp_path / "p.json").exists()


def test_bad_arguments_and_files(tmp_path: Path, deposit: Deposit) -> None:
    url = deposit.node.url
    put = ["evidence", "put", deposit.file, "--key", deposit.key, "--api", url]
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("hello")
    cases: list[tuple[list[str | Path], str]] = [
        (["tx", "get", "xyz", "--api", url], "not a transaction hash"),
        (["block", "get", "tenth", "--api", url], "not a block height"),
        (["evidence", "put", tmp_path / "missing.pdf", "--key", deposit.key, "--api", url], "cannot read"),
        (["evidence", "put", tmp_path, "--key", deposit.key, "--api", url], "cannot read"),
        ([*put, "--metadata", "no-equals-sign"], "not KEY=VALUE"),
        ([*put, "--metadata", "=value"], "not KEY=VALUE"),
        ([*put, "-m", "case=1", "-m", "case=2"], "given twice"),
        ([*put, "-m", "size=1"], "set by"),
        ([*put, "--algorithm", "md5"], "not one of"),
        ([*put, "--timeout", "0"], "positive"),
        (["evidence", "get", "--api", url], "one of them"),
        (["evidence", "list", "--api", url], "one of them"),
        (["evidence", "list", "--owner", "zz", "--api", url], "not a public key"),
        (["keys", "show", "--key", tmp_path / "missing.pem"], "missing.pem"),
        (["keys", "show", "--key", not_a_key], "not-a-key.pem"),
        (["keys", "new", "--out", deposit.key], "exists"),
        (["tx", "get"], "Missing argument"),
        (["no-such-command"], "No such command"),
    ]
    for args, message in cases:
        assert message in failure(run_cli(*args), 2), args


def test_a_commit_timeout_says_what_the_node_knows(tmp_path: Path) -> None:
    # One validator of four, alone: it admits the deposit but cannot commit it.
    base = free_base(4)
    network = tmp_path / "net"
    run_ok("network", "init", "--nodes", "4", "--out", network, "--base-port", str(base))
    lonely = NodeProcess(network / "node0", base)
    try:
        lonely.restart()
        key = tmp_path / "k.pem"
        run_ok("keys", "new", "--out", key)
        file = tmp_path / "f.txt"
        file.write_text("never committed")
        result = run_cli("evidence", "put", file, "--key", key, "--api", lonely.url, "--timeout", "1")
        reason = failure(result, 4)
        tx_hash = re.search(r"^accepted ([0-9a-f]{64})$", result.stdout, re.MULTILINE)
        assert tx_hash, result.stdout
        assert f"transaction {tx_hash.group(1)} not committed within 1 s" in reason
        assert "node at height 0" in reason and "0 peers connected" in reason
        assert "consensus lacks a quorum: 1 of 4 validators connected, 3 needed" in reason
        assert "may still commit" in reason and f"zhongshu tx get {tx_hash.group(1)}" in reason
        assert "idempotent" in reason
        status = run_ok("status", "--api", lonely.url)
        assert "0 connected" in status and "lacks a quorum" in status
    finally:
        lonely.teardown()


# -- Ctrl-C and unexpected errors: never a traceback -----------------------------------------

RAISE_ON_IMPORT = """
import sys
module, error = sys.argv[1], sys.argv[2]
class Hook:
    def find_spec(self, name, path=None, target=None):
        if name == module:
            raise KeyboardInterrupt if error == "interrupt" else RuntimeError("boom")
sys.meta_path.insert(0, Hook())
sys.argv = ["zhongshu", *sys.argv[3:]]
from zhongshu.cli.main import main
raise SystemExit(main())
"""
"""Run ``zhongshu ARGS`` with Ctrl-C (or a bug) striking the moment MODULE is imported."""


def run_raising_on_import(module: str, error: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RAISE_ON_IMPORT, module, error, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=cli_env(),
        check=False,
    )


@pytest.mark.parametrize(
    ("module", "command"),
    [
        ("rich.console", ["status"]),
        ("httpx", ["status"]),
        ("argparse", ["verify", "b.json"]),
        ("zhongshu.ledger.proof", ["verify", "b.json"]),
    ],
)
def test_an_early_ctrl_c_says_interrupted(module: str, command: list[str]) -> None:
    result = run_raising_on_import(module, "interrupt", *command)
    assert (result.returncode, result.stderr.strip()) == (130, "interrupted"), result.stderr


def test_a_bug_is_one_line_too() -> None:
    result = run_raising_on_import("zhongshu.cli.chain", "bug", "status")
    assert "internal error (RuntimeError): boom" in failure(result, 1)


def test_ctrl_c_while_waiting_for_the_node() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(CLI_TIMEOUT)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "zhongshu", "status", "--api", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        try:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(CLI_TIMEOUT)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                # The request is whole: the command now waits for an answer that never comes.
                proc.send_signal(signal.SIGINT)
                stdout, stderr = proc.communicate(timeout=CLI_TIMEOUT)
        finally:
            # A command that did not stop is not left running into the next tests.
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert (proc.returncode, stderr.strip(), stdout) == (130, "interrupted", ""), stderr


# -- files are hashed as a stream ------------------------------------------------------------


_HWM_WRAPPER = """
import atexit, runpy, sys

def _save_high_water_mark(path=sys.argv[1]):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                with open(path, "w") as out:
                    out.write(line.split()[1])

atexit.register(_save_high_water_mark)
sys.argv = ["zhongshu", *sys.argv[2:]]
runpy.run_module("zhongshu", run_name="__main__")
"""
"""Runs the CLI and, as it exits, records its own peak resident memory (VmHWM, which starts
afresh at exec). ``ru_maxrss`` of a child would not do: Linux carries the forking parent's
size into it, so under a large pytest process it reports pytest's memory."""


def peak_rss(*args: str | Path, cwd: Path) -> tuple[int, int, str]:
    """Run ``zhongshu ARGS``; its exit status, its peak resident memory in bytes, its stderr."""
    hwm = cwd / "hwm.txt"
    hwm.unlink(missing_ok=True)
    with (cwd / "out.txt").open("w") as out, (cwd / "err.txt").open("w") as err:
        code = subprocess.call(
            [sys.executable, "-c", _HWM_WRAPPER, str(hwm), *map(str, args)],
            stdout=out,
            stderr=err,
            env=cli_env(),
        )
    # /proc reports VmHWM in KiB.
    return code, int(hwm.read_text()) * 1024, (cwd / "err.txt").read_text()


def test_large_files_are_hashed_in_little_memory(deposit: Deposit, tmp_path: Path) -> None:
    big = tmp_path / "scan.tiff"
    with big.open("wb") as f:
        f.truncate(BIG_FILE)
    bundle = tmp_path / "big.json"
    url = deposit.node.url
    runs = {
        "evidence put": ["evidence", "put", big, "--key", deposit.key, "--api", url, "--proof-out", bundle],
        "evidence get --file": ["evidence", "get", "--file", big, "--api", url],
        "verify --file": ["verify", bundle, "--file", big, "--trust", deposit.node.genesis_path],
    }
    for what, args in runs.items():
        code, peak, stderr = peak_rss(*args, cwd=tmp_path)
        assert code == 0, (what, stderr)
        print(f"{what}: peak RSS {peak / MiB:.0f} MiB for a {BIG_FILE // MiB} MiB file")
        assert peak < PEAK_RSS_LIMIT, (what, peak)


# -- verify starts fast ----------------------------------------------------------------------


def test_verify_loads_no_gateway_and_its_start_up_is_measured(deposit: Deposit) -> None:
    args = [str(deposit.bundle), "--file", str(deposit.file), "--trust", str(deposit.node.genesis_path)]
    traced = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "zhongshu", "verify", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=cli_env(),
        check=False,
    )
    assert traced.returncode == 0 and traced.stdout.startswith("VALID"), traced.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in traced.stderr.splitlines() if "|" in line}
    assert "zhongshu.ledger.proof.verify" in imported
    heavy = {"fastapi", "uvicorn", "starlette", "httpx", "rich", "typer", "pydantic"}
    heavy &= {m.split(".")[0] for m in imported}
    assert not heavy, sorted(heavy)

    times = []
    for _ in range(VERIFY_RUNS):
        start = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "-m", "zhongshu", "verify", *args],
            capture_output=True,
            env=cli_env(),
            timeout=CLI_TIMEOUT,
            check=False,
        )
        times.append(time.perf_counter() - start)
        assert run.returncode == 0, run.stderr
    print(f"zhongshu verify: median {statistics.median(times) * 1000:.0f} ms of {VERIFY_RUNS} runs")
