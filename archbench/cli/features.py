"""``archbench features``: extract (or reuse) a backbone's cached features, for use anywhere."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..errors import ArchbenchError


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """RUN_DIR, or --arch/--weights/--dataset: where features come from (shared with retrieval)."""
    from ..train.transfer import POOLINGS

    parser.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a complete run directory")
    parser.add_argument("--arch", help="a network (name, torchvision.models:NAME, FILE.py:FUNC)")
    parser.add_argument(
        "--weights", metavar="SOURCE", help="torchvision weights name, state-dict file or run"
    )
    parser.add_argument("--dataset", help="with --arch: the images (default digits)")
    parser.add_argument("--data-dir", help="datasets and the feature cache (default as for run)")
    parser.add_argument(
        "--pooling", choices=POOLINGS, help="global pooling (default avg, or a head run's own)"
    )
    parser.add_argument(
        "--split-seed", type=int, default=0, help="with --arch: the validation split (default 0)"
    )
    parser.add_argument(
        "--seed", type=int, default=0,
        help="initialization of a network without --weights (and retrieval's sampling; default 0)",
    )  # fmt: skip


def parse_source(args: argparse.Namespace):
    from ..train.transfer.source import FeatureSource

    if args.run_dir and (args.arch or args.weights or args.dataset):
        raise ArchbenchError("give a RUN_DIR, or --arch/--weights/--dataset, not both")
    if not args.run_dir and not args.arch:
        raise ArchbenchError("give a RUN_DIR, or --arch with --weights and --dataset")
    return FeatureSource(
        run_dir=Path(args.run_dir) if args.run_dir else None,
        arch=args.arch,
        weights=args.weights,
        dataset=args.dataset or "digits",
        data_dir=Path(args.data_dir).expanduser() if args.data_dir else None,
        pooling=args.pooling,
        seed=args.seed,
        split_seed=args.split_seed,
    )


NAME = "features"
HELP = "extract a backbone's pooled features once into the cache (.npy + manifest)"


def add_parser(commands) -> None:
    parser = commands.add_parser(
        NAME,
        help=HELP,
        description="Extract the globally pooled features of every split (float32 .npy, labels "
        ".npy, manifest.json) under the data cache, or reuse them when the backbone, weights, "
        "pooling, input size and data match; report shape, size and time.",
    )
    add_source_options(parser)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(handler=run_features)


def run_features(args: argparse.Namespace, console: Console) -> int:
    from ..train.transfer.source import source_features

    record = source_features(parse_source(args)).record()
    if args.format == "json":
        print(json.dumps(record, indent=2))
        return 0
    table = Table(title=f"{record['backbone']} features ({record['pooling']} pooling) "
                  f"on {record['dataset']}")  # fmt: skip
    for column in ("split", "cache", "shape", "MB", "extract s", "images/s", "path"):
        table.add_column(column)
    for name, entry in record["splits"].items():
        table.add_row(
            name, "hit" if entry["hit"] else "miss", "x".join(map(str, entry["shape"])),
            f"{entry['bytes'] / 1e6:.2f}", f"{entry['extraction_seconds']:.2f}",
            f"{entry['images_per_second']:.0f}", entry["path"],
        )  # fmt: skip
    console.print(table)
    return 0
