"""Two trained runs on one test set: McNemar's exact test on their per-image correctness.

With a regrouping, a fine model's predictions are merged into groups (the group of its top-1
class) and a model trained directly on that regrouping is taken as it is, so the fine-then-merge
and the direct approach meet on the same decision. Runs tested on different images are refused:
a paired test on unpaired data would be meaningless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ArchbenchError
from ..evaluate.classification import predict_logits
from ..evaluate.significance import ALPHA, mcnemar
from .loaded import LoadedRun, load_run


def _same_test_set(a: LoadedRun, b: LoadedRun) -> None:
    dataset_a = a.info.config["train"]["dataset"]
    dataset_b = b.info.config["train"]["dataset"]
    if dataset_a != dataset_b or not torch.equal(a.fine_labels, b.fine_labels):
        raise ArchbenchError(
            f"{a.path} ({dataset_a}, {a.fine_labels.numel()} test images) and {b.path} "
            f"({dataset_b}, {b.fine_labels.numel()} test images) were not tested on the same "
            "images; McNemar's test needs one test set"
        )


def _predictions(run: LoadedRun, regroup: str | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(labels, predictions, how) in the compared classes: fine, or the regrouping's groups."""
    predictions = predict_logits(run.model, run.images, threads=run.threads).argmax(dim=1)
    if regroup is None:
        if run.trained_groups is not None:
            raise ArchbenchError(
                f"{run.path} was trained on the groups of {run.trained_groups.name!r}: "
                f"compare with --regroup {run.trained_groups.name}"
            )
        return run.fine_labels, predictions, "fine classes"
    groups = run.groups_for(regroup)
    if run.trained_groups is None:
        return groups.relabel(run.fine_labels), groups.relabel(predictions), "fine, merged"
    if run.trained_groups.class_to_group != groups.class_to_group:
        raise ArchbenchError(
            f"{run.path} was trained on the groups of {run.trained_groups.name!r}, "
            f"not those of {regroup!r}"
        )
    return run.labels, predictions, "trained on the groups"


def compare_runs(
    run_a: Path, run_b: Path, *, regroup: str | None = None, alpha: float = ALPHA
) -> dict[str, Any]:
    """McNemar's exact test of run A against run B; what ``archbench compare`` prints."""
    a, b = load_run(run_a), load_run(run_b)
    for run in (a, b):
        run.require_single_label("compare")
    _same_test_set(a, b)
    labels_a, predictions_a, how_a = _predictions(a, regroup)
    labels_b, predictions_b, how_b = _predictions(b, regroup)
    assert torch.equal(labels_a, labels_b)  # the same test set, mapped the same way
    result = mcnemar(labels_a.numpy(), predictions_a.numpy(), predictions_b.numpy(), alpha=alpha)
    return {
        "a": {"run": str(a.path), "model": a.describe(), "predictions": how_a},
        "b": {"run": str(b.path), "model": b.describe(), "predictions": how_b},
        "regroup": regroup,
        "accuracy_a": 1 - result.errors_a / result.n,
        "accuracy_b": 1 - result.errors_b / result.n,
        **result.to_dict(),
    }
