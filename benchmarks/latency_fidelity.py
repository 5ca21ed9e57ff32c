"""Does the profiler's cpu-eager p50 agree with torch.utils.benchmark?

For each registered network, in one process and on the same batch-1 input with the same thread
count, this compares the p50 that
``archbench.measure.latency.measure_latency("cpu-eager", ...)`` reports with the median of
``torch.utils.benchmark.Timer("model(x)").blocked_autorange()``. The two are interleaved repeat
by repeat, so machine drift touches both. The ratio should sit in 0.9-1.1;
the coefficient of variation (CV) of the profiler's p50 over the repeats says how repeatable it is.

    python benchmarks/latency_fidelity.py --samples 300 --repeats 5 --threads 2

The input is one CIFAR-10 test image when ``--images DIR`` points at an ImageFolder test split
(e.g. the extracted ``cifar10-jpg-mini/test``), else a fixed-seed standard-normal tensor, in
each network's own input shape (``benchmarks/inputs.py``); latency of these networks does not
depend on pixel values.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.utils.benchmark as benchmark

from archbench.measure.latency import measure_latency
from archbench.measure.sysinfo import describe_system

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inputs  # noqa: E402  (benchmarks/inputs.py: every script's inputs)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default="*", help="shell-style pattern (default: all)")
    parser.add_argument(
        "--samples", type=int, default=300, help="timed samples per profiler run (default 300)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="repeats of both (default 5)")
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help=f"intra-op threads (default {torch.get_num_threads()})",
    )
    parser.add_argument("--warmup", type=int, default=10, help="profiler warm-up (default 10)")
    parser.add_argument(
        "--min-run-time",
        type=float,
        default=1.0,
        help="seconds per blocked_autorange call (default 1.0)",
    )
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--images", type=Path, help="ImageFolder split to take the input from")
    parser.add_argument("--json", type=Path, help="also write the rows and system info here")
    return parser.parse_args(argv)


def first_image(images: Path | None) -> tuple[torch.Tensor | None, str]:
    """The first ImageFolder JPEG as a uint8 ``(1, 3, H, W)`` batch (None: seeded noise)."""
    if images is None:
        return None, "standard normal (seed 0)"
    import numpy as np
    from PIL import Image

    path = next(iter(sorted(images.glob("*/*.jpg"))), None)
    if path is None:
        raise SystemExit(f"no */*.jpg under {images}")
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).unsqueeze(0), str(path)


def batch1_input(arch: str, image: torch.Tensor | None) -> torch.Tensor:
    """One input in ``arch``'s own shape: the image fitted to it, or seeded noise."""
    return inputs.seeded_input(arch) if image is None else inputs.image_input(arch, image)


def timer_median_ms(model, x, threads: int, min_run_time: float) -> float:
    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=threads)
    with torch.inference_mode():  # the same grad mode the profiler measures under
        measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return measurement.median * 1e3


def cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else 0.0


def main(argv=None) -> int:
    args = parse_args(argv)
    from architectures import create_arch, list_archs

    names = [name for name in list_archs() if fnmatch.fnmatch(name, args.archs)]
    if not names:
        print(f"no architecture matches {args.archs!r}", file=sys.stderr)
        return 2
    image, source = first_image(args.images)
    system = describe_system(args.threads)
    print(
        f"{system['cpu_model']} | {args.threads} threads | torch {system['versions']['torch']}"
        f" | input: {source} | {args.samples} samples x {args.repeats} repeats"
    )
    header = (
        f"{'arch':<16} {'profiler p50 ms':>15} {'Timer median ms':>15} {'ratio':>7}"
        f" {'ratio range':>13} {'CV p50':>7} {'CV Timer':>8}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for name in names:
        torch.manual_seed(0)
        x = batch1_input(name, image)
        samples = x.repeat(args.samples, 1, 1, 1)  # the profiler times the very same input
        model = create_arch(name, num_classes=args.num_classes, in_channels=x.shape[1]).eval()
        p50s, medians = [], []
        for _ in range(args.repeats):
            result = measure_latency(
                "cpu-eager",
                model=model,
                onnx_path=None,
                samples=samples,
                warmup=args.warmup,
                threads=args.threads,
                batch_sizes=(1,),
            )
            if result.status != "ok":
                print(f"{name:<16} {result.status}: {result.reason}")
                break
            p50s.append(result.batch1.p50_ms)
            medians.append(timer_median_ms(model, x, args.threads, args.min_run_time))
        if len(p50s) != args.repeats:
            continue
        ratios = [p50 / median for p50, median in zip(p50s, medians, strict=True)]
        row = {
            "arch": name,
            "profiler_p50_ms": statistics.median(p50s),
            "timer_median_ms": statistics.median(medians),
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "cv_profiler_p50": cv(p50s),
            "cv_timer_median": cv(medians),
        }
        rows.append(row)
        flag = "" if 0.9 <= row["ratio"] <= 1.1 else "  <- outside 0.9-1.1"
        print(
            f"{name:<16} {row['profiler_p50_ms']:>15.3f} {row['timer_median_ms']:>15.3f}"
            f" {row['ratio']:>7.3f} {row['ratio_min']:>6.3f}-{row['ratio_max']:<6.3f}"
            f" {100 * row['cv_profiler_p50']:>6.1f}% {100 * row['cv_timer_median']:>7.1f}%{flag}"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"system": system, "args": vars(args), "rows": rows}, indent=2, default=str)
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
