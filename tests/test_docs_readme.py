"""The README stays a short front page whose every link resolves and whose figures are a report's.

Links are checked against the repository's files (a ``docs/`` page must also be in the site's
navigation, and an ``#anchor`` must be a heading of its target), so a moved page or renamed
heading fails here rather than on a reader.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 250
SETUP_COMMANDS = (
    'pip install -e ".[dev]" && archbench run --arch squeezenet_dsc --dataset digits',
    "python -m pytest",
)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _links(markdown: str) -> list[str]:
    return LINK.findall(FENCE.sub("", markdown))


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension (MkDocs) and GitHub give a heading."""
    text = re.sub(r"[`*_]", "", heading).strip()
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.MULTILINE)}


def test_readme_is_short():
    assert len(_readme().splitlines()) <= MAX_LINES


def test_readme_keeps_the_two_setup_commands():
    block = re.search(r"## Set-up \(two commands\)\n\n```bash\n(.*?)```", _readme(), re.DOTALL)
    assert block, "the README has no set-up block"
    assert tuple(block.group(1).strip().splitlines()) == SETUP_COMMANDS


def test_readme_has_links():
    # Guards the link checks below against a pattern that silently matches nothing.
    assert len(_links(_readme())) >= 10


@pytest.mark.parametrize("target", _links(README.read_text(encoding="utf-8")))
def test_readme_link_resolves(target):
    if re.match(r"^[a-z]+:", target):
        pytest.skip("external link: not fetched in tests")
    path_part, _, anchor = target.partition("#")
    path = (ROOT / path_part).resolve() if path_part else README
    assert path.is_file(), f"README links to {target}, which is not a file of the repository"
    if path_part.startswith("docs/"):
        in_site = path.relative_to(ROOT / "docs").as_posix()
        nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
        assert re.search(rf":\s*{re.escape(in_site)}\s*$", nav, re.MULTILINE), (
            f"README links to {target}, a page missing from mkdocs.yml's nav"
        )
    if anchor:
        assert anchor in _anchors(path), f"README links to {target}: no such heading"


def test_readme_results_table_is_the_committed_reports():
    report = (ROOT / "reports" / "digits.md").read_text(encoding="utf-8").splitlines()
    rows = [line for line in _readme().splitlines() if line.startswith("|")]
    assert len(rows) >= 7, "the README's results table (header, rule, five networks) is missing"
    copied = [row for row in rows if row not in report]
    assert not copied, f"README table rows not in reports/digits.md: {copied}"
