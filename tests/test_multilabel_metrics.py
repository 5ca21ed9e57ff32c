"""Seed 000's weighted loss and the multi-label metrics, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from archbench.errors import ArchbenchError
from archbench.evaluate.multilabel import (
    all_negative_hamming_error,
    mean_average_precision,
    multilabel_report,
    prediction_kinds,
)
from archbench.train.loss import parse_pos_weight, pos_weights, weighted_bce

# --- the loss -------------------------------------------------------------------------------------


def seed000_loss(logits: list[list[float]], targets: list[list[int]], w: float) -> float:
    """Seed 000's eq. 8-9 written out: J = mean_i [1(y=1) w + 1(y=0)] L(y, p), L the BCE."""
    terms = []
    for row_logits, row_targets in zip(logits, targets, strict=True):
        for x, y in zip(row_logits, row_targets, strict=True):
            p = 1 / (1 + math.exp(-x))
            bce = -(y * math.log(p) + (1 - y) * math.log(1 - p))
            terms.append((w if y == 1 else 1.0) * bce)
    return sum(terms) / len(terms)


LOGITS = [[2.0, -1.0, 0.5], [-3.0, 0.0, 1.5]]
TARGETS = [[1, 0, 0], [1, 1, 0]]


# float32 against float64 by hand: about one rounding (6e-8) per exp, log, product and sum
# over six terms, so a relative 1e-5 is ample and 1e-6 would be close to the bound.


def test_weighted_loss_is_seed000_equation_on_a_hand_computed_batch():
    logits, targets = torch.tensor(LOGITS), torch.tensor(TARGETS, dtype=torch.uint8)
    loss = weighted_bce(logits, targets, pos_weights("10", targets))
    assert loss.item() == pytest.approx(seed000_loss(LOGITS, TARGETS, 10.0), rel=1e-5)
    # by hand: positives (2, y=1), (-3, y=1), (0, y=1) weigh 10; the rest weigh 1
    by_hand = (
        10 * math.log1p(math.exp(-2.0))
        + math.log1p(math.exp(-1.0))
        + math.log1p(math.exp(0.5))
        + 10 * math.log1p(math.exp(3.0))
        + 10 * math.log(2.0)
        + math.log1p(math.exp(1.5))
    ) / 6
    assert loss.item() == pytest.approx(by_hand, rel=1e-5)


def test_weight_one_is_plain_binary_cross_entropy():
    logits = torch.tensor(LOGITS)
    targets = torch.tensor(TARGETS, dtype=torch.uint8)
    plain = F.binary_cross_entropy(torch.sigmoid(logits), targets.float())
    assert weighted_bce(logits, targets, pos_weights("1", targets)).item() == pytest.approx(
        plain.item(), rel=1e-5
    )


def test_auto_weights_are_negatives_over_positives():
    targets = torch.tensor(
        [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.uint8
    )
    # 7 positives among 20 entries: 13 / 7 for every label
    assert pos_weights("auto", targets).tolist() == pytest.approx([13 / 7] * 4)
    # per label: positives 3, 1, 1, 2 of 5
    assert pos_weights("auto-per-label", targets).tolist() == pytest.approx([2 / 3, 4, 4, 3 / 2])
    assert pos_weights("auto", targets).dtype == torch.float32
    no_positive = torch.tensor([[1, 0], [1, 0]], dtype=torch.uint8)
    with pytest.raises(ArchbenchError, match=r"no positive training example for label\(s\) \[1\]"):
        pos_weights("auto-per-label", no_positive)


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "nan", "inf", ""])
def test_bad_pos_weight_is_one_line(bad):
    with pytest.raises(ArchbenchError, match="--pos-weight must be a positive number"):
        parse_pos_weight(bad)


def test_pos_weight_text_is_canonical():
    assert parse_pos_weight("10") == "10" and parse_pos_weight(100.0) == "100"
    assert parse_pos_weight(" AUTO ") == "auto" and parse_pos_weight("1e3") == "1000"


# --- the metrics ----------------------------------------------------------------------------------

# rows: true set -> predicted set, one of each kind and the corner cases
KIND_TARGETS = np.array(
    [
        [1, 1, 0],  # {0,1} -> {0,1}    exact
        [1, 1, 0],  # {0,1} -> {0}      partial
        [0, 0, 1],  # {2}   -> {}       empty
        [0, 0, 1],  # {2}   -> {0,1}    wrong
        [0, 0, 0],  # {}    -> {}       exact
        [0, 0, 0],  # {}    -> {1}      wrong
        [1, 0, 0],  # {0}   -> {0,2}    partial
    ]
)
KIND_PREDICTED = np.array(
    [[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0], [1, 0, 1]]
)


