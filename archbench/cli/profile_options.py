"""The profiling flags ``run``, ``profile`` and ``suite`` share, and the config they make."""

from __future__ import annotations

import argparse

from ..errors import ArchbenchError


def positive_ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise ArchbenchError(f"{flag} takes positive integers separated by commas, got {text!r}")
    return values


def parse_profile_options(args: argparse.Namespace):
    """A ProfileConfig from the shared profiling flags, each checked with a one-line error."""
    from ..measure.backends import parse_backends
    from ..profile import ProfileConfig

    defaults = ProfileConfig()
    samples = defaults.samples
    if args.samples is not None:
        samples = None if args.samples == "all" else positive_ints(args.samples, "--samples")[0]
    if args.warmup is not None and args.warmup < 0:
        raise ArchbenchError(f"--warmup must be >= 0, got {args.warmup}")
    if args.profile_threads is not None and args.profile_threads < 1:
        raise ArchbenchError(f"--threads must be positive, got {args.profile_threads}")
    calibration = defaults.calibration_samples
    if getattr(args, "calibration_samples", None) is not None:
        calibration = args.calibration_samples
        if calibration < 1:
            raise ArchbenchError(f"--calibration-samples must be positive, got {calibration}")
    return ProfileConfig(
        calibration_samples=calibration,
        cold_start=not getattr(args, "no_cold_start", False),
        backends=parse_backends(args.backends) if args.backends else defaults.backends,
        samples=samples,
        warmup=defaults.warmup if args.warmup is None else args.warmup,
        threads=args.profile_threads,
        batch_sizes=(
            positive_ints(args.batch_sizes, "--batch-sizes")
            if args.batch_sizes
            else defaults.batch_sizes
        ),
        tf32=args.tf32,
        refresh_peak=getattr(args, "refresh_peak", False),
    )


def add_profile_options(parser: argparse.ArgumentParser, *, with_threads: bool) -> None:
    from ..measure.backends import BACKENDS

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
        "--calibration-samples",
        type=int,
        help="training images the int8 model is calibrated on (default 256)",
    )
    group.add_argument(
        "--no-cold-start",
        action="store_true",
        help="skip the fresh-interpreter cold-start and memory figures of each backend",
    )
    group.add_argument(
        "--batch-sizes", help="batch sizes for throughput, comma-separated (default 1,64)"
    )
    group.add_argument(
        "--refresh-peak",
        action="store_true",
        help="probe this machine's peaks and operator costs again (cached per machine, so one "
        "probed while the machine was busy lowers every later floor until refreshed)",
    )
    group.add_argument(
        "--tf32",
        action="store_true",
        help="let CUDA fp32 matmuls and convolutions use TF32 (default off: true fp32, as the "
        "peak probe; recorded in profile.json)",
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
