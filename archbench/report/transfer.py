"""The report's transfer-learning section and retrieval tables, from runs that have them.

A run trained from pretrained weights says so in ``config.json`` (``transfer``: weights and
their sha256, fine-tune mode, feature-cache hit or miss); ``retrieval.json`` beside it holds
``archbench retrieval``'s precision@k with the chance levels. Runs without either add nothing.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

import pandas as pd

from .. import files
from ..evaluate.retrieval import retrieval_rows
from .collect import RunRecord, nested_get

RETRIEVAL = "retrieval.json"


def transfer_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per transfer run: backbone, weights, fine-tune mode, cache, head speed, accuracy."""
    rows = []
    for record in records:
        transfer = record.config.get("transfer")
        if not transfer:
            continue
        seconds = [row["epoch_seconds"] for row in record.metrics if row.get("epoch_seconds")]
        sha = nested_get(transfer, "weights", "sha256") or ""
        rows.append(
            {
                "run": record.path.name,
                "backbone": record.arch,
                "weights": nested_get(transfer, "weights", "source"),
                "sha256": sha[:12],
                "fine-tune": transfer.get("finetune"),
                "pooling": transfer.get("pooling") or "",
                "feature cache": nested_get(transfer, "feature_cache", "status") or "",
                "epochs/s": 1 / statistics.median(seconds) if seconds else None,
                "top-1 %": 100 * record.result["test_top1"]
                if record.result.get("test_top1") is not None
                else None,
            }
        )
    return pd.DataFrame(rows)


def transfer_sections(
    records: Sequence[RunRecord], markdown: Callable[[pd.DataFrame, int], str]
) -> list[str]:
    """Markdown lines: the transfer table, then a retrieval table per run that has one."""
    lines: list[str] = []
    table = transfer_table(records)
    if not table.empty:
        lines += [
            "## Transfer learning",
            "",
            "Pretrained backbones (`--weights`, sha256 prefix), what was fine-tuned, whether "
            "the head's features came from the cache, training epochs per second (median), and "
            "test top-1.",
            "",
            markdown(table, 2),
            "",
        ]
    for record in records:
        path = record.path / RETRIEVAL
        if not path.is_file():
            continue
        result = files.read_json(path)
        protocol = result.get("protocol", {})
        lines += [
            f"## Retrieval: {record.path.name}",
            "",
            f"{result['metric']} k-nearest neighbours on {record.arch} features; "
            f"{protocol.get('queries')} queries of {protocol.get('query_split')} against "
            f"{protocol.get('gallery_split')} (gallery {protocol.get('gallery')}, "
            f"{protocol.get('repeats')} repeats); chance = the query class's share of the gallery.",
            "",
            markdown(pd.DataFrame(retrieval_rows(result)), 4),
            "",
        ]
    return lines
