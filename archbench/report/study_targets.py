"""The reproduction's targets against the study, each met or not met with its figure, and what
training cost (wall time per epoch, CPU hours) per network.

Targets (issue 19): squeezenet_dsc's mean top-1 within 1.5 points of the study's on the same
dataset; squeezenet_dsc keeping about 33% of squeezenet's parameters and 36% of its size (ours
within 2 points of the study's ratios); the top-1 order of squeezenet_dsc, squeezenet and
mobilenet the same as the study's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pandas as pd

from .study import load_study, study_dataset
from .tables import is_missing

TOP1_TOLERANCE_PTS = 1.5
RATIO_TOLERANCE_PTS = 2.0
ORDERED_ARCHS = ("squeezenet_dsc", "squeezenet", "mobilenet")


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _top1_text(row: pd.Series) -> str:
    std = row.get("top1_std")
    spread = "" if is_missing(std) else f" ± {100 * std:.2f}"
    return f"{100 * row['top1']:.2f}{spread} (n = {int(row.get('n', 1))})"


def target_lines(
    group: pd.DataFrame, study: str, explain_miss: Callable[[], list[str]] | None = None
) -> list[str]:
    """One dataset's targets as markdown bullets (``group``: its aggregated rows);
    ``explain_miss`` gives the lines set under a missed accuracy target."""
    published = load_study(study)
    num_classes = int(group["num_classes"].iloc[0])
    same_data = study_dataset(str(group["dataset"].iloc[0]), num_classes)
    ref_data = same_data or ("cifar100" if num_classes == 100 else "cifar10")
    ref = published[published["dataset"] == ref_data].set_index("arch")
    ours = group.drop_duplicates("arch").set_index("arch")
    lines = []
    if same_data is None:
        lines.append(f"- accuracy targets: not applicable ({group['dataset'].iloc[0]} is not "
                     "one of the study's datasets)")  # fmt: skip
    elif "squeezenet_dsc" not in ours.index or is_missing(ours.loc["squeezenet_dsc", "top1"]):
        lines.append("- squeezenet_dsc top-1 within 1.5 points: not measured (no complete run)")
    else:
        row = ours.loc["squeezenet_dsc"]
        diff = 100 * row["top1"] - float(ref.loc["squeezenet_dsc", "top1"])
        met = abs(diff) <= TOP1_TOLERANCE_PTS
        lines.append(
            f"- squeezenet_dsc mean top-1 within {TOP1_TOLERANCE_PTS} points of the study's "
            f"{ref.loc['squeezenet_dsc', 'top1']:.2f}: {_verdict(met)}"
            f", ours {_top1_text(row)}, {diff:+.2f} points"
        )
        if not met and explain_miss is not None:
            lines += explain_miss()
    for column, label in (("params", "parameters"), ("size_mb", "size")):
        if not {"squeezenet_dsc", "squeezenet"} <= set(ours.index) or any(
            is_missing(ours.loc[a, column]) for a in ("squeezenet_dsc", "squeezenet")
        ):
            lines.append(f"- squeezenet_dsc / squeezenet {label}: not measured")
            continue
        here = 100 * ours.loc["squeezenet_dsc", column] / ours.loc["squeezenet", column]
        there = 100 * ref.loc["squeezenet_dsc", column] / ref.loc["squeezenet", column]
        ok = abs(here - there) <= RATIO_TOLERANCE_PTS
        lines.append(
            f"- squeezenet_dsc keeps {here:.1f}% of squeezenet's {label} (study {there:.1f}%, "
            f"target within {RATIO_TOLERANCE_PTS:g} points): {_verdict(ok)}"
        )
    if same_data is not None:
        present = [a for a in ORDERED_ARCHS if a in ours.index]
        present = [a for a in present if not is_missing(ours.loc[a, "top1"])]
        if len(present) < len(ORDERED_ARCHS):
            lines.append(f"- top-1 order of {', '.join(ORDERED_ARCHS)}: not measured "
                         f"(complete runs only for {', '.join(present) or 'none'})")  # fmt: skip
        else:
            here = sorted(ORDERED_ARCHS, key=lambda a: -ours.loc[a, "top1"])
            there = sorted(ORDERED_ARCHS, key=lambda a: -ref.loc[a, "top1"])
            lines.append(
                f"- top-1 order: ours {' > '.join(here)}, study {' > '.join(there)}: "
                f"{_verdict(here == there)}"
            )
    return lines


# Train - validation accuracy at the selected epoch that counts as a generalization gap.
GAP_PTS = 3.0
STILL_RISING_PTS = 0.3  # validation points the last learning-rate phase must add to count


def curve_reading(metrics: list[dict]) -> str | None:
    """What a run's curves say about its accuracy: the training / validation gap at the selected
    (best validation) epoch, the best validation accuracy of each learning-rate phase, and so
    whether more epochs or better generalization is what it lacks. ``None`` without curves."""
    rows = [r for r in metrics if r.get("val_acc") is not None and r.get("train_acc") is not None]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["val_acc"])
    gap = 100 * (best["train_acc"] - best["val_acc"])
    phases: list[list[float]] = []  # [lr, best validation accuracy within it]
    for row in rows:
        if not phases or row.get("lr") != phases[-1][0]:
            phases.append([row.get("lr"), row["val_acc"]])
        else:
            phases[-1][1] = max(phases[-1][1], row["val_acc"])
    per_phase = ", ".join(f"{100 * acc:.1f}% at lr {lr:g}" for lr, acc in phases)
    gains = [100 * (b[1] - a[1]) for a, b in itertools.pairwise(phases)]
    text = (
        f"at its selected epoch ({int(best['epoch'])} of {int(rows[-1]['epoch'])}) training "
        f"accuracy {100 * best['train_acc']:.1f}% against validation {100 * best['val_acc']:.1f}% "
        f"({gap:.1f} points apart); best validation per learning-rate phase: {per_phase}"
    )
    if gains and gains[-1] >= STILL_RISING_PTS:
        return f"{text}: still improving when it stopped, so a longer last phase may help"
    if gap > GAP_PTS:
        return (
            f"{text}: converged (the last phase added {gains[-1] if gains else 0:.1f} points), "
            "and it fits its training images far better than it generalizes: regularization "
            "or augmentation, not more epochs, is what would move it"
        )
    return f"{text}: converged, training and validation close: it underfits at this schedule"


def cost_table(group: pd.DataFrame) -> pd.DataFrame:
    """Training cost per network: seconds per epoch, wall hours and CPU hours of all its runs."""
    frame = pd.DataFrame({"architecture": group["arch"]})
    if "protocol" in group.columns:
        frame["protocol"] = group["protocol"]
    frame["runs"] = group["n"].astype(int) if "n" in group.columns else 1
    frame["s/epoch"] = group["epoch_seconds"]
    frame["training wall h"] = group["train_seconds"] / 3600
    frame["CPU h"] = group["cpu_hours"]
    frame["threads"] = group["threads"].astype("Int64")
    frame["CPU"] = group["cpu_model"]
    return frame.reset_index(drop=True)


COST_NOTE = (
    "Training cost from each run's metrics.csv: s/epoch = the group's summed epoch_seconds over "
    "its epochs (training steps only, not evaluation or profiling); training wall h = summed "
    "epoch_seconds / 3600; CPU h = epoch_seconds × the run's torch thread count (config.json) / "
    "3600, an upper bound that counts every thread busy for the whole epoch."
)
