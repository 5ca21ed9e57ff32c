"""Results that live in a repository: completed runs copied in, matched to a plan's entries.

A run trains outside the repository (its checkpoints are large and change every epoch); once
complete and profiled, :func:`copy_in` copies what a report and a re-profile need into
``<results>/<run>/``: ``config.json``, ``metrics.csv`` (the per-epoch history), ``result.json``,
``profile.json``, ``curves.png`` and, for seed 0 of the networks listed in
``WEIGHTS_KEPT_FOR``, ``best.pt`` holding the model state only. A plan entry and a committed
run are the same run when arch, seed, protocol (schedule and budget) and dataset agree
(:class:`RunIdentity`), so a rerun of the plan skips what is already committed.

A plateau run that cannot finish in one day can be parked (:func:`park`): its run directory
with ``last.pt`` (at most ``PARK_LIMIT_BYTES``) copied under ``<in-progress>/<entry key>/``,
to be restored into the next day's work directory (:func:`restore`) and resumed.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import files
from ..errors import ArchbenchError
from ..report import collect_runs, write_figures
from ..train import TrainConfig, rundir
from ..train.config import DATASET_MAX_EPOCHS, DEFAULT_MAX_EPOCHS
from ..train.protocol import protocol_of, recorded_protocol
from .plan import SuiteEntry

CURVES = "curves.png"
COMMITTED_FILES = (rundir.CONFIG, rundir.METRICS, rundir.RESULT, rundir.PROFILE, CURVES)
WEIGHTS_KEPT_FOR = ("squeezenet_dsc", "squeezenet", "mobilenet")  # seed 0 only
PARKED_FILES = (rundir.CONFIG, rundir.METRICS, rundir.RESULT, rundir.LOG, rundir.LAST, rundir.BEST)
PARK_LIMIT_BYTES = 5_000_000
# What a committed best.pt keeps: the weights and what is needed to use them, never training
# state (optimizer, schedule, RNG, history), which only last.pt holds.
TRAINING_STATE = ("optimizer", "schedule", "rng", "history", "best", "stopped")


@dataclass(frozen=True)
class RunIdentity:
    """What makes two runs the same run of a plan: network, seed, protocol and dataset."""

    arch: str
    seed: int
    protocol: str  # the protocol's label: schedule and budget
    dataset: str  # the dataset's kind: CIFAR pickles and CIFAR JPEG folders are one
    tag: str = field(default="", compare=False)  # Protocol.tag: for names, not identity

    def describe(self) -> str:
        return f"{self.arch} seed {self.seed} on {self.dataset}, {self.protocol}"


def dataset_kind(dataset: str) -> str:
    """``cifar10`` for ``cifar10`` and ``imagefolder:.../cifar10-jpg`` alike: the same images
    (the archive is made from the JPEGs); any other dataset is its own kind."""
    name = dataset.lower()
    if name.startswith("imagefolder:"):
        folder = Path(name.split(":", 1)[1].rstrip("/")).name
        for kind in ("cifar100", "cifar10"):
            if folder.startswith(kind):
                return kind
    return name if name in ("cifar10", "cifar100") else rundir.slug(dataset)


def entry_identity(entry: SuiteEntry) -> RunIdentity:
    """A planned run's identity, with the dataset's default epoch cap where the plan sets none."""
    config = entry.train_config(Path("."))
    epochs = config.max_epochs or DATASET_MAX_EPOCHS.get(config.dataset, DEFAULT_MAX_EPOCHS)
    train = {"schedule": config.schedule, "max_epochs": epochs} | _schedule_settings(config)
    protocol = protocol_of(train)
    return RunIdentity(
        config.arch, config.seed, protocol.label, dataset_kind(config.dataset), protocol.tag
    )


def _schedule_settings(config: TrainConfig) -> dict:
    names = ("plateau_threshold", "plateau_patience", "plateau_factor", "plateau_max_drops")
    return {name: getattr(config, name) for name in names} | {
        "early_stop_patience": config.early_stop_patience
    }


def run_identity(config: dict) -> RunIdentity:
    """A run directory's identity, from its ``config.json``."""
    train = config["train"]
    label = recorded_protocol(config)["label"]
    return RunIdentity(
        train["arch"], int(train.get("seed", 0)), label, dataset_kind(train["dataset"])
    )


