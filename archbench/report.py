"""Comparison reports over run directories, in the shape of the study's tables 6-9.

:func:`collect_runs` reads what the trainer and profiler left in each run directory;
:func:`run_table` flattens the complete ones into one numeric DataFrame (one row per run, the
data ``--format csv|json`` emits); :func:`relative_table`, :func:`efficiency_table`,
:func:`gpu_speedup_table` and :func:`study_comparison` derive the other tables from it, and
:func:`write_report` renders all of them (``DataFrame.to_markdown``) with figures beside them.

Conventions, as in the study: sizes in MB are 10^6 bytes of the ``torch.save`` file; a latency
"% faster" is the time saved, ``(1 - ms / reference_ms) * 100`` (AlexNet on the study's GPU is
"95% faster" than on its CPU: 0.76 ms against 15.39 ms).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__, files, runs
from .errors import ArchbenchError
from .latency import BACKENDS

STUDIES = {"souza2020": "souza2020.csv"}
STUDY_BACKENDS = {"cpu": "cpu-eager", "gpu": "cuda-eager"}
REPORT_FORMATS = ("md", "csv", "json")


@dataclass(frozen=True)
class RunRecord:
    """One run directory as the report sees it."""

    path: Path
    config: dict
    result: dict
    profile: dict | None
    metrics: list[dict]

    @property
    def arch(self) -> str:
        return self.config["train"]["arch"]

    @property
    def dataset(self) -> str:
        return self.config["train"]["dataset"]

    @property
    def status(self) -> str:
        return self.result.get("status", "unknown")

    @property
    def num_classes(self) -> int:
        return int(self.config.get("data", {}).get("num_classes", 0))

    @property
    def complete(self) -> bool:
        return self.status == "complete"


def find_run_dirs(runs_dir: Path) -> list[Path]:
    """Every run directory (one holding ``config.json``) under ``runs_dir``, sorted by path."""
    runs_dir = Path(runs_dir).expanduser()
    if not runs_dir.is_dir():
        raise ArchbenchError(f"runs directory {runs_dir} does not exist")
    found = sorted(p.parent for p in runs_dir.rglob(runs.CONFIG))
    if not found:
        raise ArchbenchError(f"no run directories under {runs_dir} (none holds {runs.CONFIG})")
    return found


def _read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as stream:
        return [
            {key: float(value) if value not in ("", None) else None for key, value in row.items()}
            for row in csv.DictReader(stream)
        ]


def collect_runs(paths: Iterable[Path]) -> list[RunRecord]:
    """Read each run directory; a broken one is an error naming it, not a silent omission."""
    records = []
    for path in paths:
        info = runs.read_run(path)
        profile_path = info.path / runs.PROFILE
        try:
            profile = files.read_json(profile_path) if profile_path.is_file() else None
        except ValueError as error:
            raise ArchbenchError(f"{profile_path} is not valid JSON ({error})") from None
        records.append(
            RunRecord(
                path=info.path,
                config=info.config,
                result=info.result,
                profile=profile,
                metrics=_read_metrics(info.path / runs.METRICS),
            )
        )
    if not records:
        raise ArchbenchError("no runs given")
    return records


def _get(mapping: dict | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def run_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """One numeric row per complete run: accuracy, size, MACs, latency and roofline per backend."""
    rows = []
    for record in records:
        if not record.complete:
            continue
        profile, result = record.profile, record.result
        row: dict[str, Any] = {
            "dataset": record.dataset,
            "arch": record.arch,
            "num_classes": record.num_classes,
            "top1": result.get("test_top1"),
            "top5": result.get("test_top5"),
            "params": _get(profile, "params", "trainable"),
            "size_mb": _mb(_get(profile, "size_bytes", "state_dict")),
            "onnx_size_mb": _mb(_get(profile, "size_bytes", "onnx")),
            "macs": _get(profile, "macs"),
            "best_epoch": result.get("best_epoch"),
            "epochs_run": result.get("epochs_run"),
            "selected_on": result.get("selected_on"),
            "run_dir": str(record.path),
        }
        for backend in BACKENDS:
            stats = _get(profile, "latency", backend, "batch1")
            if _get(profile, "latency", backend, "status") != "ok" or not stats:
                continue
            row[f"{backend}_mean_ms"] = stats["mean_ms"]
            row[f"{backend}_std_ms"] = stats["std_ms"]
            row[f"{backend}_p50_ms"] = stats["p50_ms"]
            roof = _get(profile, "roofline", backend) or {}
            row[f"{backend}_gflops"] = roof.get("achieved_gflops")
            row[f"{backend}_peak_fraction"] = roof.get("fraction_of_peak")
            row[f"{backend}_lower_bound_ms"] = roof.get("lower_bound_ms")
        rows.append(row)
    return pd.DataFrame(rows)


def _mb(size: int | None) -> float | None:
    return None if size is None else size / 1e6


def backends_in(table: pd.DataFrame) -> list[str]:
    return [b for b in BACKENDS if f"{b}_mean_ms" in table.columns]


def relative_table(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per dataset, each network against ``baseline``: params %, size %, accuracy points, % faster.

    A dataset without a complete baseline run is left out of this table (the main table still
    shows it); the caller reports which.
    """
    rows = []
    for dataset, group in table.groupby("dataset", sort=False):
        base = group[group["arch"] == baseline]
        if base.empty:
            continue
        base = base.iloc[0]
        for _, row in group.iterrows():
            out = {
                "dataset": dataset,
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
    if _missing(value) or _missing(reference) or reference == 0:
        return None
    return 100.0 * value / reference


def _diff_points(value, reference) -> float | None:
    if _missing(value) or _missing(reference):
        return None
    return 100.0 * (value - reference)


def faster_pct(ms, reference_ms) -> float | None:
    """Time saved against a reference, in percent (negative: slower)."""
    if _missing(ms) or _missing(reference_ms) or reference_ms == 0:
        return None
    return 100.0 * (1.0 - ms / reference_ms)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def gpu_speedup_table(table: pd.DataFrame) -> pd.DataFrame:
    """The study's table 9: how much faster each network runs on the GPU than on the CPU."""
    pairs = [("cuda-eager", "cpu-eager"), ("cuda-onnxruntime", "cpu-onnxruntime")]
    rows = []
    for _, row in table.iterrows():
        out = {"dataset": row["dataset"], "arch": row["arch"]}
        for gpu, cpu in pairs:
            value = faster_pct(row.get(f"{gpu}_mean_ms"), row.get(f"{cpu}_mean_ms"))
            if value is not None:
                out[f"{gpu}_vs_{cpu}_faster_pct"] = value
        if len(out) > 2:
            rows.append(out)
    return pd.DataFrame(rows)


def efficiency_table(table: pd.DataFrame) -> pd.DataFrame:
    """Achieved GFLOP/s, % of the measured peak and the roofline bound, per network and backend."""
    rows = []
    for _, row in table.iterrows():
        for backend in backends_in(table):
            if _missing(row.get(f"{backend}_gflops")):
                continue
            fraction = row.get(f"{backend}_peak_fraction")
            rows.append(
                {
                    "dataset": row["dataset"],
                    "arch": row["arch"],
                    "backend": backend,
                    "p50_ms": row[f"{backend}_p50_ms"],
                    "lower_bound_ms": row.get(f"{backend}_lower_bound_ms"),
                    "gflops": row[f"{backend}_gflops"],
                    "peak_pct": None if _missing(fraction) else 100.0 * fraction,
                }
            )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ the study


def load_study(name: str) -> pd.DataFrame:
    """A published study's own figures, shipped as package data."""
    if name not in STUDIES:
        raise ArchbenchError(f"unknown study {name!r}; known: {', '.join(STUDIES)}")
    text = resources.files("archbench").joinpath("reference", STUDIES[name]).read_text()
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
    depend on the data); accuracy and size only where the run's dataset is the study's.
    """
    published = load_study(study)
    rows = []
    for _, row in table.iterrows():
        same_data = study_dataset(row["dataset"], row["num_classes"])
        by_classes = "cifar100" if row["num_classes"] == 100 else "cifar10"
        ref = published[(published["arch"] == row["arch"]) & (published["dataset"] == by_classes)]
        if ref.empty or row["num_classes"] not in (10, 100):
            continue
        ref = ref.iloc[0]
        out = {
            "dataset": row["dataset"],
            "arch": row["arch"],
            "params": row["params"],
            "study_params": int(ref["params"]),
            "params_equal": row["params"] == ref["params"],
            "top1_pct": None if _missing(row["top1"]) else 100.0 * row["top1"],
            "study_top1_pct": float(ref["top1"]) if same_data else None,
            "top1_diff_pts": (
                100.0 * row["top1"] - float(ref["top1"])
                if same_data and not _missing(row["top1"])
                else None
            ),
            "size_mb": row["size_mb"],
            "study_size_mb": float(ref["size_mb"]),
            "size_diff_mb": None if _missing(row["size_mb"]) else row["size_mb"] - ref["size_mb"],
        }
        rows.append(out)
    return pd.DataFrame(rows)


def study_latency_ratios(table: pd.DataFrame, study: str, baseline: str) -> pd.DataFrame:
    """Latency as ratios to ``baseline`` (hardware differs, ratios travel): study's and ours."""
    published = load_study(study)
    rows = []
    for dataset, group in table.groupby("dataset", sort=False):
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
                if _missing(ours) or _missing(base_ms):
                    continue
                study_ratio = (
                    study_rows.loc[row["arch"], f"{device}_ms_mean"]
                    / study_rows.loc[baseline, f"{device}_ms_mean"]
                )
                rows.append(
                    {
                        "dataset": dataset,
                        "comparison": f"{row['arch']} / {baseline} {device.upper()} time",
                        "study": float(study_ratio),
                        "here": float(ours / base_ms),
                        "backend here": backend,
                    }
                )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ figures


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
    return "-".join([stem, *(runs.slug(part) for part in parts)]) + ".png"


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
        acc_key = "val_acc" if record.metrics[0].get("val_acc") is not None else "test_acc"
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


