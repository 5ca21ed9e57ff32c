"""The training configuration: every setting that decides a run, checked before any work.

Saved as ``config.json`` in the run directory, with the dataset-dependent defaults filled in,
so the file says what really ran and ``--resume`` can rebuild the run from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from architectures import arch_info

from ..data import AUGMENTATIONS, DataConfig, ImageData, dataset_shape
from ..data.multilabel import CsvLayout
from ..errors import ArchbenchError
from .loss import parse_pos_weight
from .schedule import (
    PLATEAU_PRESETS,
    EarlyStopConfig,
    EarlyStopping,
    LinearDecay,
    PlateauSchedule,
)
from .task import DEFAULT_THRESHOLD, TASKS
from .transfer.setup import TransferConfig

OPTIMIZERS = ("adam", "sgd", "adamw")
SCHEDULES = (*PLATEAU_PRESETS, "early-stop", "linear")
SELECT_ON = ("val", "test")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")
# How torch.optim runs the update: its own default (a per-parameter loop on CPU), one batched
# call per step over all parameters (foreach) or one fused kernel (fused). Same update rule.
OPTIMIZER_IMPLS = ("default", "foreach", "fused")
# Opt-in speed switches (TrainConfig fields) that keep the study's recipe: what
# benchmarks/train_throughput.py --ab measures against the defaults, and what
# tests/test_train_numerics.py holds to the default's training loss.
SPEED_CANDIDATES: dict[str, dict] = {
    "optimizer-foreach": {"optimizer_impl": "foreach"},
    "optimizer-fused": {"optimizer_impl": "fused"},
    "depthwise-contiguous": {"depthwise_contiguous": True},
    "depthwise-fp32": {"depthwise_fp32": True},
}
# The precision a candidate is for, where it is not every precision: it is measured and held to
# the default's training loss at that precision only.
CANDIDATE_PRECISION: dict[str, str] = {"depthwise-fp32": "bf16"}

# The study trains for up to 200 epochs; digits is the offline demo and converges in a few.
DEFAULT_MAX_EPOCHS = 200
DATASET_MAX_EPOCHS = {"digits": 15, "digits-mosaic": 15}
MULTILABEL_SOURCES = "digits-mosaic, mosaic:DATASET or csv:PATH"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; saved as ``config.json`` in the run directory.

    ``None`` means "the dataset's default" (max_epochs, augment) or "the machine's" (threads).
    Defaults are the study's reference code: Adam, lr 0.01, batch 128, plateau schedule.
    """

    arch: str = "squeezenet_dsc"
    dataset: str = "digits"
    data_dir: str | None = None
    runs_dir: str = "runs"
    optimizer: str = "adam"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int | None = None
    schedule: str = "plateau"
    plateau_threshold: float | None = None
    plateau_patience: int | None = None
    plateau_factor: float | None = None
    plateau_max_drops: int | None = None
    early_stop_patience: int = 10
    augment: str | None = None
    val_fraction: float = 0.1
    select_on: str = "val"
    seed: int = 0  # initialization, data order, augmentation: what varies across --seeds
    split_seed: int = 0  # the validation split: kept fixed across --seeds (see from_dict)
    threads: int | None = None
    device: str = "auto"
    channels_last: bool = True  # ~1.4x faster training steps on CPU (benchmarks/)
    precision: str = "fp32"  # bf16 = autocast mixed precision for the training step
    compile: bool = False
    # Candidate speed switches (benchmarks/train_throughput.py --ab measures each against the
    # default); opt-in until measured on both host kinds.
    optimizer_impl: str = "default"  # default | foreach | fused (OPTIMIZER_IMPLS)
    depthwise_contiguous: bool = False  # depthwise convs in NCHW inside a channels_last model
    depthwise_fp32: bool = False  # with --precision bf16: depthwise convs stay fp32
    input_size: int | None = None  # --input-size: square images of this side, for any network
    # (C, H, W) the network is fed: resolved from the network and the dataset (input_shape())
    input_shape: tuple[int, int, int] | None = None
    regroup: str | None = None  # train on grouped labels: a preset name or a .json/.toml file
    class_weight: str | None = None  # cross-entropy class weights: "balanced" or a list
    # Transfer learning (archbench/train/transfer): pretrained weights and what keeps learning.
    weights: str | None = None  # torchvision weights name, state-dict file or run directory
    finetune: str | None = None  # head | last-block | all (default all with --weights)
    pooling: str = "avg"  # how a head's features are pooled: avg | max
    augment_copies: int = 0  # augmented copies of the training features a head trains on
    task: str = "classification"  # or multilabel: multi-hot targets, weighted BCE, mAP
    pos_weight: str | None = None  # multilabel: W, auto or auto-per-label (default 1)
    threshold: float = DEFAULT_THRESHOLD  # multilabel: probability that counts as "present"
    train_limit: int | None = None  # keep this many training images (learning curves)
    csv_image_column: str = CsvLayout.image_column
    csv_labels_column: str = CsvLayout.labels_column
    csv_split_column: str = CsvLayout.split_column
    csv_label_separator: str = CsvLayout.separator

    def resolve_input_shape(self) -> TrainConfig:
        """Fix ``input_shape``: the registered network's own, or the dataset's for a foreign
        one, with ``input_size`` overriding height and width. An unknown network fails here."""
        if self.input_shape is not None:
            return replace(self, input_shape=tuple(int(v) for v in self.input_shape))
        shape = arch_info(self.arch).input_shape(dataset_shape(self.dataset), self.input_size)
        return replace(self, input_shape=shape)

    @property
    def transfer(self) -> TransferConfig:
        return TransferConfig(self.weights, self.finetune, self.pooling, self.augment_copies)

    def data_config(self, *, download: bool = True) -> DataConfig:
        """Where this run's images and targets come from, how they are split, and the
        ``input_shape`` they are fitted to (resolve it first; None keeps the native shape)."""
        return DataConfig(
            dataset=self.dataset,
            data_dir=Path(self.data_dir).expanduser() if self.data_dir else None,
            val_fraction=self.val_fraction,
            split_seed=self.split_seed,
            download=download,
            input_shape=self.input_shape,
            train_limit=self.train_limit,
            csv_layout=CsvLayout(
                image_column=self.csv_image_column,
                labels_column=self.csv_labels_column,
                split_column=self.csv_split_column,
                separator=self.csv_label_separator,
            ),
        )

    def resolved(self, data: ImageData) -> TrainConfig:
        """Fill the dataset-dependent defaults so the saved config says what really ran."""
        if data.multilabel != (self.task == "multilabel"):
            raise ArchbenchError(
                f"--task multilabel needs a multi-label dataset ({MULTILABEL_SOURCES}); "
                f"{data.name} is single-label"
                if self.task == "multilabel"
                else f"{data.name} is a multi-label dataset: add --task multilabel"
            )
        multilabel = self.task == "multilabel"
        # A head on a frozen backbone trains from the feature cache, valid only without random
        # augmentation (seed 003): no augmentation is its default unless copies are asked for.
        head_default = self.transfer.mode == "head" and not self.augment_copies
        return replace(
            self,
            max_epochs=self.max_epochs or DATASET_MAX_EPOCHS.get(data.name, DEFAULT_MAX_EPOCHS),
            augment=self.augment or ("none" if head_default else data.default_augment),
            finetune=self.transfer.mode,
            threads=self.threads or torch.get_num_threads(),
            device=resolve_device(self.device),
            pos_weight=parse_pos_weight(self.pos_weight or "1") if multilabel else None,
        )

    def validate(self, *, device_here: bool = True) -> None:
        """Reject impossible settings up front, before any file is written."""
        checks = [
            (self.lr > 0 and math.isfinite(self.lr), f"--lr must be positive, got {self.lr}"),
            (self.batch_size > 0, f"--batch-size must be positive, got {self.batch_size}"),
            (
                self.max_epochs is None or self.max_epochs > 0,
                f"--max-epochs must be positive, got {self.max_epochs}",
            ),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (self.momentum >= 0, f"--momentum must be >= 0, got {self.momentum}"),
            (self.threads is None or self.threads > 0, "--threads must be positive"),
            (self.split_seed >= 0, f"--split-seed must be >= 0, got {self.split_seed}"),
            (0 <= self.val_fraction < 1, "--val-fraction must be in [0, 1)"),
            (self.early_stop_patience > 0, "--early-stop-patience must be positive"),
            (0 < self.threshold < 1, f"--threshold must be in (0, 1), got {self.threshold}"),
            (
                self.train_limit is None or self.train_limit > 0,
                f"train_limit must be positive, got {self.train_limit}",
            ),
            (
                self.input_size is None or self.input_size > 0,
                f"--input-size must be positive, got {self.input_size}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ArchbenchError(message)
        choices = [
            ("--optimizer", self.optimizer, OPTIMIZERS),
            ("--schedule", self.schedule, SCHEDULES),
            ("--select-on", self.select_on, SELECT_ON),
            ("--device", self.device, DEVICES),
            ("--precision", self.precision, PRECISIONS),
            ("--optimizer-impl", self.optimizer_impl, OPTIMIZER_IMPLS),
            ("--task", self.task, TASKS),
        ]
        if self.augment is not None:
            choices.append(("--augment", self.augment, AUGMENTATIONS))
        for flag, value, allowed in choices:
            if value not in allowed:
                raise ArchbenchError(f"{flag} {value!r} is not one of {', '.join(allowed)}")
        if self.depthwise_contiguous and not self.channels_last:
            raise ArchbenchError(
                "--depthwise-contiguous changes the depthwise layers of a channels_last model; "
                "with --no-channels-last every layer is contiguous already"
            )
        if self.depthwise_fp32 and self.precision != "bf16":
            raise ArchbenchError(
                "--depthwise-fp32 keeps depthwise convolutions out of bf16 autocast; it needs "
                f"--precision bf16 (got {self.precision})"
            )
        if self.val_fraction == 0 and (self.select_on == "val" or self.schedule == "early-stop"):
            raise ArchbenchError(
                "--val-fraction 0 leaves no validation split: use --select-on test "
                "and a plateau schedule, or keep a validation split"
            )
        plateau_flags = {
            "--plateau-threshold": self.plateau_threshold,
            "--plateau-patience": self.plateau_patience,
            "--plateau-factor": self.plateau_factor,
            "--plateau-max-drops": self.plateau_max_drops,
        }
        set_flags = [flag for flag, value in plateau_flags.items() if value is not None]
        if set_flags and self.schedule not in PLATEAU_PRESETS:
            raise ArchbenchError(
                f"{', '.join(set_flags)} tune the plateau schedule; --schedule {self.schedule} "
                "has no plateaus"
            )
        if self.pos_weight is not None:
            if self.task != "multilabel":
                raise ArchbenchError(
                    "--pos-weight weighs positive labels of a multi-label task; add "
                    f"--task multilabel (this run's task is {self.task})"
                )
            parse_pos_weight(self.pos_weight)
        if self.task == "multilabel" and self.transfer.mode is not None:
            raise ArchbenchError(
                "--weights/--finetune (transfer learning) support single-label classification "
                "only: pretrained heads and the feature cache keep one class per image; train "
                "--task multilabel from scratch"
            )
        if self.task == "multilabel":
            for flag, value in (("--regroup", self.regroup), ("--class-weight", self.class_weight)):
                if value is not None:
                    raise ArchbenchError(
                        f"{flag} applies to single-label classes; a multi-label run weighs its "
                        "labels with --pos-weight"
                    )
        # A Ray head checks a plan for its workers: their GPUs are not the head's.
        if device_here and self.device == "cuda" and not torch.cuda.is_available():
            raise ArchbenchError("--device cuda was asked for but no CUDA device is available")
        try:
            self.make_schedule()
        except ValueError as error:
            raise ArchbenchError(str(error)) from None
        self.transfer.validate(self.augment)

    def make_schedule(
        self, steps_per_epoch: int = 1
    ) -> PlateauSchedule | EarlyStopping | LinearDecay:
        """The schedule this config names; a linear decay spans ``max_epochs`` x
        ``steps_per_epoch`` optimizer steps (the budget), so it needs the loader's length."""
        if self.schedule == "linear":
            return LinearDecay(self.lr, (self.max_epochs or 1) * steps_per_epoch)
        if self.schedule == "early-stop":
            return EarlyStopping(EarlyStopConfig(patience=self.early_stop_patience))
        overrides = {
            "threshold": self.plateau_threshold,
            "patience": self.plateau_patience,
            "factor": self.plateau_factor,
            "max_drops": self.plateau_max_drops,
        }
        preset = PLATEAU_PRESETS[self.schedule]
        return PlateauSchedule(
            replace(preset, **{k: v for k, v in overrides.items() if v is not None})
        )

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in values.items() if k in known}
        return cls(**{"split_seed": legacy_split_seed(values)} | kept)


def legacy_split_seed(train: dict) -> int:
    """A saved run's split seed; runs from before ``split_seed`` split by their ``seed``."""
    return int(train.get("split_seed", train.get("seed", 0)))


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def make_optimizer(config: TrainConfig, parameters) -> torch.optim.Optimizer:
    """The optimizer ``config`` names, with its learning rate, momentum and weight decay, run
    by ``config.optimizer_impl`` (torch's default, foreach or fused: the same update rule)."""
    impl = {"foreach": {"foreach": True}, "fused": {"fused": True}}.get(config.optimizer_impl, {})
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            **impl,
        )
    optimizer = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer(parameters, lr=config.lr, weight_decay=config.weight_decay, **impl)
