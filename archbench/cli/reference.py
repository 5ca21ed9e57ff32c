"""The command reference page, generated from the argparse parsers themselves (asv's approach).

``python -m archbench.cli.reference docs/reference/commands.md`` rewrites the page;
``tests/test_docs_reference.py`` fails when the committed page differs from what the parsers
print, so the reference cannot drift from the code. The text must not depend on the terminal it
is generated in: argparse wraps help at ``$COLUMNS`` and colours it on a terminal (Python 3.14),
so both are fixed while the help is formatted. Its layout does change between Python versions
("optional arguments:" until 3.10), so the page names the version it was generated with.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import build_parser

WIDTH = 100  # columns the help is wrapped at, whatever terminal runs the generator
REGENERATE = "python -m archbench.cli.reference docs/reference/commands.md"

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
HEADER = f"""# Command reference

<!-- Generated from archbench's argparse parsers with Python {PYTHON}: do not edit by hand.
     Regenerate with `{REGENERATE}`;
     tests/test_docs_reference.py fails when this page is stale. -->

Every `archbench` command's `--help`, as the installed version prints it. The guides explain
what the options are for; this page is the exact list.
"""


@contextmanager
def _fixed_terminal() -> Iterator[None]:
    """Format help as if on a ``WIDTH``-column terminal without colour."""
    fixed = {"COLUMNS": str(WIDTH), "NO_COLOR": "1", "PYTHON_COLORS": "0"}
    saved = {name: os.environ.get(name) for name in fixed}
    os.environ.update(fixed)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers of ``parser``, in the order ``archbench --help`` lists them."""
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help_block(parser: argparse.ArgumentParser) -> str:
    return "```text\n" + parser.format_help().rstrip() + "\n```\n"


def render_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """The markdown page: ``archbench --help``, then one section per subcommand.

    ``parser`` defaults to the real command line; the staleness test passes a changed one.
    """
    with _fixed_terminal():
        parser = parser or build_parser()
        sections = [HEADER, "## archbench\n", _help_block(parser)]
        for name, subparser in subcommands(parser).items():
            sections += [f"## archbench {name}\n", _help_block(subparser)]
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m archbench.cli.reference",
        description="Write the command reference page (markdown) from archbench's parsers.",
    )
    parser.add_argument("out", nargs="?", type=Path, help="the page to write (default: stdout)")
    args = parser.parse_args(argv)
    page = render_reference()
    if args.out is None:
        sys.stdout.write(page)
        return 0
    args.out.write_text(page, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
