"""Which pixels a trained run's predictions rest on: an attribution grid in its run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import files
from ..evaluate.attribution import ImageChoice, explain_images
from ..train import rundir
from .loaded import load_run


def explain_run(run_dir: Path, *, method: str = "saliency", images: str = "misclassified") -> dict:
    """Draw ``explain-<method>.png`` for the chosen test images; record it in ``explain.json``.

    The predicted class is attributed, so a misclassified image shows what misled the model.
    """
    choice = ImageChoice.parse(images)  # a bad --images fails before the run is read
    run = load_run(run_dir)
    run.require_single_label("explain")
    path = run.path / f"explain-{method}.png"
    record: dict[str, Any] = explain_images(
        run.model,
        run.images,
        run.display,
        run.labels,
        class_names=run.class_names,
        method=method,
        choice=choice,
        path=path,
        title=f"{run.describe()}: {method}, predicted class",
    )
    files.write_json(run.path / rundir.EXPLAIN, record)
    return record
