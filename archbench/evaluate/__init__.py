"""Evaluating a trained network's predictions.

- :mod:`.classification`: top-1/top-5, per-class precision/recall/F1 and the confusion matrix.

Each kind of evaluation (regrouped classes, retrieval, multi-label, saliency) is one module here,
working from a model's outputs; running models for timing belongs to :mod:`archbench.measure`.
"""

from .classification import (
    accuracy_report,
    classification_metrics,
    confusion_matrix,
    predict_logits,
)

__all__ = ["accuracy_report", "classification_metrics", "confusion_matrix", "predict_logits"]
