"""Figures a run keeps in its own directory — regrouped ROC curve, attribution grid — on the page.

``profile --regroup`` and ``explain`` write their PNGs into the run directory; the report copies
them beside the markdown (a page must not link into run directories that may move) and adds a
section with the regrouped figures of each run that has them.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from .. import files
from ..train import rundir
from .collect import RunRecord


def _copy(source: Path, out_dir: Path, name: str) -> Path:
    target = out_dir / name
    shutil.copyfile(source, target)
    return target


def _explain(record: RunRecord) -> dict | None:
    path = record.path / rundir.EXPLAIN
    try:
        return files.read_json(path) if path.is_file() else None
    except ValueError:
        return None  # a broken optional record leaves the figure out, not the report


def run_figures_section(records: Sequence[RunRecord], out_dir: Path, stem: str) -> list[str]:
    """Markdown lines (empty when no run has them); the PNGs are copied into ``out_dir``."""
    lines: list[str] = []
    for record in records:
        if not record.complete:
            continue
        prefix = f"{stem}-{rundir.slug(record.path.name)}"
        regrouped = (record.profile or {}).get("regrouped")
        explain = _explain(record)
        if not regrouped and not explain:
            continue
        lines += [f"### {record.path.name}", ""]
        if regrouped:
            auc = regrouped.get("roc_auc")
            lines += [
                f"Regrouped as `{regrouped['name']}` (the fine model's top-1 class mapped to its "
                f"group): accuracy {100 * regrouped['accuracy']:.2f}% ({regrouped['errors']} "
                f"errors of {regrouped['n']}), macro F1 {regrouped['macro']['f1']:.3f}, ROC-AUC "
                + (f"{auc:.4f}." if auc is not None else "n/a."),
                "",
                "| true \\ predicted | " + " | ".join(regrouped["groups"]) + " |",
                "|---" * (len(regrouped["groups"]) + 1) + "|",
                *[
                    f"| {group} | " + " | ".join(map(str, row)) + " |"
                    for group, row in zip(regrouped["groups"], regrouped["confusion"], strict=True)
                ],
                "",
            ]
            png = record.path / regrouped.get("files", {}).get("roc_png", "roc_curve.png")
            if png.is_file():
                copied = _copy(png, out_dir, f"{prefix}-roc.png")
                lines += [f"![ROC {record.path.name}]({copied.name})", ""]
        if explain and (record.path / explain.get("file", "")).is_file():
            copied = _copy(record.path / explain["file"], out_dir, f"{prefix}-{explain['file']}")
            lines += [
                f"Attribution ({explain['method']}, {explain['images']} test images, predicted "
                "class):",
                "",
                f"![{explain['method']} {record.path.name}]({copied.name})",
                "",
            ]
    return ["## Regrouped and explained", "", *lines] if lines else []
