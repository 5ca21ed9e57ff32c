"""scikit-learn metrics give the same numbers as the hand-written ones they replace, and ROC."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics

from archbench.evaluate import classification
from tests.digits_models import train_linear_digits


def handwritten_confusion(labels, predictions, num_classes):
    """archbench's confusion matrix before scikit-learn (``archbench/profile.py``), verbatim."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)
    flat = labels * num_classes + predictions
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def handwritten_metrics(confusion):
    """archbench's precision/recall/F1 before scikit-learn, verbatim in its arithmetic."""
    confusion = np.asarray(confusion, dtype=np.int64)
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
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
    }


def assert_same_metrics(report, confusion):
    expected = handwritten_metrics(confusion)
    assert report["n"] == expected["n"]
    assert report["top1"] == pytest.approx(expected["top1"], rel=1e-12)
    for index, row in enumerate(report["per_class"]):
        for key in ("precision", "recall", "f1"):
            assert row[key] == pytest.approx(expected[key][index], rel=1e-12, abs=1e-15), key
        assert row["support"] == expected["support"][index]
    for key in ("precision", "recall", "f1"):
        assert report["macro"][key] == pytest.approx(expected[key].mean(), rel=1e-12, abs=1e-15)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return train_linear_digits(tmp_path_factory.mktemp("data"), steps=20)


def test_real_digits_predictions_give_todays_numbers(digits):
    logits = digits.logits()
    labels = digits.test_labels
    report, confusion = classification.accuracy_report(logits, labels, digits.classes)
    predictions = logits.argmax(dim=1).numpy()
    assert (confusion == handwritten_confusion(labels.numpy(), predictions, 10)).all()
    assert 0 < np.trace(confusion) < confusion.sum(), "a model with some errors tests more"
    assert_same_metrics(report, confusion)
    assert [row["class"] for row in report["per_class"]] == digits.classes
    # The hand-written top-5 averaged in float32; scikit-learn's is the exact share of images.
    hits = int((logits.topk(5, dim=1).indices == labels[:, None]).any(dim=1).sum())
    assert report["top5"] == hits / labels.numel()
    handwritten = (logits.topk(5, dim=1).indices == labels[:, None]).any(dim=1).float().mean()
    assert report["top5"] == pytest.approx(float(handwritten), rel=1e-6)
    assert list(report) == ["top1", "top5", "n", "per_class", "macro"]


def test_classes_never_predicted_or_never_present_keep_the_zero_convention():
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 3])
    predictions = np.array([0, 1, 1, 1, 0, 1, 1, 0])  # 2 and 3 never predicted; 4 never present
    confusion = classification.confusion_matrix(labels, predictions, 5)
    assert (confusion == handwritten_confusion(labels, predictions, 5)).all()
    report = classification.classification_metrics(confusion)
    assert_same_metrics(report, confusion)
    assert report["per_class"][2]["precision"] == 0.0 and report["per_class"][4]["recall"] == 0.0
    assert report["per_class"][4]["class"] == "4"


def test_empty_input_has_no_accuracy():
    confusion = classification.confusion_matrix([], [], 3)
    assert confusion.shape == (3, 3) and confusion.sum() == 0
    report = classification.classification_metrics(confusion, ["a", "b", "c"])
    assert report["top1"] is None and report["n"] == 0
    assert report["macro"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_out_of_range_labels_are_refused_not_dropped():
    with pytest.raises(ValueError, match="outside"):
        classification.confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="2 labels but 1 predictions"):
        classification.confusion_matrix([0, 1], [0], 3)


def test_pairs_from_confusion_round_trip():
    confusion = np.array([[3, 1, 0], [0, 0, 2], [4, 0, 1]])
    labels, predictions = classification.pairs_from_confusion(confusion)
    assert (classification.confusion_matrix(labels, predictions, 3) == confusion).all()


def test_roc_of_a_perfect_and_of_a_constant_scorer():
    labels = np.array([0, 0, 1, 1, 1])
    perfect = np.stack([1 - labels, labels], axis=1).astype(float)
    assert classification.roc(labels, perfect)["auc"] == 1.0
    constant = np.full((5, 2), 0.5)
    result = classification.roc(labels, constant)
    assert result["auc"] == 0.5
    assert result["curves"]["1"]["fpr"][0] == 0 and result["curves"]["1"]["tpr"][-1] == 1


def test_multiclass_roc_is_scikit_learns_one_vs_rest(digits):
    probabilities = torch.softmax(digits.logits().double(), dim=1).numpy()
    labels = digits.test_labels.numpy()
    result = classification.roc(labels, probabilities)
    assert result["auc"] == pytest.approx(
        metrics.roc_auc_score(labels, probabilities, multi_class="ovr"), rel=1e-12
    )
    assert len(result["curves"]) == 10 and result["per_class_auc"][3] == pytest.approx(
        metrics.roc_auc_score(labels == 3, probabilities[:, 3])
    )


def test_roc_with_a_class_absent_says_why():
    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    result = classification.roc(np.array([0, 1]), scores)
    assert result["auc"] is None and "absent" in result["auc_error"] and "2" in result["auc_error"]
