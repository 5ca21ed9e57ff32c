"""The report's figures: training curves, and accuracy against cost with the Pareto front."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..measure.backends import BACKENDS
from ..train import rundir
from .collect import RunRecord


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats: lower cost (x) and higher accuracy (y)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (x2 <= x and y2 >= y) and (x2 < x or y2 > y)
            for j, (x2, y2) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _figure_name(stem: str, *parts: str) -> str:
    return "-".join([stem, *(rundir.slug(part) for part in parts)]) + ".png"


def write_figures(
    records: Sequence[RunRecord], table: pd.DataFrame, out_dir: Path, stem: str
) -> list[Path]:
    """Training curves per run, and accuracy against params and latency per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for record in records:
        if not record.complete or not record.metrics:
            continue
        epochs = [row["epoch"] for row in record.metrics]
        fig, loss_axis = plt.subplots(figsize=(6, 3.5))
        loss_axis.plot(epochs, [r["train_loss"] for r in record.metrics], label="train loss")
        loss_axis.set_xlabel("epoch")
        loss_axis.set_ylabel("training loss")
        acc_axis = loss_axis.twinx()
        watched = ("val_acc", "test_acc", "val_map", "test_map")  # multi-label: mAP
        acc_key = next((k for k in watched if record.metrics[0].get(k) is not None), "test_acc")
        acc_axis.plot(
            epochs, [r.get(acc_key) for r in record.metrics], color="tab:orange", label=acc_key
        )
        acc_axis.set_ylabel(acc_key.replace("_", " "))
        drops = [
            row["epoch"]
            for previous, row in zip(record.metrics, record.metrics[1:], strict=False)
            if row.get("lr") is not None and previous.get("lr") and row["lr"] < previous["lr"]
        ]
        for epoch in drops:
            loss_axis.axvline(epoch, color="grey", linestyle=":", linewidth=1)
        loss_axis.set_title(f"{record.arch} on {record.dataset} (dotted: LR drops)", fontsize=9)
        fig.tight_layout()
        path = out_dir / _figure_name(stem, "curves", record.arch, record.path.name)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    if table.empty:
        return written
    latency_column = next(
        (f"{b}_mean_ms" for b in ("cpu-eager", *BACKENDS) if f"{b}_mean_ms" in table), None
    )
    axes_specs = [("params", "trainable parameters", "params")]
    if latency_column:
        axes_specs.append((latency_column, f"{latency_column[:-8]} latency, ms", "latency"))
    for dataset, group in table.groupby("dataset", sort=False):
        for column, label, name in axes_specs:
            group_ok = group.dropna(subset=[column, "top1"])
            if group_ok.empty:
                continue
            points = list(zip(group_ok[column], 100 * group_ok["top1"], strict=True))
            front = pareto_front(points)
            fig, axis = plt.subplots(figsize=(5.5, 4))
            axis.scatter(*zip(*points, strict=True), color="tab:blue")
            axis.plot(
                [points[i][0] for i in front],
                [points[i][1] for i in front],
                color="tab:red",
                marker="o",
                label="Pareto front",
            )
            for (x, y), arch in zip(points, group_ok["arch"], strict=True):
                axis.annotate(arch, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
            axis.set_xscale("log")
            axis.set_xlabel(label)
            axis.set_ylabel("test top-1, %")
            axis.set_title(f"{dataset}: accuracy against {name}", fontsize=9)
            axis.legend(fontsize=8)
            fig.tight_layout()
            path = out_dir / _figure_name(stem, dataset, f"accuracy-vs-{name}")
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    return written
