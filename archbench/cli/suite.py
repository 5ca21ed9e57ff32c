"""``archbench suite``: a grid of networks x datasets, resumable, locally or on Ray."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ..errors import ArchbenchError
from .profile_options import add_profile_options, parse_profile_options

NAME = "suite"
HELP = "run a grid of networks x datasets (a study), resumably, locally or on Ray"


def add_parser(commands) -> None:
    from ..suite import BACKENDS, PRESETS

    parser = commands.add_parser(
        NAME,
        help=HELP,
        description="Plan runs from a preset or a TOML file, bring each to complete and "
        "profiled, then write a report. Rerunning the same command skips complete runs, resumes "
        "interrupted ones and retries failed ones.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help=f"a built-in suite: {', '.join(PRESETS)}")
    source.add_argument(
        "--file", help="a suite file (TOML; YAML with pyyaml): archs, datasets, set, runs"
    )
    parser.add_argument(
        "--archs", help="comma-separated names or wildcards to keep ('squeezenet*')"
    )
    parser.add_argument("--datasets", help="comma-separated datasets, replacing the plan's")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a training setting for every run "
        "(repeatable), e.g. --set max_epochs=5 --set lr=0.001",
    )
    parser.add_argument("--data-dir", help="where datasets live (as for run)")
    parser.add_argument("--runs-dir", help="the suite directory (default runs/suite-<name>)")
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="retries of a failed run (default 1); on Ray, a run lost with its node is "
        "retried from its last checkpoint on another node",
    )
    parser.add_argument("--backend", choices=BACKENDS, default="local", help="default local")
    parser.add_argument(
        "--ray-address", help="Ray cluster: auto or HOST:PORT (default: start a local Ray)"
    )
    parser.add_argument(
        "--gpus-per-run",
        type=float,
        default=0.0,
        help="Ray GPUs per run (> 0: the run trains on cuda in its task; default 0)",
    )
    parser.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray CPUs per run")
    parser.add_argument(
        "--reprofile",
        action="store_true",
        help="profile every complete run again (new profiling options, a damaged profile.json)",
    )
    parser.add_argument("--quiet", action="store_true", help="no live progress or summary")
    results = parser.add_argument_group(
        "results kept in a repository (a plan that grows over several days)"
    )
    results.add_argument(
        "--results-dir",
        metavar="DIR",
        help="committed results: entries already there (same arch, seed, protocol, dataset) "
        "are skipped; each run that completes is copied in (config.json, metrics.csv, "
        "result.json, profile.json, curves.png; best.pt, model state only, for seed 0 of "
        "squeezenet_dsc, squeezenet and mobilenet). Each entry trains under --runs-dir/<entry>",
    )
    results.add_argument(
        "--only",
        metavar="ENTRIES",
        help="with --results-dir: train only these entries (names as the pending table shows "
        "them or suite keys; wildcards, comma-separated)",
    )
    results.add_argument(
        "--parked-dir",
        metavar="DIR",
        help="with --results-dir: an interrupted plateau run's last.pt (<= 5 MB) is copied "
        "here to resume on another machine; restored from here, deleted when the run completes",
    )
    results.add_argument(
        "--park",
        action="store_true",
        help="park the unfinished plateau runs in --runs-dir into --parked-dir, train nothing",
    )
    results.add_argument(
        "--report",
        metavar="FILE",
        help="with --results-dir: write FILE from the committed runs, a pending row for each "
        "entry not there yet",
    )
    results.add_argument(
        "--report-only", action="store_true", help="write --report without training anything"
    )
    results.add_argument("--title", default="archbench plan", help="the --report's title")
    results.add_argument(
        "--compare-study", metavar="STUDY", help="--report: a study's figures next to ours"
    )
    add_profile_options(parser, with_threads=False)
    parser.set_defaults(handler=run_suite_command)


# What makes a plan entry's identity (with arch and dataset): --set must not change it.
PLAN_OWNED = ("schedule", "max_epochs", "seeds", "plateau_threshold", "plateau_patience",
              "plateau_factor", "plateau_max_drops", "early_stop_patience")  # fmt: skip


def _run_results_plan(args, entries, work_dir: Path, profile_config, console: Console) -> int:
    """``--results-dir``: train what is not committed, copy it in, report; or park, or report."""
    from ..suite.results import park_unfinished, planned_runs, run_plan, select, write_plan_report

    given = {item.partition("=")[0].strip().replace("-", "_") for item in args.set or []}
    owned = sorted(given & set(PLAN_OWNED))
    if owned:
        raise ArchbenchError(
            f"with --results-dir, {', '.join(owned)} belong to the plan file: edit it there "
            "(a changed budget is another protocol, its runs new plan entries)"
        )
    runs = planned_runs(entries)
    chosen = select(runs, args.only)  # an --only naming no entry fails before any work
    if (args.report_only and not args.report) or (args.park and not args.parked_dir):
        raise ArchbenchError("--report-only needs --report FILE; --park needs --parked-dir DIR")
    code = 0
    if args.park:
        for path in park_unfinished(chosen, work_dir, Path(args.parked_dir)):
            console.print(f"parked {path}", highlight=False)
    elif not args.report_only:
        code = run_plan(
            chosen,
            Path(args.results_dir),
            work_dir,
            parked_dir=Path(args.parked_dir) if args.parked_dir else None,
            profile_config=profile_config,
            retries=args.retries,
            console=console,
            quiet=args.quiet,
        )
    if args.report:
        path = write_plan_report(
            runs,
            Path(args.results_dir),
            Path(args.report),
            title=args.title,
            study=args.compare_study,
        )
        console.print(f"wrote {path}", highlight=False)
    return code


def run_suite_command(args: argparse.Namespace, console: Console) -> int:
    from ..suite import parse_set, plan, run_suite
    from ..train import TrainConfig
    from ..train.rundir import slug

    profile_config = parse_profile_options(args)
    overrides = parse_set(args.set or [])
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    settings = {k: v for k, v in overrides.items() if k != "seeds"}
    # A bad --set fails now, not once per run (on Ray, devices are checked in the tasks).
    TrainConfig(**settings).validate(device_here=args.backend == "local")
    name, entries = plan(
        preset=args.preset,
        file=Path(args.file) if args.file else None,
        archs=args.archs,
        datasets=args.datasets,
        overrides=overrides,
    )
    suite_dir = Path(args.runs_dir) if args.runs_dir else Path("runs") / f"suite-{slug(name)}"
    if args.results_dir:
        return _run_results_plan(args, entries, suite_dir, profile_config, console)
    for flag in ("only", "parked_dir", "park", "report", "report_only", "compare_study"):
        if getattr(args, flag):
            raise ArchbenchError(f"--{flag.replace('_', '-')} needs --results-dir")
    outcome = run_suite(
        entries,
        suite_dir,
        name=name,
        backend=args.backend,
        retries=args.retries,
        profile_config=profile_config,
        console=console,
        quiet=args.quiet,
        ray_address=args.ray_address,
        gpus_per_run=args.gpus_per_run,
        cpus_per_run=args.cpus_per_run,
        reprofile=args.reprofile,
    )
    return outcome.exit_code
