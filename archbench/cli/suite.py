"""``archbench suite``: a grid of networks x datasets, resumable, locally or on Ray."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from .profile_options import add_profile_options, parse_profile_options


def add_parser(commands) -> None:
    from ..suite import BACKENDS, PRESETS

    parser = commands.add_parser(
        "suite",
        help="run a grid of networks x datasets (a study), resumably, locally or on Ray",
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
    add_profile_options(parser, with_threads=False)
    parser.set_defaults(handler=run_suite_command)


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
