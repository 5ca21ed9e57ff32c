"""Deployment figures for the README: layer-wise roofline and int8 against fp32, in one run.

For each network: batch-1 p50 on cpu-eager, cpu-onnxruntime and the int8 model (ONNX Runtime
static QDQ quantization calibrated on 256 training images), the aggregate and the layer-wise
roofline bounds, and -- for trained runs given with ``--runs`` -- top-1 of fp32 and int8 on the
run's whole test split. Every ratio is measured in the same process, interleaved per network.

    python benchmarks/deployment.py --samples 300                    # the five, untrained
    python benchmarks/deployment.py --archs '*' --samples 3 --calibration 8   # every network
    python benchmarks/deployment.py --runs runs/A runs/B --samples 300

Untrained networks are timed on the digits test images fitted to each network's own input
shape (``benchmarks/inputs.py``), as ``archbench profile --arch`` feeds them.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import inputs  # noqa: E402  (benchmarks/inputs.py: every script's input shapes)

from archbench.data import DataConfig, load_data, normalize  # noqa: E402
from archbench.measure.complexity import count_macs  # noqa: E402
from archbench.measure.export import export_onnx  # noqa: E402
from archbench.measure.latency import measure_latency  # noqa: E402
from archbench.measure.layerwise import layer_costs, layerwise_bound_ms  # noqa: E402
from archbench.measure.numerics import compare_to_fp32  # noqa: E402
from archbench.measure.onnxrt import create_session  # noqa: E402
from archbench.measure.quantize import calibration_subset, quantize_int8  # noqa: E402
from archbench.measure.roofline import cached_peak, min_bytes_moved, roofline  # noqa: E402
from archbench.train.rundir import load_checkpoint, read_run  # noqa: E402
from architectures import create_arch, list_archs  # noqa: E402

FIVE = ("squeezenet_dsc", "squeezenet", "mobilenet", "alexnet", "vgg19")


def _targets(args):
    """(label, model, data config, mean, std, trained) for each network to measure."""
    if not args.runs:
        names = [n for n in list_archs() if fnmatch.fnmatch(n, args.archs)] if args.archs else FIVE
        for arch in names:
            shape = inputs.input_shape(arch)
            torch.manual_seed(0)
            model = create_arch(arch, num_classes=10, in_channels=shape[0])
            data = DataConfig(dataset="digits", download=False, input_shape=shape)
            yield arch, model, data, None, None, False
        return
    for run_dir in args.runs:
        info = read_run(Path(run_dir))
        best = load_checkpoint(info.path / "best.pt")
        train = info.config["train"]
        shape = tuple(train.get("input_shape") or (3, 32, 32))  # older runs: the study's shape
        model = create_arch(best["arch"], num_classes=best["num_classes"], in_channels=shape[0])
        model.load_state_dict(best["model"])
        label = f"{best['arch']} ({train['dataset'].split('/')[-1]})"
        data = DataConfig(dataset=train["dataset"], download=False, input_shape=shape)
        yield label, model, data, best["mean"], best["std"], True


def _logits(path: Path, images: torch.Tensor, threads: int) -> torch.Tensor:
    session = create_session(path, threads=threads).session
    chunks = [
        session.run(None, {"input": images[i : i + 256].numpy()})[0]
        for i in range(0, images.shape[0], 256)
    ]
    return torch.cat([torch.from_numpy(chunk) for chunk in chunks])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", help="trained run directories (default: untrained)")
    parser.add_argument(
        "--archs", help="untrained networks matching this pattern (default: the study's five)"
    )
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument(
        "--calibration", type=int, default=256, help="int8 calibration images (default 256)"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    peak = cached_peak(None, "cpu", args.threads)
    rows = []
    for label, model, data_config, mean, std, trained in _targets(args):
        data = load_data(data_config)
        mean, std = mean or data.mean, std or data.std
        test = normalize(data.test.images, mean, std)
        train = normalize(data.train.images, mean, std)
        model.eval()
        with tempfile.TemporaryDirectory() as work:
            fp32_path, int8_path = Path(work) / "fp32.onnx", Path(work) / "int8.onnx"
            shape = (1, *test.shape[1:])  # the network's own input shape
            assert export_onnx(model, fp32_path, input_shape=shape).ok
            int8 = quantize_int8(fp32_path, int8_path, calibration_subset(train, args.calibration))
            assert int8.ok, int8.error
            p50 = {}
            for name, kwargs in (
                ("cpu-eager", {"backend": "cpu-eager", "onnx_path": None}),
                ("cpu-onnxruntime", {"backend": "cpu-onnxruntime", "onnx_path": fp32_path}),
                ("int8", {"backend": "cpu-onnxruntime", "onnx_path": int8_path}),
            ):
                result = measure_latency(
                    model=model,
                    samples=test[: args.samples],
                    threads=args.threads,
                    batch_sizes=(1,),
                    **kwargs,
                )
                p50[name] = result.batch1.p50_ms
            accuracy = None
            if trained:
                accuracy = compare_to_fp32(
                    _logits(int8_path, test, args.threads),
                    _logits(fp32_path, test, args.threads),
                    data.test.labels,
                    size_bytes=int8.size_bytes,
                    fp32_size_bytes=os.path.getsize(fp32_path),
                )
            size_ratio = int8.size_bytes / os.path.getsize(fp32_path)
        macs = count_macs(model, shape)
        aggregate = roofline(macs, 1.0, peak, min_bytes_moved(model, shape, 10))
        layerwise = layerwise_bound_ms(layer_costs(model, input_shape=shape, total_macs=macs), peak)
        best = min(p50["cpu-eager"], p50["cpu-onnxruntime"])
        row = {
            "network": label,
            **{f"{name}_p50_ms": value for name, value in p50.items()},
            "aggregate_bound_ms": aggregate["lower_bound_ms"],
            "layerwise_bound_ms": layerwise,
            "best_fp32_over_layerwise": best / layerwise,
            "int8_over_fp32_layerwise_bound": p50["int8"] / layerwise,
            "int8_speedup_vs_onnxruntime": p50["cpu-onnxruntime"] / p50["int8"],
            "int8_size_ratio": size_ratio,
            "accuracy": accuracy,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"peak {peak.gflops:.1f} GFLOP/s, {peak.gbps:.1f} GB/s, {args.threads} threads")
    header = "| network | eager | ORT fp32 | ORT int8 | aggregate bound | layer-wise bound |"
    print(header + " best fp32 / layer-wise | int8 speed-up | int8 size | int8 Δ top-1 |")
    print("|---" * 10 + "|")
    for row in rows:
        accuracy = row["accuracy"]
        delta = f"{accuracy['top1_delta_points']:+.2f}" if accuracy else "-"
        print(
            f"| {row['network']} | {row['cpu-eager_p50_ms']:.3f} | "
            f"{row['cpu-onnxruntime_p50_ms']:.3f} | {row['int8_p50_ms']:.3f} | "
            f"{row['aggregate_bound_ms']:.3f} | {row['layerwise_bound_ms']:.3f} | "
            f"{row['best_fp32_over_layerwise']:.2f}x | "
            f"{row['int8_speedup_vs_onnxruntime']:.2f}x | {row['int8_size_ratio']:.2f} | {delta} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
