"""``archbench retrieval``: similarity search on a backbone's features -> ``retrieval.json``.

Features come from the cache (:mod:`archbench.train.transfer`), the search and its chance levels
from :mod:`archbench.evaluate.retrieval`; this module joins them and writes the result.
"""

from __future__ import annotations

from pathlib import Path

from .. import files
from ..errors import ArchbenchError
from ..evaluate.retrieval import RetrievalConfig, evaluate_retrieval
from ..train.transfer.source import FeatureSource, source_features

RETRIEVAL = "retrieval.json"
SPLITS = ("train", "val", "test")


def run_retrieval(
    source: FeatureSource,
    config: RetrievalConfig,
    *,
    gallery_split: str = "train",
    query_split: str | None = None,
    out: Path,
) -> dict:
    """Search ``query_split`` against ``gallery_split`` (or sample within the gallery split)."""
    for split in (gallery_split, query_split):
        if split is not None and split not in SPLITS:
            raise ArchbenchError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if (config.gallery is None) != (query_split is not None):
        raise ArchbenchError("--gallery SPLIT goes with --queries SPLIT; a size with a size")
    wanted = tuple(dict.fromkeys(s for s in (gallery_split, query_split) if s is not None))
    features = source_features(source, splits=wanted, single_label_for="retrieval")
    if gallery_split not in features.splits or (query_split and query_split not in features.splits):
        raise ArchbenchError(f"{features.data.name} has no {gallery_split}/{query_split} split")
    gallery, gallery_labels = features.splits[gallery_split].tensors()
    query = query_labels = None
    query_in_gallery = query_split == gallery_split  # each query is then left out of its results
    if query_split is not None and not query_in_gallery:
        query, query_labels = features.splits[query_split].tensors()
    result = evaluate_retrieval(
        gallery, gallery_labels, config, class_names=features.data.classes,
        query_features=query, query_labels=query_labels, query_in_gallery=query_in_gallery,
    )  # fmt: skip
    result["protocol"] |= {
        "gallery_split": gallery_split,
        "query_split": query_split or gallery_split,
    }
    result = {"features": features.record(), **result}
    files.write_json(out, result)
    return result