def test_each_prediction_kind_is_counted():
    kinds = prediction_kinds(KIND_TARGETS, KIND_PREDICTED)
    assert kinds == pytest.approx(
        {"exact": 2 / 7, "partial": 2 / 7, "empty": 1 / 7, "wrong": 2 / 7}
    )


def logits_for(predicted: np.ndarray) -> torch.Tensor:
    """Logits whose sigmoid is 0.9 where predicted and 0.1 elsewhere."""
    return torch.from_numpy(np.where(predicted == 1, 1.0, -1.0) * math.log(9)).float()


def test_report_figures_by_hand():
    report = multilabel_report(logits_for(KIND_PREDICTED), KIND_TARGETS, ["a", "b", "c"])
    # 21 entries: wrong ones are (1,1) (3,0) (3,1) (3,2) (2,2) (5,1) (6,2) -> 7
    assert report["hamming_error"] == pytest.approx(7 / 21)
    assert report["all_negative_hamming_error"] == pytest.approx(7 / 21)  # 7 positive entries
    # micro: 8 predicted, TP 4 (row 0 twice, rows 1 and 6), FN 3 -> P 1/2, R 4/7, F1 8/15
    assert report["micro"] == pytest.approx({"precision": 0.5, "recall": 4 / 7, "f1": 8 / 15})
    label_a = report["per_label"][0]  # true rows 0,1,6; predicted rows 0,1,3,6
    assert (label_a["precision"], label_a["recall"], label_a["support"]) == (0.75, 1.0, 3)
    assert label_a["f1"] == pytest.approx(6 / 7)
    # label b: true rows 0,1; predicted rows 0,3,5 -> P 1/3, R 1/2, F1 2/5; label c: TP 0
    macro_f1 = np.mean([6 / 7, 2 / 5, 0.0])
    assert report["macro"]["f1"] == pytest.approx(macro_f1)
    assert report["kinds"]["exact"] == pytest.approx(2 / 7)
    assert report["labels_per_image"] == pytest.approx({"true": 1.0, "predicted": 8 / 7})
    assert report["n"] == 7 and report["num_labels"] == 3 and report["threshold"] == 0.5


def test_all_negative_baseline_is_exact():
    targets = np.array([[0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 0, 1]])
    assert all_negative_hamming_error(targets) == pytest.approx(4 / 12)
    nothing = multilabel_report(torch.full((3, 4), -20.0), targets)
    assert (
        nothing["hamming_error"] == nothing["all_negative_hamming_error"] == pytest.approx(4 / 12)
    )
    assert nothing["kinds"] == pytest.approx(
        {"exact": 1 / 3, "partial": 0, "empty": 2 / 3, "wrong": 0}
    )
    assert nothing["micro"]["f1"] == 0.0
    # a constant score ranks nothing: AP = prevalence, averaged over labels with a positive
    assert nothing["map"] == pytest.approx(nothing["all_negative_map"])
    assert nothing["all_negative_map"] == pytest.approx(np.mean([1 / 3, 2 / 3, 1 / 3]))
    assert nothing["map_labels"] == 3 and nothing["per_label"][2]["average_precision"] is None


def test_map_of_perfect_and_reversed_scores():
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    assert mean_average_precision(targets, targets.astype(float)) == 1.0
    # label 0 ranked worst-first: positives at ranks 3 and 4 -> AP = (1/3 + 2/4) / 2
    reversed_scores = np.array([[0.1, 0.0], [0.9, 1.0], [0.2, 1.0], [0.8, 0.0]])
    assert mean_average_precision(targets, reversed_scores) == pytest.approx(
        ((1 / 3 + 2 / 4) / 2 + 1.0) / 2
    )
    report = multilabel_report(torch.zeros(4, 2), targets, threshold=0.4)
    assert report["threshold"] == 0.4 and report["kinds"]["partial"] == 0.5  # all predicted


def test_threshold_and_shapes_are_checked():
    with pytest.raises(ValueError, match="threshold"):
        multilabel_report(torch.zeros(2, 2), np.zeros((2, 2)), threshold=1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        multilabel_report(torch.zeros(2, 3), np.zeros((2, 2)))
