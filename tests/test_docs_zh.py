"""The Chinese pages under docs/zh/ against their English pages.

A translation rewords prose; the bytes a reader copies must not move. The pages a developer or
a verifier builds from (the access specification, the hub chain, the proof format) show the very
code blocks of their English page; the others show as many, their comments translated. Every
user page has its Chinese version. (docs/zh/sdk.md is held to its English page's Python by
test_sdk_docs.py, which also runs it.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
USER_PAGES = [
    "access-spec.md",
    "deploy.md",
    "hub.md",
    "operations.md",
    "proof-format.md",
    "sdk.md",
    "state-layout.md",
]
"""Pages for operators, application developers and verifiers: each has a Chinese version."""
EXACT = ["access-spec.md", "hub.md", "proof-format.md"]
"""Pages whose code blocks (requests, hex dumps, worked examples) the Chinese page copies exactly."""


def fenced_blocks(path: Path) -> list[str]:
    """Each fenced code block of a Markdown page, fences included."""
    blocks: list[str] = []
    current: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            if current is None:
                current = [line.strip()]
            else:
                current.append(line.strip())
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    assert current is None, f"{path}: a code block is not closed"
    return blocks


@pytest.mark.parametrize("page", USER_PAGES)
def test_every_user_page_has_a_chinese_version_with_as_many_code_blocks(page: str) -> None:
    chinese = DOCS / "zh" / page
    assert chinese.exists(), f"docs/{page} has no Chinese version"
    assert len(fenced_blocks(chinese)) == len(fenced_blocks(DOCS / page)), page


@pytest.mark.parametrize("page", EXACT)
def test_the_chinese_page_shows_the_same_code_and_bytes(page: str) -> None:
    english, chinese = fenced_blocks(DOCS / page), fenced_blocks(DOCS / "zh" / page)
    for i, (a, b) in enumerate(zip(english, chinese, strict=True)):
        assert a == b, f"docs/zh/{page}: code block {i + 1} differs from the English page's"
