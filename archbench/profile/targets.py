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

from architectures import arch_info, check_output, create_arch, is_foreign

from ..data import DataConfig, dataset_shape, load_data, normalize
from ..errors import ArchbenchError
from ..locks import DirectoryLock
from ..measure.quantize import calibration_subset
from ..train import rundir
from ..train.protocol import recorded_protocol
from .config import ProfileConfig
from .loaded import load_run
from .model import profile_model
from .summary import print_summary


def _test_images(data_config: DataConfig, mean, std, calibration_samples: int):
    """The test split normalized as in training (images, labels, class names), and the
    ``calibration_samples`` training images int8 calibration reads, normalized the same way."""
    data = load_data(data_config)
    mean = data.mean if mean is None else mean
    std = data.std if std is None else std
    images = normalize(data.test.images, mean, std)
    calibration = normalize(calibration_subset(data.train.images, calibration_samples), mean, std)
    return images, data.test.labels, list(data.classes), calibration


def _say(console, quiet: bool) -> Callable[[str], None]:
    if quiet:
        return lambda line: None
    return lambda line: console.print(f"[dim]{escape(line)}[/]", highlight=False)


def profile_run(
    run_dir: Path,
    config: ProfileConfig = ProfileConfig(),  # noqa: B008  (frozen, so a shared default is safe)
    *,
    regroup: str | None = None,
    console=None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Profile a run's selected checkpoint (``best.pt``) on its own test split, into the run dir.

    The checkpoint must match the run's architecture and class count: a file copied in from
    another run is refused before anything is measured or written. ``regroup`` (a preset or
    file) also judges the fine model on merged classes, under ``regrouped`` in the profile.
    """
    from rich.console import Console

    console = console or Console()
    run = load_run(run_dir)
    group_map = None
    if regroup is not None:
        run.require_single_label("--regroup")
        if run.trained_groups is not None:
            raise ArchbenchError(
                f"{run.path} was trained on the groups of {run.trained_groups.name!r}: its "
                "accuracy already is the grouped one; --regroup is for a fine model"
            )
        group_map = run.groups_for(regroup)
    if config.threads is None and run.threads:
        config = replace(config, threads=run.threads)
    if config.threshold is None and run.task == "multilabel":
        config = replace(config, threshold=run.threshold)
    calibration = normalize(
        calibration_subset(run.train_images, config.calibration_samples), run.mean, run.std
    )
    say = _say(console, quiet)
    best_path = run.path / rundir.BEST
    say(f"profiling {run.arch} from {best_path} (epoch {run.checkpoint.get('epoch')})")
    with DirectoryLock(run.path, "profiling"):  # not while a trainer still writes it
        profile = profile_model(
            run.model,
            arch=run.arch,
            num_classes=run.checkpoint["num_classes"],
            out_dir=run.path,
            samples=run.images,
            labels=run.labels,
            class_names=run.class_names,
            calibration=calibration,
            group_map=group_map,
            config=config,
            progress=say,
            record_with={"protocol": recorded_protocol(run.info.config)},
        )
    if not quiet:
        print_summary(profile, console)
    return profile


DEFAULT_IMAGES = "digits"  # embedded: an untrained profile needs no download


def untrained_network(
    arch: str,
    *,
    num_classes: int,
    dataset: str | None = None,
    input_size: int | None = None,
    note: Callable[[str], None] = lambda line: None,
) -> tuple[torch.nn.Module, tuple[int, int, int]]:
    """The freshly initialized (seed 0) network ``profile --arch`` measures, and its input shape.

    Without ``dataset`` the images are only something to time: a torchvision/timm network keeps
    the input channels its library records (timm's resnet18 stays timm's 11,689,512
    parameters) and the default images are fitted to it. A ``dataset`` whose channels differ
    from those builds it with the dataset's, and ``note`` gets one line saying so. (A user
    network records no channels of its own: it follows the images, as before.)
    """
    if num_classes < 1:
        raise ArchbenchError(f"--num-classes must be positive, got {num_classes}")
    if input_size is not None and input_size < 1:
        raise ArchbenchError(f"--input-size must be positive, got {input_size}")
    info = arch_info(arch)
    shape = info.input_shape(dataset_shape(dataset or DEFAULT_IMAGES), input_size)
    own_channels = info.input_size[0]
    if is_foreign(arch) and shape[0] != own_channels:
        if dataset is None:
            shape = (own_channels, *shape[1:])
        else:
            plural = "" if shape[0] == 1 else "s"
            note(
                f"{arch} built with {shape[0]} input channel{plural} for {dataset} images "
                f"(its own: {own_channels})"
            )
    torch.manual_seed(0)
    model = create_arch(arch, num_classes=num_classes, in_channels=shape[0])
    check_output(model, arch, shape, num_classes)
    return model, shape


def profile_untrained(
    arch: str,
    *,
    num_classes: int = 10,
    dataset: str | None = None,
    data_dir: Path | None = None,
    input_size: int | None = None,
    out_dir: Path | Callable[[], Path],
    config: ProfileConfig = ProfileConfig(),  # noqa: B008
    console=None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Profile a freshly initialized network: latency, size and MACs do not depend on training.

    Inputs are still real test images of ``dataset`` (the embedded digits by default, fitted to
    a torchvision/timm network's own channels: :func:`untrained_network`), at the network's
    input shape (``input_size`` overrides height and width), so the timed work is
    what a deployed model would see; accuracy is omitted. ``out_dir`` may be a function that
    makes the directory: it is called only once the network is built and runs on the images,
    so a bad ``--arch`` leaves nothing behind.
    """
    from rich.console import Console

    console = console or Console()
    notes: list[str] = []
    model, shape = untrained_network(
        arch, num_classes=num_classes, dataset=dataset, input_size=input_size, note=notes.append
    )
    dataset = dataset or DEFAULT_IMAGES
    images, _, _, calibration = _test_images(
        DataConfig(dataset=dataset, data_dir=data_dir, download=False, input_shape=shape),
        None,
        None,
        config.calibration_samples,
    )
    out_dir = out_dir() if callable(out_dir) else out_dir
    say = _say(console, quiet)
    say(f"profiling untrained {arch} ({num_classes} classes) on {dataset} test images -> {out_dir}")
    for line in notes:
        say(line)
    profile = profile_model(
        model,
        arch=arch,
        num_classes=num_classes,
        out_dir=out_dir,
        samples=images,
        calibration=calibration,
        config=config,
        progress=say,
    )
    if not quiet:
        print_summary(profile, console)
    return profile
