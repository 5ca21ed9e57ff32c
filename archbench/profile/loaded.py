"""A trained run read back: its selected model and its test set, labelled as it was trained.

One loader for ``profile``, ``compare`` and ``explain``, so the three cannot disagree on which
checkpoint, normalization or labels a run means. A run trained on grouped labels (``run
--regroup``) gets its test labels relabelled to its groups here; its fine labels stay available
to check that two runs were tested on the same images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..data import load_data, normalize
from ..data.groups import GroupMap, load_regrouping, regrouping_from_record
from ..errors import ArchbenchError
from ..train import TrainConfig, rundir
from ..train.restore import RunFacts, restore_run


@dataclass(frozen=True)
class LoadedRun(RunFacts):
    """A run's ``best.pt`` model and test split, with the class names its outputs mean."""

    info: rundir.RunInfo
    checkpoint: dict
    model: nn.Module
    images: torch.Tensor  # normalized as in training, float32
    display: torch.Tensor  # the same images as stored (uint8), for a person to look at
    labels: torch.Tensor  # in the model's classes: groups for a directly regrouped run;
    # uint8 multi-hot (N, K) rows for a multi-label run
    fine_labels: torch.Tensor  # the dataset's own classes
    class_names: list[str]  # the model's outputs
    fine_class_names: list[str]
    trained_groups: GroupMap | None  # the regrouping the run trained on, if any
    train_images: torch.Tensor  # the training split as stored (uint8): int8 calibration reads it
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def require_single_label(self, what: str) -> None:
        """Refuse a multi-label run where one class per image is assumed."""
        if self.task == "multilabel":
            raise ArchbenchError(
                f"{what} judges one class per image; {self.path} is a multi-label run "
                "(archbench profile gives its mAP and Hamming error)"
            )

    @property
    def threads(self) -> int | None:
        threads = self.info.config["train"].get("threads")
        return int(threads) if threads else None

    def groups_for(self, spec: str) -> GroupMap:
        """``spec`` matched to this run's dataset classes (not to its groups)."""
        return load_regrouping(spec).resolve(self.fine_class_names)

    def describe(self) -> str:
        grouped = f", trained on {self.trained_groups.name}" if self.trained_groups else ""
        return f"{self.arch} on {self.info.config['train']['dataset']}{grouped}"


def load_run(run_dir: Path) -> LoadedRun:
    """Read a run's ``best.pt`` and test split; refuse a checkpoint that does not fit the run."""
    restored = restore_run(run_dir)
    info, best, inputs = restored.info, restored.checkpoint, restored.inputs
    trained = replace(TrainConfig.from_dict(info.config["train"]), input_shape=inputs.input_shape)
    data = load_data(trained.data_config(download=False))  # fitted as RunInputs.fit fits
    mean = inputs.mean or data.mean
    std = inputs.std or data.std
    fine_labels = data.test.labels if data.multilabel else data.test.labels.long()
    trained_groups = None
    labels, class_names = fine_labels, list(data.classes)
    if info.config.get("regroup"):
        trained_groups = regrouping_from_record(info.config["regroup"]).resolve(data.classes)
        labels, class_names = trained_groups.relabel(fine_labels), list(trained_groups.group_names)
    if len(class_names) != best["num_classes"]:
        raise ArchbenchError(
            f"{info.path / rundir.BEST} has {best['num_classes']} outputs but the run's test set "
            f"has {len(class_names)} classes"
        )
    return LoadedRun(
        info=info,
        checkpoint=best,
        model=restored.model,
        images=normalize(data.test.images, mean, std),
        display=data.test.images,
        labels=labels,
        fine_labels=fine_labels,
        class_names=class_names,
        fine_class_names=list(data.classes),
        trained_groups=trained_groups,
        train_images=data.train.images,
        mean=tuple(mean),
        std=tuple(std),
    )
