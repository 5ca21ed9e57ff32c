"""The report page: the study-shaped tables, relative and roofline tables, the study
comparison and the figures, in one markdown file with the PNGs beside it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__, files
from ..measure.complexity import MACS_CONVENTION
from ..measure.sysinfo import git_state
from ..train import rundir
from .aggregate import aggregate_seeds
from .collect import RunRecord, nested_get
from .figures import write_figures
from .multilabel import multilabel_section, multilabel_table, write_multilabel_figures
from .run_figures import run_figures_section
from .study import STUDY_PROTOCOL, study_comparison, study_latency_ratios
from .study_targets import COST_NOTE, cost_table, curve_reading, target_lines
from .tables import (
    backends_in,
    cold_start_table,
    efficiency_table,
    gpu_speedup_table,
    is_missing,
    relative_table,
    run_table,
    with_protocol,
)
from .transfer import transfer_sections

REPORT_FORMATS = ("md", "csv", "json")
SEED_GROUPS_NOTE = (
    "Rows with n > 1 aggregate runs that differ only in seed: top-1/top-5 mean ± sample std, "
    "best epoch and epochs as ranges, latency pooled (mean of the per-run means ± the std of "
    "all samples together)."
)
MACS_COLUMN = "MMACs (1 MAC = 2 FLOPs)"


def _conditions(records: Sequence[RunRecord]) -> list[str]:
    """The header lines: what the figures were measured on, from the profiles themselves."""

    def values(*keys: str) -> str:
        found = sorted(
            {str(nested_get(r.profile, "system", *keys)) for r in records if r.profile is not None}
        )
        return ", ".join(v for v in found if v != "None") or "n/a"

    selected = sorted({str(r.result.get("selected_on")) for r in records if r.complete})
    return [
        f"- generated: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by archbench "
        f"{__version__} (runs measured with archbench {values('archbench_version')}, commit "
        f"{values('git_commit')})",
        f"- report generated from: {_provenance()}",
        f"- CPU: {values('cpu_model')}, {values('torch_threads')} threads "
        f"({values('logical_cores')} logical cores)",
        f"- GPU: {values('gpu', 'name')}",
        f"- torch {values('versions', 'torch')}, onnxruntime {values('versions', 'onnxruntime')}",
        f"- model selection on: {', '.join(selected) or 'n/a'} (best checkpoint by this figure)",
    ]


def _provenance() -> str:
    """The checkout this report was generated from: its commit and any modified files, so a
    committed report can be traced to code (and a dirty one says what differed)."""
    state = git_state()
    return "no git checkout (an installed archbench)" if state is None else state.describe()


def _fmt(value, digits: int = 2) -> str:
    if is_missing(value):
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


def macs_footnotes(group: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Architecture labels marked ``[n]`` where the MAC count misses operators, and the notes."""
    labels, notes = [], []
    misses = group["macs_miss"] if "macs_miss" in group else [""] * len(group)
    for arch, miss in zip(group["arch"], misses, strict=True):
        if isinstance(miss, str) and miss:
            notes.append(f"[{len(notes) + 1}] {arch}: MMACs leave out {miss} (no fvcore counter)")
            arch = f"{arch} [{len(notes)}]"
        labels.append(arch)
    return labels, notes


