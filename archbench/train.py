"""Training with the study's recipe, into a run directory that survives interruption.

The loop reads top to bottom (airbench's lesson): data lives in memory as uint8 tensors and is
augmented in batches, each epoch is a pure function of (seed, epoch) so a resumed run repeats an
uninterrupted one exactly, and every file in the run directory is written atomically.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from architectures import create_arch

from . import exclusive, files, runs
from .data import AUGMENTATIONS, BatchLoader, DataConfig, ImageData, Split, load_data
from .errors import ArchbenchError
from .schedule import (
    PLATEAU_PRESETS,
    Action,
    EarlyStopConfig,
    EarlyStopping,
    PlateauSchedule,
)
from .sysinfo import describe_system

OPTIMIZERS = ("adam", "sgd", "adamw")
SCHEDULES = (*PLATEAU_PRESETS, "early-stop")
SELECT_ON = ("val", "test")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")
EXIT_INTERRUPTED = 130

# The study trains for up to 200 epochs; digits is the offline demo and converges in a few.
DEFAULT_MAX_EPOCHS = 200
DATASET_MAX_EPOCHS = {"digits": 15}

METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "lr",
    "lr_drops",
    "epoch_seconds",
    "images_per_second",
)


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
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    channels_last: bool = True  # ~1.4x faster training steps on CPU (benchmarks/)
    precision: str = "fp32"  # bf16 = autocast mixed precision for the training step
    compile: bool = False

    def resolved(self, data: ImageData) -> TrainConfig:
        """Fill the dataset-dependent defaults so the saved config says what really ran."""
        return replace(
            self,
            max_epochs=self.max_epochs or DATASET_MAX_EPOCHS.get(data.name, DEFAULT_MAX_EPOCHS),
            augment=self.augment or data.default_augment,
            threads=self.threads or torch.get_num_threads(),
            device=resolve_device(self.device),
        )

    def validate(self) -> None:
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
            (0 <= self.val_fraction < 1, "--val-fraction must be in [0, 1)"),
            (self.early_stop_patience > 0, "--early-stop-patience must be positive"),
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
        ]
        if self.augment is not None:
            choices.append(("--augment", self.augment, AUGMENTATIONS))
        for flag, value, allowed in choices:
            if value not in allowed:
                raise ArchbenchError(f"{flag} {value!r} is not one of {', '.join(allowed)}")
        if self.val_fraction == 0 and (self.select_on == "val" or self.schedule == "early-stop"):
            raise ArchbenchError(
                "--val-fraction 0 leaves no validation split: use --select-on test "
                "and a plateau schedule, or keep a validation split"
            )
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ArchbenchError("--device cuda was asked for but no CUDA device is available")
        try:
            self.make_schedule()
        except ValueError as error:
            raise ArchbenchError(str(error)) from None

    def make_schedule(self) -> PlateauSchedule | EarlyStopping:
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
        return cls(**{k: v for k, v in values.items() if k in known})


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@dataclass
class RunOutcome:
    """How a run ended, for the CLI's exit code and message."""

    run_dir: Path
    status: str
    result: dict = field(default_factory=dict)


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks between batches; a second one is abrupt."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[_StopRequest]:
        previous = {}

        def handler(signum, frame):
            if self.signal_name is not None:
                raise KeyboardInterrupt
            self.signal_name = signal.Signals(signum).name

        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                previous[signum] = signal.signal(signum, handler)
        try:
            yield self
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    def __bool__(self) -> bool:
        return self.signal_name is not None


