"""``archbench profile``: every figure of a trained run, or of an untrained network."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from ..errors import ArchbenchError
from .profile_options import add_profile_options, parse_profile_options

NAME = "profile"
HELP = "measure accuracy, size, MACs, latency (CPU, GPU, ONNX Runtime) and ONNX parity"


def add_parser(commands) -> None:
    parser = commands.add_parser(
        NAME,
        help=HELP,
        description="Profile a trained run's selected checkpoint (RUN_DIR), or an untrained "
        "network (--arch): latency, size and MACs do not depend on training. Writes "
        "profile.json, model.onnx, state_dict.pt and CSV tables, and prints a summary.",
    )
    parser.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a complete run directory")
    parser.add_argument(
        "--arch",
        help="profile an untrained network: registered name, torchvision.models:NAME, "
        "timm:NAME or FILE.py:FUNC",
    )
    parser.add_argument("--num-classes", type=int, help="classes for --arch (default 10)")
    parser.add_argument(
        "--dataset",
        help="test images to time with --arch (default digits, embedded, fitted to the "
        "network's own input channels; a dataset's own channels rebuild the network)",
    )
    parser.add_argument("--data-dir", help="where datasets live")
    parser.add_argument(
        "--input-size",
        type=int,
        metavar="N",
        help="resize images to NxN (bilinear, antialiased, once, cached); default: the "
        "network's own size, or the dataset's for torchvision/timm/your networks",
    )
    parser.add_argument(
        "--out", help="directory for an --arch profile (default RUNS_DIR/profiles/<stamp>-<arch>)"
    )
    parser.add_argument(
        "--regroup",
        metavar="R",
        help="also judge a RUN_DIR's fine model on merged classes: a preset "
        "(digits-even-odd, ...) or a .json/.toml file; writes ROC-AUC and the ROC curve",
    )
    parser.add_argument("--runs-dir", default="runs", help="default runs/")
    parser.add_argument(
        "--threshold",
        type=float,
        help="multi-label runs: probability counted as a predicted label (default: the run's)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress or summary output")
    add_profile_options(parser, with_threads=True)
    parser.set_defaults(handler=run_profile)


def run_profile(args: argparse.Namespace, console: Console) -> int:
    from ..profile import profile_run, profile_untrained
    from ..train.rundir import ensure_writable, new_run_dir, slug

    config = parse_profile_options(args)
    if args.threshold is not None:
        if not 0 < args.threshold < 1:
            raise ArchbenchError(f"--threshold must be in (0, 1), got {args.threshold}")
        config = replace(config, threshold=args.threshold)
    if args.run_dir and args.arch:
        raise ArchbenchError("give a RUN_DIR or --arch, not both")
    if args.run_dir:
        if args.num_classes is not None or args.dataset is not None or args.input_size:
            raise ArchbenchError(
                "--num-classes, --dataset and --input-size go with --arch, not a RUN_DIR"
            )
        profile_run(
            Path(args.run_dir), config, regroup=args.regroup, console=console, quiet=args.quiet
        )
        return 0
    if args.regroup:
        raise ArchbenchError(
            "--regroup needs a trained RUN_DIR: an untrained network has no accuracy"
        )
    if not args.arch:
        raise ArchbenchError("give a RUN_DIR to profile a trained run, or --arch NAME")
    num_classes = 10 if args.num_classes is None else args.num_classes
    dataset = args.dataset  # None: default images fitted to the network, not the reverse

    def out_dir() -> Path:  # made only once the network is built and runs on the images
        if args.out:
            return ensure_writable(Path(args.out))
        return new_run_dir(
            Path(args.runs_dir) / "profiles", args.arch, f"{slug(dataset or 'digits')}-untrained"
        )

    profile_untrained(
        args.arch,
        num_classes=num_classes,
        dataset=dataset,
        data_dir=Path(args.data_dir).expanduser() if args.data_dir else None,
        input_size=args.input_size,
        out_dir=out_dir,
        config=config,
        console=console,
        quiet=args.quiet,
    )
    return 0