def committed_runs(results_dir: Path) -> dict[RunIdentity, Path]:
    """Every committed run under ``results_dir`` by identity (none yet: an empty dict)."""
    found: dict[RunIdentity, Path] = {}
    for config_path in sorted(Path(results_dir).glob(f"*/{rundir.CONFIG}")):
        info = rundir.read_run(config_path.parent)
        identity = run_identity(info.config)
        if identity in found:
            raise ArchbenchError(
                f"{found[identity]} and {info.path} are the same run "
                f"({identity.describe()}): keep one"
            )
        found[identity] = info.path
    return found


def copy_in(
    run_dir: Path, results_dir: Path, weights_for: Sequence[str] = WEIGHTS_KEPT_FOR
) -> Path:
    """Copy a complete, profiled run's results into ``results_dir/<run>`` and return it;
    ``best.pt`` (model state only) for seed 0 of the networks in ``weights_for``.

    Written into a temporary folder first and renamed, so an interrupted copy leaves no
    half-run that a later plan would take for committed. The copy's ``group`` is the plan's
    identity apart from the seed, so seeds trained on different days (other data paths)
    still aggregate; the run's own group stays as ``trained_group``.
    """
    info = rundir.read_run(run_dir)
    if info.status != "complete" or not (info.path / rundir.PROFILE).is_file():
        raise ArchbenchError(f"{info.path} is not complete and profiled; nothing to copy in")
    identity = run_identity(info.config)
    results_dir = Path(results_dir)
    target = results_dir / info.path.name
    if target.exists():
        raise ArchbenchError(f"{target} exists already; remove it to copy {info.path} in again")
    staging = results_dir / f".{info.path.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in (rundir.METRICS, rundir.RESULT, rundir.PROFILE):
        shutil.copyfile(info.path / name, staging / name)
    config = dict(info.config)
    config["trained_group"] = config.get("group")
    config["group"] = "-".join(
        rundir.slug(p) for p in (identity.arch, identity.dataset, identity.protocol)
    )
    files.write_json(staging / rundir.CONFIG, config)
    _write_curves(info.path, staging)
    if identity.seed == 0 and identity.arch in weights_for:
        strip_checkpoint(info.path / rundir.BEST, staging / rundir.BEST)
    staging.rename(target)
    return target


def _write_curves(run_dir: Path, out_dir: Path) -> None:
    """The run's training curves as ``curves.png`` (the report's own per-run figure)."""
    written = write_figures(collect_runs([run_dir]), pd.DataFrame(), out_dir, "run")
    if written:
        written[0].rename(out_dir / CURVES)


def strip_checkpoint(source: Path, target: Path) -> None:
    """``best.pt`` without any training state: the weights and what is needed to use them."""
    state = rundir.load_checkpoint(source)
    files.torch_save({k: v for k, v in state.items() if k not in TRAINING_STATE}, target)


def park(run_dir: Path, parked_dir: Path) -> Path:
    """Copy an unfinished run (with ``last.pt``) to ``parked_dir/<run>`` to resume elsewhere.

    Refused above ``PARK_LIMIT_BYTES`` for ``last.pt``: a repository is no checkpoint store.
    """
    info = rundir.read_run(run_dir)
    last = info.path / rundir.LAST
    if info.status == "complete" or not last.is_file():
        raise ArchbenchError(f"{info.path} is not an unfinished run with {rundir.LAST}")
    size = last.stat().st_size
    if size > PARK_LIMIT_BYTES:
        raise ArchbenchError(
            f"{last} is {size / 1e6:.1f} MB, over the {PARK_LIMIT_BYTES / 1e6:g} MB a parked "
            "checkpoint may have; resume it where it is"
        )
    target = Path(parked_dir) / info.path.name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in PARKED_FILES:
        if (info.path / name).is_file():
            shutil.copyfile(info.path / name, target / name)
    return target


def restore(parked_dir: Path, work_dir: Path) -> Path | None:
    """Copy a parked run into ``work_dir`` (where the plan's suite finds and resumes it);
    None when nothing is parked or ``work_dir`` already holds that run."""
    parked = sorted(p.parent for p in Path(parked_dir).glob(f"*/{rundir.LAST}"))
    if not parked:
        return None
    source = parked[-1]
    target = Path(work_dir) / source.name
    if target.exists():
        return None
    shutil.copytree(source, target)
    return target
