"""The docs' embed hook puts the committed reports into the site as they are, figures included.

The hook (docs/hooks/embed.py) is what keeps one source of truth for the results pages; these
tests run it on the real reports, and check that each results page states its conditions.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the docs extra is not installed")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def _hook():
    spec = importlib.util.spec_from_file_location("embed_hook", ROOT / "docs/hooks/embed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_report_is_embedded_whole_with_headings_one_level_down():
    report = (ROOT / "reports" / "digits.md").read_text(encoding="utf-8")
    embedded = _hook().embed("reports/digits.md", "results", shift=True)
    table_rows = [line for line in report.splitlines() if line.startswith("| squeezenet_dsc")]
    assert table_rows and all(row in embedded.splitlines() for row in table_rows)
    assert "\n## digits\n" in report and "\n### digits\n" in embedded
    assert embedded.startswith("## The study's five networks")


def test_embedded_figures_point_at_files_the_site_publishes():
    embedded = _hook().embed("reports/digits.md", "results", shift=True)
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", embedded)
    assert images, "the digits report has figures; none were found after embedding"
    # From docs/results/, "../reports/NAME" is the site's reports/ folder, where the hook
    # publishes every committed non-markdown file of the repository's reports/.
    for target in images:
        assert target.startswith("../reports/"), target
        assert (ROOT / target.removeprefix("../")).is_file(), f"{target} is not committed"


def test_a_plan_is_embedded_as_a_code_block():
    embedded = _hook().embed("reports/cifar10/plan.toml", "results")
    assert embedded.startswith("```toml\n") and embedded.endswith("\n```")
    assert 'arch = "squeezenet_dsc"' in embedded


def test_a_missing_file_stops_the_build():
    from mkdocs.exceptions import PluginError

    with pytest.raises(PluginError, match="reports/nope.md does not exist"):
        _hook().embed("reports/nope.md", "results")


@pytest.mark.parametrize("page", sorted(RESULTS.glob("*.md")), ids=lambda p: p.name)
def test_every_results_page_states_its_conditions(page):
    text = page.read_text(encoding="utf-8").lower()
    for word in ("host", "2026-", "torch", "protocol"):
        assert word in text, f"{page.name} does not state its {word}"
