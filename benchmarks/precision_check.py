"""Precision check before a long run: does ``--precision bf16`` train to the accuracy fp32 does?

bf16 autocast trained 1.6-1.9x faster on a CPU with native bf16 and 1.1-2.3x slower on one
without (``train_throughput.py``, README); where it is faster it still changes the numerics,
so before spending hours on it, train the same network, seed and epochs once in fp32 and once in
bf16 on the dataset the long run will use, and compare test top-1 and training throughput. The
two match when their top-1 differs by at most ``--spread`` points (pick it from the seed spread
of the network: two fp32 seeds differ by about that much too).

    python benchmarks/precision_check.py --dataset imagefolder:data/cifar10-jpg --epochs 3
    python benchmarks/precision_check.py --arch squeezenet --dataset digits --epochs 2 --spread 2

Exit status 0 when the precisions match, 1 when they do not, 2 for bad input. Runs go to a
temporary directory (deleted) unless ``--runs-dir`` keeps them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from archbench.errors import ArchbenchError  # noqa: E402
from archbench.report import collect_runs  # noqa: E402
from archbench.train import TrainConfig, train_run  # noqa: E402


@dataclass(frozen=True)
class PrecisionResult:
    """One precision's figures: test top-1 and training images/s (median over epochs)."""

    precision: str
    top1: float
    images_per_second: float
    run_dir: Path


def train_once(config: TrainConfig) -> PrecisionResult:
    outcome = train_run(config, console=Console(quiet=True), quiet=True)
    if outcome.status != "complete":
        raise ArchbenchError(f"the {config.precision} run ended {outcome.status}")
    (record,) = collect_runs([outcome.run_dir])
    speeds = [row["images_per_second"] for row in record.metrics]
    return PrecisionResult(
        config.precision, outcome.result["test_top1"], statistics.median(speeds), outcome.run_dir
    )


def check(config: TrainConfig, spread_pts: float) -> tuple[list[PrecisionResult], bool]:
    """Train ``config`` in fp32 then bf16 (same seed); match = top-1 within ``spread_pts``."""
    results = [train_once(replace(config, precision=p)) for p in ("fp32", "bf16")]
    difference = 100 * abs(results[0].top1 - results[1].top1)
    return results, difference <= spread_pts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="squeezenet_dsc")
    parser.add_argument("--dataset", required=True, help="e.g. imagefolder:PATH, cifar10, digits")
    parser.add_argument("--data-dir", help="where datasets live (as archbench run)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument(
        "--spread", type=float, default=1.0, help="allowed top-1 difference, points (default 1)"
    )
    parser.add_argument("--runs-dir", help="keep both runs here (default: a deleted temp dir)")
    args = parser.parse_args(argv)
    try:
        if args.epochs < 1:
            raise ArchbenchError(f"--epochs must be positive, got {args.epochs}")
        if args.spread < 0:
            raise ArchbenchError(f"--spread must be >= 0, got {args.spread}")
        with tempfile.TemporaryDirectory(prefix="precision-check-") as scratch:
            config = TrainConfig(arch=args.arch, dataset=args.dataset, data_dir=args.data_dir,
                                 runs_dir=args.runs_dir or scratch, max_epochs=args.epochs,
                                 seed=args.seed, threads=args.threads)  # fmt: skip
            config.validate()
            results, match = check(config, args.spread)
    except ArchbenchError as error:
        print(f"precision_check: error: {error}", file=sys.stderr)
        return 2
    fp32, bf16 = results
    print(f"{args.arch} on {args.dataset}, seed {args.seed}, {args.epochs} epochs each")
    print("precision  test top-1 %  train images/s")
    for result in results:
        print(f"{result.precision:<9}  {100 * result.top1:11.2f}  {result.images_per_second:14.0f}")
    difference = 100 * (bf16.top1 - fp32.top1)
    speedup = bf16.images_per_second / fp32.images_per_second
    verdict = "match" if match else "DO NOT match"
    print(f"bf16 - fp32: {difference:+.2f} points, throughput x{speedup:.2f}; "
          f"{verdict} within {args.spread:g} points")  # fmt: skip
    return 0 if match else 1


if __name__ == "__main__":
    sys.exit(main())
