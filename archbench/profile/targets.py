"""What gets profiled: a trained run's selected checkpoint, or a freshly initialized network.

Both are timed on real test images of their dataset, normalized as in training, so the timed
work is what a deployed model would see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from rich.markup import escape

from architectures import create_arch

from ..data import DataConfig, load_data, normalize
from ..errors import ArchbenchError
from ..train import rundir
from ..train.transfer.setup import model_for_checkpoint
from .config import ProfileConfig
from .model import profile_model
from .summary import print_summary


def _test_images(data_config: DataConfig, mean, std) -> tuple[torch.Tensor, torch.Tensor, list]:
    """The dataset's test split, normalized as in training: (images, labels, class names)."""
    data = load_data(data_config)
    images = normalize(data.test.images, data.mean if mean is None else mean,
                       data.std if std is None else std)  # fmt: skip
    return images, data.test.labels, list(data.classes)


def _say(console, quiet: bool) -> Callable[[str], None]:
    if quiet:
        return lambda line: None
    return lambda line: console.print(f"[dim]{escape(line)}[/]", highlight=False)


def profile_run(
    run_dir: Path,
    config: ProfileConfig = ProfileConfig(),  # noqa: B008  (frozen, so a shared default is safe)
    *,
    console=None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Profile a run's selected checkpoint (``best.pt``) on its own test split, into the run dir.

    The checkpoint must match the run's architecture and class count: a file copied in from
    another run is refused before anything is measured or written.
    """
    from rich.console import Console

    console = console or Console()
    info = rundir.read_run(run_dir)
    train, described = info.config["train"], info.config.get("data", {})
    expect = {"arch": train["arch"], "num_classes": described.get("num_classes")}
    best_path = info.path / rundir.BEST
    if not best_path.is_file():
        raise ArchbenchError(
            f"{info.path} has no {rundir.BEST} to profile (status {info.status}); "
            "train it to completion or resume it first"
        )
    best = rundir.load_checkpoint(best_path, expect={k: v for k, v in expect.items() if v})
    model = model_for_checkpoint(best)  # a plain network, or a head on a backbone
    try:
        model.load_state_dict(best["model"])
    except RuntimeError as error:
        raise ArchbenchError(
            f"{best_path} does not fit {best['arch']} with {best['num_classes']} classes: "
            f"{str(error).splitlines()[0]}"
        ) from None
    data_config = DataConfig(
        dataset=train["dataset"],
        data_dir=Path(train["data_dir"]).expanduser() if train.get("data_dir") else None,
        val_fraction=train.get("val_fraction", 0.1),
        split_seed=train.get("seed", 0),
        download=False,
    )
    images, labels, classes = _test_images(data_config, best.get("mean"), best.get("std"))
    if config.threads is None and train.get("threads"):
        config = replace(config, threads=int(train["threads"]))
    say = _say(console, quiet)
    say(f"profiling {best['arch']} from {best_path} (epoch {best.get('epoch')})")
    profile = profile_model(
        model,
        arch=best["arch"],
        num_classes=best["num_classes"],
        out_dir=info.path,
        samples=images,
        labels=labels,
        class_names=classes or best.get("classes"),
        config=config,
        progress=say,
    )
    if not quiet:
        print_summary(profile, console)
    return profile


def profile_untrained(
    arch: str,
    *,
    num_classes: int = 10,
    dataset: str = "digits",
    data_dir: Path | None = None,
    out_dir: Path,
    config: ProfileConfig = ProfileConfig(),  # noqa: B008
    console=None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Profile a freshly initialized network: latency, size and MACs do not depend on training.

    Inputs are still real test images of ``dataset`` (the embedded digits by default), so the
    timed work is what a deployed model would see; accuracy is omitted.
    """
    from rich.console import Console

    console = console or Console()
    if num_classes < 1:
        raise ArchbenchError(f"--num-classes must be positive, got {num_classes}")
    torch.manual_seed(0)
    model = create_arch(arch, num_classes=num_classes)
    images, _, _ = _test_images(
        DataConfig(dataset=dataset, data_dir=data_dir, download=False), None, None
    )
    say = _say(console, quiet)
    say(f"profiling untrained {arch} ({num_classes} classes) on {dataset} test images -> {out_dir}")
    profile = profile_model(
        model,
        arch=arch,
        num_classes=num_classes,
        out_dir=out_dir,
        samples=images,
        config=config,
        progress=say,
    )
    if not quiet:
        print_summary(profile, console)
    return profile
