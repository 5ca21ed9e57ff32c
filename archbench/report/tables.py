"""The report's tables as DataFrames: one numeric row per run, and the tables derived from it.

Conventions, as in the study: sizes in MB are 10^6 bytes of the ``torch.save`` file; a latency
"% faster" is the time saved, ``(1 - ms / reference_ms) * 100`` (AlexNet on the study's GPU is
"95% faster" than on its CPU: 0.76 ms against 15.39 ms).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..measure.backends import BACKENDS
from ..measure.complexity import describe_uncounted
from ..train.config import legacy_split_seed
from .aggregate import group_keys
from .collect import RunRecord, nested_get
from .multilabel import multilabel_table


def run_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One numeric row per complete run: accuracy, size, MACs, latency and roofline per backend."""
    rows = []
    groups = group_keys(records)
    for record, group in zip(records, groups, strict=True):
        if not record.complete or record.task != "classification":
            continue  # multi-label runs have their own table (report/multilabel.py)
        profile, result = record.profile, record.result
        seconds, threads = record.train_seconds, record.threads
        row: dict[str, Any] = {
            "dataset": record.dataset,
            "arch": record.arch,
            "num_classes": record.num_classes,
            "top1": result.get("test_top1"),
            "top5": result.get("test_top5"),
            "params": nested_get(profile, "params", "trainable"),
            "size_mb": _mb(nested_get(profile, "size_bytes", "state_dict")),
            "onnx_size_mb": _mb(nested_get(profile, "size_bytes", "onnx")),
            "int8_size_mb": _mb(nested_get(profile, "size_bytes", "onnx_int8")),
            "int8_top1": nested_get(profile, "numerics", "cpu-onnxruntime-int8", "top1"),
            "int8_diff_pts": nested_get(
                profile, "numerics", "cpu-onnxruntime-int8", "top1_delta_points"
            ),
            "macs": nested_get(profile, "macs"),
            # operators with multiplications fvcore could not count ("" when none)
            "macs_miss": describe_uncounted(
                nested_get(profile, "complexity", "uncounted_ops") or {}
            ),
            "best_epoch": result.get("best_epoch"),
            "epochs_run": result.get("epochs_run"),
            "selected_on": result.get("selected_on"),
            "run_dir": str(record.path),
            "seed": record.config["train"].get("seed"),
            "split_seed": legacy_split_seed(record.config["train"]),
            "group": group,
            "protocol": record.protocol["label"],
            "study_protocol": bool(record.protocol.get("study")),
            "budget_epochs": record.budget_epochs,
            "train_seconds": seconds,
            "epoch_seconds": _per(seconds, result.get("epochs_run")),
            "threads": threads,
            "cpu_model": nested_get(record.config, "system", "cpu_model"),
            "cpu_hours": None if seconds is None or not threads else seconds * threads / 3600,
        }
        for backend in BACKENDS:
            stats = nested_get(profile, "latency", backend, "batch1")
            if nested_get(profile, "latency", backend, "status") != "ok" or not stats:
                continue
            row[f"{backend}_mean_ms"] = stats["mean_ms"]
            row[f"{backend}_std_ms"] = stats["std_ms"]
            row[f"{backend}_p50_ms"] = stats["p50_ms"]
            roof = nested_get(profile, "roofline", backend) or {}
            row[f"{backend}_gflops"] = roof.get("achieved_gflops")
            row[f"{backend}_peak_fraction"] = roof.get("fraction_of_peak")
            row[f"{backend}_lower_bound_ms"] = roof.get("lower_bound_ms")
            row[f"{backend}_layerwise_bound_ms"] = roof.get("layerwise_bound_ms")
            row[f"{backend}_floor_dram_ms"] = roof.get("floor_dram_ms")
            row[f"{backend}_expected_ms"] = roof.get("expected_ms")
            row[f"{backend}_peak_format"] = roof.get("peak_format")
            cold = nested_get(profile, "latency", backend, "cold_start") or {}
            for stage in ("load_ms", "session_ms", "first_inference_ms"):
                row[f"{backend}_cold_{stage}"] = cold.get(stage)
            row[f"{backend}_memory_mb"] = _mb(
                nested_get(profile, "latency", backend, "memory", "inference_memory_bytes")
            )
        rows.append(row)
    return pd.DataFrame(rows)


UNRECORDED_PROTOCOL = "not recorded"


