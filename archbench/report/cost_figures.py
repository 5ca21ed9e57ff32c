"""Accuracy against cost (parameters, latency), drawn to be read at a glance.

Log axes carry plain tick labels ("2", "3", "5" ms; "200k", "1.2M" parameters), never "3x10^0";
a network with several seeds shows its mean with a ± std error bar; latency gets one panel per
CPU backend; and each network's label is placed, deterministically, where it overlaps no other
label, marker or error bar (first free spot among rings of candidates around its point).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..measure.backends import BACKENDS

_MANTISSAS = ((1.0,), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0), tuple(range(1, 10)))
_RINGS_PT = (5, 11, 18, 27, 38, 52)  # label offsets tried, points from the marker's centre
_DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
_MARKER_PX = 5  # half the side of the box a marker occupies
_LEADER_FROM_PT = 11  # labels placed this far or further get a thin line to their point
_LEADER = {"arrowstyle": "-", "color": "0.55", "lw": 0.6, "shrinkA": 1, "shrinkB": 4}


@dataclass(frozen=True)
class CostAxis:
    """One x axis: the table column, its label, and how its ticks read."""

    column: str
    label: str
    unit: str  # "ms" or "count"


def plain_log_ticks(low: float, high: float, *, minimum: int = 4) -> list[float]:
    """Tick values for a log axis over [low, high]: the sparsest 1-2-5-like series that puts
    at least ``minimum`` ticks inside (a decade alone leaves a 2.5-7 ms axis with none)."""
    if not (0 < low <= high):
        raise ValueError(f"a log axis needs 0 < low <= high, got {low}, {high}")
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    ticks: list[float] = []
    for mantissas in _MANTISSAS:
        ticks = [
            float(f"{m * 10.0**exponent:.6g}")
            for exponent in range(first, last + 1)
            for m in mantissas
            if low <= m * 10.0**exponent <= high
        ]
        if len(ticks) >= minimum:
            break
    return ticks


def plain_tick_label(value: float, unit: str) -> str:
    """``2.5`` for milliseconds; ``250k``, ``1.2M`` for counts."""
    if unit == "count":
        for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if value >= threshold:
                return f"{value / threshold:.3g}{suffix}"
    return f"{value:.3g}"


def cpu_latency_axes(table: pd.DataFrame) -> list[CostAxis]:
    """One latency axis per CPU backend that has a figure in ``table``."""
    return [
        CostAxis(f"{backend}_mean_ms", f"{backend} latency, batch 1, ms", "ms")
        for backend in BACKENDS
        if backend.startswith("cpu")
        and f"{backend}_mean_ms" in table
        and table[f"{backend}_mean_ms"].notna().any()
    ]


def accuracy_cost_figure(group: pd.DataFrame, axes: Sequence[CostAxis], title: str, pareto):
    """A figure with one panel per axis in ``axes`` (sharing the accuracy scale); None if no
    row has both figures for any axis. ``pareto`` is :func:`.figures.pareto_front`."""
    import matplotlib.pyplot as plt

    panels = [(spec, group.dropna(subset=[spec.column, "top1"])) for spec in axes]
    panels = [(spec, rows) for spec, rows in panels if not rows.empty]
    if not panels:
        return None
    fig, grid = plt.subplots(
        1, len(panels), figsize=(1 + 4.6 * len(panels), 4.2), sharey=True, squeeze=False
    )
    for axis, (spec, rows) in zip(grid[0], panels, strict=True):
        _draw_panel(axis, spec, rows, pareto)
    grid[0][0].set_ylabel("test top-1, %")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    for axis, (spec, rows) in zip(grid[0], panels, strict=True):
        place_labels(axis, *_label_inputs(spec.column, rows))
    return fig


def _draw_panel(axis, spec: CostAxis, rows: pd.DataFrame, pareto) -> None:
    x = rows[spec.column].to_numpy(dtype=float)
    y = 100 * rows["top1"].to_numpy(dtype=float)
    std = 100 * _seed_std(rows)
    front = pareto(list(zip(x, y, strict=True)))
    axis.plot(x[front], y[front], color="tab:red", linewidth=1, zorder=1, label="Pareto front")
    axis.scatter(x, y, color="tab:blue", s=25, zorder=3)
    seeded = std > 0  # a single run has no spread to show
    if seeded.any():
        axis.errorbar(
            x[seeded], y[seeded], yerr=std[seeded], fmt="none", ecolor="tab:blue",
            elinewidth=1, capsize=3, zorder=2, label="± std over seeds",
        )  # fmt: skip
    axis.set_xscale("log")
    low, high = float(x.min()), float(x.max())
    pad = max(math.log10(high / low) * 0.15, 0.08)  # room for labels at both ends, in decades
    axis.set_xlim(low / 10**pad, high * 10**pad)
    ticks = plain_log_ticks(*axis.get_xlim())
    axis.xaxis.set_major_locator(_fixed(ticks))
    axis.xaxis.set_minor_locator(_fixed([]))
    axis.set_xticklabels([plain_tick_label(t, spec.unit) for t in ticks])
    top, bottom = float(np.nanmax(y + std)), float(np.nanmin(y - std))
    span = max(top - bottom, 2.0)
    axis.set_ylim(bottom - 0.15 * span, top + 0.2 * span)
    axis.set_xlabel(spec.label, fontsize=9)
    axis.grid(True, which="major", color="0.9", linewidth=0.6)
    axis.legend(fontsize=7, loc="best")


def _fixed(values):
    from matplotlib.ticker import FixedLocator

    return FixedLocator(values)


def _seed_std(rows: pd.DataFrame) -> np.ndarray:
    if "top1_std" not in rows:
        return np.zeros(len(rows))
    return rows["top1_std"].fillna(0).to_numpy(dtype=float)


def _label_inputs(column: str, rows: pd.DataFrame):
    """Points, their labels (with n when several seeds) and the error bars' extents."""
    x = rows[column].to_numpy(dtype=float)
    y = 100 * rows["top1"].to_numpy(dtype=float)
    std = 100 * _seed_std(rows)
    counts = rows["n"].fillna(1).astype(int) if "n" in rows else pd.Series([1] * len(rows))
    texts = [
        f"{arch} (n={n})" if n > 1 else str(arch)
        for arch, n in zip(rows["arch"], counts, strict=True)
    ]
    bars = [(xi, yi - si, yi + si) for xi, yi, si in zip(x, y, std, strict=True) if si > 0]
    return list(zip(x, y, strict=True)), texts, bars


