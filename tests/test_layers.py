"""The layers of design.md: a package imports only from packages below it.

The rule is one function (``find_violations``) applied to every module of the source tree, and
shown able to fail: applied to synthetic modules that import upward or read the clock inside a
deterministic core, it reports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "zhongshu"

ORDER = [
    "crypto",
    "codec",
    "ledger",
    "store",
    "execution",
    "contracts",
    "consensus",
    "p2p",
    "node",
    "hub",
    "gateway",
    "sdk",
    "cli",
    "console",
]
RANK = {name: i for i, name in enumerate(ORDER)}
# The top-level tools (sdk, cli, console) sit on one level and may use each other.
TOP = {"sdk", "cli", "console"}
# Consensus and execution are deterministic cores: no clock, randomness, disk or network.
PURE = {"consensus", "execution"}
IMPURE_MODULES = {"time", "random", "secrets", "socket", "asyncio", "os", "pathlib", "lmdb", "httpx"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(root: Path = SRC) -> list[tuple[str, Path]]:
    """(layer, path) of every module inside a layer package under ``root``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if len(rel) > 1:
            out.append((rel[0], path))
    return out


def find_violations(layer: str, path: Path) -> list[str]:
    """What ``path`` (a module of ``layer``) breaks: upward imports, and I/O in a pure core."""
    if layer not in RANK:
        return [f"{path.name}: {layer} is not a layer of design.md"]
    found = []
    for name in sorted(_imports(path)):
        parts = name.split(".")
        # A deterministic core touches no clock, randomness, disk or network.
        if layer in PURE and parts[0] in IMPURE_MODULES:
            found.append(f"{path.name} ({layer}) imports {name}: a deterministic core does no I/O")
        if parts[0] != "zhongshu" or len(parts) < 2 or parts[1] not in RANK:
            continue
        target = parts[1]
        if target == layer or (layer in TOP and target in TOP):
            continue
        # Only packages below may be imported.
        if RANK[target] > RANK[layer]:
            found.append(f"{path.name} ({layer}) imports {name} from above")
    return found


def test_the_source_tree_has_layered_modules() -> None:
    layers = {layer for layer, _ in _modules()}
    assert {"consensus", "execution", "ledger", "node", "gateway"} <= layers


@pytest.mark.parametrize(("layer", "path"), _modules(), ids=lambda v: str(v))
def test_layers_import_downward_and_cores_do_no_io(layer: str, path: Path) -> None:
    assert find_violations(layer, path) == []


def test_the_rule_reports_real_violations(tmp_path: Path) -> None:
    modules = {
        "ledger/upward.py": "from zhongshu.gateway.app import create_app\n",
        "consensus/clock.py": "import time\n\nNOW = time.time()\n",
        "execution/rand.py": "from random import random\n",
        "consensus/fine.py": "from zhongshu.ledger.types import Vote\nimport zhongshu.consensus.votes\n",
        "cli/tools.py": "from zhongshu.sdk.client import evidence_tx\nimport time\n",
        "store/deep.py": "import zhongshu.node.replica\n",
        "widgets/odd.py": "import json\n",
    }
    for rel, text in modules.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = {path.name: find_violations(layer, path) for layer, path in _modules(tmp_path)}
    assert found == {
        "upward.py": ["upward.py (ledger) imports zhongshu.gateway.app from above"],
        "clock.py": ["clock.py (consensus) imports time: a deterministic core does no I/O"],
        "rand.py": ["rand.py (execution) imports random: a deterministic core does no I/O"],
        "fine.py": [],
        "tools.py": [],
        "deep.py": ["deep.py (store) imports zhongshu.node.replica from above"],
        "odd.py": ["odd.py: widgets is not a layer of design.md"],
    }