# ------------------------------------------------------------------------------ markdown


def _conditions(records: Sequence[RunRecord]) -> list[str]:
    """The header lines: what the figures were measured on, from the profiles themselves."""

    def values(*keys: str) -> str:
        found = sorted(
            {str(_get(r.profile, "system", *keys)) for r in records if r.profile is not None}
        )
        return ", ".join(v for v in found if v != "None") or "n/a"

    selected = sorted({str(r.result.get("selected_on")) for r in records if r.complete})
    return [
        f"- generated: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by archbench "
        f"{__version__} (runs measured with archbench {values('archbench_version')}, commit "
        f"{values('git_commit')})",
        f"- CPU: {values('cpu_model')}, {values('torch_threads')} threads "
        f"({values('logical_cores')} logical cores)",
        f"- GPU: {values('gpu', 'name')}",
        f"- torch {values('versions', 'torch')}, onnxruntime {values('versions', 'onnxruntime')}",
        f"- model selection on: {', '.join(selected) or 'n/a'} (best checkpoint by this figure)",
    ]


def _fmt(value, digits: int = 2) -> str:
    if _missing(value):
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "equal" if value else "different"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _heading(column: str) -> str:
    """``cpu-eager_faster_pct`` -> ``cpu-eager % faster``: data names made readable."""
    for suffix, words in (
        ("_faster_pct", " % faster"),
        ("_diff_pts", " diff (points)"),
        ("_pct", " %"),
        ("_mb", " MB"),
        ("_ms", " ms"),
    ):
        column = column.replace(suffix, words)
    return column.replace("_vs_", " vs ").replace("_", " ")


