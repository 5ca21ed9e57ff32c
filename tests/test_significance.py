"""McNemar's exact test: hand-computed tables, identical models, and two real digits models."""

from __future__ import annotations

import math

import numpy as np
import pytest

from archbench.errors import ArchbenchError
from archbench.evaluate.significance import mcnemar
from tests.digits_models import train_linear_digits


def predictions_for(both_correct: int, only_a: int, only_b: int, both_wrong: int):
    """Labels (all 0) and two models' predictions (1 = wrong) realising a given 2x2 table."""
    a = [0] * both_correct + [0] * only_a + [1] * only_b + [1] * both_wrong
    b = [0] * both_correct + [1] * only_a + [0] * only_b + [1] * both_wrong
    return np.zeros(len(a), dtype=int), np.array(a), np.array(b)


def test_hand_computed_table():
    # 7 discordant images, 1 for A and 6 for B: p = 2 * P(X <= 1), X ~ Bin(7, 1/2) = 16/128.
    result = mcnemar(*predictions_for(40, 1, 6, 3))
    assert result.table() == [[40, 1], [6, 3]]
    assert result.p_value == pytest.approx(2 * (math.comb(7, 0) + math.comb(7, 1)) / 2**7)
    assert result.p_value == pytest.approx(0.125)
    assert (result.errors_a, result.errors_b, result.n) == (9, 4, 50)
    assert not result.significant and result.better is None

    # 8 discordant, all for B: p = 2 / 2**8; B is better at alpha 0.05.
    result = mcnemar(*predictions_for(10, 0, 8, 2))
    assert result.p_value == pytest.approx(2 / 256)
    assert result.significant and result.better == "B"
    swapped = mcnemar(*predictions_for(10, 8, 0, 2))
    assert swapped.p_value == result.p_value and swapped.better == "A"


def test_identical_predictions_give_p_one():
    labels = np.array([0, 1, 2, 2, 1])
    predictions = np.array([0, 1, 1, 2, 0])
    result = mcnemar(labels, predictions, predictions.copy())
    assert result.p_value == 1.0
    assert result.only_a_correct == result.only_b_correct == 0
    assert result.better is None
    record = result.to_dict()
    assert record["table"] == [[3, 0], [0, 2]] and record["errors_a"] == record["errors_b"] == 2


def test_different_images_are_refused():
    with pytest.raises(ArchbenchError, match="same images"):
        mcnemar([0, 1, 1], [0, 1, 1], [0, 1])
    with pytest.raises(ArchbenchError, match="alpha"):
        mcnemar([0], [0], [0], alpha=1.5)


def test_a_well_trained_model_beats_a_barely_trained_one(tmp_path):
    weak = train_linear_digits(tmp_path, steps=3)
    strong = train_linear_digits(tmp_path, steps=60)
    assert (weak.test_labels == strong.test_labels).all()
    result = mcnemar(
        strong.test_labels.numpy(),
        strong.logits().argmax(dim=1).numpy(),
        weak.logits().argmax(dim=1).numpy(),
    )
    assert result.errors_a < result.errors_b
    assert result.better == "A" and result.p_value < 1e-6
