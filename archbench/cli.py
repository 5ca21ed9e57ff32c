"""The ``archbench`` command line: one subcommand per stage of the workflow.

Every subcommand turns its flags into a typed config and calls the stage's module; errors meant
for the user (:class:`ArchbenchError`, unknown architectures) become one line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

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


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from .train import EXIT_INTERRUPTED, TrainConfig, train_run

    profile_config = _profile_config(args) if args.profile else None  # bad flags fail up front
    if args.resume:
        outcome = train_run(
            TrainConfig(), console=console, quiet=args.quiet, resume=Path(args.resume)
        )
    else:
        config = TrainConfig(
            **{
                name: getattr(args, name)
                for name in TrainConfig.__dataclass_fields__
                if getattr(args, name, None) is not None
            }
        )
        outcome = train_run(config, console=console, quiet=args.quiet)
    if outcome.status == "interrupted":
        return EXIT_INTERRUPTED
    if args.profile and outcome.status == "complete":
        from .profile import profile_run

        profile_run(outcome.run_dir, profile_config, console=console, quiet=args.quiet)
    return 0


def _positive_ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise ArchbenchError(f"{flag} takes positive integers separated by commas, got {text!r}")
    return values


def _profile_config(args: argparse.Namespace):
    """A ProfileConfig from the shared profiling flags, each checked with a one-line error."""
    from .latency import parse_backends
    from .profile import ProfileConfig

    defaults = ProfileConfig()
    samples = defaults.samples
    if args.samples is not None:
        samples = None if args.samples == "all" else _positive_ints(args.samples, "--samples")[0]
    if args.warmup is not None and args.warmup < 0:
        raise ArchbenchError(f"--warmup must be >= 0, got {args.warmup}")
    if args.profile_threads is not None and args.profile_threads < 1:
        raise ArchbenchError(f"--threads must be positive, got {args.profile_threads}")
    return ProfileConfig(
        backends=parse_backends(args.backends) if args.backends else defaults.backends,
        samples=samples,
        warmup=defaults.warmup if args.warmup is None else args.warmup,
        threads=args.profile_threads,
        batch_sizes=(
            _positive_ints(args.batch_sizes, "--batch-sizes")
            if args.batch_sizes
            else defaults.batch_sizes
        ),
    )


def _add_profile_options(parser: argparse.ArgumentParser, *, with_threads: bool) -> None:
    from .latency import BACKENDS

    group = parser.add_argument_group("profiling")
    group.add_argument(
        "--backends",
        help=f"comma-separated, or all/cpu/cuda (default all: {', '.join(BACKENDS)}); "
        "backends that cannot run here are reported as skipped",
    )
    group.add_argument(
        "--samples", help="batch-1 latency samples from the test set: N or all (default 1000)"
    )
    group.add_argument("--warmup", type=int, help="untimed passes before timing (default 10)")
    group.add_argument(
        "--batch-sizes", help="batch sizes for throughput, comma-separated (default 1,64)"
    )
    if with_threads:
        group.add_argument(
            "--threads",
            dest="profile_threads",
            type=int,
            help="CPU threads for PyTorch and ONNX Runtime (default: all cores)",
        )
    else:
        parser.set_defaults(profile_threads=None)


def _cmd_profile(args: argparse.Namespace, console: Console) -> int:
    from .profile import profile_run, profile_untrained
    from .runs import ensure_writable, new_run_dir, slug

    config = _profile_config(args)
    if args.run_dir and args.arch:
        raise ArchbenchError("give a RUN_DIR or --arch, not both")
    if args.run_dir:
        if args.num_classes is not None or args.dataset is not None:
            raise ArchbenchError("--num-classes and --dataset go with --arch, not a RUN_DIR")
        profile_run(Path(args.run_dir), config, console=console, quiet=args.quiet)
        return 0
    if not args.arch:
        raise ArchbenchError("give a RUN_DIR to profile a trained run, or --arch NAME")
    num_classes = 10 if args.num_classes is None else args.num_classes
    dataset = args.dataset or "digits"
    if args.out:
        out_dir = ensure_writable(Path(args.out))
    else:
        out_dir = new_run_dir(
            Path(args.runs_dir) / "profiles", args.arch, f"{slug(dataset)}-untrained"
        )
    profile_untrained(
        args.arch,
        num_classes=num_classes,
        dataset=dataset,
        data_dir=Path(args.data_dir).expanduser() if args.data_dir else None,
        out_dir=out_dir,
        config=config,
        console=console,
        quiet=args.quiet,
    )
    return 0


def _add_profile_parser(commands) -> None:
    parser = commands.add_parser(
        "profile",
        help="measure accuracy, size, MACs, latency (CPU, GPU, ONNX Runtime) and ONNX parity",
        description="Profile a trained run's selected checkpoint (RUN_DIR), or an untrained "
        "network (--arch): latency, size and MACs do not depend on training. Writes "
        "profile.json, model.onnx, state_dict.pt and CSV tables, and prints a summary.",
    )
    parser.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a complete run directory")
    parser.add_argument("--arch", help="profile an untrained network: name or FILE.py:FUNC")
    parser.add_argument("--num-classes", type=int, help="classes for --arch (default 10)")
    parser.add_argument(
        "--dataset", help="test images to time with --arch (default digits, embedded)"
    )
    parser.add_argument("--data-dir", help="where datasets live")
    parser.add_argument(
        "--out", help="directory for an --arch profile (default RUNS_DIR/profiles/<stamp>-<arch>)"
    )
    parser.add_argument("--runs-dir", default="runs", help="default runs/")
    parser.add_argument("--quiet", action="store_true", help="no progress or summary output")
    _add_profile_options(parser, with_threads=True)
    parser.set_defaults(handler=_cmd_profile)


def _add_run_parser(commands) -> None:
    from .data import AUGMENTATIONS
    from .train import DEVICES, OPTIMIZERS, PRECISIONS, SCHEDULES, SELECT_ON, TrainConfig

    defaults = TrainConfig()
    parser = commands.add_parser(
        "run",
        help="train a network into a run directory, then profile it",
        description="Train with the study's recipe (Adam, lr 0.01, batch 128, LR divided by 10 "
        "at each training-loss plateau, stop at the 4th), evaluate the selected checkpoint on "
        "the test set and profile it. Ctrl-C stops cleanly; --resume continues.",
    )
    what = parser.add_argument_group("what to train")
    what.add_argument("--arch", help=f"architecture name or FILE.py:FUNC (default {defaults.arch})")
    what.add_argument(
        "--dataset",
        help="digits (embedded, offline), cifar10, cifar100, mnist, fashion-mnist or "
        f"imagefolder:PATH (default {defaults.dataset})",
    )
    what.add_argument(
        "--data-dir",
        help="where datasets live (default $ARCHBENCH_DATA or ~/.cache/archbench/data)",
    )
    what.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        help="default: crop-flip for CIFAR/image folders, crop for digit sets",
    )
    what.add_argument(
        "--val-fraction",
        type=float,
        help=f"held-out validation share of train (default {defaults.val_fraction})",
    )
    what.add_argument(
        "--select-on",
        choices=SELECT_ON,
        help="split that picks best.pt: val (default) or test (the reference code)",
    )

    optim = parser.add_argument_group("optimization")
    optim.add_argument("--optimizer", choices=OPTIMIZERS, help="default adam")
    optim.add_argument("--lr", type=float, help=f"initial learning rate (default {defaults.lr})")
    optim.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    optim.add_argument("--weight-decay", type=float, help="default 0")
    optim.add_argument("--batch-size", type=int, help=f"default {defaults.batch_size}")
    optim.add_argument("--max-epochs", type=int, help="default 200 (the study); 15 for digits")
    optim.add_argument(
        "--schedule",
        choices=SCHEDULES,
        help="plateau (reference code, patience 10; default), plateau-dissertation "
        "(patience 1) or early-stop (validation loss, best checkpoint restored)",
    )
    optim.add_argument("--plateau-threshold", type=float, help="default 0.01")
    optim.add_argument("--plateau-patience", type=int, help="default 10 (1 for the dissertation)")
    optim.add_argument("--plateau-factor", type=float, help="LR divisor (default 10)")
    optim.add_argument("--plateau-max-drops", type=int, help="stop at this drop (default 4)")
    optim.add_argument("--early-stop-patience", type=int, help="default 10")

    machine = parser.add_argument_group("machine and output")
    machine.add_argument("--seed", type=int, help="default 0; CPU runs are deterministic")
    machine.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    machine.add_argument("--device", choices=DEVICES, help="default auto")
    machine.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels_last memory format (default on: faster convolutions on CPU)",
    )
    machine.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fp32 (default, the study) or bf16 autocast for the training step",
    )
    machine.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the model (slow start, faster steps)",
    )
    machine.add_argument("--runs-dir", help=f"default {defaults.runs_dir}/")
    machine.add_argument(
        "--resume", metavar="RUN_DIR", help="continue an interrupted run from its last.pt"
    )
    machine.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip profiling after training"
    )
    machine.add_argument("--quiet", action="store_true", help="no progress output")
    _add_profile_options(parser, with_threads=False)
    parser.set_defaults(handler=_cmd_run)


def _cmd_report(args: argparse.Namespace, console: Console) -> int:
    from .report import STUDIES, collect_runs, find_run_dirs, table_data, write_report

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
            from .files import write_text

            write_text(Path(args.out), text)
        else:
            sys.stdout.write(text)
        return 0
    out = Path(args.out or "reports/report.md")
    notes = [args.note] if args.note else []
    path, figures = write_report(
        records,
        out,
        baseline=args.baseline,
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


def _add_report_parser(commands) -> None:
    from .report import REPORT_FORMATS, STUDIES

    parser = commands.add_parser(
        "report",
        help="compare runs in markdown tables (the study's shape), with figures",
        description="Read complete runs (result.json, profile.json, metrics.csv), group them by "
        "dataset and write a markdown page with PNG figures beside it; incomplete runs are "
        "listed as such.",
    )
    parser.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run directories")
    parser.add_argument("--runs-dir", help="every run under this directory (default runs/)")
    parser.add_argument(
        "--baseline", default="squeezenet", help="network for relative columns (default squeezenet)"
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
    parser.set_defaults(handler=_cmd_report)


def _cmd_suite(args: argparse.Namespace, console: Console) -> int:
    from .runs import slug
    from .suite import parse_set, plan, run_suite
    from .train import TrainConfig

    profile_config = _profile_config(args)
    overrides = parse_set(args.set or [])
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    settings = {k: v for k, v in overrides.items() if k != "seeds"}
    TrainConfig(**settings).validate()  # a bad --set fails now, not once per run
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
    )
    return outcome.exit_code


def _add_suite_parser(commands) -> None:
    from .suite import BACKENDS, PRESETS

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
        "--retries", type=int, default=1, help="retries of a failed run (default 1)"
    )
    parser.add_argument("--backend", choices=BACKENDS, default="local", help="default local")
    parser.add_argument(
        "--ray-address", help="Ray cluster: auto or HOST:PORT (default: start a local Ray)"
    )
    parser.add_argument("--gpus-per-run", type=float, default=0.0, help="Ray GPUs per run")
    parser.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray CPUs per run")
    parser.add_argument("--quiet", action="store_true", help="no live progress or summary")
    _add_profile_options(parser, with_threads=False)
    parser.set_defaults(handler=_cmd_suite)


def _parse_size(text: str) -> int:
    """``10MB``, ``512KB``, ``2MiB`` or plain bytes -> bytes (decimal and binary units)."""
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}
    units.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30})
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in units or float(match.group(1)) <= 0:
        raise ArchbenchError(f"--max-body takes a size such as 10MB or 512KB, got {text!r}")
    return int(float(match.group(1)) * units[match.group(2).upper()])


def _cmd_serve(args: argparse.Namespace, console: Console) -> int:
    from .serve.app import ServeConfig, serve
    from .serve.batching import BatchingConfig

    config = ServeConfig(
        run_dir=Path(args.run_dir),
        backend=args.backend,
        host=args.host,
        port=args.port,
        batching=BatchingConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms),
        reject_below=args.reject_below,
        max_body_bytes=_parse_size(args.max_body),
        threads=args.threads,
    )
    return serve(config)


def _add_serve_parser(commands) -> None:
    from .serve.app import BACKENDS

    parser = commands.add_parser(
        "serve",
        help="serve a run's model over HTTP (POST /predict, GET /healthz, GET /metadata)",
        description="Serve RUN_DIR's model.onnx (exported from best.pt if missing) with ONNX "
        "Runtime behind FastAPI/uvicorn, with the run's own preprocessing and dynamic batching. "
        "Needs the serve extra: pip install 'archbench[serve]'.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a trained run directory")
    parser.add_argument(
        "--backend", choices=BACKENDS, default="onnxruntime", help="default onnxruntime"
    )
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="default 8000")
    parser.add_argument(
        "--max-batch",
        type=int,
        default=16,
        help="largest dynamic batch; 1 turns batching off (default 16)",
    )
    parser.add_argument(
        "--max-wait-ms", type=float, default=2.0, help="longest wait to fill a batch (default 2)"
    )
    parser.add_argument(
        "--reject-below",
        type=float,
        metavar="P",
        help="answer label 'unknown' when the top probability is below P",
    )
    parser.add_argument("--max-body", default="10MB", help="largest request body (default 10MB)")
    parser.add_argument(
        "--threads", type=int, help="ONNX Runtime threads (default: the run's, else all cores)"
    )
    parser.set_defaults(handler=_cmd_serve)


def _cmd_serve_bench(args: argparse.Namespace, console: Console) -> int:
    from .serve.bench import BenchConfig, print_levels, run_bench, write_result

    if args.out and args.run_dir:
        raise ArchbenchError("give --out or --run-dir, not both")
    config = BenchConfig(
        url=args.url,
        images=Path(args.images) if args.images else None,
        dataset=args.dataset,
        data_dir=Path(args.data_dir).expanduser() if args.data_dir else None,
        requests=args.requests,
        concurrency=_positive_ints(args.concurrency, "--concurrency"),
        duration_s=args.duration,
        allow_remote=args.allow_remote,
    )
    run = run_bench(config)
    path = write_result(run, Path(args.out or args.run_dir or "."))
    print_levels(run, console)
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    return 0


def _add_serve_bench_parser(commands) -> None:
    parser = commands.add_parser(
        "serve-bench",
        help="load-test a running archbench serve: latency percentiles and throughput",
        description="Send real images to URL/predict at each concurrency level (httpx, async) "
        "and report p50/p90/p99 latency, throughput and errors; results are merged into "
        "serve-bench.json. Only loopback addresses unless --allow-remote.",
    )
    parser.add_argument("url", metavar="URL", help="e.g. http://127.0.0.1:8000")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="image files to send (recursive)")
    source.add_argument("--dataset", help="send this dataset's test images (e.g. digits)")
    parser.add_argument("--data-dir", help="where datasets live (as for run)")
    parser.add_argument("--requests", type=int, default=200, help="per level (default 200)")
    parser.add_argument(
        "--concurrency", default="1,8,32", help="levels, comma-separated (default 1,8,32)"
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="stop starting requests after S s per level"
    )
    parser.add_argument("--run-dir", help="write serve-bench.json into this run directory")
    parser.add_argument("--out", help="output file or folder (default ./serve-bench.json)")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback URL")
    parser.set_defaults(handler=_cmd_serve_bench)


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
    _add_run_parser(commands)
    _add_profile_parser(commands)
    _add_report_parser(commands)
    _add_suite_parser(commands)
    _add_serve_parser(commands)
    _add_serve_bench_parser(commands)
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