def _markdown(frame: pd.DataFrame, digits: int = 2) -> str:
    shown = frame.copy()
    for column in shown.columns:
        shown[column] = [_fmt(v, digits) for v in shown[column]]
    shown.columns = [_heading(str(c)) for c in shown.columns]
    return shown.to_markdown(index=False, disable_numparse=True)


def study_shaped_table(group: pd.DataFrame) -> pd.DataFrame:
    """The study's table shape for one dataset: accuracy, params, size, MACs, latency ± std."""
    show_top5 = int(group["num_classes"].iloc[0]) > 10
    frame = pd.DataFrame({"architecture": group["arch"]})
    frame["top-1 %"] = 100 * group["top1"]
    if show_top5:
        frame["top-5 %"] = 100 * group["top5"]
    frame["params"] = group["params"].astype("Int64")
    frame["size MB"] = group["size_mb"]
    frame["MMACs"] = group["macs"] / 1e6
    for backend in backends_in(group):
        mean, std = group[f"{backend}_mean_ms"], group[f"{backend}_std_ms"]
        frame[f"{backend} ms"] = [
            "-" if _missing(m) else f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, std, strict=True)
        ]
    frame["best epoch"] = group["best_epoch"].astype("Int64")
    frame["epochs"] = group["epochs_run"].astype("Int64")
    return frame.reset_index(drop=True)


