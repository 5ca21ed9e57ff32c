"""``archbench compare``: is run A's accuracy really different from run B's? (McNemar)"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape

NAME = "compare"
HELP = "McNemar's exact test of two runs on the same test set"


def add_parser(commands) -> None:
    parser = commands.add_parser(
        NAME,
        help=HELP,
        description="Compare two trained runs image by image on their shared test set: the 2x2 "
        "table of right/wrong, McNemar's exact p-value and which is better. With --regroup, a "
        "fine model's predictions are merged into the groups, so it can be compared with a "
        "model trained directly on them.",
    )
    parser.add_argument("run_a", metavar="RUN_A", help="a complete run directory")
    parser.add_argument("run_b", metavar="RUN_B", help="a complete run directory")
    parser.add_argument(
        "--regroup", metavar="R", help="compare on merged classes: a preset or .json/.toml file"
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (0.05)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(handler=run_compare)


def run_compare(args: argparse.Namespace, console: Console) -> int:
    from ..profile.compare import compare_runs

    result = compare_runs(
        Path(args.run_a), Path(args.run_b), regroup=args.regroup, alpha=args.alpha
    )
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return 0
    for key in ("a", "b"):
        side = result[key]
        accuracy, errors = result[f"accuracy_{key}"], result[f"errors_{key}"]
        console.print(
            f"{key.upper()}: {escape(side['run'])} — {escape(side['model'])} "
            f"({side['predictions']}): accuracy {100 * accuracy:.2f}%, {errors} errors",
            highlight=False,
            soft_wrap=True,
        )
    (both, only_a), (only_b, neither) = result["table"]
    table = (f"{'':12}{'B right':>9}{'B wrong':>9}\nA right    {both:>9}{only_a:>9}\n"
             f"A wrong    {only_b:>9}{neither:>9}")  # fmt: skip
    console.print(table, highlight=False, soft_wrap=True)
    verdict = f"{result['better']} is better" if result["better"] else "no significant difference"
    console.print(
        f"McNemar exact p-value {result['p_value']:.4g} on {result['n']} images "
        f"(alpha {result['alpha']}): {verdict}",
        highlight=False,
        soft_wrap=True,
    )
    return 0
