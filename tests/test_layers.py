"""The layers of design.md: a package imports only from packages below it."""

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


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).parts
        if len(rel) > 1:
            out.append((rel[0], path))
    assert out, "no modules found"
    return out


@pytest.mark.parametrize(("layer", "path"), _modules(), ids=lambda v: str(v))
def test_imports_go_downward(layer: str, path: Path) -> None:
    assert layer in RANK, f"{layer} is not a layer of design.md"
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] != "zhongshu" or len(parts) < 2 or parts[1] not in RANK:
            continue
        target = parts[1]
        if target == layer or (layer in TOP and target in TOP):
            continue
        assert RANK[target] < RANK[layer], f"{path.name} ({layer}) imports {name} from above"


@pytest.mark.parametrize("path", [p for layer, p in _modules() if layer in PURE], ids=lambda p: p.name)
def test_deterministic_cores_do_no_io(path: Path) -> None:
    for name in _imports(path):
        assert name.split(".")[0] not in IMPURE_MODULES, f"{path.name} imports {name}"


def test_rule_is_checked_against_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from zhongshu.gateway.app import create_app\n")
    assert "zhongshu.gateway.app" in _imports(bad)
    assert RANK["gateway"] > RANK["ledger"]
