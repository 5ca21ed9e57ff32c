"""A run directory read back: its trained network, and how an image becomes that network's input.

One function, :func:`restore_run`, for every command that starts from a run (``profile``,
``compare``, ``explain``, ``features``, ``retrieval``, ``serve``), so none of them can rebuild the
network with other input channels or another end than training used, nor feed it images fitted
another way. :class:`RunInputs` says how: the dataset's native images, fitted to the run's input
shape by :func:`archbench.data.fit_images` with the dataset's own padding (MNIST's 28 -> 32 is a
zero pad, not a resize), then normalized with the mean and std saved in ``best.pt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data import STUDY_SHAPE, dataset_pad_to, dataset_shape, fit_images, normalize
from ..data.shapes import Shape
from ..errors import ArchbenchError
from . import rundir
from .task import DEFAULT_THRESHOLD
from .transfer.setup import trained_model


@dataclass(frozen=True)
class RunInputs:
    """How an image reaches a run's network: native shape -> input shape -> normalized."""

    dataset: str
    native_shape: Shape  # what the dataset holds (digits 1x32x32, MNIST 1x28x28, ...)
    input_shape: Shape  # what the network takes (the run's --input-size, channels)
    pad_to: int | None  # a square size the dataset reaches by zero-padding, not resizing
    mean: tuple[float, ...] | None  # None: an old checkpoint without them (profile loads them)
    std: tuple[float, ...] | None

    def fit(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, *native_shape)`` -> uint8 ``(N, *input_shape)``, as training fitted them."""
        return fit_images(images, self.input_shape, pad_to=self.pad_to)

    def tensor(self, native: torch.Tensor) -> torch.Tensor:
        """uint8 native images -> the float32 ``(N, *input_shape)`` the network is fed."""
        if self.mean is None or self.std is None:
            raise ArchbenchError("this run's best.pt records no mean/std to normalize with")
        return normalize(self.fit(native), self.mean, self.std)


class RunFacts:
    """What a restored run's record says, for a class with ``info`` (its
    :class:`rundir.RunInfo`) and ``checkpoint`` (its ``best.pt``)."""

    @property
    def path(self) -> Path:
        return self.info.path

    @property
    def arch(self) -> str:
        return self.checkpoint["arch"]

    @property
    def task(self) -> str:
        return self.info.config["train"].get("task", "classification")

    @property
    def threshold(self) -> float:
        """The probability a multi-label run counts as a predicted label."""
        return float(self.info.config["train"].get("threshold", DEFAULT_THRESHOLD))


@dataclass(frozen=True)
class RestoredRun(RunFacts):
    """A run's ``best.pt`` network (eval mode, weights loaded) and the facts that go with it."""

    info: rundir.RunInfo
    checkpoint: dict
    model: nn.Module
    inputs: RunInputs

    @property
    def classes(self) -> list[str] | None:
        """The model's outputs (groups for a regrouped run), as ``best.pt`` or the config has
        them; None for an old run that recorded neither (profile reads them from its data)."""
        names = self.checkpoint.get("classes") or self.info.config.get("data", {}).get("classes")
        return [str(name) for name in names] if names else None

    @property
    def threads(self) -> int | None:
        threads = self.info.config["train"].get("threads")
        return int(threads) if threads else None


def restore_run(run_dir: Path, *, complete: bool = False) -> RestoredRun:
    """Read ``run_dir``'s ``best.pt`` into the network it trained; one-line errors otherwise.

    ``complete``: refuse a run that has not finished (features need its final selection).
    """
    info = rundir.read_run(run_dir)
    train, described = info.config["train"], info.config.get("data", {})
    best_path = info.path / rundir.BEST
    if complete and info.status != "complete":
        raise ArchbenchError(f"{info.path} is {info.status}; features need a complete run")
    if not best_path.is_file():
        raise ArchbenchError(
            f"{info.path} has no {rundir.BEST} (status {info.status}); "
            "train it to completion or resume it first"
        )
    expect = {"arch": train["arch"], "num_classes": described.get("num_classes")}
    best = rundir.load_checkpoint(best_path, expect={k: v for k, v in expect.items() if v})
    # Runs from before input shapes were recorded were all fed the study's shape.
    shape = tuple(int(v) for v in train.get("input_shape") or STUDY_SHAPE)
    task = train.get("task", "classification")
    # A plain network, or a head on a pretrained backbone (run --weights --finetune head); the
    # run's task decides the plain network's end (multi-label drops a final ReLU).
    model = trained_model(best, best_path, in_channels=shape[0], task=task).eval()
    mean = best.get("mean") or described.get("mean")
    std = best.get("std") or described.get("std")
    inputs = RunInputs(
        dataset=train["dataset"],
        native_shape=tuple(described.get("native_shape") or dataset_shape(train["dataset"])),
        input_shape=shape,
        pad_to=dataset_pad_to(train["dataset"]),
        mean=tuple(float(v) for v in mean) if mean else None,
        std=tuple(float(v) for v in std) if std else None,
    )
    return RestoredRun(info=info, checkpoint=best, model=model, inputs=inputs)
