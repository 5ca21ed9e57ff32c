"""Retrieval with the gallery split as its own queries: no query finds itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from archbench.evaluate.retrieval import RetrievalConfig
from archbench.profile.retrieval import run_retrieval
from archbench.train.transfer.source import FeatureSource

TINY = f"{Path(__file__).resolve().parent / 'tiny_digits_net.py'}:build"


def test_test_against_test_excludes_each_query_and_its_chance(tmp_path) -> None:
    source = FeatureSource(arch=TINY, dataset="digits", data_dir=tmp_path / "data")
    config = RetrievalConfig(ks=(1, 5), gallery=None)
    result = run_retrieval(
        source, config, gallery_split="test", query_split="test", out=tmp_path / "r.json"
    )
    protocol = result["protocol"]
    assert protocol["query_excluded_from_own_results"] is True
    assert protocol["gallery_split"] == protocol["query_split"] == "test"
    overall = result["overall"]
    assert overall["queries"] == 359
    # A random tiny network's features: a self-match would give P@1 = 1.0 exactly.
    assert overall["precision"]["1"] < 0.9
    # The chance level: the share of the query's class among the *other* items.
    entry = Path(result["features"]["splits"]["test"]["path"])
    labels = torch.from_numpy(np.load(entry / "labels.npy"))
    counts = torch.bincount(labels).double()
    chance = float(((counts[labels] - 1) / (len(labels) - 1)).mean())
    assert abs(overall["chance"] - chance) < 1e-12  # the same float64 sums in another order
    # P@1 recomputed from the cached features: the nearest item other than the query itself.
    features = torch.from_numpy(np.load(entry / "features.npy"))
    distances = torch.cdist(features, features)
    distances.fill_diagonal_(float("inf"))
    nearest = distances.argmin(dim=1)
    assert overall["hits"]["1"] == int((labels[nearest] == labels).sum())