def place_labels(axis, points: Sequence[tuple[float, float]], texts: Sequence[str], bars=()):
    """Annotate each point with its text where it overlaps nothing already there; returns the
    text artists. Deterministic: points in order of x, candidates in a fixed order (nearest
    ring first); when no candidate is free, the one overlapping least wins."""
    renderer = axis.figure.canvas.get_renderer()
    to_px = axis.transData.transform
    frame = axis.get_window_extent(renderer)
    obstacles = [_box_around(to_px(p), _MARKER_PX) for p in points]
    for x, low, high in bars:
        (left, bottom), (_, top) = to_px((x, low)), to_px((x, high))
        obstacles.append((left - 4, bottom, left + 4, top))
    legend = axis.get_legend()
    if legend is not None:
        box = legend.get_window_extent(renderer)
        obstacles.append((box.x0, box.y0, box.x1, box.y1))
    placed: list = []  # label boxes, and the leader lines' sample boxes
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    artists: dict[int, object] = {}
    for i in order:
        text = _annotate(axis, texts[i], points[i])
        best, best_cost = None, math.inf
        for ring in _RINGS_PT:
            for dx, dy in _DIRECTIONS:
                _aim(text, dx, dy, ring)
                box = _extent(text, renderer)
                leader = _leader(to_px(points[i]), box) if ring >= _LEADER_FROM_PT else []
                cost = _outside(box, frame) * 10 + sum(
                    _overlap(mine, other) for mine in (box, *leader) for other in placed + obstacles
                )
                if cost < best_cost:
                    best, best_cost = (dx, dy, ring, box), cost
                if cost == 0:
                    break
            if best_cost == 0:
                break
        dx, dy, ring, box = best
        _aim(text, dx, dy, ring)
        if ring >= _LEADER_FROM_PT:
            placed += _leader(to_px(points[i]), box)
        if ring >= _LEADER_FROM_PT:  # far from its point: a thin line says whose label it is
            text.remove()
            text = _annotate(axis, texts[i], points[i], arrowprops=_LEADER)
            _aim(text, dx, dy, ring)
        placed.append(box)
        artists[i] = text
    return [artists[i] for i in range(len(points))]


def _annotate(axis, text: str, point: tuple[float, float], **options):
    return axis.annotate(text, point, (0, 0), textcoords="offset points", fontsize=8, **options)


def _aim(text, dx: int, dy: int, ring: int) -> None:
    """Put ``text`` ``ring`` points from its anchor in direction (dx, dy), aligned away."""
    scale = ring / math.hypot(dx, dy)
    text.set_position((dx * scale, dy * scale))
    text.set_horizontalalignment({1: "left", 0: "center", -1: "right"}[dx])
    text.set_verticalalignment({1: "bottom", 0: "center", -1: "top"}[dy])


def _extent(text, renderer) -> tuple[float, float, float, float]:
    """The text's box, padded a pixel (without the leader line an annotation's extent has)."""
    from matplotlib.text import Text

    text.update_positions(renderer)  # an annotation's offset is resolved at draw time
    box = Text.get_window_extent(text, renderer)
    return box.x0 - 1, box.y0 - 1, box.x1 + 1, box.y1 + 1


def _leader(point, box, samples: int = 12) -> list[tuple[float, float, float, float]]:
    """Small boxes along the line from ``point`` (past its marker) to ``box``'s nearest edge,
    so that a label's line crosses no other label either."""
    target_x = min(max(point[0], box[0]), box[2])
    target_y = min(max(point[1], box[1]), box[3])
    length = math.hypot(target_x - point[0], target_y - point[1])
    if length <= _MARKER_PX:
        return []
    steps = np.linspace(_MARKER_PX / length, 1, samples, endpoint=False)
    return [
        _box_around((point[0] + t * (target_x - point[0]), point[1] + t * (target_y - point[1])), 1)
        for t in steps
    ]


def _box_around(centre, half: float) -> tuple[float, float, float, float]:
    return centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half


def _overlap(a, b) -> float:
    """Area shared by two (x0, y0, x1, y1) boxes, in square pixels."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return max(width, 0) * max(height, 0)


def _outside(box, frame) -> float:
    """Area of ``box`` outside the axes' frame."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    return area - _overlap(box, (frame.x0, frame.y0, frame.x1, frame.y1))
