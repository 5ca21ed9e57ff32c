"""Peer cross-check: timm's own benchmark.py against archbench's cpu-eager latency, explained.

For each timm model, batch 1, CPU, 224 px, in one process and interleaved repeat by repeat:

* ``timm_loop``: timm's ``InferenceBenchmarkRunner`` timing loop, as its benchmark.py runs it:
  one ``torch.randn`` input reused, ``torch.no_grad()``, ``--num-warm-iter`` warm-up steps,
  then the *mean* of ``--num-bench-iter`` step times (``time.perf_counter`` around
  ``model(x)``); the model as timm's runner builds it (``timm.create_model``, its default
  1000 classes);
* ``timm_loop_inference_mode``: the same loop under ``torch.inference_mode()`` (archbench's
  mode): the difference is autograd's bookkeeping, which ``no_grad`` still does per op;
* ``archbench``: ``measure_latency("cpu-eager")`` on real digits images resized to 224 (as
  ``archbench profile --arch timm:NAME --input-size 224`` feeds them), mean and p50, with the
  model archbench profiles (``--num-classes``, default 10, as the CLI's);
* ``timm_script`` (with ``--timm-benchmark PATH``, a timm checkout's benchmark.py): the script
  itself, in a subprocess, ``--bench inference -b 1 --img-size 224 --device cpu``.

Each ratio is printed against ``archbench`` mean, so the gap between timm's figure and
archbench's splits into: the autograd mode (timm_loop / timm_loop_inference_mode), the
classifier's size (1000 against 10 classes, inside timm_loop), the warm-up and sample count
(a 40-step mean right after 10 warm-up steps against archbench's ``--samples``), and the
subprocess (timm_script / timm_loop: a fresh interpreter, its own thread count).

    python benchmarks/timm_crosscheck.py --models resnet18,mobilenetv3_small_100 --repeats 3

Measure on a quiet machine: every figure here is a latency.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archbench.data import DataConfig, fit_images, load_data  # noqa: E402
from archbench.measure.latency import measure_latency  # noqa: E402


def timm_loop(model, x: torch.Tensor, warmup: int, steps: int, mode) -> float:
    """Mean milliseconds per step, timed as timm's InferenceBenchmarkRunner times them."""
    with mode():
        for _ in range(warmup):
            model(x)
        total = 0.0
        for _ in range(steps):
            start = time.perf_counter()
            model(x)
            total += time.perf_counter() - start
    return 1000 * total / steps


def timm_script(path: Path, name: str, args) -> float:
    """timm's benchmark.py itself: its inference step time in milliseconds."""
    with tempfile.TemporaryDirectory() as work:
        results = Path(work) / "results.csv"
        command = [
            sys.executable, str(path), "--bench", "inference", "--model", name, "-b", "1",
            "--img-size", str(args.input_size), "--device", "cpu",
            "--num-warm-iter", str(args.warmup), "--num-bench-iter", str(args.steps),
            "--results-file", str(results),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not results.is_file():
            raise RuntimeError(f"timm's benchmark.py failed: {done.stderr.strip()[-400:]}")
        with results.open() as handle:
            row = next(csv.DictReader(handle))
    key = next(k for k in ("infer_step_time", "step_time") if k in row)
    return float(row[key])


def cross_check(name: str, images: torch.Tensor, args) -> dict:
    import timm

    torch.manual_seed(0)
    timm_model = timm.create_model(name, pretrained=False).eval()
    torch.manual_seed(0)
    ours = timm.create_model(name, pretrained=False, num_classes=args.num_classes).eval()
    x = torch.randn(1, 3, args.input_size, args.input_size)
    figures: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        figures.setdefault("timm_loop", []).append(
            timm_loop(timm_model, x, args.warmup, args.steps, torch.no_grad)
        )
        figures.setdefault("timm_loop_inference_mode", []).append(
            timm_loop(timm_model, x, args.warmup, args.steps, torch.inference_mode)
        )
        result = measure_latency(
            "cpu-eager",
            model=ours,
            onnx_path=None,
            samples=images[: args.samples],
            warmup=args.warmup,
            threads=args.threads,
            batch_sizes=(1,),
        )
        figures.setdefault("archbench_mean", []).append(result.batch1.mean_ms)
        figures.setdefault("archbench_p50", []).append(result.batch1.p50_ms)
        if args.timm_benchmark:
            figures.setdefault("timm_script", []).append(
                timm_script(args.timm_benchmark, name, args)
            )
    medians = {key: statistics.median(values) for key, values in figures.items()}
    reference = medians["archbench_mean"]
    return {
        "model": name,
        "threads": torch.get_num_threads(),
        "ms": medians,
        "over_archbench_mean": {key: value / reference for key, value in medians.items()},
        "repeats": figures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,mobilenetv3_small_100")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=10, help="archbench's (default 10)")
    parser.add_argument("--samples", type=int, default=300, help="archbench's timed samples")
    parser.add_argument("--warmup", type=int, default=10, help="timm's default (10)")
    parser.add_argument("--steps", type=int, default=40, help="timm's --num-bench-iter (40)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--timm-benchmark", type=Path, help="a timm checkout's benchmark.py")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if args.timm_benchmark and not args.timm_benchmark.is_file():
        parser.error(f"--timm-benchmark: no file {args.timm_benchmark}")
    torch.set_num_threads(args.threads)
    digits = load_data(DataConfig("digits", download=False)).test.images
    fitted = fit_images(digits[: args.samples], (3, args.input_size, args.input_size)).float()
    images = ((fitted / 255 - 0.5) / 0.25).contiguous()
    rows = []
    for name in (part.strip() for part in args.models.split(",") if part.strip()):
        row = cross_check(name, images, args)
        rows.append(row)
        ratios = ", ".join(f"{k} {v:.3f}" for k, v in row["over_archbench_mean"].items())
        print(f"{name}: archbench mean {row['ms']['archbench_mean']:.3f} ms; over it: {ratios}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
