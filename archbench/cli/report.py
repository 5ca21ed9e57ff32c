"""``archbench report``: compare runs in the study's tables, with figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from ..errors import ArchbenchError

NAME = "report"
HELP = "compare runs in markdown tables (the study's shape), with figures"


def add_parser(commands) -> None:
    from ..report import REPORT_FORMATS, STUDIES

    parser = commands.add_parser(
        NAME,
        help=HELP,
        description="Read complete runs (result.json, profile.json, metrics.csv), group them by "
        "dataset and write a markdown page with PNG figures beside it; incomplete runs are "
        "listed as such.",
    )
    parser.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run directories")
    parser.add_argument("--runs-dir", help="every run under this directory (default runs/)")
    parser.add_argument(
        "--baseline",
        help="network for relative columns (default squeezenet, when among the runs)",
    )
    parser.add_argument(
        "--compare-study",
        metavar="STUDY",
        help=f"put a published study's figures next to ours: {', '.join(STUDIES)}",
    )
    parser.add_argument(
        "--out", help="output file (default reports/report.md; stdout for csv/json)"
    )
    parser.add_argument("--format", choices=REPORT_FORMATS, default="md", help="default md")
    parser.add_argument("--title", default="archbench report", help="the page's title")
    parser.add_argument("--note", help="a line for the header, e.g. the epoch budget")
    parser.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace, console: Console) -> int:
    from ..report import STUDIES, collect_runs, find_run_dirs, table_data, write_report

    if args.runs and args.runs_dir:
        raise ArchbenchError("give run directories or --runs-dir, not both")
    if args.compare_study and args.compare_study not in STUDIES:
        raise ArchbenchError(f"unknown study {args.compare_study!r}; known: {', '.join(STUDIES)}")
    paths = (
        [Path(p) for p in args.runs] if args.runs else find_run_dirs(Path(args.runs_dir or "runs"))
    )
    records = collect_runs(paths)
    if args.format in ("csv", "json"):
        text = table_data(records, args.format)
        if args.out:
            from ..files import write_text

            write_text(Path(args.out), text)
        else:
            sys.stdout.write(text)
        return 0
    archs = sorted({r.arch for r in records if r.complete})
    if args.baseline is not None and args.baseline not in archs:
        raise ArchbenchError(
            f"--baseline {args.baseline!r} is not among the complete runs "
            f"({', '.join(archs) or 'none'})"
        )
    out = Path(args.out or "reports/report.md")
    notes = [args.note] if args.note else []
    path, figures = write_report(
        records,
        out,
        baseline=args.baseline or "squeezenet",
        study=args.compare_study,
        title=args.title,
        notes=notes,
    )
    complete = sum(r.complete for r in records)
    console.print(
        f"wrote {path} ({complete} complete of {len(records)} runs, {len(figures)} figures)",
        highlight=False,
        soft_wrap=True,
    )
    return 0
