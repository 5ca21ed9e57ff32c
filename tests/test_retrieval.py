"""Similarity search: exact kNN, the query left out of its own results, P@k beside chance."""

from __future__ import annotations

import pytest
import torch

from archbench.errors import ArchbenchError
from archbench.evaluate.retrieval import (
    RetrievalConfig,
    evaluate_retrieval,
    nearest_neighbours,
    retrieval_rows,
)


def two_clusters(n_per_class=(150, 50), seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two tight clusters 100 units apart in 16 dimensions: every neighbour is in-class."""
    generator = torch.Generator().manual_seed(seed)
    parts, labels = [], []
    for label, count in enumerate(n_per_class):
        centre = torch.zeros(16)
        centre[0] = 100.0 * label
        parts.append(centre + torch.randn(count, 16, generator=generator))
        labels.append(torch.full((count,), label, dtype=torch.long))
    return torch.cat(parts), torch.cat(labels)


def test_separated_clusters_give_precision_one_and_the_right_chance() -> None:
    features, labels = two_clusters()
    config = RetrievalConfig(ks=(10, 20), gallery=100, queries=300, repeats=4, seed=1)
    result = evaluate_retrieval(features, labels, config, class_names=["a", "b"])
    assert result["overall"]["precision"] == {"10": 1.0, "20": 1.0}
    assert result["protocol"]["queries"] == 1200
    # Chance = the share of the query's class among the other 99 gallery items: ~3/4 and ~1/4.
    chance = {entry["class"]: entry["chance"] for entry in result["per_class"]}
    assert chance["a"] == pytest.approx(0.75, abs=0.06)
    assert chance["b"] == pytest.approx(0.25, abs=0.06)
    rows = retrieval_rows(result)
    assert [row["class"] for row in rows] == ["a", "b", "overall"]
    assert rows[-1]["P@10"] == 1.0
    assert set(rows[0]) == {"class", "queries", "P@10", "P@20", "chance"}


def test_random_features_give_precision_at_chance_per_class() -> None:
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(2000, 32, generator=generator)
    labels = (torch.rand(2000, generator=generator) < 0.25).long()  # 3:1, as seed 004's chest set
    config = RetrievalConfig(ks=(10,), gallery=512, queries=1000, repeats=10, seed=0)
    result = evaluate_retrieval(features, labels, config, class_names=["big", "small"])
    for entry in result["per_class"]:
        assert entry["precision"]["10"] == pytest.approx(entry["chance"], abs=0.02)
        assert entry["slots"]["10"] == entry["queries"] * 10
    big, small = result["per_class"]
    assert big["chance"] > 0.7 and small["chance"] < 0.3  # the chance level differs by class


def test_the_query_never_finds_itself() -> None:
    features = torch.randn(50, 4)
    own = torch.arange(50)
    without = nearest_neighbours(features, features, 3, exclude=own)
    assert not (without == own[:, None]).any()
    with_self = nearest_neighbours(features, features, 1)
    assert torch.equal(with_self[:, 0], own)  # at distance 0, so exclusion is what removed it
    partial = torch.full((50,), -1)
    partial[0] = 0
    assert nearest_neighbours(features, features, 1, exclude=partial)[1, 0] == 1


def test_cosine_ignores_length_and_euclidean_does_not() -> None:
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [10.0, 10.5]])
    query = torch.tensor([[0.1, 0.1]])
    assert nearest_neighbours(query, gallery, 1, metric="cosine").item() == 2
    assert nearest_neighbours(query, gallery, 1, metric="euclidean").item() in (0, 1)


def test_split_against_split_uses_every_query_and_the_gallery_share() -> None:
    train, train_labels = two_clusters((90, 30), seed=0)
    test, test_labels = two_clusters((20, 20), seed=1)
    config = RetrievalConfig(ks=(5,), gallery=None)
    result = evaluate_retrieval(
        train, train_labels, config, class_names=["a", "b"],
        query_features=test, query_labels=test_labels,
    )  # fmt: skip
    assert result["protocol"]["queries"] == 40
    assert not result["protocol"]["query_excluded_from_own_results"]
    assert [c["chance"] for c in result["per_class"]] == [0.75, 0.25]
    assert result["overall"]["precision"]["5"] == 1.0


@pytest.mark.parametrize(
    "config, message",
    [
        (RetrievalConfig(ks=(600,), gallery=512), "more than the 511"),
        (RetrievalConfig(gallery=5000), "--gallery 5000"),
        (RetrievalConfig(metric="manhattan"), "--metric"),
        (RetrievalConfig(ks=(0,)), "positive"),
    ],
)
def test_impossible_searches_are_refused(config, message) -> None:
    features, labels = torch.randn(1000, 8), torch.randint(0, 3, (1000,))
    with pytest.raises(ArchbenchError, match=message):
        evaluate_retrieval(features, labels, config, class_names=["a", "b", "c"])
