"""``archbench run``'s stage: a new or resumed run, from configuration to ``result.json``.

Order matters for "nothing half-written": the configuration, dataset and architecture are all
checked before the run directory is created, and every file in it is written atomically.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.console import Console

from architectures import check_output, create_arch

from .. import files
from ..data import ImageData, Split, default_data_dir, load_data
from ..data.groups import load_regrouping, regroup_data, regrouping_from_record
from ..errors import ArchbenchError
from ..locks import DirectoryLock
from ..measure.models import torch_threads
from ..measure.numerics import bf16_skip_reason
from ..measure.sysinfo import describe_system
from . import rundir
from .class_weight import resolve_class_weights
from .config import TrainConfig
from .protocol import protocol_of
from .records import RunLog
from .signals import StopRequest
from .task import make_task
from .trainer import Trainer
from .transfer.setup import Transfer, prepare_transfer

EXIT_INTERRUPTED = 130
TRAINING = "training"  # what a run directory's lock says its holder is doing


@dataclass
class RunOutcome:
    """How a run ended, for the CLI's exit code and message."""

    run_dir: Path
    status: str
    result: dict = field(default_factory=dict)


@dataclass
class Prepared:
    """Everything checked and loaded before a run directory is touched."""

    config: TrainConfig  # resolved: what really runs
    data: ImageData  # regrouped when asked
    sizes: dict  # config.json's "data"
    labels_record: dict  # config.json's "regroup" and "class_weights"
    class_weights: list[float] | None
    transfer: Transfer | None = None  # a --weights run's pretrained network (and features)
    notes: list[str] = field(default_factory=list)  # log lines from before the log exists


def _load_data(config: TrainConfig) -> ImageData:
    return load_data(config.data_config())


def _prepare_data(config: TrainConfig, data: ImageData, recorded: dict | None):
    """Apply ``--regroup`` and resolve ``--class-weight``: the data trained on, and the record.

    A resumed run rebuilds its regrouping from ``config.json``'s record, not from the file it
    named, so it keeps training on the labels it started with.
    """
    record: dict = {}
    if config.regroup:
        if recorded and recorded.get("regroup"):
            regrouping = regrouping_from_record(recorded["regroup"])
        else:
            regrouping = load_regrouping(config.regroup)
        group_map = regrouping.resolve(data.classes)
        data = regroup_data(data, group_map)
        record["regroup"] = {
            **group_map.to_dict(),
            "fine_classes": list(group_map.class_names),
            "class_to_group": list(group_map.class_to_group),
            "loss": "softmax over the groups (a binary regrouping is a 2-way softmax)",
        }
    weights = resolve_class_weights(config.class_weight, data.train.labels, data.classes)
    record["class_weights"] = (
        None if weights is None else dict(zip(data.classes, weights, strict=True))
    )
    return data, record, weights


def _describe_data(data: ImageData) -> dict:
    def size(split: Split | None) -> int:
        return 0 if split is None else len(split)

    return {
        "name": data.name,
        "classes": list(data.classes),
        "num_classes": data.num_classes,
        "train": size(data.train),
        "val": size(data.val),
        "test": size(data.test),
        "mean": list(data.mean),
        "std": list(data.std),
        "input_shape": list(data.shape),
        "native_shape": list(data.native_shape),
        "multilabel": data.multilabel,
    }


def train_run(
    config: TrainConfig,
    *,
    console: Console | None = None,
    quiet: bool = False,
    resume: Path | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
    group: str | None = None,
    name: str | None = None,
    annotations: dict | None = None,
) -> RunOutcome:
    """Train a new run (or resume one) and leave a complete run directory behind.

    ``group`` (saved in ``config.json``) ties runs that differ only in seed together for reports;
    ``name`` is the run directory's name (default ``<timestamp>-<arch>-<dataset>``);
    ``annotations`` are top-level ``config.json`` fields a caller adds to say where the run
    trains (a suite's entry key, a Ray node): a resume overwrites them, and ``train.log`` keeps
    each attempt's. Order
    matters for "nothing half-written": the configuration, dataset and architecture are all
    checked before the run directory is created. The run directory is held
    (:class:`~archbench.locks.DirectoryLock`) while training: resuming a run another process is
    still training is refused with one line naming that process.
    """
    with torch_threads(None):  # --threads (set in _prepare) is this run's, not the caller's
        return _train_run(
            config, console, quiet, resume, on_epoch_end, group, name, annotations or {}
        )


def _train_run(
    config: TrainConfig,
    console: Console | None,
    quiet: bool,
    resume: Path | None,
    on_epoch_end: Callable[[dict], None] | None,
    group: str | None,
    name: str | None,
    annotations: dict,
) -> RunOutcome:
    console = console or Console()
    if resume is not None:
        run_dir = rundir.read_run(resume).path
        with DirectoryLock(run_dir, TRAINING):
            files.remove_stale_temporaries(run_dir)  # a killed writer's half checkpoint
            run_dir, config = _resume_target(run_dir, config.max_epochs)
            recorded = rundir.read_run(run_dir).config
            prepared = _prepare(config, recorded)
            if annotations:
                files.write_json(run_dir / rundir.CONFIG, recorded | annotations)
            return _train(
                prepared, run_dir, console, quiet, on_epoch_end, annotations, resumed=True
            )
    config.validate()
    rundir.ensure_writable(Path(config.runs_dir))
    prepared = _prepare(config, None)
    config = prepared.config
    loss = _describe_loss(config, prepared.data)  # an undefined auto weight fails here
    run_dir = rundir.new_run_dir(Path(config.runs_dir), config.arch, config.dataset, name)
    grouping = {} if group is None else {"group": group}
    transfer = {} if prepared.transfer is None else {"transfer": prepared.transfer.record}
    with DirectoryLock(run_dir, TRAINING):
        files.write_json(
            run_dir / rundir.CONFIG,
            {
                "train": asdict(config),
                "protocol": protocol_of(asdict(config)).to_dict(),
                **grouping,
                **annotations,
                "data": prepared.sizes,
                **prepared.labels_record,
                "loss": loss,
                **transfer,
                "system": describe_system(),
            },
        )
        return _train(prepared, run_dir, console, quiet, on_epoch_end, annotations, resumed=False)


