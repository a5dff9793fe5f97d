"""Sender checks in worker processes (zhongshu.node.verifier): results, a killed worker, a killed node."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import free_port
from zhongshu.crypto import get_suite
from zhongshu.node.home import HomeError, init_single_home, load_home
from zhongshu.node.verifier import INVALID_PUBLIC_KEY, INVALID_SIGNATURE, SenderVerifier, check_items


def _items(suite_name: str, count: int) -> list[tuple[bytes, bytes, bytes]]:
    suite = get_suite(suite_name)
    key = suite.generate_private_key()
    out = []
    for i in range(count):
        message = f"message {i}".encode()
        out.append((key.public_bytes(), message, key.sign(message)))
    return out


def _spoil(items: list[tuple[bytes, bytes, bytes]], suite_name: str) -> list[tuple[bytes, bytes, bytes]]:
    """Item 1 signs another message, item 4 has a key that is no point of the curve."""
    spoiled = list(items)
    sender, message, signature = spoiled[1]
    spoiled[1] = (sender, message + b"!", signature)
    bad_key = b"\x04" + b"\x01" * 64 if suite_name == "sm" else b"\x02" + b"\x00" * 31
    spoiled[4] = (bad_key, spoiled[4][1], spoiled[4][2])
    return spoiled


@pytest.mark.parametrize("suite_name", ["sm", "intl"])
def test_check_items_names_each_failure(suite_name: str) -> None:
    import msgspec

    items = _items(suite_name, 6)
    assert check_items(suite_name, msgspec.msgpack.encode(items))[0] == []
    failures, cpu = check_items(suite_name, msgspec.msgpack.encode(_spoil(items, suite_name)))
    assert [(i, kind) for i, kind, _ in failures] == [(1, INVALID_SIGNATURE), (4, INVALID_PUBLIC_KEY)]
    assert cpu > 0


@pytest.mark.parametrize("suite_name", ["sm", "intl"])
def test_pool_reports_batch_indices(suite_name: str) -> None:
    # Seven items over two workers: the failures come back as indices into the whole batch.
    items = _spoil(_items(suite_name, 7), suite_name)
    verifier = SenderVerifier(suite_name, workers=2)
    try:
        failures, cpu = asyncio.run(verifier.check(items))
    finally:
        verifier.close()
    assert [(i, kind) for i, kind, _ in failures] == [(1, INVALID_SIGNATURE), (4, INVALID_PUBLIC_KEY)]
    assert cpu > 0


def test_a_killed_worker_is_replaced() -> None:
    items = _spoil(_items("intl", 6), "intl")
    verifier = SenderVerifier("intl", workers=2)

    async def run() -> list[int]:
        await verifier.warm()
        pool = verifier._get_pool()
        victim = next(iter(pool._processes or {}))
        os.kill(victim, signal.SIGKILL)
        await asyncio.sleep(0.5)
        failures, _ = await verifier.check(items)
        return [i for i, _, _ in failures]

    try:
        assert asyncio.run(run()) == [1, 4]
    finally:
        verifier.close()


def test_workers_end_when_the_node_is_killed() -> None:
    # A node killed with SIGKILL cannot shut its pool down: the workers must notice and exit.
    script = textwrap.dedent(
        """
        import asyncio, os, signal
        from zhongshu.node.verifier import SenderVerifier

        async def main():
            verifier = SenderVerifier("intl", workers=2)
            await verifier.warm()
            print(" ".join(str(p) for p in verifier._get_pool()._processes), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        if __name__ == "__main__":
            asyncio.run(main())
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    workers = [int(p) for p in proc.stdout.split()]
    assert len(workers) == 2

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in workers), f"workers {workers} outlived their node"


@pytest.mark.parametrize("value", [-1, 257, "two"])
def test_verify_workers_out_of_range_is_refused(tmp_path: Path, value: object) -> None:
    home = tmp_path / "home"
    init_single_home(home, suite="intl", port=free_port(), now_ms=1_700_000_000_000)
    config = json.loads((home / "config.json").read_text())
    config["verify_workers"] = value
    (home / "config.json").write_text(json.dumps(config))
    with pytest.raises(HomeError, match="verify_workers"):
        load_home(home)


def test_verify_workers_reaches_the_node(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_single_home(home, suite="intl", port=free_port(), now_ms=1_700_000_000_000)
    assert load_home(home)[0].verify_workers == 0
    config = json.loads((home / "config.json").read_text())
    config["verify_workers"] = 3
    (home / "config.json").write_text(json.dumps(config))
    assert load_home(home)[0].verify_workers == 3
