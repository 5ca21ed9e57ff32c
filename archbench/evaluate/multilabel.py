"""Multi-label metrics: what a network's per-label scores say, next to what doing nothing scores.

With few positives per image, Hamming error is small for any predictor: predicting no label at
all scores the fraction of positive entries (seed 000's 0.0034 sits beside an all-negative
0.004-0.008). So every report carries that baseline beside the Hamming error, and mAP beside
the mAP of a constant score (which equals each label's prevalence). Set metrics are taken at a
probability ``threshold``; precision, recall and F1 come from scikit-learn with
``zero_division=0``.

Prediction kinds, per image, with P the predicted and T the true label set:
``exact`` P = T; ``empty`` P = {} != T; ``wrong`` P != {} and P and T share nothing;
``partial`` the rest (some overlap, not equal).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

DEFAULT_THRESHOLD = 0.5
KINDS = ("exact", "partial", "empty", "wrong")


def _binary(matrix: Any, name: str) -> np.ndarray:
    array = np.asarray(matrix.cpu() if isinstance(matrix, torch.Tensor) else matrix)
    if array.ndim != 2:
        raise ValueError(f"{name} must be (N, K), got shape {array.shape}")
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return array.astype(bool)


def prediction_kinds(targets: Any, predicted: Any) -> dict[str, float]:
    """Fractions of images whose predicted set is exact, partial, empty or wrong (sum 1)."""
    truth, guess = _binary(targets, "targets"), _binary(predicted, "predicted")
    if truth.shape != guess.shape:
        raise ValueError(f"targets {truth.shape} and predictions {guess.shape} differ in shape")
    exact = (truth == guess).all(axis=1)
    empty = ~guess.any(axis=1) & ~exact
    wrong = guess.any(axis=1) & ~(truth & guess).any(axis=1) & ~exact
    partial = ~(exact | empty | wrong)
    n = max(truth.shape[0], 1)
    kinds = {"exact": exact, "partial": partial, "empty": empty, "wrong": wrong}
    return {kind: float(mask.sum() / n) for kind, mask in kinds.items()}


def all_negative_hamming_error(targets: Any) -> float:
    """The Hamming error of predicting no label for any image: the fraction of positive entries."""
    return float(_binary(targets, "targets").mean())


def average_precisions(targets: Any, scores: Any) -> list[float | None]:
    """Per-label average precision; ``None`` for a label with no positive image (undefined)."""
    from sklearn.metrics import average_precision_score  # ~1 s to import: only on use

    truth = _binary(targets, "targets")
    values = np.asarray(scores.cpu() if isinstance(scores, torch.Tensor) else scores, float)
    return [
        float(average_precision_score(truth[:, j], values[:, j])) if truth[:, j].any() else None
        for j in range(truth.shape[1])
    ]


def mean_average_precision(targets: Any, scores: Any) -> float:
    """Mean AP over the labels that have a positive image (model selection's figure)."""
    defined = [ap for ap in average_precisions(targets, scores) if ap is not None]
    return float(np.mean(defined)) if defined else float("nan")


def multilabel_report(
    logits: torch.Tensor,
    targets: Any,
    label_names: Sequence[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """The ``multilabel`` block of ``profile.json``: every figure at ``threshold``, and baselines.

    ``logits`` are the network's raw outputs ``(N, K)``; probabilities are their sigmoid.
    """
    from sklearn.metrics import hamming_loss, precision_recall_fscore_support  # ~1 s: on use

    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    scores = torch.sigmoid(logits.detach().float().cpu()).numpy()
    truth = _binary(targets, "targets")
    if truth.shape != scores.shape:
        raise ValueError(f"targets {truth.shape} and logits {scores.shape} differ in shape")
    predicted = scores >= threshold
    names = list(label_names) if label_names is not None else [str(j) for j in range(len(truth.T))]
    aps = average_precisions(truth, scores)
    defined = [j for j, ap in enumerate(aps) if ap is not None]
    prevalence = truth.mean(axis=0)

    def averaged(average: str) -> dict[str, float]:
        p, r, f, _ = precision_recall_fscore_support(
            truth, predicted, average=average, zero_division=0
        )
        return {"precision": float(p), "recall": float(r), "f1": float(f)}

    p, r, f, support = precision_recall_fscore_support(
        truth, predicted, average=None, zero_division=0
    )
    return {
        "threshold": threshold,
        "n": int(truth.shape[0]),
        "num_labels": int(truth.shape[1]),
        "hamming_error": float(hamming_loss(truth, predicted)),
        "all_negative_hamming_error": float(truth.mean()),
        "micro": averaged("micro"),
        "macro": averaged("macro"),
        "map": float(np.mean([aps[j] for j in defined])) if defined else None,
        "all_negative_map": float(prevalence[defined].mean()) if defined else None,
        "map_labels": len(defined),
        "kinds": prediction_kinds(truth, predicted),
        "labels_per_image": {
            "true": float(truth.sum(axis=1).mean()),
            "predicted": float(predicted.sum(axis=1).mean()),
        },
        "per_label": [
            {
                "label": names[j],
                "precision": float(p[j]),
                "recall": float(r[j]),
                "f1": float(f[j]),
                "average_precision": aps[j],
                "support": int(support[j]),
                "predicted": int(predicted[:, j].sum()),
            }
            for j in range(truth.shape[1])
        ],
    }
