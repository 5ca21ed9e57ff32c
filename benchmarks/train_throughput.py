"""Training throughput against the machine's limit: images/s, FLOP/s and its share of the peak.

Three modes, all on the shared mini CIFAR-10 JPEGs, batch 128, Adam, crop + flip:

- default: per network and precision, archbench's trainer (fp32 and bf16 autocast, both
  channels_last; ``--compile`` adds torch.compile) against a reference-style loop (torchvision
  ImageFolder + PIL transforms + DataLoader + eager model, as the study's code), repeats
  interleaved so a slow spell hits every loop alike, medians reported. Each row also gives the
  achieved training FLOP/s and its fraction of this machine's fp32 peak (the profiler's peak
  probe, cached per machine and threads). FLOP convention: forward MACs (fvcore) x 2 x 3 per
  image (forward, input gradient, weight gradient).
- ``--breakdown``: torch.profiler over a few training steps of the real loop after a warm-up:
  the top operators by self CPU time in each phase (data, forward, backward, optimizer,
  metrics), as a table and, with ``--breakdown-csv``, a CSV of every operator;
  ``--breakdown-with CANDIDATE`` adds a breakdown with a candidate switched on.
- ``--ab CANDIDATE``: one speed candidate against the default, in paired rounds that alternate
  which side runs first; the median per-round speedup, its 95% interval and a Wilcoxon p-value.

    python benchmarks/train_throughput.py --archs squeezenet_dsc,squeezenet,mobilenet --json t.json
    python benchmarks/train_throughput.py --breakdown --breakdown-csv breakdown.csv
    python benchmarks/train_throughput.py --breakdown --breakdown-with depthwise-contiguous
    python benchmarks/train_throughput.py --ab optimizer-fused,depthwise-contiguous --rounds 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from rich import box
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ab_stats  # noqa: E402  (benchmarks/ab_stats.py: paired statistics of A/B rounds)
from train_loops import (  # noqa: E402  (benchmarks/train_loops.py: the timed loops)
    FLOP_CONVENTION,
    REPO,
    Loop,
    TrainingData,
    archbench_images_per_second,
    extract,
    host_facts,
    print_host,
    reference_images_per_second,
    throwaway_trainer,
    training_flops_per_image,
)

from archbench import files  # noqa: E402
from archbench.errors import ArchbenchError  # noqa: E402
from archbench.measure.roofline import MachinePeak, cached_peak  # noqa: E402
from archbench.train import PRECISIONS  # noqa: E402
from archbench.train.breakdown import PHASES, StepBreakdown, profile_steps, write_csv  # noqa: E402
from archbench.train.config import CANDIDATE_PRECISION, SPEED_CANDIDATES  # noqa: E402
from architectures import ArchitectureError  # noqa: E402

# Each candidate: the trainer options that turn it on (defaults otherwise): the trainer's speed
# switches, and the two older opt-outs/opt-ins the README compares (channels_last, compile).
CANDIDATES: dict[str, dict] = {
    **SPEED_CANDIDATES,
    "no-channels-last": {"channels_last": False},
    "compile": {"compile": True},
}
COMPILE_WARMUP = 15  # torch.compile compiles during its first steps
BREAKDOWN_WIDTH = 160
AB_THRESHOLD = 0.03  # a speedup under 3% either way is "same" (asv's rule, ab_stats)
AB_ALPHA = 0.05
AB_HEADER = (
    "| arch | precision | candidate | default img/s | candidate img/s | speedup (95% CI) | p "
    "| verdict |\n|---|---|---|---:|---:|---:|---:|---|"
)


# --- throughput ---------------------------------------------------------------------------------


def precision_variants(args) -> dict[str, dict]:
    """The timed variants by column name: each precision, and with --compile or each --with
    candidate on top (a candidate for one precision only beside that precision)."""
    variants = {precision: {"precision": precision} for precision in args.precisions}
    if args.compile:
        variants.update(
            {f"{p}+compile": {"precision": p, "compile": True} for p in args.precisions}
        )
    for candidate in args.with_candidates:
        for p in args.precisions:
            if CANDIDATE_PRECISION.get(candidate, p) == p:
                variants[f"{p}+{candidate}"] = {"precision": p, **CANDIDATES[candidate]}
    return variants


def variant_label(name: str) -> str:
    """The row's ``variant``: ``default``, ``compile`` or the candidate's name."""
    return name.split("+", 1)[1] if "+" in name else "default"


def measure_throughput(args, arch: str, root: Path, data: TrainingData, peak: MachinePeak) -> list:
    """One arch's rows: each variant's median img/s over interleaved repeats, and FLOP/s."""
    macs, flops_per_image = training_flops_per_image(arch)
    variants = precision_variants(args)
    rates: dict[str, list[float]] = {"reference": [], **{name: [] for name in variants}}
    base = Loop(args.steps, args.warmup, args.batch_size, {})
    for _ in range(args.repeats):
        rates["reference"].append(reference_images_per_second(arch, root, base, args.workers))
        for name, options in variants.items():
            warmup = max(args.warmup, COMPILE_WARMUP) if options.get("compile") else args.warmup
            loop = Loop(args.steps, warmup, args.batch_size, options)
            rates[name].append(archbench_images_per_second(arch, data, loop))
    reference = statistics.median(rates["reference"])
    rows = []
    for name, options in variants.items():
        rate = statistics.median(rates[name])
        achieved = rate * flops_per_image / 1e9
        rows.append(
            {
                "arch": arch,
                "precision": options["precision"],
                "variant": variant_label(name),
                "images_per_s": rate,
                "images_per_s_repeats": rates[name],
                "reference_images_per_s": reference,
                "reference_images_per_s_repeats": rates["reference"],
                "ratio_to_reference": rate / reference,
                "forward_macs_per_image": macs,
                "training_flops_per_image": flops_per_image,
                "achieved_gflops": achieved,
                "peak_gflops": peak.gflops,
                "peak_fraction": achieved / peak.gflops,
            }
        )
    return rows


def print_throughput_header(args) -> None:
    names = precision_variants(args)
    print(
        "| arch | MMACs fwd | reference img/s | "
        + " | ".join(f"{name} img/s (ratio) | {name} GFLOP/s (% fp32 peak)" for name in names)
        + " |"
    )
    print("|---|---:|---:|" + "---:|---:|" * len(names))


def print_throughput_row(rows: list[dict]) -> None:
    first = rows[0]
    cells = [
        first["arch"],
        f"{first['forward_macs_per_image'] / 1e6:.1f}",
        f"{first['reference_images_per_s']:.0f}",
    ]
    for row in rows:
        cells.append(f"{row['images_per_s']:.0f} ({row['ratio_to_reference']:.2f}x)")
        cells.append(f"{row['achieved_gflops']:.1f} ({100 * row['peak_fraction']:.0f}%)")
    print("| " + " | ".join(cells) + " |", flush=True)


# --- breakdown ----------------------------------------------------------------------------------


def measure_breakdown(
    args, arch: str, data: TrainingData, precision: str, variant: str
) -> StepBreakdown:
    """A breakdown of ``arch`` at ``precision``, with candidate ``variant`` on (or "default")."""
    options = CANDIDATES.get(variant, {})
    config = data.config(arch, args.batch_size, precision=precision, **options)
    with throwaway_trainer(config, data.load(config)) as trainer:
        warmup = max(args.warmup, COMPILE_WARMUP) if options.get("compile") else args.warmup
        return profile_steps(trainer, steps=args.breakdown_steps, warmup=warmup)


def print_breakdown(console: Console, key: tuple[str, str, str], result: StepBreakdown, top: int):
    phases = result.phase_ms()
    cpu = result.cpu_ms or 1.0
    shares = ", ".join(f"{p} {100 * ms / cpu:.0f}%" for p, ms in phases.items() if ms > 0)
    table = Table(
        title=f"{' '.join(key)}: {result.wall_ms:.0f} ms per step under the profiler "
        f"({result.steps} steps); self CPU by phase: {shares}",
        box=box.MARKDOWN,
        title_justify="left",
    )
    for column in ("phase", "operator", "input shapes", "calls/step", "ms/step", "% of step"):
        table.add_column(column, justify="left" if column in ("phase", "operator") else "right")
    for phase in (*PHASES, "other"):
        for op in result.top(phase, top):
            table.add_row(
                phase,
                op.operator,
                op.input_shapes,
                f"{op.calls:g}",
                f"{op.self_cpu_ms:.2f}",
                f"{100 * op.share_of_step:.1f}",
            )
    console.print(table)


# --- A/B ----------------------------------------------------------------------------------------


def measure_ab(args, arch: str, data: TrainingData, precision: str, candidate: str) -> dict:
    """Paired rounds of the default and ``candidate``, alternating which runs first."""
    options = CANDIDATES[candidate]
    warmup = max(args.warmup, COMPILE_WARMUP) if options.get("compile") else args.warmup
    base = Loop(args.steps, warmup, args.batch_size, {"precision": precision})
    head = Loop(args.steps, warmup, args.batch_size, {"precision": precision, **options})
    default_rates, candidate_rates = [], []
    for round_ in range(args.rounds):
        order = [(base, default_rates), (head, candidate_rates)]
        for loop, rates in order if round_ % 2 == 0 else reversed(order):
            rates.append(archbench_images_per_second(arch, data, loop))
    # ab_stats compares times (head / base); a step's time is batch / rate.
    step_ns = [
        [args.batch_size / rate * 1e9 for rate in rates]
        for rates in (default_rates, candidate_rates)
    ]
    comparison = ab_stats.compare(candidate, *step_ns, AB_THRESHOLD, AB_ALPHA)
    return {
        "arch": arch,
        "precision": precision,
        "candidate": candidate,
        "options": options,
        "default_images_per_s": statistics.median(default_rates),
        "candidate_images_per_s": statistics.median(candidate_rates),
        "speedup": 1 / comparison.ratio,
        "speedup_ci95": [1 / comparison.ci_high, 1 / comparison.ci_low],
        "p_value": comparison.p_value,
        "verdict": comparison.verdict,  # faster / slower / same / unsure, for the candidate
        "default_rounds": default_rates,
        "candidate_rounds": candidate_rates,
    }


def print_ab(row: dict) -> None:
    low, high = row["speedup_ci95"]
    print(
        f"| {row['arch']} | {row['precision']} | {row['candidate']} | "
        f"{row['default_images_per_s']:.0f} | {row['candidate_images_per_s']:.0f} | "
        f"{row['speedup']:.3f} ({low:.3f}-{high:.3f}) | {row['p_value']:.1e} | {row['verdict']} |",
        flush=True,
    )


# --- command line -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=FLOP_CONVENTION + ". Peak: the fp32 FLOP/s probe of `archbench profile` "
        "(archbench.measure.roofline), cached per machine and thread count.",
    )
    parser.add_argument(
        "--archive",
        type=Path,
        default=REPO.parent / "shared" / "data" / "cifar10-jpg-mini.tar.gz",
        help="CIFAR-10 JPEG archive to train on (default: the shared mini set)",
    )
    parser.add_argument(
        "--archs",
        default="squeezenet_dsc,squeezenet",
        help="comma-separated (default squeezenet_dsc,squeezenet)",
    )
    parser.add_argument(
        "--precisions",
        default="fp32,bf16",
        help="comma-separated, of: " + ", ".join(PRECISIONS) + " (default fp32,bf16)",
    )
    parser.add_argument("--steps", type=int, default=30, help="timed steps per loop (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="median of this many loops (default 3)"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="default 128, the study's")
    parser.add_argument(
        "--workers", type=int, default=2, help="reference DataLoader workers (default 2)"
    )
    parser.add_argument("--compile", action="store_true", help="also time archbench --compile")
    parser.add_argument(
        "--with",
        dest="with_candidates",
        metavar="CANDIDATES",
        help="also time these candidates (see --ab) as columns of their own, each beside the "
        "precision it is for (e.g. depthwise-fp32 beside bf16)",
    )
    parser.add_argument("--threads", type=int, help="intra-op threads (default: torch's)")
    parser.add_argument("--interop-threads", type=int, help="inter-op threads (default: torch's)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write host, peak and rows")
    parser.add_argument(
        "--peak-cache-dir", type=Path, help="where the peak probe is cached (default archbench's)"
    )
    parser.add_argument("--refresh-peak", action="store_true", help="probe the peak again")
    mode = parser.add_argument_group("breakdown (instead of timing)")
    mode.add_argument("--breakdown", action="store_true", help="profile steps per operator")
    mode.add_argument("--breakdown-steps", type=int, default=2, help="profiled steps (default 2)")
    mode.add_argument(
        "--breakdown-top", type=int, default=8, help="operators shown per phase (default 8)"
    )
    mode.add_argument("--breakdown-csv", type=Path, metavar="PATH", help="every operator's row")
    mode.add_argument(
        "--breakdown-with",
        metavar="CANDIDATES",
        help="also break down with each of these candidates on (see --ab), e.g. "
        "depthwise-contiguous: per-layer rows of both layouts side by side",
    )
    ab = parser.add_argument_group("A/B (instead of timing)")
    ab.add_argument(
        "--ab",
        metavar="CANDIDATES",
        help="comma-separated candidates against the default: " + ", ".join(CANDIDATES),
    )
    ab.add_argument(
        "--rounds",
        type=int,
        default=10,
        help="paired rounds per candidate (default 10; >= 6 for p < 0.05)",
    )
    args = parser.parse_args(argv)
    args.archs = [a for a in args.archs.split(",") if a]
    args.precisions = [p for p in args.precisions.split(",") if p]
    bad = [p for p in args.precisions if p not in PRECISIONS]
    if bad:
        parser.error(f"--precisions {','.join(bad)}: choose from {', '.join(PRECISIONS)}")
    args.ab = [c for c in args.ab.split(",") if c] if args.ab else []
    unknown = [c for c in args.ab if c not in CANDIDATES]
    if unknown:
        parser.error(f"--ab {','.join(unknown)}: choose from {', '.join(CANDIDATES)}")
    args.with_candidates = [c for c in (args.with_candidates or "").split(",") if c]
    unknown = [c for c in args.with_candidates if c not in CANDIDATES]
    if unknown:
        parser.error(f"--with {','.join(unknown)}: choose from {', '.join(CANDIDATES)}")
    args.breakdown_with = [c for c in (args.breakdown_with or "").split(",") if c]
    unknown = [c for c in args.breakdown_with if c not in CANDIDATES]
    if unknown:
        parser.error(f"--breakdown-with {','.join(unknown)}: choose from {', '.join(CANDIDATES)}")
    if args.breakdown_with and not args.breakdown:
        parser.error("--breakdown-with needs --breakdown")
    if args.breakdown and args.ab:
        parser.error("--breakdown and --ab are separate modes: run them one at a time")
    if args.breakdown_csv and not args.breakdown:
        parser.error("--breakdown-csv needs --breakdown")
    for flag in ("steps", "repeats", "batch_size", "breakdown_steps", "breakdown_top"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be positive")
    if args.ab and args.rounds < 2:
        parser.error("--rounds must be at least 2 (6 or more for a p-value below 0.05)")
    if not args.archive.is_file():
        parser.error(f"--archive {args.archive}: no such file")
    return args


def run(args: argparse.Namespace) -> dict:
    """Measure what ``args`` asks for; returns the JSON document (also written to --json)."""
    console = Console(width=BREAKDOWN_WIDTH)  # wide enough for shapes, also in a pipe
    for arch in args.archs:  # an unknown or unbuildable network fails before any timing
        training_flops_per_image(arch)
    host = host_facts()
    peak = None
    if not args.breakdown:
        peak = cached_peak(
            args.peak_cache_dir, "cpu", torch.get_num_threads(), refresh=args.refresh_peak
        )
    print_host(host, peak)
    document = {
        "convention": FLOP_CONVENTION,
        "host": host,
        "peak": peak.to_dict() if peak else None,
    }
    with tempfile.TemporaryDirectory() as scratch:
        root = extract(args.archive, Path(scratch))
        data = TrainingData(root, Path(scratch) / "cache")
        if args.breakdown:
            run_breakdown(args, data, console, document)
        elif args.ab:
            run_ab(args, data, document)
        else:
            run_throughput(args, root, data, peak, document)
    document["host"]["load_average_end"] = list(os.getloadavg())
    save(args, document)
    return document


def run_breakdown(args, data: TrainingData, console: Console, document: dict) -> None:
    breakdowns: dict[tuple[str, str, str], StepBreakdown] = {}
    document["breakdown"] = []
    for arch in args.archs:
        for precision in args.precisions:
            for variant in ("default", *args.breakdown_with):
                if CANDIDATE_PRECISION.get(variant, precision) != precision:
                    continue  # a candidate for another precision
                result = measure_breakdown(args, arch, data, precision, variant)
                breakdowns[(arch, precision, variant)] = result
                print_breakdown(console, (arch, precision, variant), result, args.breakdown_top)
                document["breakdown"].append(
                    {
                        "arch": arch,
                        "precision": precision,
                        "variant": variant,
                        "steps": result.steps,
                        "wall_ms": result.wall_ms,
                        "phase_ms": result.phase_ms(),
                    }
                )
                save(args, document)
    if args.breakdown_csv:
        write_csv(args.breakdown_csv, breakdowns)
        print(f"# wrote {args.breakdown_csv}")


def run_ab(args, data: TrainingData, document: dict) -> None:
    document["ab"] = []
    print(AB_HEADER)
    for arch in args.archs:
        for precision in args.precisions:
            for candidate in args.ab:
                if CANDIDATE_PRECISION.get(candidate, precision) != precision:
                    continue  # a candidate for another precision (depthwise-fp32: bf16 only)
                row = measure_ab(args, arch, data, precision, candidate)
                document["ab"].append(row)
                print_ab(row)
                save(args, document)


def run_throughput(args, root: Path, data: TrainingData, peak, document: dict) -> None:
    document["rows"] = []
    print_throughput_header(args)
    for arch in args.archs:
        rows = measure_throughput(args, arch, root, data, peak)
        document["rows"].extend(rows)
        print_throughput_row(rows)
        save(args, document)
        # fp32 above the fp32 peak: the cached peak came from a busy spell. bf16 may exceed it
        # (its own peak is several times higher where the CPU has native bf16).
        if any(row["peak_fraction"] > 1 for row in rows if row["precision"] == "fp32"):
            print("# warning: fp32 above 100% of the cached peak: probe it again (--refresh-peak)")


def save(args: argparse.Namespace, document: dict) -> None:
    """Write ``document`` to ``--json`` (after every network: an interrupted run keeps those)."""
    if args.json:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        files.write_json(args.json, {**document, "settings": settings})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.interop_threads:
        torch.set_num_interop_threads(args.interop_threads)  # only before any parallel work
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        run(args)
    except (ArchbenchError, ArchitectureError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(f"# wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
