"""Similarity search on backbone features: precision@k beside the chance level (seed 004).

Seed 004 asked whether DenseNet121's pooled features can find images of the same class: among a
query's first 10 and 20 neighbours (Euclidean) in a gallery of 512, how many share its class? It
reported 0.81 for a class that makes up about three quarters of the gallery without noticing
that chance alone gives about that much. So every figure here comes with its chance level: the
share of the query's class in the gallery it searched (the query itself excluded).

Two protocols:

- sampled (``gallery=512, queries=1000, repeats=10``): each repeat draws a gallery of 512 items
  from one split without replacement, then 1,000 queries from that gallery (with replacement);
  each query searches the gallery without itself.
- split against split (``gallery=None``): every query item searches the whole gallery split
  (``--gallery train --queries test``); the sets are disjoint, so nothing is excluded. When the
  queries are the gallery split itself (``--gallery test --queries test``), each query searches
  the gallery without itself, as in the sampled protocol, and its chance level counts the
  other items only.

The search is exact: ``torch.cdist`` (or cosine similarity) then ``topk``, in query chunks so
memory stays bounded; at these gallery sizes an approximate index would buy nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ArchbenchError

METRICS = ("euclidean", "cosine")
QUERY_CHUNK = 1024


@dataclass(frozen=True)
class RetrievalConfig:
    """How to search: the k values, the distance, and the sampling protocol."""

    ks: tuple[int, ...] = (10, 20)
    metric: str = "euclidean"
    gallery: int | None = 512  # None: the whole gallery split, queried by another split
    queries: int = 1000
    repeats: int = 10
    seed: int = 0

    def validate(self, gallery_size: int, *, query_in_gallery: bool = False) -> None:
        """Refuse a search that cannot be done, before any work."""
        if self.metric not in METRICS:
            raise ArchbenchError(f"--metric {self.metric!r} is not one of {', '.join(METRICS)}")
        if not self.ks or any(k < 1 for k in self.ks):
            raise ArchbenchError(f"--k needs positive integers, got {list(self.ks)}")
        if self.gallery is not None:
            if self.gallery < 2 or self.gallery > gallery_size:
                raise ArchbenchError(
                    f"--gallery {self.gallery} must be between 2 and the {gallery_size} items "
                    "available"
                )
            if self.queries < 1 or self.repeats < 1:
                raise ArchbenchError("--queries and --repeats must be positive")
        if self.gallery is not None:
            searchable = self.gallery - 1
        else:
            searchable = gallery_size - 1 if query_in_gallery else gallery_size
        if max(self.ks) > searchable:
            raise ArchbenchError(
                f"--k {max(self.ks)} is more than the {searchable} gallery items a query can find"
            )


def nearest_neighbours(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    k: int,
    *,
    metric: str = "euclidean",
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Indices ``(Q, k)`` of each query's k nearest gallery items, nearest first.

    ``exclude[i]`` is a gallery index query ``i`` must not find (itself), or -1 for none.
    """
    if metric == "cosine":
        gallery_unit = F.normalize(gallery.float(), dim=1)
    result = []
    for start in range(0, queries.shape[0], QUERY_CHUNK):
        chunk = queries[start : start + QUERY_CHUNK].float()
        if metric == "cosine":
            distances = 1 - F.normalize(chunk, dim=1) @ gallery_unit.T
        else:
            distances = torch.cdist(chunk, gallery.float())
        if exclude is not None:
            own = exclude[start : start + QUERY_CHUNK]
            rows = torch.nonzero(own >= 0).flatten()
            distances[rows, own[rows]] = float("inf")
        result.append(distances.topk(k, dim=1, largest=False).indices)
    return torch.cat(result)


