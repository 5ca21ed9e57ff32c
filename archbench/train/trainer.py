"""The training loop: one run's model, optimizer, schedule and data, epoch by epoch.

The loop reads top to bottom (airbench's lesson): data lives in memory as uint8 tensors and is
augmented in batches, and each epoch is a pure function of (seed, epoch), so a resumed run
repeats an uninterrupted one exactly. Checkpoints hold everything a resume needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch.profiler import record_function

from .. import files
from ..data import BatchLoader, ImageData
from ..errors import ArchbenchError
from ..measure import exclusive
from . import rundir
from .config import TrainConfig, make_optimizer
from .layout import contiguous_depthwise, fp32_depthwise
from .records import RunLog, epoch_line, write_metrics
from .schedule import Action, LinearDecay
from .signals import StopRequest
from .task import build_model, make_task
from .transfer.setup import Transfer

PROGRESS_REFRESH_S = 0.5  # how often the live line reads the loss back from the device
# Labels of a training step's phases, for torch.profiler (archbench/train/breakdown.py): each
# operator is attributed to the phase it ran under. Outside a profile each label costs a few
# microseconds of host time (about 10 us on a busy 2-core CI machine), against steps of
# hundreds of milliseconds on a CPU.
PHASES = ("data", "forward", "backward", "optimizer", "metrics")


class Trainer:
    """One run: model, optimizer, schedule and data, stepping epoch by epoch into ``run_dir``."""

    def __init__(
        self,
        config: TrainConfig,
        data: ImageData,
        run_dir: Path,
        log: RunLog,
        console: Console,
        transfer: Transfer | None = None,
        class_weights: list[float] | None = None,
    ) -> None:
        self.config, self.data, self.run_dir, self.log = config, data, run_dir, log
        self.console, self.quiet = console, log.quiet
        self.device = torch.device(config.device)
        self.train_loader, self.eval_loaders = _loaders(config, data, self.device)
        # Class weights weigh the training loss only: validation loss and accuracy stay
        # comparable. A pretrained run learns through the same task (loss, figures).
        self.task = make_task(
            config.task,
            data.train.labels,
            data.num_classes,
            pos_weight=config.pos_weight,
            threshold=config.threshold,
            class_weights=class_weights,
            device=self.device,
        )
        if transfer is None:  # pretrained runs come built (see train/transfer/setup.py)
            torch.manual_seed(config.seed)
            model = build_model(config.arch, data.num_classes, config.task, data.shape[0])
            self.model = model.to(self.device)
            if config.channels_last:
                self.model = self.model.to(memory_format=torch.channels_last)
            if config.depthwise_contiguous:
                contiguous_depthwise(self.model)
            if config.depthwise_fp32:
                fp32_depthwise(self.model)
            step_model, trainable = self.model, list(self.model.parameters())
        else:
            self.model, step_model, trainable = (
                transfer.model,
                transfer.step_model,
                transfer.trainable,
            )
            if transfer.train_loader is not None:  # a head trained from cached features
                self.train_loader, self.eval_loaders = transfer.train_loader, transfer.eval_loaders
        # torch.compile wraps the module; checkpoints keep the plain module's state_dict.
        self.step_model = torch.compile(step_model) if config.compile else step_model
        self.optimizer = make_optimizer(config, trainable)
        self.schedule = config.make_schedule(len(self.train_loader))
        self.epoch = 0
        self.history: list[dict] = []
        self.best = {"epoch": None, "score": None}
        self.stopped = False  # the schedule's stop, saved with the epoch that made it

    # --- checkpoints -------------------------------------------------------------------------

    def _identity(self) -> dict:
        return {
            "format": rundir.CHECKPOINT_FORMAT,
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
            "stopped": self.stopped,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }
        files.torch_save(state, self.run_dir / rundir.LAST)

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
                "transfer": self.config.transfer.checkpoint_record(),
                "task": self.config.task,
                "threshold": self.config.threshold,
            },
            self.run_dir / rundir.BEST,
        )

    def load_last(self) -> None:
        """Restore everything saved by :meth:`save_last`; a bad file changes nothing."""
        state = rundir.load_checkpoint(self.run_dir / rundir.LAST, expect=self._identity())
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
        except (KeyError, RuntimeError, ValueError) as error:
            raise ArchbenchError(
                f"{self.run_dir / rundir.LAST} does not match this run's model or optimizer: "
                f"{str(error).splitlines()[0]}"
            ) from None
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.best = dict(state["best"])
        self.stopped = bool(state.get("stopped", False))
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    # --- epochs --------------------------------------------------------------------------------

    @property
    def selection_metric(self) -> str:
        """Which figure picks ``best.pt``: val/test accuracy (mAP for multi-label), or val loss
        under early stopping."""
        if self.config.schedule == "early-stop":
            return "val_loss"
        return f"{self.config.select_on}_{self.task.selection_figure}"

    def train_one_epoch(self, stop: StopRequest) -> dict | None:
        """One pass over the training split; ``None`` if a stop was requested mid-epoch.

        Loss and accuracy accumulate on the device: nothing reads them back per step (a device
        sync per batch on a GPU), only the live progress line does, at most every
        ``PROGRESS_REFRESH_S``, and only when it is shown.
        """
        self.model.train()
        self.train_loader.set_epoch(self.epoch)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = judged = 0
        progress = self._progress()
        task = progress.add_task(f"epoch {self.epoch + 1}", total=len(self.train_loader))
        start = refreshed = time.perf_counter()
        with progress:
            first_step = self.epoch * len(self.train_loader)
            for step, (images, labels) in enumerate(labelled(self.train_loader, "data"), start=1):
                if stop:
                    return None
                self._set_step_lr(first_step + step - 1)
                logits, loss = self.train_step(images, labels)
                batch = labels.shape[0]
                with record_function("metrics"):
                    loss_sum += loss.detach() * batch
                    count, decisions = self.task.train_count(logits.detach(), labels)
                    correct += count
                judged += decisions
                seen += batch
                now = time.perf_counter()
                if not progress.disable and now - refreshed >= PROGRESS_REFRESH_S:
                    refreshed = now
                    progress.update(
                        task,
                        completed=step,
                        description=f"epoch {self.epoch + 1} loss {loss_sum.item() / seen:.4f} "
                        f"{seen / max(now - start, 1e-9):.0f} img/s",
                    )
        seconds = time.perf_counter() - start
        return {
            "train_loss": loss_sum.item() / seen,
            f"train_{self.task.train_figure}": correct.item() / judged,
            "epoch_seconds": seconds,
            "images_per_second": seen / seconds,
        }

    def train_step(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on a batch; returns the logits and the loss. Each phase runs
        under its :data:`PHASES` label so a profile can say where a step's time goes."""
        with record_function("forward"), self._autocast():
            logits = self.step_model(images)
            loss = self.task.loss(logits, labels)
        with record_function("optimizer"):
            self.optimizer.zero_grad(set_to_none=True)
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer"):
            self.optimizer.step()
        return logits, loss

    def _set_step_lr(self, step: int) -> None:
        """A per-step schedule (linear decay) sets the rate of optimizer step ``step``."""
        if isinstance(self.schedule, LinearDecay):
            lr = self.schedule.lr_at(step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def _epoch_lr(self) -> float:
        """The learning rate the next epoch starts with (its first step's, for a linear decay)."""
        if isinstance(self.schedule, LinearDecay):
            return self.schedule.lr_at(self.epoch * len(self.train_loader))
        return self.optimizer.param_groups[0]["lr"]

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

    def evaluate(self, split: str, loader: BatchLoader | None = None) -> dict:
        """The task's figures of the current weights on a split (loss, accuracy or mAP...)."""
        self.model.eval()
        return self.task.evaluate(self.step_model, loader or self.eval_loaders[split])

    def _is_better(self, row: dict) -> bool:
        score = row[self.selection_metric]
        if self.best["score"] is None:
            return True
        if self.selection_metric.endswith("loss"):
            return score < self.best["score"]
        return score > self.best["score"]

    def fit(self, stop: StopRequest, on_epoch_end: Callable[[dict], None] | None = None) -> str:
        """Train until the schedule stops it, ``max_epochs``, or a signal; return the status.

        The schedule's stop goes into ``last.pt`` with the epoch that decided it, so a run
        killed anywhere after that checkpoint resumes straight to ``complete``.
        """
        while self.epoch < self.config.max_epochs and not self.stopped:
            lr = self._epoch_lr()
            with exclusive.computing():  # a profile on this node waits for the epoch to end
                stats = self.train_one_epoch(stop)
                if stats is None:
                    return "interrupted"
                self.epoch += 1
                row = {"epoch": self.epoch, **stats, "lr": lr}
                for split in self._splits_to_watch():
                    figures = self.evaluate(split)
                    for name in ("loss", *self.task.columns):
                        row[f"{split}_{name}"] = figures[name]
            signal_value = row["train_loss"] if self.config.schedule != "early-stop" else None
            action = self.schedule.step(
                signal_value if signal_value is not None else row["val_loss"]
            )
            if action is Action.DROP_LR:
                for group in self.optimizer.param_groups:
                    group["lr"] = group["lr"] / self.schedule.config.factor
            row["lr_drops"] = self.schedule.drops
            self.stopped = action is Action.STOP
            self.history.append(row)
            if self._is_better(row):
                self.best = {"epoch": self.epoch, "score": row[self.selection_metric]}
                self.save_best()
            self.save_last()
            write_metrics(self.run_dir / rundir.METRICS, self.history, self.task.name)
            self.log(epoch_line(row, self.config.max_epochs, action))
            if on_epoch_end is not None:
                on_epoch_end(row)
            if self.stopped:
                return "complete"
            if stop:
                return "interrupted"
        return "complete"

    def _splits_to_watch(self) -> list[str]:
        splits = [name for name in ("val",) if name in self.eval_loaders]
        if self.config.select_on == "test":
            splits.append("test")
        return splits

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
            best = rundir.load_checkpoint(self.run_dir / rundir.BEST, expect=self._identity())
            self.model.load_state_dict(best["model"])
            test = self.evaluate("test")
            if self.task.name == "multilabel":
                result["pos_weight"] = self.config.pos_weight
                result.update({f"test_{k}": v for k, v in test.items() if k != "n"})
            else:
                result.update(test_top1=test["top1"], test_top5=test["top5"])
                result["test_loss"] = test["loss"]
        return result


def labelled(batches: Iterable, label: str) -> Iterator:
    """``batches``, each one produced under the profiler label ``label``."""
    iterator = iter(batches)
    while True:
        with record_function(label):
            batch = next(iterator, None)
        if batch is None:
            return
        yield batch


def _loaders(
    config: TrainConfig, data: ImageData, device: torch.device
) -> tuple[BatchLoader, dict[str, BatchLoader]]:
    """The shuffled, augmented training batches and plain batches of each evaluation split."""
    options = dict(mean=data.mean, std=data.std, device=device, channels_last=config.channels_last)
    train = BatchLoader(
        data.train,
        batch_size=config.batch_size,
        shuffle=True,
        augment=config.augment,
        seed=config.seed,
        **options,
    )
    eval_batch = max(config.batch_size, 512)
    evaluation = {
        name: BatchLoader(split, batch_size=eval_batch, shuffle=False, **options)
        for name, split in (("val", data.val), ("test", data.test))
        if split is not None
    }
    return train, evaluation
