"""Classification metrics: top-1 and top-5, per-class precision/recall/F1, the confusion matrix.

Computed from logits and labels with numpy, so any caller (the profiler today; regrouping,
retrieval or multi-label evaluation later) gets the same figures. :func:`predict_logits` runs a
model over images without disturbing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..measure.models import eval_copy, model_device, torch_threads

EVAL_BATCH = 256


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], num_classes: int):
    """``num_classes x num_classes`` counts; rows are true classes, columns predictions."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.size} labels but {predictions.size} predictions")
    for name, values in (("label", labels), ("prediction", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} outside [0, {num_classes}): {values.min()}..{values.max()}")
    flat = labels * num_classes + predictions
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_metrics(
    confusion: np.ndarray, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Top-1, per-class precision/recall/F1/support and their unweighted (macro) means.

    A class never predicted has precision 0, one never present has recall 0, and F1 is 0 when
    precision + recall is 0 (scikit-learn's ``zero_division=0``).
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    num_classes = confusion.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    true_positive = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    support = confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(support > 0, true_positive / support, 0.0)
        denominator = precision + recall
        f1 = np.where(denominator > 0, 2 * precision * recall / denominator, 0.0)
    n = int(confusion.sum())
    return {
        "top1": float(true_positive.sum() / n) if n else None,
        "n": n,
        "per_class": [
            {
                "class": names[i],
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in range(num_classes)
        ],
        "macro": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        },
    }


def accuracy_report(
    logits: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str] | None = None
) -> tuple[dict[str, Any], np.ndarray]:
    """Accuracy block of ``profile.json`` (top-1, top-5, per-class) and the confusion matrix."""
    logits = logits.detach().float().cpu()
    labels = labels.detach().long().cpu().reshape(-1)
    num_classes = logits.shape[1]
    confusion = confusion_matrix(labels.numpy(), logits.argmax(dim=1).numpy(), num_classes)
    report = classification_metrics(confusion, class_names)
    if num_classes >= 5 and labels.numel():
        top5 = logits.topk(5, dim=1).indices
        report["top5"] = float((top5 == labels[:, None]).any(dim=1).float().mean())
    else:
        report["top5"] = None
    ordered = {key: report[key] for key in ("top1", "top5", "n", "per_class", "macro")}
    return ordered, confusion


def predict_logits(
    model: nn.Module, images: torch.Tensor, *, threads: int | None, batch_size: int = EVAL_BATCH
) -> torch.Tensor:
    """Float32 CPU logits of ``model`` (eval mode, on its own device) for every image."""
    outputs = []
    with eval_copy(model) as target, torch_threads(threads), torch.inference_mode():
        device = model_device(target)
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(device)
            outputs.append(target(batch).float().cpu())
    return torch.cat(outputs)