def render_markdown(
    records: Sequence[RunRecord],
    table: pd.DataFrame,
    *,
    title: str,
    baseline: str,
    study: str | None,
    figures: Sequence[Path] = (),
    notes: Sequence[str] = (),
) -> str:
    """The page: ``table`` is :func:`run_table` of ``records`` (which also name incomplete runs)."""
    lines = [f"# {title}", "", *_conditions(records), *[f"- {note}" for note in notes], ""]
    incomplete = [r for r in records if not r.complete]
    if table.empty:
        lines += ["No complete runs.", ""]
    for dataset, group in table.groupby("dataset", sort=False) if not table.empty else []:
        lines += [f"## {dataset}", "", _markdown(study_shaped_table(group)), ""]
        lines += ["Latency: batch 1, mean ± std over the profiled test samples.", ""]
        curves = [f for f in figures if f"-{runs.slug(dataset)}-accuracy-vs-" in f.name]
        lines += [f"![{f.stem}]({f.name})" for f in curves]
        lines += [""] if curves else []
    if not table.empty:
        relative = relative_table(table, baseline)
        missing = sorted(set(table["dataset"]) - set(relative.get("dataset", [])))
        lines += [f"## Relative to {baseline}", ""]
        lines += [
            "params % and size % of the baseline's; top-1 difference in points; "
            "latency % faster = time saved against the baseline (negative: slower).",
            "",
        ]
        if not relative.empty:
            lines += [_markdown(relative, 1), ""]
        if missing:
            lines += [f"No complete {baseline} run for: {', '.join(missing)}.", ""]
        speedup = gpu_speedup_table(table)
        if not speedup.empty:
            lines += ["## GPU against CPU", "", _markdown(speedup, 1), ""]
        efficiency = efficiency_table(table)
        if not efficiency.empty:
            lines += [
                "## Efficiency (roofline)",
                "",
                "Achieved GFLOP/s = 2 x MACs / p50 latency; % of the machine's measured peak; "
                "lower bound = the fastest time the measured compute and memory peaks allow.",
                "",
                _markdown(efficiency, 2),
                "",
            ]
    if study and not table.empty:
        comparison = study_comparison(table, study)
        lines += [f"## Compared with the study ({study})", ""]
        if comparison.empty:
            lines += ["No run matches a network of the study.", ""]
        else:
            lines += [
                "Parameter counts against the study's row with the same class count; "
                "accuracy only where the dataset is the study's.",
                "",
                _markdown(comparison, 2),
                "",
            ]
        ratios = study_latency_ratios(table, study, baseline)
        if not ratios.empty:
            lines += ["Latency as ratios (hardware differs; ratios travel):", ""]
            lines += [_markdown(ratios, 2), ""]
    curves = [f for f in figures if "-curves-" in f.name]
    if curves:
        lines += ["## Training curves", "", *[f"![{f.stem}]({f.name})" for f in curves], ""]
    if incomplete:
        frame = pd.DataFrame(
            {
                "run": [r.path.name for r in incomplete],
                "arch": [r.arch for r in incomplete],
                "dataset": [r.dataset for r in incomplete],
                "status": [r.status for r in incomplete],
                "epochs run": [r.result.get("epochs_run") for r in incomplete],
                "reason": [r.result.get("error") or "" for r in incomplete],
            }
        )
        lines += ["## Runs not included (not complete)", "", _markdown(frame), ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    records: Sequence[RunRecord],
    out: Path,
    *,
    baseline: str = "squeezenet",
    study: str | None = None,
    title: str = "archbench report",
    notes: Sequence[str] = (),
) -> tuple[Path, list[Path]]:
    """Write the markdown page and its PNG figures beside it; return their paths."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = run_table(records)
    figures = write_figures(records, table, out.parent, out.stem)
    text = render_markdown(
        records, table, title=title, baseline=baseline, study=study, figures=figures, notes=notes
    )
    files.write_text(out, text)
    return out, figures


def table_data(records: Sequence[RunRecord], fmt: str) -> str:
    """The flat run table as CSV or JSON (records), for pandas users."""
    table = run_table(records)
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
