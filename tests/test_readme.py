"""The README stays a README (issue 29): short, and every relative link in it and in the docs
points at a path that exists (result folders move; a link that goes stale fails here)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_README_LINES = 300
# [text](target) — the target up to the first space or closing parenthesis
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _docs() -> list[Path]:
    """The hand-written docs; the reports inside result folders are written by the tools."""
    docs = ROOT / "docs"
    return [ROOT / "README.md", docs / "results" / "INDEX.md", *sorted(docs.glob("*.md")),
            *sorted((docs / "guide").rglob("*.md")), *sorted((docs / "research").rglob("*.md"))]


def _anchors(text: str) -> set[str]:
    """GitHub's heading slugs: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+\s+(.*)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines (at most {MAX_README_LINES}): move detail to docs/guide or docs/research"


def test_results_index_exists():
    assert (ROOT / "docs" / "results" / "INDEX.md").is_file()


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path):
    text = doc.read_text()
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):   # http:, https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        if not path:                                      # an anchor in this file
            if anchor not in _anchors(text):
                broken.append(target)
            continue
        if not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)}: links to missing paths: {broken}"


def test_the_check_catches_a_broken_link(tmp_path: Path):
    """The link pattern finds a link whose target is missing, so the test above can fail."""
    doc = tmp_path / "x.md"
    doc.write_text("see [the results](docs/results/nowhere/) and [a site](https://example.org)\n")
    targets = [t for t in LINK.findall(doc.read_text()) if not t.startswith("http")]
    assert targets == ["docs/results/nowhere/"] and not (tmp_path / targets[0]).exists()
