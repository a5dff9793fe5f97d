"""docs/sdk.md runs: its python blocks, in order, against a real node (so the page cannot rot).

The page's examples use the default gateway address, which is replaced by the test node's; the
chain's genesis.json, which a reader gets from the chain's operator, is copied in from the
node's home. docs/zh/sdk.md must show the very same code.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conftest import NodeProcess
from zhongshu.sdk import DEFAULT_URL

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


def test_the_page_has_examples_of_every_section() -> None:
    blocks = python_blocks(DOCS / "sdk.md")
    code = "\n".join(blocks)
    assert len(blocks) >= 7
    for used in ("Client(", "load_key(", "put_evidence(", "get_block(", "verify_proof(", "AsyncClient("):
        assert used in code, used
    # The placeholder the test replaces with its node's address.
    assert DEFAULT_URL in code


def test_the_chinese_page_shows_the_same_code() -> None:
    assert python_blocks(DOCS / "zh" / "sdk.md") == python_blocks(DOCS / "sdk.md")


def test_the_examples_run_against_a_node(
    node: NodeProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(node.genesis_path, tmp_path / "genesis.json")
    namespace: dict[str, object] = {"__name__": "sdk_docs"}
    for i, block in enumerate(python_blocks(DOCS / "sdk.md")):
        code = compile(block.replace(DEFAULT_URL, node.url), f"docs/sdk.md block {i + 1}", "exec")
        exec(code, namespace)
    out = capsys.readouterr().out
    assert "valid: height" in out and "not-found" in out and "no gateway:" in out
    assert (tmp_path / "contract.proof.json").exists()