def study_shaped_table(group: pd.DataFrame, *, mark_budget: bool = False) -> pd.DataFrame:
    """The study's table shape for one dataset: accuracy, params, size, MACs, latency ± std.

    Seed groups (``n`` > 1, from :func:`aggregate_seeds`) show accuracy as mean ± std, epoch
    ranges and an ``n`` column; ``mark_budget`` shows budgeted runs' epochs as such.
    """
    show_top5 = int(group["num_classes"].iloc[0]) > 10
    seeded = "n" in group.columns and bool((group["n"] > 1).any())
    frame = pd.DataFrame({"architecture": macs_footnotes(group)[0]}, index=group.index)
    frame["top-1 %"] = _accuracy(group, "top1") if seeded else 100 * group["top1"]
    if show_top5:
        frame["top-5 %"] = _accuracy(group, "top5") if seeded else 100 * group["top5"]
    frame["params"] = group["params"].astype("Int64")
    frame["size MB"] = group["size_mb"]
    frame[MACS_COLUMN] = group["macs"] / 1e6
    if group["int8_top1"].notna().any():  # the int8 model, measured in the same profile
        frame["int8 top-1 %"] = 100 * group["int8_top1"]
        frame["int8 diff (points)"] = group["int8_diff_pts"]
        frame["int8 size MB"] = group["int8_size_mb"]
    for backend in backends_in(group):
        mean, std = group[f"{backend}_mean_ms"], group[f"{backend}_std_ms"]
        frame[f"{backend} ms"] = [
            "-" if is_missing(m) else f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, std, strict=True)
        ]
    for column, name in (("best_epoch", "best epoch"), ("epochs_run", "epochs")):
        frame[name] = group[column].astype(str) if seeded else group[column].astype("Int64")
    if mark_budget and "budget_epochs" in group.columns:
        frame["epochs"] = [
            shown if is_missing(budget) else f"budgeted ({int(budget)} epochs)"
            for shown, budget in zip(frame["epochs"], group["budget_epochs"], strict=True)
        ]
    if "protocol" in group.columns:
        frame["protocol"] = group["protocol"]
    if seeded:
        frame["n"] = group["n"].astype(int)
    return frame.reset_index(drop=True)


def _accuracy(group: pd.DataFrame, metric: str) -> list[str]:
    """``mean ± std`` in percent for seed groups, the plain figure for single runs."""
    std = group.get(f"{metric}_std", pd.Series([None] * len(group), index=group.index))
    return [
        "-" if is_missing(m) else f"{100 * m:.2f}" + ("" if is_missing(s) else f" ± {100 * s:.2f}")
        for m, s in zip(group[metric], std, strict=True)
    ]


def render_markdown(
    records: Sequence[RunRecord],
    table: pd.DataFrame,
    *,
    title: str,
    baseline: str,
    study: str | None,
    figures: Sequence[Path] = (),
    notes: Sequence[str] = (),
    multilabel: pd.DataFrame | None = None,
    run_sections: Sequence[str] = (),
) -> str:
    """The page: ``table`` is :func:`run_table` of ``records`` (which also name incomplete runs)."""
    lines = [f"# {title}", "", *_conditions(records), *[f"- {note}" for note in notes], ""]
    incomplete = [r for r in records if not r.complete]
    multilabel = multilabel if multilabel is not None else pd.DataFrame()
    if table.empty and multilabel.empty:
        lines += ["No complete rundir.", ""]
    lines += multilabel_section(multilabel, figures, _markdown)
    for dataset, group in table.groupby("dataset", sort=False) if not table.empty else []:
        shaped = study_shaped_table(group, mark_budget=bool(study))
        lines += [f"## {dataset}", "", _markdown(shaped), ""]
        lines += [
            f"Latency: batch 1, mean ± std over the profiled test samples. MACs: fvcore, "
            f"{MACS_CONVENTION}.",
            "",
        ]
        if "n" in shaped.columns:
            lines += [SEED_GROUPS_NOTE, ""]
        footnotes = macs_footnotes(group)[1]
        lines += [*[f"{note}  " for note in footnotes], ""] if footnotes else []
        curves = [f for f in figures if f"-{rundir.slug(dataset)}-accuracy-vs-" in f.name]
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
                f"Achieved GFLOP/s = 2 x MACs / p50 latency ({MACS_CONVENTION}); "
                "% of the machine's measured peak; "
                "lower bound = the fastest time the measured compute and memory peaks allow for "
                "the whole network; layer-wise bound = the floor: the sum over layers of each "
                "layer's own bound (its FLOPs at peak, or its weights and input and output "
                "activations at the bandwidth of the fastest memory level they fit, whichever "
                "is longer), and p50 vs layer-wise is measured over it; floor_dram = the same "
                "with every byte from DRAM (cold caches). Each backend is judged against its "
                "own numeric format's peak and bytes (peak_format). expected = a model, not a "
                "bound: each layer's floor or the backend's measured cost of one operator call, "
                "whichever is longer, summed.",
                "",
                _markdown(efficiency, 2),
                "",
            ]
        cold = cold_start_table(table)
        if not cold.empty:
            lines += [
                "## Cold start and inference memory",
                "",
                "Each backend in a fresh interpreter: loading the model from disk, creating the "
                "session (or building the network), the first inference, against the steady "
                "p50; memory = peak resident memory minus the peak right after the imports.",
                "",
                _markdown(cold, 2),
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
                "accuracy only where the dataset is the study's. top1 t95 interval: our mean "
                "± t(0.975, n - 1) x std / sqrt(n); study in t95 says whether the study's "
                "top-1 lies in it (none for a single run).",
                "",
                *_protocol_lines(comparison),
                _markdown(comparison, 2),
                "",
            ]
        ratios = study_latency_ratios(table, study, baseline)
        if not ratios.empty:
            lines += ["Latency as ratios (hardware differs; ratios travel):", ""]
            lines += [_markdown(ratios, 2), ""]
        lines += _targets_section(table, study, records)
    lines += transfer_sections(records, _markdown)
    lines += list(run_sections)
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


