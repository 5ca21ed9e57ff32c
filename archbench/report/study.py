"""A published study's own figures (shipped as package data) next to ours."""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import pandas as pd

from ..errors import ArchbenchError
from ..train.config import DEFAULT_MAX_EPOCHS
from ..train.protocol import protocol_of
from .tables import is_missing, with_protocol

STUDIES = {"souza2020": "souza2020.csv"}
STUDY_BACKENDS = {"cpu": "cpu-eager", "gpu": "cuda-eager"}
STUDY_PROTOCOL = protocol_of({"max_epochs": DEFAULT_MAX_EPOCHS}).label


def load_study(name: str) -> pd.DataFrame:
    """A published study's own figures, shipped as package data."""
    if name not in STUDIES:
        raise ArchbenchError(f"unknown study {name!r}; known: {', '.join(STUDIES)}")
    text = resources.files(__package__).joinpath("reference", STUDIES[name]).read_text()
    return pd.read_csv(io.StringIO(text))


def study_dataset(dataset: str, num_classes: int) -> str | None:
    """The study dataset a run's dataset is (close to): CIFAR pickles, or the CIFAR JPEG folders."""
    name = dataset.lower()
    if name in ("cifar10", "cifar100"):
        return name
    if name.startswith("imagefolder:"):
        folder = Path(name.split(":", 1)[1].rstrip("/")).name
        for candidate, classes in (("cifar100", 100), ("cifar10", 10)):
            if folder.startswith(candidate) and num_classes == classes:
                return candidate
    return None


def study_comparison(table: pd.DataFrame, study: str) -> pd.DataFrame:
    """Our figures next to the study's, network by network.

    Parameter counts are compared with the study's row for the same class count (they do not
    depend on the data); accuracy and size only where the run's dataset is the study's, with
    whether the study's top-1 lies in the 95% t-interval of our mean (seed groups, n >= 2).
    Each row names its protocol and whether it is the study's (accuracy under another
    schedule or budget is not a reproduction of the study's figure).
    """
    published = load_study(study)
    rows = []
    for _, row in with_protocol(table).iterrows():
        same_data = study_dataset(row["dataset"], row["num_classes"])
        by_classes = "cifar100" if row["num_classes"] == 100 else "cifar10"
        ref = published[(published["arch"] == row["arch"]) & (published["dataset"] == by_classes)]
        if ref.empty or row["num_classes"] not in (10, 100):
            continue
        ref = ref.iloc[0]
        out = {
            "dataset": row["dataset"],
            "arch": row["arch"],
            "protocol": row["protocol"],
            "study's protocol": "yes" if row["study_protocol"] else "no: differs",
            "params": row["params"],
            "study_params": int(ref["params"]),
            "params_equal": row["params"] == ref["params"],
            "top1_pct": None if is_missing(row["top1"]) else 100.0 * row["top1"],
            "study_top1_pct": float(ref["top1"]) if same_data else None,
            "top1_diff_pts": (
                100.0 * row["top1"] - float(ref["top1"])
                if same_data and not is_missing(row["top1"])
                else None
            ),
            **_interval_columns(row, float(ref["top1"]) if same_data else None),
            "size_mb": row["size_mb"],
            "study_size_mb": float(ref["size_mb"]),
            "size_diff_mb": None if is_missing(row["size_mb"]) else row["size_mb"] - ref["size_mb"],
        }
        rows.append(out)
    return pd.DataFrame(rows)


def _interval_columns(row: pd.Series, study_top1: float | None) -> dict:
    """n, our 95% t-interval of top-1 (n - 1 dof) and whether the study's value lies in it."""
    n = int(row.get("n", 1)) if not is_missing(row.get("n")) else 1
    if study_top1 is None or is_missing(row["top1"]):
        return {"n": n, "top1_t95_interval": None, "study_in_t95": None}
    if n < 2 or is_missing(row.get("top1_t95")):
        return {"n": n, "top1_t95_interval": None, "study_in_t95": "n = 1: no interval"}
    low, high = 100.0 * (row["top1"] - row["top1_t95"]), 100.0 * (row["top1"] + row["top1_t95"])
    return {
        "n": n,
        "top1_t95_interval": f"{low:.2f}–{high:.2f}",
        "study_in_t95": "yes" if low <= study_top1 <= high else "no",
    }


def study_latency_ratios(table: pd.DataFrame, study: str, baseline: str) -> pd.DataFrame:
    """Latency as ratios to ``baseline`` (hardware differs, ratios travel): study's and ours."""
    published = load_study(study)
    rows = []
    for (dataset, protocol), group in with_protocol(table).groupby(
        ["dataset", "protocol"], sort=False
    ):
        num_classes = int(group["num_classes"].iloc[0])
        ref_data = "cifar100" if num_classes == 100 else "cifar10"
        ours_base = group[group["arch"] == baseline]
        study_rows = published[published["dataset"] == ref_data].set_index("arch")
        if ours_base.empty or baseline not in study_rows.index:
            continue
        for _, row in group.iterrows():
            if row["arch"] == baseline or row["arch"] not in study_rows.index:
                continue
            for device, backend in STUDY_BACKENDS.items():
                ours = row.get(f"{backend}_mean_ms")
                base_ms = ours_base.iloc[0].get(f"{backend}_mean_ms")
                if is_missing(ours) or is_missing(base_ms):
                    continue
                study_ratio = (
                    study_rows.loc[row["arch"], f"{device}_ms_mean"]
                    / study_rows.loc[baseline, f"{device}_ms_mean"]
                )
                rows.append(
                    {
                        "dataset": dataset,
                        "protocol": protocol,
                        "comparison": f"{row['arch']} / {baseline} {device.upper()} time",
                        "study": float(study_ratio),
                        "here": float(ours / base_ms),
                        "backend here": backend,
                    }
                )
    return pd.DataFrame(rows)
