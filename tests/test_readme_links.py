"""The README's relative links lead somewhere: MkDocs checks the pages, not the README."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

#: ``[text](target)`` and ``![alt](target)``, outside code; a target has no spaces.
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")


def relative_links(markdown: str) -> list[str]:
    """Every link target that is neither a URL nor an e-mail address, in order."""
    text = _CODE.sub("", _FENCE.sub("", markdown))
    return [t for t in _LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def anchors(markdown: str) -> set[str]:
    """The ids MkDocs (and GitHub, for these headings) gives a page's headings."""
    headings = re.findall(r"^#{1,6} (.+?)\s*$", _FENCE.sub("", markdown), re.MULTILINE)
    slugs = set()
    for heading in headings:
        words = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
        slugs.add(re.sub(r"[-\s]+", "-", words))
    return slugs


def test_every_relative_link_of_the_readme_points_to_a_file_or_heading_that_exists() -> None:
    links = relative_links(README.read_text())
    assert any(link.startswith("docs/") for link in links)  # it finds the links it should
    broken = []
    for link in links:
        path, _, anchor = link.partition("#")
        target = (ROOT / path).resolve() if path else README
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target.read_text()):
            broken.append(f"{link}: no heading with that anchor")
    assert broken == []


def test_every_page_of_the_docs_is_linked_from_the_readme() -> None:
    linked = {Path(link.partition("#")[0]) for link in relative_links(README.read_text())}
    pages = {
        page.relative_to(ROOT)
        for page in (ROOT / "docs").glob("*.md")
        if page.name not in {"index.md", "changelog.md"}  # the site's own home and changelog
    }
    assert sorted(map(str, pages - linked)) == []


def test_the_link_finder_sees_links_and_anchors_but_not_code() -> None:
    markdown = "# A `b` title\n[x](a.md#a-b-title) `[y](in-code.md)`\n```\n[z](fenced.md)\n```\n"
    assert relative_links(markdown) == ["a.md#a-b-title"]
    assert anchors(markdown) == {"a-b-title"}
    assert relative_links("[web](https://example.com) [mail](mailto:a@b.c)") == []
