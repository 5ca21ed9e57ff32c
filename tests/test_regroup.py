"""Regroupings: seed 002's block sums, equality with scikit-learn on regrouped labels, presets."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from sklearn import metrics
from torchvision.datasets import FashionMNIST

from archbench.data.group_presets import PRESETS
from archbench.errors import ArchbenchError
from archbench.evaluate import classification
from archbench.evaluate.regroup import evaluate_regrouped, load_regrouping, write_regrouped
from tests.cifar100_official import CIFAR100_FINE, CIFAR100_FINE_TO_COARSE
from tests.digits_models import train_linear_digits

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def seed_002_confusion() -> np.ndarray:
    """A Fashion-MNIST 10x10 test confusion matrix (1,000 per class) holding seed 002's entries.

    Clothing rows put 19, 5, 6, 10, 3, 12 images into shoe/bag columns (FN = 55); shoe/bag rows
    put 1+1+1+2+5+3+2+1+1 = 17 into clothing columns (FP); the rest stays within each block.
    """
    classes = list(FashionMNIST.classes)
    index = {name: i for i, name in enumerate(classes)}
    confusion = np.zeros((10, 10), dtype=np.int64)
    clothing_to_shoes = {
        ("T-shirt/top", "Bag"): 19, ("Trouser", "Bag"): 5, ("Pullover", "Bag"): 6,
        ("Dress", "Sandal"): 10, ("Coat", "Sneaker"): 3, ("Shirt", "Bag"): 12,
    }  # fmt: skip
    shoes_to_clothing = {
        ("Sandal", "T-shirt/top"): 1, ("Sandal", "Shirt"): 1, ("Sneaker", "T-shirt/top"): 1,
        ("Sneaker", "Dress"): 2, ("Bag", "T-shirt/top"): 5, ("Bag", "Shirt"): 3,
        ("Bag", "Pullover"): 2, ("Ankle boot", "Trouser"): 1, ("Ankle boot", "Coat"): 1,
    }  # fmt: skip
    within = {("Shirt", "T-shirt/top"): 90, ("Pullover", "Coat"): 70, ("Ankle boot", "Sneaker"): 30}
    for (true, predicted), count in (clothing_to_shoes | shoes_to_clothing | within).items():
        confusion[index[true], index[predicted]] += count
    for i in range(10):
        confusion[i, i] = 1000 - confusion[i].sum()
    return confusion


def test_block_sums_give_seed_002s_binary_matrix():
    confusion = seed_002_confusion()
    group_map = load_regrouping("fashion-mnist-clothing-vs-shoes-bags").resolve(
        FashionMNIST.classes
    )
    merged = group_map.merge_confusion(confusion)
    (tn, fp), (fn, tp) = merged.tolist()
    assert (tn, fn, fp, tp) == (3983, 55, 17, 5945)
    assert merged.sum() == confusion.sum() == 10_000
    assert group_map.positive == "clothing"
    # Binarised metrics as the seed's own arithmetic: 72 errors, clothing P 0.9971 R 0.9908.
    report = classification.classification_metrics(merged, group_map.group_names)
    assert report["top1"] == pytest.approx(0.9928)
    clothing = report["per_class"][1]
    assert (round(clothing["precision"], 4), round(clothing["recall"], 4)) == (0.9971, 0.9908)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return train_linear_digits(tmp_path_factory.mktemp("data"), steps=20)


def test_regrouped_metrics_equal_scikit_learn_on_regrouped_labels(digits):
    group_map = load_regrouping("digits-even-odd").resolve(digits.classes)
    logits = digits.logits()
    evaluation = evaluate_regrouped(group_map, logits, digits.test_labels)
    summary = evaluation.summary

    grouped_labels = group_map.relabel(digits.test_labels.numpy())
    grouped_predictions = group_map.relabel(logits.argmax(dim=1).numpy())
    expected = metrics.classification_report(
        grouped_labels, grouped_predictions, output_dict=True, zero_division=0
    )
    assert summary["accuracy"] == pytest.approx(expected["accuracy"], rel=1e-12)
    for label, row in enumerate(summary["per_group"]):
        assert row["class"] == ("even", "odd")[label]
        for key, theirs in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert row[key] == pytest.approx(expected[str(label)][theirs], rel=1e-12)
        assert row["support"] == expected[str(label)]["support"]
    assert summary["macro"]["f1"] == pytest.approx(expected["macro avg"]["f1-score"], rel=1e-12)
    assert summary["errors"] == int((grouped_labels != grouped_predictions).sum())
    expected_confusion = metrics.confusion_matrix(grouped_labels, grouped_predictions)
    assert (evaluation.confusion == expected_confusion).all()
    b = summary["binary"]
    assert (b["tn"], b["fp"], b["fn"], b["tp"]) == tuple(evaluation.confusion.reshape(-1))

    odd_score = torch.softmax(logits.double(), dim=1)[:, 1::2].sum(dim=1).numpy()
    assert summary["roc_auc"] == pytest.approx(metrics.roc_auc_score(grouped_labels, odd_score))
    assert 0.5 < summary["roc_auc"] <= 1.0


def test_roc_files_are_written(digits, tmp_path):
    group_map = load_regrouping("digits-even-odd").resolve(digits.classes)
    evaluation = evaluate_regrouped(group_map, digits.logits(), digits.test_labels)
    written = write_regrouped(tmp_path, evaluation)
    assert set(written.values()) == {p.name for p in tmp_path.iterdir()}
    with open(tmp_path / written["roc_csv"]) as stream:
        rows = list(csv.DictReader(stream))
    assert {row["positive_group"] for row in rows} == {"odd"}
    assert (float(rows[0]["fpr"]), float(rows[-1]["tpr"])) == (0.0, 1.0)
    fpr = [float(row["fpr"]) for row in rows]
    assert fpr == sorted(fpr)
    assert (tmp_path / written["roc_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / written["confusion_csv"]) as stream:
        table = list(csv.reader(stream))
    assert table[0] == ["true\\predicted", "even", "odd"]
    assert sum(int(cell) for row in table[1:] for cell in row[1:]) == digits.test_labels.numel()


def test_a_mapping_file_with_three_groups(digits, tmp_path):
    path = tmp_path / "thirds.toml"
    path.write_text('low = ["0", "1", "2"]\nmiddle = ["3", "4", "5", "6"]\nhigh = ["7", "8", "9"]')
    group_map = load_regrouping(str(path)).resolve(digits.classes)
    assert group_map.class_to_group == (0, 0, 0, 1, 1, 1, 1, 2, 2, 2)
    assert group_map.positive is None
    logits = digits.logits()
    evaluation = evaluate_regrouped(group_map, logits, digits.test_labels)
    scores = group_map.group_scores(logits)
    assert np.allclose(scores.sum(axis=1), 1.0)
    labels = group_map.relabel(digits.test_labels.numpy())
    assert evaluation.summary["roc_auc"] == pytest.approx(
        metrics.roc_auc_score(labels, scores, multi_class="ovr")
    )
    assert set(evaluation.summary["per_group_roc_auc"]) == {"low", "middle", "high"}
    assert set(evaluation.curves) == {"low", "middle", "high"}

    as_json = tmp_path / "thirds.json"
    as_json.write_text(json.dumps(load_regrouping(str(path)).to_dict()["groups"]))
    assert load_regrouping(str(as_json)).resolve(digits.classes).class_to_group == (
        group_map.class_to_group
    )


def test_relabel_keeps_tensors_tensors():
    group_map = load_regrouping("digits-even-odd").resolve([str(d) for d in range(10)])
    labels = torch.tensor([0, 1, 2, 9])
    assert group_map.relabel(labels).tolist() == [0, 1, 0, 1]
    assert isinstance(group_map.relabel(labels), torch.Tensor)


def test_cifar100_superclasses_are_the_official_coarse_labels():
    group_map = load_regrouping("cifar100-superclasses").resolve(CIFAR100_FINE)
    assert list(group_map.class_to_group) == CIFAR100_FINE_TO_COARSE
    assert group_map.num_groups == 20
    assert all(len(members) == 5 for members in group_map.members().values())


def test_cifar10_and_fashion_presets_match_the_datasets_names():
    animals = load_regrouping("cifar10-animals-vehicles").resolve(CIFAR10)
    assert animals.members()["animals"] == ["bird", "cat", "deer", "dog", "frog", "horse"]
    fashion = load_regrouping("fashion-mnist-clothing-vs-shoes-bags").resolve(FashionMNIST.classes)
    assert fashion.members()["shoes-bags"] == ["Sandal", "Sneaker", "Bag", "Ankle boot"]
    assert set(PRESETS) == {
        "cifar10-animals-vehicles",
        "fashion-mnist-clothing-vs-shoes-bags",
        "cifar100-superclasses",
        "digits-even-odd",
    }


def test_loose_names_match_and_mnist_names_answer_to_their_digit():
    mnist = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six",
             "7 - seven", "8 - eight", "9 - nine"]  # fmt: skip
    assert load_regrouping("digits-even-odd").resolve(mnist).class_to_group[3] == 1
    lowered = [name.lower() for name in FashionMNIST.classes]
    fashion = load_regrouping("fashion-mnist-clothing-vs-shoes-bags").resolve(lowered)
    assert fashion.class_to_group[lowered.index("ankle boot")] == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"even": ["0", "2", "4", "6", "8"], "odd": ["1", "3", "5", "7", "9", "11"]}',
         r"names '11', which is not a class"),
        ('{"even": ["0", "2", "4", "6", "8"], "odd": ["1", "3", "5", "7"]}', r"leaves out '9'"),
        ('{"a": ["0", "1", "2", "3", "4"], "b": ["4", "5", "6", "7", "8", "9"]}',
         r"class '4' is in both 'a' and 'b'"),
    ],
)  # fmt: skip
def test_bad_mappings_are_one_clear_error(tmp_path, content, message):
    path = tmp_path / "groups.json"
    path.write_text(content)
    with pytest.raises(ArchbenchError, match=message):
        load_regrouping(str(path)).resolve([str(d) for d in range(10)])


def test_a_misspelt_class_gets_a_suggestion(tmp_path):
    path = tmp_path / "groups.toml"
    path.write_text('animals = ["bird", "cat", "deer", "dog", "frog", "horse"]\n'
                    'vehicles = ["airplane", "automobil", "ship", "truck"]\n')  # fmt: skip
    with pytest.raises(ArchbenchError, match="names 'automobil'.*did you mean 'automobile'"):
        load_regrouping(str(path)).resolve(CIFAR10)


def test_unknown_presets_and_unreadable_files(tmp_path):
    with pytest.raises(ArchbenchError, match="did you mean 'digits-even-odd'"):
        load_regrouping("digits-odd-even")
    with pytest.raises(ArchbenchError, match="regrouping file not found"):
        load_regrouping(str(tmp_path / "missing.toml"))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ArchbenchError, match="cannot read regrouping"):
        load_regrouping(str(broken))
    one_group = tmp_path / "one.json"
    one_group.write_text('{"all": ["0"]}')
    with pytest.raises(ArchbenchError, match="at least two groups"):
        load_regrouping(str(one_group))
    not_a_list = tmp_path / "scalar.toml"
    not_a_list.write_text('a = "0"\nb = ["1"]\n')
    with pytest.raises(ArchbenchError, match="non-empty list of class names"):
        load_regrouping(str(not_a_list))
