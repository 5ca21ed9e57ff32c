"""A fine classifier judged on a coarser decision: seed 002's binarisation, for any regrouping.

The regrouping itself (:class:`GroupMap`, presets, files) is :mod:`archbench.data.groups`. Here a
fine model's outputs are merged: the confusion matrix by block sums, the group's prediction as
the group of the fine top-1 class, and the group's score — for ROC — as the sum of the softmax
over its classes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import files
from ..data.groups import GroupMap, Regrouping, load_regrouping
from . import classification

__all__ = [
    "GroupMap",
    "RegroupedEvaluation",
    "Regrouping",
    "evaluate_regrouped",
    "load_regrouping",
    "write_regrouped",
]


@dataclass(frozen=True)
class RegroupedEvaluation:
    """A fine model judged on the groups: the ``profile.json`` block, the matrix and ROC curves."""

    summary: dict[str, Any]
    confusion: np.ndarray
    curves: dict[str, dict[str, list[float]]]


def evaluate_regrouped(
    group_map: GroupMap, logits: torch.Tensor, labels: torch.Tensor
) -> RegroupedEvaluation:
    """Seed 002's binarisation of a fine model, generalised to any number of groups."""
    logits = logits.detach().float().cpu()
    labels = labels.detach().long().cpu().reshape(-1)
    fine = classification.confusion_matrix(
        labels.numpy(), logits.argmax(dim=1).numpy(), len(group_map.class_names)
    )
    merged = group_map.merge_confusion(fine)
    report = classification.classification_metrics(merged, group_map.group_names)
    roc = classification.roc(group_map.relabel(labels.numpy()), group_map.group_scores(logits))
    summary: dict[str, Any] = {
        **group_map.to_dict(),
        "prediction": "group of the fine top-1 class",
        "score": "sum of the fine softmax over the group's classes",
        "accuracy": report["top1"],
        "errors": int(merged.sum() - np.trace(merged)),
        "n": report["n"],
        "confusion": merged.tolist(),
        "per_group": report["per_class"],
        "macro": report["macro"],
        "roc_auc": roc["auc"],
        "roc_auc_error": roc["auc_error"],
    }
    if group_map.num_groups == 2:
        (tn, fp), (fn, tp) = merged.tolist()
        summary["binary"] = {"positive": group_map.positive, "tn": tn, "fp": fp, "fn": fn, "tp": tp}
    else:
        summary["per_group_roc_auc"] = dict(
            zip(group_map.group_names, roc["per_class_auc"], strict=True)
        )
    curves = {group_map.group_names[int(key)]: curve for key, curve in roc["curves"].items()}
    return RegroupedEvaluation(summary=summary, confusion=merged, curves=curves)


def write_regrouped(out_dir: Path, evaluation: RegroupedEvaluation) -> dict[str, str]:
    """``regrouped_confusion_matrix.csv``, ``roc_curve.csv`` and ``roc_curve.png`` into a run.

    Returns the file names written, for ``profile.json`` to point at.
    """
    out_dir = Path(out_dir)
    groups = list(evaluation.summary["groups"])
    _write_csv(
        out_dir / "regrouped_confusion_matrix.csv",
        ["true\\predicted", *groups],
        [[group, *map(int, row)] for group, row in zip(groups, evaluation.confusion, strict=True)],
    )
    rows = [
        [group, f"{fpr:.6g}", f"{tpr:.6g}", f"{threshold:.6g}"]
        for group, curve in evaluation.curves.items()
        for fpr, tpr, threshold in zip(curve["fpr"], curve["tpr"], curve["threshold"], strict=True)
    ]
    _write_csv(out_dir / "roc_curve.csv", ["positive_group", "fpr", "tpr", "threshold"], rows)
    files.write_bytes(out_dir / "roc_curve.png", _roc_png(evaluation))
    return {
        "confusion_csv": "regrouped_confusion_matrix.csv",
        "roc_csv": "roc_curve.csv",
        "roc_png": "roc_curve.png",
    }


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    files.write_bytes(path, buffer.getvalue().encode())


def _roc_png(evaluation: RegroupedEvaluation) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    summary = evaluation.summary
    figure, axes = plt.subplots(figsize=(5, 5))
    try:
        per_group = summary.get("per_group_roc_auc") or {}
        for group, curve in evaluation.curves.items():
            auc = per_group.get(group, summary["roc_auc"])
            label = f"{group} (AUC {auc:.4f})" if auc is not None else group
            axes.plot(curve["fpr"], curve["tpr"], label=label, linewidth=1.2)
        axes.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=0.8)
        axes.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1))
        axes.set_ylim(0, 1.01)
        title = f"ROC, regrouping {Path(summary['name']).name}"
        if summary["roc_auc"] is not None:
            title += f": AUC {summary['roc_auc']:.4f}"
        axes.set_title(title, fontsize=9)
        axes.legend(fontsize=7 if len(evaluation.curves) > 5 else 8, loc="lower right")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        return buffer.getvalue()
    finally:
        plt.close(figure)
