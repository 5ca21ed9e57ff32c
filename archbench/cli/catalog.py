"""``archbench list``: registered networks with parameters and MACs."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from ..report.render import FORMATS, print_frame


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "list",
        help="list registered architectures with parameters and MACs",
        description="One row per architecture: trainable parameters for 10 and 100 classes and "
        "multiply-accumulates (fvcore) for one 3x32x32 image.",
    )
    parser.add_argument(
        "pattern",
        nargs="?",
        default="*",
        help="shell-style wildcard (e.g. 'squeezenet*') or a FILE.py:FUNC reference",
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format")
    parser.set_defaults(handler=run_list)


def run_list(args: argparse.Namespace, console: Console) -> int:
    from ..measure.catalog import catalog

    frame = catalog(args.pattern)
    if frame.empty:
        print(f"no architecture matches {args.pattern!r}", file=sys.stderr)
        if args.format in ("csv", "json"):
            print("[]" if args.format == "json" else ",".join(frame.columns))
        return 0
    print_frame(frame, args.format, console, title="archbench architectures (32x32 input)")
    return 0
