"""Runs that differ only in seed, as one row: mean ± std and n, best-epoch range, pooled latency.

A run's group is the ``group`` field of its ``config.json`` (``archbench run --seeds`` and seeded
suites write it); runs without one are grouped by their training configuration apart from the
seed (and where the data and runs live), so runs trained before groups existed still aggregate.
A seed repeated in such a group is a rerun, not another seed: it starts a group of its own.
A group's runs must share their validation split (``split_seed``; older runs split by their
``seed``): a spread over seeds that also moves the split is not the spread of the seeds, so
such a group is refused rather than averaged.
Either way the group key ends with the run's protocol label, so runs of different schedules or
budgets are never averaged into one row, whatever their ``group`` field says.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import ArchbenchError
from .collect import RunRecord

# Settings that do not change what a run computes: where its data and output live.
NOT_THE_RUN = ("seed", "runs_dir", "data_dir")

# Two-sided 95% Student t quantiles (t_0.975) for 1-30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip
_Z975 = 1.959964


def t_quantile_975(dof: int) -> float:
    """t_0.975 with ``dof`` degrees of freedom (tabled to 30; Cornish-Fisher above, < 0.1% off)."""
    if dof < 1:
        raise ValueError("a t-interval needs at least 2 values")
    if dof <= len(_T975):
        return _T975[dof - 1]
    return _Z975 + (_Z975**3 + _Z975) / (4 * dof)


def mean_std_interval(values: Sequence[float]) -> tuple[float, float | None, float | None]:
    """Mean, sample std (n - 1) and the 95% t-interval's half width; n = 1 has neither."""
    array = np.asarray(values, dtype=float)
    mean = float(array.mean())
    if len(array) < 2:
        return mean, None, None
    std = float(array.std(ddof=1))
    return mean, std, t_quantile_975(len(array) - 1) * std / math.sqrt(len(array))


def group_keys(records: Sequence[RunRecord]) -> list[str]:
    """Each run's group, in ``records``' order: its ``group`` field, else its configuration
    apart from seed (a seed seen again in that configuration, by path order, is a rerun)."""
    keys = [""] * len(records)
    seeds_seen: dict[str, list] = {}
    for index in sorted(range(len(records)), key=lambda i: str(records[i].path)):
        config = records[index].config
        protocol = f" | {records[index].protocol['label']}"
        if config.get("group"):
            keys[index] = f"group:{config['group']}{protocol}"
            continue
        train = config["train"]
        settings = {k: v for k, v in train.items() if k not in NOT_THE_RUN}
        digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        seen = seeds_seen.setdefault(digest, [])
        repeat = seen.count(train.get("seed"))
        seen.append(train.get("seed"))
        keys[index] = f"config:{digest}" + (f"-repeat{repeat}" if repeat else "") + protocol
    return keys


def aggregate_seeds(table: pd.DataFrame) -> pd.DataFrame:
    """One row per group of :func:`~archbench.report.tables.run_table`'s rows, in first-run order.

    A group of one keeps its row as it is (``n`` = 1). A larger group gets the mean of top-1 and
    top-5 with their sample std (``top1_std``) and 95% t half width (``top1_t95``), the best-epoch
    and epoch ranges as text, and latency pooled: the mean of the per-run means, and the std of
    all samples together (sqrt of the mean per-run variance plus the variance of the means, as
    every run profiles the same number of samples); training time adds up, and seconds per epoch
    are the group's training seconds over its epochs.
    """
    if table.empty or "group" not in table.columns:
        return table
    rows = []
    for name, runs in table.groupby("group", sort=False):
        require_one_split(str(name), runs)
        row = runs.iloc[0].to_dict()
        row["n"] = len(runs)
        row["seeds"] = ",".join(str(s) for s in runs["seed"])
        if len(runs) > 1:
            row.update(_pooled(runs))
        rows.append(row)
    return pd.DataFrame(rows)


def require_one_split(group: str, runs: pd.DataFrame) -> None:
    """Refuse (one line) to aggregate runs whose validation splits differ."""
    if "split_seed" not in runs.columns or runs["split_seed"].nunique(dropna=False) < 2:
        return
    pairs = ", ".join(
        f"{run_dir} (split seed {split_seed})"
        for run_dir, split_seed in zip(runs["run_dir"], runs["split_seed"], strict=True)
    )
    raise ArchbenchError(
        f"the seed group {group.split(':', 1)[-1]} mixes validation splits: {pairs}; mean ± std "
        "over seeds needs one split: retrain them with one --split-seed, or report them apart "
        "(runs from before --split-seed split by their --seed)"
    )


def _pooled(runs: pd.DataFrame) -> dict:
    out: dict = {}
    for metric in ("top1", "top5"):
        values = runs[metric].dropna()
        if len(values):
            out[metric], out[f"{metric}_std"], out[f"{metric}_t95"] = mean_std_interval(values)
    if "train_seconds" in runs.columns and runs["epochs_run"].sum() > 0:
        out["epoch_seconds"] = float(runs["train_seconds"].sum() / runs["epochs_run"].sum())
    for column in ("best_epoch", "epochs_run"):
        low, high = int(runs[column].min()), int(runs[column].max())
        out[column] = str(low) if low == high else f"{low}–{high}"
    for column in runs.columns:
        if column.endswith("_mean_ms"):
            std_column = column.replace("_mean_ms", "_std_ms")
            means, stds = runs[column], runs[std_column]
            out[column] = float(means.mean())
            out[std_column] = float(np.sqrt((stds**2).mean() + means.var(ddof=0)))
        elif column.endswith(("_p50_ms", "_gflops", "_peak_fraction", "_lower_bound_ms")):
            out[column] = float(runs[column].mean())
    for column in ("train_seconds", "cpu_hours"):
        if column in runs.columns:
            out[column] = float(runs[column].sum())
    if "budget_epochs" in runs.columns and runs["budget_epochs"].notna().any():
        out["budget_epochs"] = runs["budget_epochs"].max()
    out["run_dir"] = ", ".join(runs["run_dir"])
    return out
