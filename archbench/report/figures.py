"""The report's figures: training curves, and accuracy against cost with the Pareto front."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..train import rundir
from .collect import RunRecord
from .cost_figures import CostAxis, accuracy_cost_figure, cpu_latency_axes


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
    """Training curves per run; per dataset, accuracy against params and against latency
    (one panel per CPU backend), each as :mod:`.cost_figures` draws them."""
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
    figure_axes = [
        ("params", [CostAxis("params", "trainable parameters", "count")]),
        ("latency", cpu_latency_axes(table)),
    ]
    for dataset, group in table.groupby("dataset", sort=False):
        for name, axes in figure_axes:
            fig = accuracy_cost_figure(
                group, axes, f"{dataset}: accuracy against {name}", pareto_front
            )
            if fig is None:
                continue
            path = out_dir / _figure_name(stem, dataset, f"accuracy-vs-{name}")
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written
