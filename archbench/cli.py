"""The ``archbench`` command line: one subcommand per stage of the workflow.

Every subcommand turns its flags into a typed config and calls the stage's module; errors meant
for the user (:class:`ArchbenchError`, unknown architectures) become one line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from rich.console import Console

from architectures import ArchitectureError

from . import __version__
from .errors import ArchbenchError
from .tables import FORMATS, print_frame

EXIT_USAGE = 2


def _cmd_list(args: argparse.Namespace, console: Console) -> int:
    from .catalog import catalog

    frame = catalog(args.pattern)
    if frame.empty:
        print(f"no architecture matches {args.pattern!r}", file=sys.stderr)
        if args.format in ("csv", "json"):
            print("[]" if args.format == "json" else ",".join(frame.columns))
        return 0
    print_frame(frame, args.format, console, title="archbench architectures (32x32 input)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archbench",
        description="Benchmark efficient CNNs: accuracy, parameters, size, MACs and latency.",
    )
    parser.add_argument("--version", action="version", version=f"archbench {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    list_parser = commands.add_parser(
        "list",
        help="list registered architectures with parameters and MACs",
        description="One row per architecture: trainable parameters for 10 and 100 classes and "
        "multiply-accumulates (fvcore) for one 3x32x32 image.",
    )
    list_parser.add_argument(
        "pattern",
        nargs="?",
        default="*",
        help="shell-style wildcard (e.g. 'squeezenet*') or a FILE.py:FUNC reference",
    )
    list_parser.add_argument("--format", choices=FORMATS, default="table", help="output format")
    list_parser.set_defaults(handler=_cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated")
    try:
        return args.handler(args, console)
    except (ArchbenchError, ArchitectureError) as error:
        print(f"archbench: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
