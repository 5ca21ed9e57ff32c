"""The multi-label loss: binary cross-entropy per label, positives weighted (seed 000's eq. 8-9).

Seed 000 weighs each element's binary cross-entropy by ``w`` when the label is present and by 1
when it is absent: ``J = sum_i [1(y_i = 1) w + 1(y_i = 0)] L(y_i, p_i)``. That is exactly
``BCEWithLogitsLoss(pos_weight=w)``; averaged over elements, as PyTorch does. ``--pos-weight``:

- ``W`` (a positive number): the seed's fixed weight (it studied 1, 10, 100, 1000);
- ``auto``: negatives / positives over the whole training target matrix, one global ratio (the
  seed's recommended future work, its eq. 10);
- ``auto-per-label``: one ratio per label, ``negatives_k / positives_k``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ArchbenchError

AUTO_WEIGHTS = ("auto", "auto-per-label")


def parse_pos_weight(value: str | float | int) -> str:
    """The canonical text of a ``--pos-weight`` value, or a one-line error."""
    text = str(value).strip().lower()
    if text in AUTO_WEIGHTS:
        return text
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not (math.isfinite(number) and number > 0):
        raise ArchbenchError(
            f"--pos-weight must be a positive number, auto or auto-per-label, got {value!r}"
        )
    return f"{number:g}"


def pos_weights(spec: str, targets: torch.Tensor) -> torch.Tensor:
    """float32 ``(K,)`` positive weights for ``spec`` given the training targets ``(N, K)``."""
    spec = parse_pos_weight(spec)
    num_labels = targets.shape[1]
    if spec not in AUTO_WEIGHTS:
        return torch.full((num_labels,), float(spec))
    truth = targets.to(torch.float64)
    positives = truth.sum(dim=0) if spec == "auto-per-label" else truth.sum()
    negatives = (1 - truth).sum(dim=0) if spec == "auto-per-label" else (1 - truth).sum()
    if (positives == 0).any():
        missing = (positives == 0).nonzero().flatten().tolist() if positives.dim() else "all"
        raise ArchbenchError(
            f"--pos-weight {spec}: no positive training example for label(s) {missing}, so "
            "negatives / positives is undefined; use a fixed weight"
        )
    return (negatives / positives).to(torch.float32).expand(num_labels).clone()


def weighted_bce(
    logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Mean (or sum) over every element of the positive-weighted binary cross-entropy."""
    return F.binary_cross_entropy_with_logits(
        logits.float(),
        targets.to(torch.float32),
        pos_weight=pos_weight.to(logits.device),
        reduction=reduction,
    )