def _protocol_lines(comparison: pd.DataFrame) -> list[str]:
    """Say so when rows trained under another protocol than the study's (not a reproduction)."""
    other = [p for p in dict.fromkeys(comparison["protocol"]) if p != STUDY_PROTOCOL]
    if not other:
        return [f"Every row trained under the study's protocol: {STUDY_PROTOCOL}.", ""]
    return [
        f"Protocols differ from the study's ({STUDY_PROTOCOL}) in the rows trained under: "
        f"{'; '.join(other)}. Their accuracy compares networks at that protocol; it does not "
        "reproduce the study's figure.",
        "",
    ]


def _targets_section(table: pd.DataFrame, study: str, records: Sequence[RunRecord]) -> list[str]:
    """Per dataset and protocol: the issue's targets met or not, with the figures, what the
    curves of a squeezenet_dsc run that missed its accuracy target say, and the training cost."""
    lines = [f"## Targets of the study ({study})", ""]
    for (dataset, protocol), group in with_protocol(table).groupby(
        ["dataset", "protocol"], sort=False
    ):
        explain = functools.partial(_curve_lines, records, dataset, protocol)
        targets = target_lines(group, study, explain_miss=explain)
        lines += [f"### {dataset}, {protocol}", "", *targets, ""]
        lines += [_markdown(cost_table(group), 2), "", COST_NOTE, ""]
    return lines


def _curve_lines(records: Sequence[RunRecord], dataset: str, protocol: str) -> list[str]:
    """What each squeezenet_dsc run's curves say, for a missed accuracy target."""
    lines = []
    for record in records:
        if (record.complete and record.arch == "squeezenet_dsc" and record.dataset == dataset
                and record.protocol["label"] == protocol):  # fmt: skip
            reading = curve_reading(record.metrics)
            precision = record.config["train"].get("precision", "fp32")
            if reading:
                lines.append(f"  - {record.path.name} ({precision}): {reading}")
    return lines


def write_report(
    records: Sequence[RunRecord],
    out: Path,
    *,
    baseline: str = "squeezenet",
    study: str | None = None,
    title: str = "archbench report",
    notes: Sequence[str] = (),
    sections: Sequence[str] = (),
) -> tuple[Path, list[Path]]:
    """Write the markdown page and its PNG figures beside it; return their paths.

    ``sections``: markdown lines appended at the end (a plan's pending runs)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = aggregate_seeds(run_table(records))
    multilabel = multilabel_table(records)
    figures = write_figures(records, table, out.parent, out.stem)
    figures += write_multilabel_figures(multilabel, out.parent, out.stem)
    text = render_markdown(
        records,
        table,
        title=title,
        baseline=baseline,
        study=study,
        figures=figures,
        notes=notes,
        multilabel=multilabel,
        run_sections=[*run_figures_section(records, out.parent, out.stem), *sections],
    )
    files.write_text(out, text)
    return out, figures
