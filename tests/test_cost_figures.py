"""Accuracy-against-cost figures read at a glance: plain ticks, no overlapping labels, error
bars over seeds, one latency panel per CPU backend (measured on the drawn figure itself)."""

from __future__ import annotations

import itertools
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from archbench.report import pareto_front, write_figures  # noqa: E402
from archbench.report.cost_figures import (  # noqa: E402
    accuracy_cost_figure,
    cpu_latency_axes,
    place_labels,
    plain_log_ticks,
    plain_tick_label,
)


def _digits_like_table(seeds: int = 3) -> pd.DataFrame:
    """The committed digits report's situation: three networks within 0.2 ms and 2.5 points
    of each other (their labels used to print on top of one another), two far away."""
    rows = [
        ("squeezenet_dsc", 0.972, 0.006, 295_000, 2.70, 0.90),
        ("squeezenet", 0.975, 0.004, 740_000, 2.72, 1.00),
        ("mobilenet", 0.950, 0.012, 3_200_000, 2.55, 0.95),
        ("alexnet", 0.895, None, 2_500_000, 5.60, 2.10),
        ("vgg19", 0.178, None, 20_000_000, 6.60, 4.00),
    ]
    return pd.DataFrame(
        [
            {
                "arch": arch, "dataset": "digits", "top1": top1,
                "top1_std": std if seeds > 1 else None,
                "n": seeds if std is not None else 1, "params": params,
                "cpu-eager_mean_ms": eager, "cpu-onnxruntime_mean_ms": ort,
                "cuda-eager_mean_ms": 0.5,  # not a CPU backend: no panel
            }
            for arch, top1, std, params, eager, ort in rows
        ]
    )  # fmt: skip


def _boxes(axis):
    """Each label's text box (an annotation's own extent would include its leader line)."""
    renderer = axis.figure.canvas.get_renderer()
    return {text.get_text(): Text.get_window_extent(text, renderer) for text in axis.texts}


@pytest.fixture
def latency_figure():
    table = _digits_like_table()
    fig = accuracy_cost_figure(table, cpu_latency_axes(table), "digits", pareto_front)
    fig.canvas.draw()
    yield fig
    plt.close(fig)


def test_plain_log_ticks_put_several_plain_numbers_on_a_narrow_axis():
    ticks = plain_log_ticks(2.3, 7.6)  # the digits latencies: no decade inside
    assert ticks == [3, 4, 5, 6, 7]
    wide = plain_log_ticks(0.4, 600)
    assert len(wide) >= 4 and all(0.4 <= t <= 600 for t in wide) and wide == sorted(wide)
    assert [plain_tick_label(t, "ms") for t in (0.75, 2.5, 3.0, 150.0)] == [
        "0.75", "2.5", "3", "150"
    ]  # fmt: skip
    assert [plain_tick_label(v, "count") for v in (500, 250_000, 1_200_000)] == [
        "500", "250k", "1.2M"
    ]  # fmt: skip


def test_one_panel_per_cpu_backend_with_plain_millisecond_ticks(latency_figure):
    axes = latency_figure.axes
    assert [axis.get_xlabel().split()[0] for axis in axes] == ["cpu-eager", "cpu-onnxruntime"]
    for axis in axes:
        labels = [tick.get_text() for tick in axis.get_xticklabels()]
        assert len(labels) >= 3
        for label in labels:  # "3", "1.5": no "3x10^0" mathtext
            assert re.fullmatch(r"\d+(\.\d+)?", label), label
        assert not [t.get_text() for t in axis.get_xticklabels(minor=True) if t.get_text()]


def test_labels_overlap_no_other_label_and_stay_inside(latency_figure):
    for axis in latency_figure.axes:
        boxes = _boxes(axis)
        assert set(boxes) == {
            "squeezenet_dsc (n=3)", "squeezenet (n=3)", "mobilenet (n=3)", "alexnet", "vgg19"
        }  # fmt: skip
        for (name_a, a), (name_b, b) in itertools.combinations(boxes.items(), 2):
            assert not a.overlaps(b), f"{name_a} overlaps {name_b}"
        frame = axis.get_window_extent()
        for name, box in boxes.items():
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1, name
            assert frame.y0 <= box.y0 and box.y1 <= frame.y1, name


def test_error_bars_are_plus_minus_the_seed_std(latency_figure):
    table = _digits_like_table()
    axis = latency_figure.axes[0]
    (bars,) = [c for c in axis.collections if isinstance(c, LineCollection)]
    spans = sorted((s[0][0], s[0][1], s[1][1]) for s in bars.get_segments())
    seeded = table[table["n"] > 1]
    expected = sorted(
        zip(
            seeded["cpu-eager_mean_ms"],
            100 * (seeded["top1"] - seeded["top1_std"]),
            100 * (seeded["top1"] + seeded["top1_std"]),
            strict=True,
        )
    )
    assert len(spans) == 3
    np.testing.assert_allclose(spans, expected, rtol=1e-9)


def test_single_seed_runs_get_no_error_bars():
    table = _digits_like_table(seeds=1)
    fig = accuracy_cost_figure(table, cpu_latency_axes(table), "digits", pareto_front)
    fig.canvas.draw()
    axis = fig.axes[0]
    assert not [c for c in axis.collections if isinstance(c, LineCollection)]
    assert "squeezenet" in _boxes(axis)  # no "(n=1)"
    plt.close(fig)


def test_even_coincident_points_get_separate_labels():
    fig, axis = plt.subplots(figsize=(4, 3))
    points = [(2.0, 50.0)] * 6 + [(2.01, 50.2)] * 2
    axis.scatter(*zip(*points, strict=True))
    axis.set_xlim(1, 4)
    axis.set_ylim(0, 100)
    texts = [f"network_{i}" for i in range(len(points))]
    place_labels(axis, points, texts)
    fig.canvas.draw()
    boxes = list(_boxes(axis).values())
    assert len(boxes) == len(points)
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    plt.close(fig)


def test_write_figures_names_the_files_the_report_links(tmp_path):
    written = write_figures([], _digits_like_table(), tmp_path, "report")
    assert sorted(path.name for path in written) == [
        "report-digits-accuracy-vs-latency.png", "report-digits-accuracy-vs-params.png"
    ]  # fmt: skip
    assert all(path.stat().st_size > 10_000 for path in written)
