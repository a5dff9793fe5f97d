"""The ``state_map`` switch that ``zhongshu bench --state-map-compare`` turns (issue 9): the
config field reads back as written, and a node started without the map serves transactions
while its state route refuses with a problem document that says why."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import NodeProcess, free_port
from zhongshu.contracts.evidence import digest_key
from zhongshu.crypto import get_suite
from zhongshu.node.home import CONFIG_FILE, HomeError, init_single_home, load_home
from zhongshu.sdk import Client

NOW_MS = 1_764_633_600_000


def _set_config(home: Path, **fields: object) -> None:
    doc = json.loads((home / CONFIG_FILE).read_text())
    doc.update(fields)
    (home / CONFIG_FILE).write_text(json.dumps(doc))


def test_state_map_is_on_by_default_and_reads_back_as_written(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_single_home(home, now_ms=NOW_MS)
    assert load_home(home)[0].state_map is True
    _set_config(home, state_map=False)
    assert load_home(home)[0].state_map is False
    _set_config(home, state_map=True)
    assert load_home(home)[0].state_map is True


def test_state_map_must_be_true_or_false(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_single_home(home, now_ms=NOW_MS)
    _set_config(home, state_map="no")
    with pytest.raises(HomeError, match="state_map must be true or false"):
        load_home(home)


@pytest.fixture(scope="module")
def mapless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, bytes]]:
    """A node whose home says ``state_map: false`` from its first start, with one deposit."""
    port = free_port()
    home = tmp_path_factory.mktemp("mapless") / "home"
    init_single_home(home, port=port, now_ms=NOW_MS)
    _set_config(home, state_map=False)
    node = NodeProcess(home, port)
    try:
        node.restart()
        digest = os.urandom(32)
        with Client(node.url, "main") as client:
            receipt = client.put_evidence(get_suite("sm").generate_private_key(), digest, "a.pdf")
        assert receipt.height >= 1
        yield node, digest
    finally:
        node.teardown()


def test_a_node_without_the_state_map_serves_deposits(mapless: tuple[NodeProcess, bytes]) -> None:
    node, digest = mapless
    answer = httpx.get(node.api(f"/evidence/{digest.hex()}"), timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["digest"] == digest.hex()
    assert node.status()["height"] >= 1


def test_a_node_without_the_state_map_refuses_state_reads_with_the_reason(
    mapless: tuple[NodeProcess, bytes],
) -> None:
    node, digest = mapless
    # A state read (it always carries a proof) and the evidence route's read with a proof.
    for path, params in [
        (f"/state/{digest_key(digest).hex()}", {}),
        (f"/evidence/{digest.hex()}", {"proof": "true"}),
    ]:
        answer = httpx.get(node.api(path), params=params, timeout=10)
        assert answer.status_code == 409, answer.text
        assert answer.json()["type"].endswith("/problems/no-state-map")
        assert "without the state map" in answer.json()["detail"]
