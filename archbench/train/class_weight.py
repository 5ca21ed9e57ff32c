"""Per-class weights for the cross-entropy (seed 004's ``class_weight``), from one CLI string.

``balanced`` is scikit-learn's rule, ``n / (classes * count_c)`` on the training split, so every
class contributes the same total weight; a list gives the weights directly, either one number per
class (``1,3``) or ``class:weight`` pairs (``0:3`` or ``cat:3``) with every other class at 1.
The resolved numbers are recorded in ``config.json``: the string alone would not say what ran.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import ArchbenchError


def resolve_class_weights(
    spec: str | None, train_labels: torch.Tensor, class_names: Sequence[str]
) -> list[float] | None:
    """The weight of every class, or ``None`` for the plain (unweighted) cross-entropy."""
    if spec is None or spec == "none":
        return None
    num_classes = len(class_names)
    if spec == "balanced":
        from sklearn.utils.class_weight import compute_class_weight  # ~1 s to import: on use

        labels = np.asarray(train_labels, dtype=np.int64).reshape(-1)
        present = np.unique(labels)
        if present.size != num_classes:
            missing = sorted(set(range(num_classes)) - set(present.tolist()))
            names = ", ".join(class_names[i] for i in missing)
            raise ArchbenchError(f"--class-weight balanced: no training images of {names}")
        weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=labels)
        return [float(w) for w in weights]
    items = [item.strip() for item in spec.split(",")]
    try:
        if all(":" in item for item in items):
            weights = [1.0] * num_classes
            for item in items:
                key, _, value = item.rpartition(":")
                weights[_class_index(key, class_names)] = float(value)
        elif any(":" in item for item in items):
            raise ValueError
        else:
            weights = [float(item) for item in items]
    except ValueError:
        raise ArchbenchError(
            f"--class-weight must be 'balanced', one weight per class (1,3) or class:weight "
            f"pairs (0:3), got {spec!r}"
        ) from None
    if len(weights) != num_classes:
        raise ArchbenchError(
            f"--class-weight gives {len(weights)} weights for {num_classes} classes"
        )
    if not all(math.isfinite(w) and w >= 0 for w in weights) or not any(weights):
        raise ArchbenchError(f"--class-weight needs finite weights >= 0, not all 0: {spec!r}")
    return weights


def _class_index(key: str, class_names: Sequence[str]) -> int:
    if key in class_names:
        return list(class_names).index(key)
    if key.isdigit() and int(key) < len(class_names):
        return int(key)
    raise ArchbenchError(
        f"--class-weight names class {key!r}, which is neither a class name nor an index "
        f"below {len(class_names)}"
    )