def _prepare(config: TrainConfig, recorded: dict | None) -> Prepared:
    """The data trained on (regrouped if asked), the resolved config, sizes, labels record,
    class weights and, for ``--weights``, the pretrained network.

    A network that cannot be built or cannot take these images fails here, and weights are
    read, checked and (for a head) features cached here too: all before any run file exists.
    """
    torch.set_num_threads(config.threads or torch.get_num_threads())
    config = config.resolve_input_shape()  # an unknown network fails here, before the data
    data, labels_record, weights = _prepare_data(config, _load_data(config), recorded)
    config = config.resolved(data)
    if recorded is None:  # a resumed run was checked when it started
        model = create_arch(config.arch, num_classes=data.num_classes, in_channels=data.shape[0])
        check_output(model, config.arch, data.shape, data.num_classes)
    notes = _precision_notes(config)
    transfer = _prepare_transfer(config, data, notes.append)
    return Prepared(config, data, _describe_data(data), labels_record, weights, transfer, notes)


def _precision_notes(config: TrainConfig) -> list[str]:
    """A warning for bf16 on a CPU that only emulates it: a slower run, not a faster one.

    bf16 autocast trained 1.6-1.9x faster than fp32 on a CPU with native bf16, and 1.1-2.3x
    slower on the same machine kind without it (README, training throughput).
    """
    if config.precision != "bf16" or not config.device.startswith("cpu"):
        return []
    reason = bf16_skip_reason()
    if reason is None:
        return []
    return [f"warning: --precision bf16 is likely slower than fp32 here: {reason}"]


def _train(
    prepared: Prepared,
    run_dir: Path,
    console: Console,
    quiet: bool,
    on_epoch_end: Callable[[dict], None] | None,
    annotations: dict,
    *,
    resumed: bool,
) -> RunOutcome:
    config, data, sizes = prepared.config, prepared.data, prepared.sizes
    log = RunLog(run_dir / rundir.LOG, console, quiet)
    for line in prepared.notes:
        log(line)
    trainer = Trainer(
        config,
        data,
        run_dir,
        log,
        console,
        prepared.transfer,
        class_weights=prepared.class_weights,
    )
    if resumed:
        trainer.load_last()
        log(f"resuming {run_dir} after epoch {trainer.epoch}")
    else:
        trainer.save_last()  # so a run interrupted in its first epoch can still be resumed
        log(
            f"training {config.arch} on {data.name} ({sizes['train']} train, {sizes['val']} val, "
            f"{sizes['test']} test images) on {config.device} -> {run_dir}"
        )
    if annotations:
        log(f"annotations: {json.dumps(annotations, sort_keys=True)}")
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
        log.record(traceback.format_exc().rstrip())  # kept for the record, never printed
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
    log(
        f"complete after {trainer.epoch} epochs ({trainer.schedule.drops} LR drops); "
        f"best epoch {result['best_epoch']} by {result['selected_on']}; {_test_summary(result)}"
    )
    return RunOutcome(run_dir, status, result)


def _describe_loss(config: TrainConfig, data: ImageData) -> dict:
    """What ``config.json`` records of the loss: for multi-label, the positive weights used."""
    if config.task != "multilabel":
        return {"kind": "cross-entropy"}
    weights = make_task(
        config.task, data.train.labels, data.num_classes, pos_weight=config.pos_weight
    ).pos_weight
    return {
        "kind": "bce-with-logits",
        "pos_weight": config.pos_weight,
        "pos_weight_values": [round(float(w), 6) for w in weights],
        "threshold": config.threshold,
    }


def _test_summary(result: dict) -> str:
    if "test_map" in result:
        return (
            f"test mAP {result['test_map']:.4f}, Hamming error {result['test_hamming']:.4f} "
            f"(all-negative {result['test_all_negative_hamming']:.4f}), "
            f"micro F1 {result['test_micro_f1']:.4f}"
        )
    top5 = "" if result.get("test_top5") is None else f", top-5 {result['test_top5']:.4f}"
    return f"test top-1 {result['test_top1']:.4f}{top5}"


def _resume_target(path: Path, max_epochs: int | None = None) -> tuple[Path, TrainConfig]:
    """The run directory to continue and its recorded configuration.

    ``max_epochs`` (a ``--max-epochs`` given with ``--resume``) must be the recorded one: a
    resume continues the run as configured, and for a linear decay the budget *is* the
    schedule (another budget would change every step's learning rate already taken).
    """
    info = rundir.read_run(path)
    if info.status == "complete":
        raise ArchbenchError(f"{info.path} is already complete; nothing to resume")
    if not (info.path / rundir.LAST).is_file():
        raise ArchbenchError(f"{info.path} has no {rundir.LAST} to resume from")
    config = TrainConfig.from_dict(info.config["train"])
    if max_epochs is not None and max_epochs != config.max_epochs:
        why = (
            "a linear decay's budget defines its schedule"
            if config.schedule == "linear"
            else "a resume continues the run as it was configured"
        )
        raise ArchbenchError(
            f"--max-epochs {max_epochs} differs from {info.path}'s {config.max_epochs}: {why}; "
            "resume without --max-epochs, or start a new run"
        )
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
