"""``archbench run``: train a network into a run directory, then profile it."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from .profile_options import add_profile_options, parse_profile_options

NAME = "run"
HELP = "train a network into a run directory, then profile it"


def add_parser(commands) -> None:
    from ..data import AUGMENTATIONS
    from ..train import (
        DEVICES,
        OPTIMIZER_IMPLS,
        OPTIMIZERS,
        PRECISIONS,
        SCHEDULES,
        SELECT_ON,
        TrainConfig,
    )
    from ..train.task import TASKS
    from ..train.transfer import FINETUNE_MODES, POOLINGS

    defaults = TrainConfig()
    parser = commands.add_parser(
        NAME,
        help=HELP,
        description="Train with the study's recipe (Adam, lr 0.01, batch 128, LR divided by 10 "
        "at each training-loss plateau, stop at the 4th), evaluate the selected checkpoint on "
        "the test set and profile it. Ctrl-C stops cleanly; --resume continues.",
    )
    what = parser.add_argument_group("what to train")
    what.add_argument(
        "--arch",
        help="registered name, torchvision.models:NAME, timm:NAME or FILE.py:FUNC "
        f"(default {defaults.arch})",
    )
    what.add_argument(
        "--dataset",
        help="digits (embedded, offline), cifar10, cifar100, mnist, fashion-mnist, "
        "imagefolder:PATH; multi-label: digits-mosaic, mosaic:DATASET, csv:PATH "
        f"(default {defaults.dataset})",
    )
    what.add_argument(
        "--data-dir",
        help="where datasets live (default $ARCHBENCH_DATA or ~/.cache/archbench/data)",
    )
    what.add_argument(
        "--input-size",
        type=int,
        metavar="N",
        help="resize images to NxN (bilinear, antialiased, once, cached); default: the "
        "network's own size, or the dataset's for torchvision/timm/your networks",
    )
    what.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        help="default: crop-flip for CIFAR/image folders, crop for digit sets, none for "
        "--finetune head",
    )
    what.add_argument(
        "--val-fraction",
        type=float,
        help=f"held-out validation share of train (default {defaults.val_fraction})",
    )
    what.add_argument(
        "--train-limit",
        type=int,
        help="keep this many training images (a seeded subset; smaller ones nest in larger)",
    )
    what.add_argument(
        "--regroup",
        metavar="R",
        help="train directly on grouped labels: a preset (digits-even-odd, "
        "cifar10-animals-vehicles, ...) or a .json/.toml file of group -> class names",
    )
    what.add_argument(
        "--class-weight",
        metavar="W",
        help="cross-entropy class weights: balanced (n / (classes x count)), one weight per "
        "class (1,3) or class:weight pairs (cat:3); default unweighted",
    )
    what.add_argument(
        "--select-on",
        choices=SELECT_ON,
        help="split that picks best.pt: val (default) or test (the reference code)",
    )

    transfer = parser.add_argument_group(
        "transfer learning (a pretrained network; single-label classification only)"
    )
    transfer.add_argument(
        "--weights",
        metavar="SOURCE",
        help="start from weights: a torchvision weights name (IMAGENET1K_V1, for "
        "torchvision.models:NAME), a state-dict file, or a run directory (its best.pt)",
    )
    transfer.add_argument(
        "--finetune",
        choices=FINETUNE_MODES,
        help="what learns: head (frozen backbone, new classifier, trained from the feature "
        "cache), last-block, or all (default with --weights)",
    )
    transfer.add_argument(
        "--pooling", choices=POOLINGS, help="global pooling of a head's features (default avg)"
    )
    transfer.add_argument(
        "--augment-copies",
        type=int,
        metavar="K",
        help="with --finetune head: extract K augmented copies of the training set once "
        "(epoch e reads copy e mod K) instead of bypassing the cache",
    )

    task = parser.add_argument_group("multi-label task (seed 000)")
    task.add_argument(
        "--task", choices=TASKS, help="classification (default) or multilabel (multi-hot targets)"
    )
    task.add_argument(
        "--pos-weight",
        help="multilabel BCE weight of positive labels: W (default 1), auto (negatives / "
        "positives of the training labels) or auto-per-label",
    )
    task.add_argument(
        "--threshold",
        type=float,
        help=f"multilabel: probability counted as a predicted label (default {defaults.threshold})",
    )
    task.add_argument("--csv-image-column", help="csv:PATH image path column (default image)")
    task.add_argument("--csv-labels-column", help="csv:PATH labels column (default labels)")
    task.add_argument(
        "--csv-split-column", help="csv:PATH split column, train/test (default split, optional)"
    )
    task.add_argument(
        "--csv-label-separator", help="between labels in a csv:PATH labels cell (default ;)"
    )

    optim = parser.add_argument_group("optimization")
    optim.add_argument("--optimizer", choices=OPTIMIZERS, help="default adam")
    optim.add_argument("--lr", type=float, help=f"initial learning rate (default {defaults.lr})")
    optim.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    optim.add_argument("--weight-decay", type=float, help="default 0")
    optim.add_argument("--batch-size", type=int, help=f"default {defaults.batch_size}")
    optim.add_argument(
        "--max-epochs",
        type=int,
        help="default 200 (the study); 15 for digits; with --schedule linear: the budget",
    )
    optim.add_argument(
        "--schedule",
        choices=SCHEDULES,
        help="plateau (reference code, patience 10; default), plateau-dissertation "
        "(patience 1), early-stop (validation loss, best checkpoint restored) or linear "
        "(a fixed budget: the LR falls per step from --lr to 0 over --max-epochs, every "
        "epoch runs; for equal-budget comparisons)",
    )
    optim.add_argument("--plateau-threshold", type=float, help="default 0.01")
    optim.add_argument("--plateau-patience", type=int, help="default 10 (1 for the dissertation)")
    optim.add_argument("--plateau-factor", type=float, help="LR divisor (default 10)")
    optim.add_argument("--plateau-max-drops", type=int, help="stop at this drop (default 4)")
    optim.add_argument("--early-stop-patience", type=int, help="default 10")

    machine = parser.add_argument_group("machine and output")
    machine.add_argument(
        "--seed",
        type=int,
        help="initialization, data order and augmentation (default 0; CPU runs are deterministic)",
    )
    machine.add_argument(
        "--split-seed",
        type=int,
        help="the validation split (default 0), kept fixed across --seeds so that only "
        "initialization and data order vary",
    )
    machine.add_argument(
        "--seeds",
        help="comma-separated seeds (e.g. 0,1,2): one run directory per seed, grouped as "
        "<group>-s<seed> with the group in config.json; reports aggregate them",
    )
    machine.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    machine.add_argument("--device", choices=DEVICES, help="default auto")
    machine.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels_last memory format (default on: faster convolutions on CPU)",
    )
    machine.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fp32 (default, the study) or bf16 autocast for the training step",
    )
    machine.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the model (slow start, faster steps)",
    )
    machine.add_argument(
        "--optimizer-impl",
        choices=OPTIMIZER_IMPLS,
        help="how torch.optim runs the update, same rule: default (torch's), foreach (one "
        "batched call over all parameters) or fused (one kernel); a speed candidate",
    )
    machine.add_argument(
        "--depthwise-contiguous",
        action="store_true",
        default=None,
        help="run depthwise convolutions in NCHW inside the channels_last model (a speed "
        "candidate: benchmarks/train_throughput.py --ab depthwise-contiguous)",
    )
    machine.add_argument(
        "--depthwise-fp32",
        action="store_true",
        default=None,
        help="with --precision bf16, keep depthwise convolutions in fp32 (their bf16 backward "
        "is slow on CPU: mobilenet 1.47x faster; benchmarks/train_throughput.py --ab "
        "depthwise-fp32)",
    )
    machine.add_argument("--runs-dir", help=f"default {defaults.runs_dir}/")
    machine.add_argument(
        "--resume", metavar="RUN_DIR", help="continue an interrupted run from its last.pt"
    )
    machine.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip profiling after training"
    )
    machine.add_argument("--quiet", action="store_true", help="no progress output")
    add_profile_options(parser, with_threads=False)
    parser.set_defaults(handler=run_training)


def run_training(args: argparse.Namespace, console: Console) -> int:
    from ..train import TrainConfig, rundir, train_run

    # Bad profiling flags and seeds fail up front, before any training.
    profile_config = parse_profile_options(args) if args.profile else None
    seeds = _parse_seeds(args)
    if args.resume:
        outcome = train_run(
            TrainConfig(max_epochs=args.max_epochs),
            console=console,
            quiet=args.quiet,
            resume=Path(args.resume),
        )
        return _finish(outcome, args, profile_config, console)
    config = TrainConfig(
        **{
            name: getattr(args, name)
            for name in TrainConfig.__dataclass_fields__
            if getattr(args, name, None) is not None
        }
    )
    if not seeds:
        outcome = train_run(config, console=console, quiet=args.quiet)
        return _finish(outcome, args, profile_config, console)
    config.validate()  # before the group's name is taken
    group = rundir.new_group_name(Path(config.runs_dir), config.arch, config.dataset)
    for number, seed in enumerate(seeds):
        outcome = train_run(
            replace(config, seed=seed),
            console=console,
            quiet=args.quiet,
            group=group,
            name=f"{group}-s{seed}",
        )
        code = _finish(outcome, args, profile_config, console)
        if code != 0:
            left = ",".join(str(s) for s in seeds[number + 1 :])
            if left and not args.quiet:
                console.print(f"seeds not started: {left} (rerun with --seeds {left})")
            return code
    return 0


def _parse_seeds(args: argparse.Namespace) -> list[int]:
    from ..errors import ArchbenchError
    from ..suite import parse_seeds

    if args.seeds is None:
        return []
    if args.seed is not None:
        raise ArchbenchError("give --seed or --seeds, not both")
    if args.resume:
        raise ArchbenchError("--resume continues one run directory; it takes no --seeds")
    seeds = parse_seeds(args.seeds)
    if not seeds:
        raise ArchbenchError(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    return seeds


def _finish(outcome, args: argparse.Namespace, profile_config, console: Console) -> int:
    """Profile a complete run; the exit code of a run that ended."""
    from ..train import EXIT_INTERRUPTED

    if outcome.status == "interrupted":
        return EXIT_INTERRUPTED
    if args.profile and outcome.status == "complete":
        from ..profile import profile_run

        profile_run(outcome.run_dir, profile_config, console=console, quiet=args.quiet)
    return 0
