"""The ``archbench`` command line: argument parsing only, one module per command.

Each command module has ``add_parser(subparsers)``, which declares its flags and sets
``handler(args, console) -> exit status``; a handler turns the flags into a typed config and
calls its stage (train, profile, report, suite). Errors meant for the user
(:class:`ArchbenchError`, unknown architectures) become one line on stderr and exit status 2,
never a traceback. A new command is a new module here and one line in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

from rich.console import Console

from architectures import ArchitectureError

from .. import __version__
from ..errors import ArchbenchError

EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool its reader left

# Command modules of this package, in the order ``archbench --help`` lists them.
COMMANDS = (
    "catalog",  # archbench list
    "run",
    "profile",
    "compare",
    "explain",
    "report",
    "suite",
    "memory",
    "serve",
    "serve_bench",  # archbench serve-bench
    "features",
    "retrieval",
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser, or, with ``only``, that command's and the others' names alone.

    Building a command's options imports what its choices come from (pandas for ``report``,
    FastAPI for ``serve``: half a second together), which a command that does not run need not pay.
    """
    parser = argparse.ArgumentParser(
        prog="archbench",
        description="Benchmark efficient CNNs: accuracy, parameters, size, MACs and latency.",
    )
    parser.add_argument("--version", action="version", version=f"archbench {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        if only is None or only == module.NAME:
            module.add_parser(commands)
        else:
            commands.add_parser(module.NAME, help=module.HELP)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first word), or ``None`` where that is not plain."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(only=_command_in(argv)).parse_args(argv)
    console = Console()
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated")
    try:
        return args.handler(args, console)
    except (ArchbenchError, ArchitectureError) as error:
        print(f"archbench: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `archbench list | head`: the reader left. Stop quietly, as Unix tools do; stdout goes
        # to /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
