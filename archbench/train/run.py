"""``archbench run``'s stage: a new or resumed run, from configuration to ``result.json``.

Order matters for "nothing half-written": the configuration, dataset and architecture are all
checked before the run directory is created, and every file in it is written atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.console import Console

from architectures import create_arch

from .. import files
from ..data import DataConfig, ImageData, Split, default_data_dir, load_data
from ..errors import ArchbenchError
from ..measure.sysinfo import describe_system
from . import rundir
from .config import TrainConfig
from .records import RunLog
from .signals import StopRequest
from .trainer import Trainer
from .transfer.setup import Transfer, prepare_transfer

EXIT_INTERRUPTED = 130


@dataclass
class RunOutcome:
    """How a run ended, for the CLI's exit code and message."""

    run_dir: Path
    status: str
    result: dict = field(default_factory=dict)


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
        rundir.ensure_writable(Path(config.runs_dir))
    torch.set_num_threads(config.threads or torch.get_num_threads())
    data = _load_data(config)
    config = config.resolved(data)
    sizes = _describe_data(data)
    # Weights are read, checked and (for a head) features cached before the run directory
    # exists, so a bad --weights leaves nothing behind.
    transfer_lines: list[str] = []
    transfer = _prepare_transfer(config, data, transfer_lines.append)
    if resume is None:
        create_arch(config.arch, num_classes=data.num_classes)  # unknown arch fails here
        run_dir = rundir.new_run_dir(Path(config.runs_dir), config.arch, config.dataset)
        described = {"train": asdict(config), "data": sizes, "system": describe_system()}
        if transfer is not None:
            described["transfer"] = transfer.record
        files.write_json(run_dir / rundir.CONFIG, described)
    log = RunLog(run_dir / rundir.LOG, console, quiet)
    for line in transfer_lines:
        log(line)
    trainer = Trainer(config, data, run_dir, log, console, transfer)
    if resume is not None:
        trainer.load_last()
        log(f"resuming {run_dir} after epoch {trainer.epoch}")
    else:
        trainer.save_last()  # so a run interrupted in its first epoch can still be resumed
        log(
            f"training {config.arch} on {data.name} ({sizes['train']} train, {sizes['val']} val, "
            f"{sizes['test']} test images) on {config.device} -> {run_dir}"
        )
    files.write_json(run_dir / rundir.RESULT, trainer.final_result("running"))

    stop = StopRequest()
    try:
        with stop.installed():
            status = trainer.fit(stop, on_epoch_end)
    except KeyboardInterrupt:
        status = "interrupted"
    except Exception as error:
        result = trainer.final_result("failed") | {"error": f"{type(error).__name__}: {error}"}
        files.write_json(run_dir / rundir.RESULT, result)
        log(f"failed: {result['error']}")
        raise
    result = trainer.final_result(status)
    if status == "interrupted":
        result["interrupted_by"] = stop.signal_name or "SIGINT"
        files.write_json(run_dir / rundir.RESULT, result)
        log(
            f"interrupted after epoch {trainer.epoch}; resume with: "
            f"archbench run --resume {run_dir}"
        )
        return RunOutcome(run_dir, status, result)
    files.write_json(run_dir / rundir.RESULT, result)
    top5 = "" if result.get("test_top5") is None else f", top-5 {result['test_top5']:.4f}"
    log(
        f"complete after {trainer.epoch} epochs ({trainer.schedule.drops} LR drops); "
        f"best epoch {result['best_epoch']} by {result['selected_on']}; "
        f"test top-1 {result['test_top1']:.4f}{top5}"
    )
    return RunOutcome(run_dir, status, result)


def _resume_target(path: Path) -> tuple[Path, TrainConfig]:
    info = rundir.read_run(path)
    if info.status == "complete":
        raise ArchbenchError(f"{info.path} is already complete; nothing to resume")
    if not (info.path / rundir.LAST).is_file():
        raise ArchbenchError(f"{info.path} has no {rundir.LAST} to resume from")
    config = TrainConfig.from_dict(info.config["train"])
    config.validate()
    return info.path, config


def _prepare_transfer(
    config: TrainConfig, data: ImageData, log: Callable[[str], None]
) -> Transfer | None:
    """The pretrained network (and cached features) of a ``--weights`` run; None without."""
    if config.weights is None:
        return None
    torch.manual_seed(config.seed)  # the new classifier's initialization, as for any run
    return prepare_transfer(
        config.arch,
        data,
        config.transfer,
        augment=config.augment,
        seed=config.seed,
        batch_size=config.batch_size,
        device=torch.device(config.device),
        data_dir=Path(config.data_dir).expanduser() if config.data_dir else default_data_dir(),
        memory_format=torch.channels_last if config.channels_last else torch.contiguous_format,
        log=log,
    )
