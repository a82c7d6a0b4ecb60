"""README.md stays a short user's guide, and every link from it and between the docs/ pages leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_LINES = 200

# [text](target): the markdown links these pages use; a target with a scheme (https:, mailto:) leaves the repo.
_LINK_RE = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def _local_links(page: Path) -> list[str]:
    return [t for t in _LINK_RE.findall(page.read_text(encoding="utf-8")) if not _SCHEME_RE.match(t)]


def _anchor(heading: str) -> str:
    """GitHub's id of a heading: lowercased, punctuation but hyphens and underscores dropped, spaces -> hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_anchor(m) for m in re.findall(r"^#+\s+(.*)$", page.read_text(encoding="utf-8"), re.MULTILINE)}


def _problems(page: Path) -> list[str]:
    problems = []
    for target in _local_links(page):
        path_part, _, anchor = target.partition("#")
        dest = page if not path_part else (page.parent / path_part).resolve()
        if not dest.exists():
            problems.append(f"{page.relative_to(REPO)}: {target} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            problems.append(f"{page.relative_to(REPO)}: {target} names no heading of {dest.relative_to(REPO)}")
    return problems


def test_the_readme_is_a_short_guide() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; findings belong in docs/"


def test_every_docs_link_in_the_readme_exists() -> None:
    docs_links = [t for t in _local_links(README) if t.startswith("docs/")]
    assert docs_links, "README.md links no docs/ page"
    assert [p for p in _problems(README) if " docs/" in p] == []


def test_every_local_link_of_the_readme_and_the_docs_leads_somewhere() -> None:
    pages = [README, *sorted(DOCS.rglob("*.md"))]
    assert len(pages) > 1, "no docs/ pages"
    assert [p for page in pages for p in _problems(page)] == []


def test_every_docs_page_is_reachable_from_the_readme_or_the_results_index() -> None:
    """A page nobody links is a page nobody reads: the README's docs index names each page, the results index
    each campaign."""
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in _local_links(README)}
    results_index = DOCS / "results" / "README.md"
    if results_index.exists():
        linked |= {(results_index.parent / t.partition("#")[0]).resolve() for t in _local_links(results_index)}
    unlinked = [
        str(p.relative_to(REPO)) for p in sorted(DOCS.rglob("*.md")) if p.resolve() not in linked and p != results_index
    ]
    assert unlinked == []


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Above TP1: `llama-3-8b-tp2` on two H200s", "above-tp1-llama-3-8b-tp2-on-two-h200s"),
        ("A GPU campaign", "a-gpu-campaign"),
    ],
)
def test_anchors_are_githubs(heading: str, anchor: str) -> None:
    assert _anchor(heading) == anchor
