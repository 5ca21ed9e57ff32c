"""Single-label classification metrics, computed by scikit-learn rather than by hand.

The functions keep the shapes and conventions ``profile.json`` has always had (rows of a confusion
matrix are true classes; a class never predicted has precision 0, one never present recall 0,
F1 is 0 when precision + recall is 0 — scikit-learn's ``zero_division=0``), so swapping them in
changes no figure; the tests hold them to the hand-written originals. Using the library removes
arithmetic that had to be trusted and gives the ROC functions the regrouped evaluation needs.
:func:`predict_logits` runs a model over images without disturbing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..measure.models import eval_copy, model_device, torch_threads

# scikit-learn is imported where it is used: importing it costs ~1 s, which every CLI call paid.

EVAL_BATCH = 256


def _as_labels(values, name: str, num_classes: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.int64).reshape(-1)
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(f"{name} outside [0, {num_classes}): {array.min()}..{array.max()}")
    return array


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], num_classes: int):
    """``num_classes x num_classes`` counts; rows are true classes, columns predictions.

    Out-of-range values are refused: scikit-learn would silently drop them, and a dropped image
    is a wrong denominator.
    """
    from sklearn import metrics

    labels = _as_labels(labels, "label", num_classes)
    predictions = _as_labels(predictions, "prediction", num_classes)
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.size} labels but {predictions.size} predictions")
    if not labels.size:
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    return metrics.confusion_matrix(labels, predictions, labels=np.arange(num_classes)).astype(
        np.int64
    )


def pairs_from_confusion(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (label, prediction) pairs a confusion matrix counts, for functions that want pairs."""
    confusion = np.asarray(confusion, dtype=np.int64)
    counts = confusion.reshape(-1)
    cells = np.repeat(np.arange(counts.size), counts)
    return cells // confusion.shape[1], cells % confusion.shape[1]


def classification_metrics(
    confusion: np.ndarray, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Top-1, per-class precision/recall/F1/support and their unweighted (macro) means."""
    from sklearn import metrics

    confusion = np.asarray(confusion, dtype=np.int64)
    num_classes = confusion.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    labels, predictions = pairs_from_confusion(confusion)
    n = int(labels.size)
    if n:
        precision, recall, f1, _ = metrics.precision_recall_fscore_support(
            labels, predictions, labels=np.arange(num_classes), zero_division=0
        )
    else:
        precision = recall = f1 = np.zeros(num_classes)
    support = confusion.sum(axis=1)
    return {
        "top1": float(metrics.accuracy_score(labels, predictions)) if n else None,
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
            "precision": float(np.mean(precision)),
            "recall": float(np.mean(recall)),
            "f1": float(np.mean(f1)),
        },
    }


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of images whose true class is among the ``k`` highest scores."""
    from sklearn import metrics

    scores = np.asarray(scores, dtype=np.float64)
    return float(
        metrics.top_k_accuracy_score(labels, scores, k=k, labels=np.arange(scores.shape[1]))
    )


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
        report["top5"] = top_k_accuracy(logits.numpy(), labels.numpy(), 5)
    else:
        report["top5"] = None
    ordered = {key: report[key] for key in ("top1", "top5", "n", "per_class", "macro")}
    return ordered, confusion


def roc(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """ROC-AUC and curve(s) of per-class scores ``(N, K)`` that sum to one per row.

    Two classes give one binary curve with class 1 as the positive; more give one-vs-rest curves
    and the macro one-vs-rest AUC. A class absent from ``labels`` has no curve: its AUC is
    ``None`` with the reason, rather than a number scikit-learn would warn about.
    """
    from sklearn import metrics

    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64)
    num_classes = scores.shape[1]
    present = np.bincount(labels, minlength=num_classes) > 0
    curves: dict[str, dict[str, list[float]]] = {}
    per_class_auc: list[float | None] = []
    positives = [1] if num_classes == 2 else range(num_classes)
    for positive in positives:
        is_positive = labels == positive
        if not present[positive] or is_positive.all():
            per_class_auc.append(None)
            continue
        fpr, tpr, thresholds = metrics.roc_curve(is_positive, scores[:, positive])
        curves[str(positive)] = {
            "fpr": fpr.tolist(),
            "tpr": tpr.tolist(),
            "threshold": thresholds.tolist(),
        }
        per_class_auc.append(float(metrics.roc_auc_score(is_positive, scores[:, positive])))
    if None in per_class_auc:
        missing = [str(i) for i, present_here in enumerate(present) if not present_here]
        return {
            "auc": None,
            "auc_error": f"classes absent from the labels: {', '.join(missing) or 'all but one'}",
            "per_class_auc": per_class_auc,
            "curves": curves,
        }
    if num_classes == 2:
        auc = per_class_auc[0]
    else:
        auc = float(
            metrics.roc_auc_score(
                labels, scores, multi_class="ovr", average="macro", labels=np.arange(num_classes)
            )
        )
    return {"auc": auc, "auc_error": None, "per_class_auc": per_class_auc, "curves": curves}


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
