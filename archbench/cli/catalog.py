"""``archbench list``: registered networks with parameters and MACs."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

NAME = "list"
HELP = "list architectures with parameters and MACs"


def add_parser(commands) -> None:
    from ..report.render import FORMATS  # pandas: imported only when `list` runs

    parser = commands.add_parser(
        NAME,
        help=HELP,
        description="One row per architecture: trainable parameters for 10 and 100 classes, "
        "multiply-accumulates (fvcore; 1 MAC = one fused multiply-add = 2 FLOPs) for one image "
        "at the network's own input size, and the operators those MACs leave out.",
    )
    parser.add_argument(
        "pattern",
        nargs="?",
        default="*",
        help="shell-style wildcard ('squeezenet*', 'torchvision.models:*', 'timm:mobilenet*') "
        "or a FILE.py:FUNC reference",
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format")
    parser.set_defaults(handler=run_list)


def run_list(args: argparse.Namespace, console: Console) -> int:
    from ..measure.catalog import catalog
    from ..measure.complexity import MACS_CONVENTION
    from ..report.render import print_frame

    frame = catalog(args.pattern)
    if frame.empty:
        print(f"no architecture matches {args.pattern!r}", file=sys.stderr)
        if args.format in ("csv", "json"):
            print("[]" if args.format == "json" else ",".join(frame.columns))
        return 0
    title = f"archbench architectures (MACs at each network's input size; {MACS_CONVENTION})"
    print_frame(frame, args.format, console, title=title)
    return 0