def with_protocol(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``protocol`` and ``study_protocol`` columns (a table built by hand, not by
    :func:`run_table`, may lack them: its protocol is "not recorded", not the study's)."""
    if "protocol" in table.columns and "study_protocol" in table.columns:
        return table
    return table.assign(
        protocol=table.get("protocol", UNRECORDED_PROTOCOL),
        study_protocol=table.get("study_protocol", False),
    )


def _per(total: float | None, count: int | None) -> float | None:
    return None if total is None or not count else total / count


def _mb(size: int | None) -> float | None:
    return None if size is None else size / 1e6


def backends_in(table: pd.DataFrame) -> list[str]:
    return [b for b in BACKENDS if f"{b}_mean_ms" in table.columns]


def relative_table(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per dataset and protocol, each network against ``baseline``: params %, size %, accuracy
    points, % faster (accuracy is only comparable under one protocol).

    A dataset without a complete baseline run is left out of this table (the main table still
    shows it); the caller reports which.
    """
    rows = []
    table = with_protocol(table)
    for (dataset, protocol), group in table.groupby(["dataset", "protocol"], sort=False):
        base = group[group["arch"] == baseline]
        if base.empty:
            continue
        base = base.iloc[0]
        for _, row in group.iterrows():
            out = {
                "dataset": dataset,
                "protocol": protocol,
                "arch": row["arch"],
                "params_pct": _ratio_pct(row["params"], base["params"]),
                "size_pct": _ratio_pct(row["size_mb"], base["size_mb"]),
                "top1_diff_pts": _diff_points(row["top1"], base["top1"]),
            }
            for backend in backends_in(table):
                out[f"{backend}_faster_pct"] = faster_pct(
                    row.get(f"{backend}_mean_ms"), base.get(f"{backend}_mean_ms")
                )
            rows.append(out)
    return pd.DataFrame(rows)


def _ratio_pct(value, reference) -> float | None:
    if is_missing(value) or is_missing(reference) or reference == 0:
        return None
    return 100.0 * value / reference


def _diff_points(value, reference) -> float | None:
    if is_missing(value) or is_missing(reference):
        return None
    return 100.0 * (value - reference)


def faster_pct(ms, reference_ms) -> float | None:
    """Time saved against a reference, in percent (negative: slower)."""
    if is_missing(ms) or is_missing(reference_ms) or reference_ms == 0:
        return None
    return 100.0 * (1.0 - ms / reference_ms)


def is_missing(value) -> bool:
    """``None`` or NaN: a figure the run does not have."""
    return value is None or (isinstance(value, float) and np.isnan(value))


def gpu_speedup_table(table: pd.DataFrame) -> pd.DataFrame:
    """The study's table 9: how much faster each network runs on the GPU than on the CPU."""
    pairs = [("cuda-eager", "cpu-eager"), ("cuda-onnxruntime", "cpu-onnxruntime")]
    rows = []
    table = with_protocol(table)
    for _, row in table.iterrows():
        out = {"dataset": row["dataset"], "protocol": row["protocol"], "arch": row["arch"]}
        for gpu, cpu in pairs:
            value = faster_pct(row.get(f"{gpu}_mean_ms"), row.get(f"{cpu}_mean_ms"))
            if value is not None:
                out[f"{gpu}_vs_{cpu}_faster_pct"] = value
        if len(out) > 3:
            rows.append(out)
    return pd.DataFrame(rows)


def efficiency_table(table: pd.DataFrame) -> pd.DataFrame:
    """Achieved GFLOP/s, % of the measured peak and the roofline bound, per network and backend."""
    rows = []
    table = with_protocol(table)
    for _, row in table.iterrows():
        for backend in backends_in(table):
            if is_missing(row.get(f"{backend}_gflops")):
                continue
            fraction = row.get(f"{backend}_peak_fraction")
            rows.append(
                {
                    "dataset": row["dataset"],
                    "protocol": row["protocol"],
                    "arch": row["arch"],
                    "backend": backend,
                    "p50_ms": row[f"{backend}_p50_ms"],
                    "lower_bound_ms": row.get(f"{backend}_lower_bound_ms"),
                    "layerwise_bound_ms": row.get(f"{backend}_layerwise_bound_ms"),
                    "p50_vs_layerwise": _over(
                        row[f"{backend}_p50_ms"], row.get(f"{backend}_layerwise_bound_ms")
                    ),
                    "floor_dram_ms": row.get(f"{backend}_floor_dram_ms"),
                    "expected_ms": row.get(f"{backend}_expected_ms"),
                    "p50_vs_expected": _over(
                        row[f"{backend}_p50_ms"], row.get(f"{backend}_expected_ms")
                    ),
                    "peak_format": row.get(f"{backend}_peak_format"),
                    "gflops": row[f"{backend}_gflops"],
                    "peak_pct": None if is_missing(fraction) else 100.0 * fraction,
                }
            )
    return pd.DataFrame(rows)


def _over(value, reference) -> float | None:
    if is_missing(value) or is_missing(reference) or not reference:
        return None
    return float(value) / float(reference)


def cold_start_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per network and backend: load, session creation, first inference, inference memory."""
    rows = []
    table = with_protocol(table)
    for _, row in table.iterrows():
        for backend in backends_in(table):
            if is_missing(row.get(f"{backend}_cold_session_ms")):
                continue
            rows.append(
                {
                    "dataset": row["dataset"],
                    "protocol": row["protocol"],
                    "arch": row["arch"],
                    "backend": backend,
                    "load_ms": row[f"{backend}_cold_load_ms"],
                    "session_ms": row[f"{backend}_cold_session_ms"],
                    "first_inference_ms": row[f"{backend}_cold_first_inference_ms"],
                    "p50_ms": row[f"{backend}_p50_ms"],
                    "memory_mb": row.get(f"{backend}_memory_mb"),
                }
            )
    return pd.DataFrame(rows)


def table_data(records: Sequence[RunRecord], fmt: str) -> str:
    """The flat run table as CSV or JSON (records), for pandas users."""
    table = run_table(records)
    multilabel = multilabel_table(records)
    if not multilabel.empty:
        table = pd.concat([table, multilabel], ignore_index=True) if not table.empty else multilabel
    incomplete = pd.DataFrame(
        [
            {"dataset": r.dataset, "arch": r.arch, "status": r.status, "run_dir": str(r.path)}
            for r in records
            if not r.complete
        ]
    )
    if not table.empty:
        table.insert(2, "status", "complete")
    table = pd.concat([table, incomplete], ignore_index=True) if not incomplete.empty else table
    if fmt == "csv":
        return table.to_csv(index=False)
    return table.to_json(orient="records", indent=2) + "\n"
