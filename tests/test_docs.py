"""The documentation stays navigable from a fresh clone.

- Every relative link and image in README.md and docs/*.md points to a file (or folder) in the repository,
  and every #fragment to a heading of its target page (GitHub's anchor rules).
- No file of the repository points to the project's former notes file outside the repository (it is not
  shipped, so a user could not follow such a reference): the name is assembled below so that this test
  does not match itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
EXTERNAL = ("http://", "https://", "mailto:", "ftp://")
FORMER_NOTES = "ANCH" + "ORS"  # the notes file lived outside the repository; nothing may point to it
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "runs", "serving"}


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = _slug(match.group(1))
            count = seen.get(slug, 0)
            anchors.add(slug if count == 0 else f"{slug}-{count}")
            seen[slug] = count + 1
    return anchors


def _links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8")))


def test_the_pages_exist_and_docs_has_an_index() -> None:
    assert (REPO / "docs" / "README.md").is_file()
    assert len(PAGES) > 2
    index = (REPO / "docs" / "README.md").read_text(encoding="utf-8")
    for page in PAGES[1:]:
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not link {page.name}"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in _links(page):
        if target.startswith(EXTERNAL):
            continue
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists() or REPO not in (resolved, *resolved.parents):
            broken.append(f"{target}: no such file in the repository")
        elif fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved):
            broken.append(f"{target}: no heading #{fragment} in {resolved.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_the_slug_rules() -> None:
    assert _slug("Super-resolution (`evaluate-sr`)") == "super-resolution-evaluate-sr"
    assert _slug("Your own data: a CSV manifest (CBIS-DDSM, VinDr)") == "your-own-data-a-csv-manifest-cbis-ddsm-vindr"


def _repository_files():
    for root, dirs, files in os.walk(REPO):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        if here == REPO / "data":  # datasets (git-ignored), all but data/README.md
            dirs[:] = []
            files = [f for f in files if f == "README.md"]
        for name in sorted(files):
            yield here / name


def test_nothing_points_to_notes_outside_the_repository() -> None:
    hits = []
    for path in _repository_files():
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary: models, images
        text = data.decode("utf-8", errors="replace")
        hits += [f"{path.relative_to(REPO)}:{n}" for n, line in enumerate(text.splitlines(), 1) if FORMER_NOTES in line]
    assert not hits, "references to a file that is not in the repository: " + ", ".join(hits)
