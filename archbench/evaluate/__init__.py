"""Evaluating a trained network's predictions.

- :mod:`.classification`: top-1/top-5, per-class precision/recall/F1, the confusion matrix and
  ROC (scikit-learn).
- :mod:`.regroup`: classes merged into groups (presets or files), block-sum confusion, group ROC.
- :mod:`.significance`: McNemar's exact test for two models on one test set.
- :mod:`.attribution`: saliency, integrated gradients and Grad-CAM grids (captum).

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
