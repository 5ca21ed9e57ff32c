"""``archbench explain``: attribution maps of a trained run's test images, as a PNG grid."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

NAME = "explain"
HELP = "saliency, integrated gradients or Grad-CAM of a run's test images (PNG grid)"


def add_parser(commands) -> None:
    from ..evaluate.attribution import METHODS

    parser = commands.add_parser(
        NAME,
        help=HELP,
        description="Attribute each chosen test image's predicted class to its pixels (captum) "
        "and draw image | map pairs into RUN_DIR/explain-<method>.png; explain.json records "
        'which images were drawn. Needs captum: pip install "archbench[explain]".',
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a complete run directory")
    parser.add_argument("--method", choices=METHODS, default="saliency", help="default saliency")
    parser.add_argument(
        "--images",
        default="misclassified",
        help="misclassified (the first 16), misclassified:K, or N (the first N test images)",
    )
    parser.set_defaults(handler=run_explain)


def run_explain(args: argparse.Namespace, console: Console) -> int:
    from ..profile.explain import explain_run

    record = explain_run(Path(args.run_dir), method=args.method, images=args.images)
    wrong = sum(a != b for a, b in zip(record["labels"], record["predictions"], strict=True))
    console.print(
        f"{args.method}: {len(record['indices'])} images ({wrong} misclassified) -> "
        f"{Path(args.run_dir) / record['file']}",
        highlight=False,
        soft_wrap=True,
    )
    return 0