def evaluate_retrieval(
    gallery_features: torch.Tensor,
    gallery_labels: torch.Tensor,
    config: RetrievalConfig,
    *,
    class_names: Sequence[str],
    query_features: torch.Tensor | None = None,
    query_labels: torch.Tensor | None = None,
    query_in_gallery: bool = False,
) -> dict:
    """Precision@k per query class and overall, each with its chance level (``retrieval.json``).

    ``query_in_gallery``: the whole gallery split queries itself (no ``query_features``); each
    query is excluded from its own results, or it would find itself at distance 0.
    """
    config.validate(int(gallery_labels.numel()), query_in_gallery=query_in_gallery)
    num_classes = len(class_names)
    k_max = max(config.ks)
    tally = _Tally(num_classes, config.ks)
    if config.gallery is None and query_in_gallery:
        size = int(gallery_labels.numel())
        own = torch.arange(size)
        neighbours = nearest_neighbours(
            gallery_features, gallery_features, k_max, metric=config.metric, exclude=own
        )
        counts = torch.bincount(gallery_labels, minlength=num_classes).double()
        chance = (counts[gallery_labels] - 1) / (size - 1)
        tally.add(gallery_labels, gallery_labels[neighbours], chance)
    elif config.gallery is None:
        if query_features is None or query_labels is None:
            raise ArchbenchError("searching a whole gallery split needs a query split")
        neighbours = nearest_neighbours(
            query_features, gallery_features, k_max, metric=config.metric
        )
        counts = torch.bincount(gallery_labels, minlength=num_classes).double()
        chance = counts[query_labels] / gallery_labels.numel()
        tally.add(query_labels, gallery_labels[neighbours], chance)
    else:
        generator = torch.Generator().manual_seed(config.seed)
        for _ in range(config.repeats):
            picked = torch.randperm(gallery_labels.numel(), generator=generator)[: config.gallery]
            features, labels = gallery_features[picked], gallery_labels[picked]
            own = torch.randint(0, config.gallery, (config.queries,), generator=generator)
            neighbours = nearest_neighbours(
                features[own], features, k_max, metric=config.metric, exclude=own
            )
            counts = torch.bincount(labels, minlength=num_classes).double()
            chance = (counts[labels[own]] - 1) / (config.gallery - 1)
            tally.add(labels[own], labels[neighbours], chance)
    return {
        "metric": config.metric,
        "ks": list(config.ks),
        "protocol": {
            "gallery": "split" if config.gallery is None else config.gallery,
            "queries": int(tally.queries.sum()),
            "queries_per_repeat": None if config.gallery is None else config.queries,
            "repeats": 1 if config.gallery is None else config.repeats,
            "seed": config.seed,
            "query_excluded_from_own_results": config.gallery is not None or query_in_gallery,
        },
        "overall": tally.summary(None),
        "per_class": [
            {"class": str(name), "index": index, **tally.summary(index)}
            for index, name in enumerate(class_names)
        ],
    }


class _Tally:
    """Hits, slots and summed chance per query class and k."""

    def __init__(self, num_classes: int, ks: Sequence[int]) -> None:
        self.ks = tuple(ks)
        self.queries = torch.zeros(num_classes, dtype=torch.float64)
        self.chance = torch.zeros(num_classes, dtype=torch.float64)
        self.hits = {k: torch.zeros(num_classes, dtype=torch.float64) for k in self.ks}

    def add(self, query_labels, neighbour_labels, chance) -> None:
        num_classes = self.queries.numel()
        self.queries += torch.bincount(query_labels, minlength=num_classes).double()
        self.chance.index_add_(0, query_labels, chance.double())
        same = neighbour_labels == query_labels[:, None]
        for k in self.ks:
            hits = same[:, :k].sum(dim=1).double()
            self.hits[k].index_add_(0, query_labels, hits)

    def summary(self, index: int | None) -> dict:
        pick = slice(None) if index is None else slice(index, index + 1)
        queries = float(self.queries[pick].sum())
        if queries == 0:
            return {"queries": 0, "chance": None, "precision": {str(k): None for k in self.ks}}
        precision, hits, slots = {}, {}, {}
        for k in self.ks:
            hits[str(k)] = int(self.hits[k][pick].sum())
            slots[str(k)] = int(queries * k)
            precision[str(k)] = hits[str(k)] / slots[str(k)]
        return {
            "queries": int(queries),
            "chance": float(self.chance[pick].sum()) / queries,
            "precision": precision,
            "hits": hits,
            "slots": slots,
        }


def retrieval_rows(result: dict) -> list[dict]:
    """One row per query class and one overall: P@k next to the chance level, for tables."""
    rows = []
    for label, entry in [(c["class"], c) for c in result["per_class"]] + [
        ("overall", result["overall"])
    ]:
        row = {"class": label, "queries": entry["queries"]}
        for k in result["ks"]:
            value = entry["precision"][str(k)]
            row[f"P@{k}"] = None if value is None else round(value, 4)
        row["chance"] = None if entry["chance"] is None else round(entry["chance"], 4)
        rows.append(row)
    return rows
