"""Multi-label runs in the report: every error beside its all-negative baseline, and the sweeps.

A Hamming error of 0.0034 (seed 000's best) reads as excellent until one sees that predicting
no label at all scores 0.004-0.008 there; so each row shows both, and mAP beside the mAP of a
constant score. Runs that differ only in the positive weight ``w`` or in the training-set size
``N`` form sweeps: the report plots Hamming error and F1 against each.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .collect import RunRecord, nested_get

SWEEPS = (("pos_weight", "positive weight w"), ("train_images", "training images N"))


def multilabel_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One numeric row per complete multi-label run with a profile."""
    rows = []
    for record in records:
        block = nested_get(record.profile, "multilabel")
        if not record.complete or record.task != "multilabel" or not block:
            continue
        kinds = block["kinds"]
        row: dict[str, Any] = {
            "dataset": record.dataset,
            "arch": record.arch,
            "pos_weight": record.config["train"].get("pos_weight"),
            "train_images": nested_get(record.config, "data", "train"),
            "threshold": block["threshold"],
            "hamming_error": block["hamming_error"],
            "all_negative_hamming_error": block["all_negative_hamming_error"],
            "micro_f1": block["micro"]["f1"],
            "macro_f1": block["macro"]["f1"],
            "map": block["map"],
            "all_negative_map": block["all_negative_map"],
            **{f"{kind}_fraction": kinds[kind] for kind in ("exact", "partial", "empty", "wrong")},
            "params": nested_get(record.profile, "params", "trainable"),
            "macs": nested_get(record.profile, "macs"),
            "best_epoch": record.result.get("best_epoch"),
            "run_dir": str(record.path),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def shown_table(group: pd.DataFrame) -> pd.DataFrame:
    """The page's table for one dataset: figures as people read them (percent, baselines)."""
    return pd.DataFrame(
        {
            "architecture": group["arch"],
            "w": group["pos_weight"],
            "N train": group["train_images"].astype("Int64"),
            "Hamming error": group["hamming_error"],
            "all-negative": group["all_negative_hamming_error"],
            "micro F1": group["micro_f1"],
            "macro F1": group["macro_f1"],
            "mAP": group["map"],
            "constant-score mAP": group["all_negative_map"],
            "exact %": 100 * group["exact_fraction"],
            "partial %": 100 * group["partial_fraction"],
            "empty %": 100 * group["empty_fraction"],
            "wrong %": 100 * group["wrong_fraction"],
            "params": group["params"].astype("Int64"),
        }
    ).reset_index(drop=True)


def _sweeps(table: pd.DataFrame, column: str) -> list[tuple[tuple, pd.DataFrame]]:
    """Groups of runs that share everything but ``column`` and take 2+ values of it."""
    fixed = [c for c, _ in SWEEPS if c != column]
    found = []
    for key, group in table.groupby(["dataset", "arch", *fixed], sort=False, dropna=False):
        if group[column].nunique() > 1:
            found.append((key, group))
    return found


def _sort_value(column: str, value) -> float:
    if column == "pos_weight":
        try:
            return float(value)
        except (TypeError, ValueError):  # auto, auto-per-label: after the numbers
            return float("inf")
    return float(value)


def write_multilabel_figures(table: pd.DataFrame, out_dir: Path, stem: str) -> list[Path]:
    """Hamming error (with the all-negative baseline) and F1 against w and against N."""
    if table.empty:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .figures import _figure_name

    written = []
    for column, label in SWEEPS:
        for key, group in _sweeps(table, column):
            group = group.assign(_x=[_sort_value(column, v) for v in group[column]])
            group = group[group["_x"] != float("inf")].sort_values("_x")
            if group["_x"].nunique() < 2:
                continue
            fig, (error_axis, f1_axis) = plt.subplots(1, 2, figsize=(9, 3.5))
            error_axis.plot(group["_x"], group["hamming_error"], marker="o", label="model")
            error_axis.plot(
                group["_x"],
                group["all_negative_hamming_error"],
                linestyle="--",
                color="grey",
                label="all-negative baseline",
            )
            error_axis.set_ylabel("Hamming error")
            for name, style in (("micro_f1", "o-"), ("macro_f1", "s-"), ("map", "^-")):
                f1_axis.plot(group["_x"], group[name], style, label=name.replace("_", " "))
            f1_axis.set_ylabel("score")
            for axis in (error_axis, f1_axis):
                axis.set_xscale("log")
                axis.set_xlabel(label)
                axis.legend(fontsize=8)
            dataset, arch = key[0], key[1]
            fig.suptitle(f"{arch} on {dataset}: against {label}", fontsize=9)
            fig.tight_layout()
            path = out_dir / _figure_name(stem, dataset, arch, f"multilabel-vs-{column}")
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    return written


def multilabel_section(table: pd.DataFrame, figures: Sequence[Path], markdown) -> list[str]:
    """Markdown lines: per dataset the table, then the sweep figures."""
    if table.empty:
        return []
    lines = []
    for dataset, group in table.groupby("dataset", sort=False):
        lines += [f"## {dataset} (multi-label)", "", markdown(shown_table(group), 4), ""]
        lines += [
            "Hamming error beside the all-negative baseline's (predicting no label); mAP beside "
            "a constant score's (each label's prevalence). Prediction kinds per image, P the "
            "predicted and T the true set: exact P = T, empty P = {} != T, wrong P and T "
            f"disjoint, partial the rest; threshold {group['threshold'].iloc[0]}.",
            "",
        ]
    sweeps = [f for f in figures if "-multilabel-vs-" in f.name]
    if sweeps:
        lines += ["## Multi-label sweeps", "", *[f"![{f.stem}]({f.name})" for f in sweeps], ""]
    return lines