class RunLog:
    """Lines for the person (console, unless quiet) and for the record (``train.log``)."""

    def __init__(self, path: Path, console: Console, quiet: bool) -> None:
        self.path, self.console, self.quiet = path, console, quiet

    def __call__(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(f"{stamp} {message}\n")
        if not self.quiet:
            self.console.print(message, markup=False, highlight=False, soft_wrap=True)


class Trainer:
    """One run: model, optimizer, schedule and data, stepping epoch by epoch into ``run_dir``."""

    def __init__(
        self, config: TrainConfig, data: ImageData, run_dir: Path, log: RunLog, console: Console
    ) -> None:
        self.config, self.data, self.run_dir, self.log = config, data, run_dir, log
        self.console, self.quiet = console, log.quiet
        self.device = torch.device(config.device)
        torch.manual_seed(config.seed)
        self.model = create_arch(config.arch, num_classes=data.num_classes).to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # torch.compile wraps the module; checkpoints keep the plain module's state_dict.
        self.step_model = torch.compile(self.model) if config.compile else self.model
        self.optimizer = _make_optimizer(config, self.model.parameters())
        self.schedule = config.make_schedule()
        self.epoch = 0
        self.history: list[dict] = []
        self.best = {"epoch": None, "score": None}

        loader_options = dict(
            mean=data.mean,
            std=data.std,
            device=self.device,
            channels_last=config.channels_last,
        )
        self.train_loader = BatchLoader(
            data.train,
            batch_size=config.batch_size,
            shuffle=True,
            augment=config.augment,
            seed=config.seed,
            **loader_options,
        )
        eval_batch = max(config.batch_size, 512)
        self.eval_loaders = {
            name: BatchLoader(split, batch_size=eval_batch, shuffle=False, **loader_options)
            for name, split in (("val", data.val), ("test", data.test))
            if split is not None
        }

    # --- checkpoints -------------------------------------------------------------------------

    def _identity(self) -> dict:
        return {
            "format": runs.CHECKPOINT_FORMAT,
            "arch": self.config.arch,
            "num_classes": self.data.num_classes,
            "dataset": self.config.dataset,
        }

    def save_last(self) -> None:
        state = {
            **self._identity(),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "history": self.history,
            "best": self.best,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }
        files.torch_save(state, self.run_dir / runs.LAST)

    def save_best(self) -> None:
        files.torch_save(
            {
                **self._identity(),
                "epoch": self.epoch,
                "model": self.model.state_dict(),
                "classes": list(self.data.classes),
                "mean": list(self.data.mean),
                "std": list(self.data.std),
                "selected_on": self.selection_metric,
            },
            self.run_dir / runs.BEST,
        )

    def load_last(self) -> None:
        """Restore everything saved by :meth:`save_last`; a bad file changes nothing."""
        state = runs.load_checkpoint(self.run_dir / runs.LAST, expect=self._identity())
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
        except (KeyError, RuntimeError, ValueError) as error:
            raise ArchbenchError(
                f"{self.run_dir / runs.LAST} does not match this run's model or optimizer: "
                f"{str(error).splitlines()[0]}"
            ) from None
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.best = dict(state["best"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    # --- epochs --------------------------------------------------------------------------------

    @property
    def selection_metric(self) -> str:
        """Which figure picks ``best.pt``: val/test accuracy, or val loss under early stopping."""
        if self.config.schedule == "early-stop":
            return "val_loss"
        return f"{self.config.select_on}_acc"

    def train_one_epoch(self, stop: _StopRequest) -> dict | None:
        """One pass over the training split; ``None`` if a stop was requested mid-epoch."""
        self.model.train()
        self.train_loader.set_epoch(self.epoch)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        progress = self._progress()
        task = progress.add_task(f"epoch {self.epoch + 1}", total=len(self.train_loader))
        start = time.perf_counter()
        with progress:
            for images, labels in self.train_loader:
                if stop:
                    return None
                with self._autocast():
                    logits = self.step_model(images)
                    loss = F.cross_entropy(logits, labels)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                batch = labels.numel()
                loss_sum += loss.detach() * batch
                correct += (logits.detach().argmax(1) == labels).sum()
                seen += batch
                elapsed = time.perf_counter() - start
                progress.update(
                    task,
                    advance=1,
                    description=f"epoch {self.epoch + 1} loss {loss_sum.item() / seen:.4f} "
                    f"{seen / max(elapsed, 1e-9):.0f} img/s",
                )
        seconds = time.perf_counter() - start
        return {
            "train_loss": loss_sum.item() / seen,
            "train_acc": correct.item() / seen,
            "epoch_seconds": seconds,
            "images_per_second": seen / seconds,
        }

    def _autocast(self):
        """bf16 mixed precision for the training step only; evaluation stays in fp32."""
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"
        )

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=self.quiet or not self.console.is_terminal,
        )

    @torch.inference_mode()
    def evaluate(self, split: str, loader: BatchLoader | None = None) -> dict:
        """Loss, top-1 and top-5 accuracy of the current weights on a split."""
        loader = loader or self.eval_loaders[split]
        self.model.eval()
        loss_sum, top1, top5, seen = 0.0, 0, 0, 0
        k = min(5, self.data.num_classes)
        for images, labels in loader:
            logits = self.step_model(images)
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            ranked = logits.topk(k, dim=1).indices
            hits = ranked == labels[:, None]
            top1 += hits[:, 0].sum().item()
            top5 += hits.any(dim=1).sum().item()
            seen += labels.numel()
        return {
            "loss": loss_sum / seen,
            "top1": top1 / seen,
            "top5": top5 / seen if self.data.num_classes >= 5 else None,
            "n": seen,
        }

    def _is_better(self, row: dict) -> bool:
        score = row[self.selection_metric]
        if self.best["score"] is None:
            return True
        if self.selection_metric.endswith("loss"):
            return score < self.best["score"]
        return score > self.best["score"]

    def fit(self, stop: _StopRequest, on_epoch_end: Callable[[dict], None] | None = None) -> str:
        """Train until the schedule stops it, ``max_epochs``, or a signal; return the status."""
        while self.epoch < self.config.max_epochs:
            lr = self.optimizer.param_groups[0]["lr"]
            with exclusive.computing():  # a profile on this node waits for the epoch to end
                stats = self.train_one_epoch(stop)
                if stats is None:
                    return "interrupted"
                self.epoch += 1
                row = {"epoch": self.epoch, **stats, "lr": lr}
                for split in self._splits_to_watch():
                    figures = self.evaluate(split)
                    row[f"{split}_loss"], row[f"{split}_acc"] = figures["loss"], figures["top1"]
            signal_value = row["train_loss"] if self.config.schedule != "early-stop" else None
            action = self.schedule.step(
                signal_value if signal_value is not None else row["val_loss"]
            )
            if action is Action.DROP_LR:
                for group in self.optimizer.param_groups:
                    group["lr"] = group["lr"] / self.schedule.config.factor
            row["lr_drops"] = self.schedule.drops
            self.history.append(row)
            if self._is_better(row):
                self.best = {"epoch": self.epoch, "score": row[self.selection_metric]}
                self.save_best()
            self.save_last()
            self._write_metrics()
            self.log(_epoch_line(row, self.config.max_epochs, action))
            if on_epoch_end is not None:
                on_epoch_end(row)
            if action is Action.STOP:
                return "complete"
            if stop:
                return "interrupted"
        return "complete"

    def _splits_to_watch(self) -> list[str]:
        splits = [name for name in ("val",) if name in self.eval_loaders]
        if self.config.select_on == "test":
            splits.append("test")
        return splits

    def _write_metrics(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in self.history:
            writer.writerow({key: _csv_value(row.get(key)) for key in METRIC_COLUMNS})
        files.write_text(self.run_dir / runs.METRICS, buffer.getvalue())

    def final_result(self, status: str) -> dict:
        """Test figures of the selected checkpoint (``best.pt``) and how training went."""
        result = {
            "status": status,
            "arch": self.config.arch,
            "dataset": self.config.dataset,
            "epochs_run": self.epoch,
            "max_epochs": self.config.max_epochs,
            "lr_drops": self.schedule.drops,
            "best_epoch": self.best["epoch"],
            "selected_on": self.selection_metric,
            "selection_score": self.best["score"],
        }
        if status == "complete" and self.best["epoch"] is not None:
            best = runs.load_checkpoint(self.run_dir / runs.BEST, expect=self._identity())
            self.model.load_state_dict(best["model"])
            test = self.evaluate("test")
            result.update(test_top1=test["top1"], test_top5=test["top5"], test_loss=test["loss"])
        return result


def _make_optimizer(config: TrainConfig, parameters) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    optimizer = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer(parameters, lr=config.lr, weight_decay=config.weight_decay)


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _epoch_line(row: dict, max_epochs: int, action: Action) -> str:
    parts = [
        f"epoch {row['epoch']:>3}/{max_epochs}",
        f"train_loss {row['train_loss']:.4f}",
        f"train_acc {row['train_acc']:.4f}",
    ]
    for split in ("val", "test"):
        if f"{split}_acc" in row:
            parts.append(f"{split}_loss {row[f'{split}_loss']:.4f}")
            parts.append(f"{split}_acc {row[f'{split}_acc']:.4f}")
    parts += [f"lr {row['lr']:.2e}", f"{row['images_per_second']:.0f} img/s"]
    if action is Action.DROP_LR:
        parts.append("-> lr drop")
    elif action is Action.STOP:
        parts.append("-> final plateau, stopping")
    return "  ".join(parts)


def _load_data(config: TrainConfig) -> ImageData:
    return load_data(
        DataConfig(
            dataset=config.dataset,
            data_dir=Path(config.data_dir).expanduser() if config.data_dir else None,
            val_fraction=config.val_fraction,
            split_seed=config.seed,
        )
    )


def _describe_data(data: ImageData) -> dict:
    def size(split: Split | None) -> int:
        return 0 if split is None else int(split.labels.numel())

    return {
        "name": data.name,
        "classes": list(data.classes),
        "num_classes": data.num_classes,
        "train": size(data.train),
        "val": size(data.val),
        "test": size(data.test),
        "mean": list(data.mean),
        "std": list(data.std),
    }


def train_run(
    config: TrainConfig,
    *,
    console: Console | None = None,
    quiet: bool = False,
    resume: Path | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> RunOutcome:
    """Train a new run (or resume one) and leave a complete run directory behind.

    Order matters for "nothing half-written": the configuration, dataset and architecture are all
    checked before the run directory is created.
    """
    console = console or Console()
    if resume is not None:
        run_dir, config = _resume_target(resume)
    else:
        config.validate()
        runs.ensure_writable(Path(config.runs_dir))
    torch.set_num_threads(config.threads or torch.get_num_threads())
    data = _load_data(config)
    config = config.resolved(data)
    sizes = _describe_data(data)
    if resume is None:
        create_arch(config.arch, num_classes=data.num_classes)  # unknown arch fails here
        run_dir = runs.new_run_dir(Path(config.runs_dir), config.arch, config.dataset)
        files.write_json(
            run_dir / runs.CONFIG,
            {"train": asdict(config), "data": sizes, "system": describe_system()},
        )
    log = RunLog(run_dir / runs.LOG, console, quiet)
    trainer = Trainer(config, data, run_dir, log, console)
    if resume is not None:
        trainer.load_last()
        log(f"resuming {run_dir} after epoch {trainer.epoch}")
    else:
        trainer.save_last()  # so a run interrupted in its first epoch can still be resumed
        log(
            f"training {config.arch} on {data.name} ({sizes['train']} train, {sizes['val']} val, "
            f"{sizes['test']} test images) on {config.device} -> {run_dir}"
        )
    files.write_json(run_dir / runs.RESULT, trainer.final_result("running"))

    stop = _StopRequest()
    try:
        with stop.installed():
            status = trainer.fit(stop, on_epoch_end)
    except KeyboardInterrupt:
        status = "interrupted"
    except Exception as error:
        result = trainer.final_result("failed") | {"error": f"{type(error).__name__}: {error}"}
        files.write_json(run_dir / runs.RESULT, result)
        log(f"failed: {result['error']}")
        raise
    result = trainer.final_result(status)
    if status == "interrupted":
        result["interrupted_by"] = stop.signal_name or "SIGINT"
        files.write_json(run_dir / runs.RESULT, result)
        log(
            f"interrupted after epoch {trainer.epoch}; resume with: "
            f"archbench run --resume {run_dir}"
        )
        return RunOutcome(run_dir, status, result)
    files.write_json(run_dir / runs.RESULT, result)
    top5 = "" if result.get("test_top5") is None else f", top-5 {result['test_top5']:.4f}"
    log(
        f"complete after {trainer.epoch} epochs ({trainer.schedule.drops} LR drops); "
        f"best epoch {result['best_epoch']} by {result['selected_on']}; "
        f"test top-1 {result['test_top1']:.4f}{top5}"
    )
    return RunOutcome(run_dir, status, result)


def _resume_target(path: Path) -> tuple[Path, TrainConfig]:
    info = runs.read_run(path)
    if info.status == "complete":
        raise ArchbenchError(f"{info.path} is already complete; nothing to resume")
    if not (info.path / runs.LAST).is_file():
        raise ArchbenchError(f"{info.path} has no {runs.LAST} to resume from")
    config = TrainConfig.from_dict(info.config["train"])
    config.validate()
    return info.path, config
