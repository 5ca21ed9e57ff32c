"""Deployment figures for the README: each backend against its floor, and int8 against fp32.

For each network and CPU backend (cpu-eager, cpu-onnxruntime, the int8 model -- ONNX Runtime
static QDQ quantization calibrated on 256 training images -- and cpu-eager-bf16 where the CPU
has native bf16): batch-1 p50, the floor (layer-wise roofline at the backend's own format's
peak and bytes, each layer charged at the fastest memory level its working set fits), the
cold-cache floor (every byte from DRAM), the overhead model's expected time (a model, not a
bound: sum over layers of max(floor, the backend's per-operator cost)), and the five layers
with the most time above their floor. For trained runs given with ``--runs``: top-1 of fp32 and
int8 on the run's whole test split. Every ratio is measured in the same process, per network.

    python benchmarks/deployment.py --samples 300 --json deployment.json   # the five, untrained
    python benchmarks/deployment.py --archs '*' --samples 3 --calibration 8   # every network
    python benchmarks/deployment.py --runs runs/A runs/B --samples 300

A p50 below 0.95 x its floor is printed as FLOOR BEATEN with the layer furthest below its own
floor: the floor is then wrong, never the measurement. Untrained networks are timed on the
digits test images fitted to each network's own input shape (``benchmarks/inputs.py``), as
``archbench profile --arch`` feeds them.
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
from archbench.measure.formats import (  # noqa: E402
    ELEMENT_BYTES,
    cached_format_peak,
    costs_in_format,
    peak_format,
)
from archbench.measure.latency import measure_latency  # noqa: E402
from archbench.measure.layerwise import layer_costs  # noqa: E402
from archbench.measure.numerics import bf16_skip_reason, compare_to_fp32  # noqa: E402
from archbench.measure.onnxrt import create_session  # noqa: E402
from archbench.measure.overhead import cached_op_costs  # noqa: E402
from archbench.measure.quantize import calibration_subset, quantize_int8  # noqa: E402
from archbench.measure.roofline import (  # noqa: E402
    forget_cached_probes,
    min_bytes_moved,
    roofline,
)
from archbench.profile.deployment import floors, layer_times  # noqa: E402
from archbench.train.rundir import load_checkpoint, read_run  # noqa: E402
from architectures import create_arch, list_archs  # noqa: E402

FIVE = ("squeezenet_dsc", "squeezenet", "mobilenet", "alexnet", "vgg19")
INVARIANT = 0.95  # p50 / floor below this: the floor is wrong (more than noise)


def cpu_backends() -> tuple[str, ...]:
    """The CPU backends measured here (eager bf16 only with native bf16)."""
    backends = ("cpu-eager", "cpu-onnxruntime", "cpu-onnxruntime-int8")
    return backends + (("cpu-eager-bf16",) if bf16_skip_reason() is None else ())


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


def backend_row(label, backend, model, paths, test, macs, fp32_costs, args) -> dict:
    """One network on one backend: p50, its floors, the model's expected time, the ratios."""
    result = measure_latency(
        backend,
        model=model,
        onnx_path=paths.get(backend),
        samples=test[: args.samples],
        threads=args.threads,
        batch_sizes=(1,),
    )
    if not result.ok:
        return {"arch": label, "backend": backend, "p50_ms": None, "error": result.reason}
    fmt = peak_format(backend)
    peak = cached_format_peak(args.peak_cache, "cpu", args.threads, fmt)
    sample = test[:1]
    costs = costs_in_format(fp32_costs, fmt)
    times = layer_times(backend, model, paths, sample, costs, args.threads)
    p50 = result.batch1.p50_ms
    size = ELEMENT_BYTES[fmt]
    aggregate = roofline(macs, p50, peak, min_bytes_moved(model, sample.shape, 10, size, size))
    return {
        "arch": label,
        "backend": backend,
        "p50_ms": p50,
        "aggregate_bound_ms": aggregate["lower_bound_ms"],
        "peak_gflops": peak.gflops,
        **floors(
            costs, peak, p50, times, backend, args.threads, args.peak_cache, (model, paths, sample)
        ),
        "layers_timed": len(times),
    }


def refresh_probes(args) -> None:
    """Forget every probe cached for this machine, then probe each backend's format peak (fp32
    first: the others take its bandwidths) and its operator costs again, before anything is
    timed; each layer's own-shape probe runs again when its network is profiled."""
    forget_cached_probes(args.peak_cache, "cpu", args.threads)
    formats = dict.fromkeys(["fp32", *(peak_format(backend) for backend in args.backends)])
    for fmt in formats:
        peak = cached_format_peak(args.peak_cache, "cpu", args.threads, fmt)
        print(f"# {fmt} peak probed again: {peak.gflops:.0f} GFLOP/s, {peak.gbps:.1f} GB/s")
    for backend in args.backends:
        cached_op_costs(args.peak_cache, backend, args.threads)


def below_own_floor(row: dict) -> str:
    """The layer furthest below its own floor (the one to look at when a floor is beaten)."""
    worst = row.get("layer_furthest_below_floor")
    if worst is None:
        return "no layer timed"
    return f"{worst['name']} ({worst['measured_ms']:.4f} ms vs floor {worst['floor_ms']:.4f})"


def network_rows(label, model, data_config, mean, std, trained, args) -> list[dict]:
    data = load_data(data_config)
    mean, std = mean or data.mean, std or data.std
    test = normalize(data.test.images, mean, std)
    train = normalize(data.train.images, mean, std)
    model.eval()
    shape = (1, *test.shape[1:])  # the network's own input shape
    macs = count_macs(model, shape)
    with tempfile.TemporaryDirectory() as work:
        fp32_path, int8_path = Path(work) / "fp32.onnx", Path(work) / "int8.onnx"
        assert export_onnx(model, fp32_path, input_shape=shape).ok
        int8 = quantize_int8(fp32_path, int8_path, calibration_subset(train, args.calibration))
        assert int8.ok, int8.error
        paths = {"cpu-onnxruntime": fp32_path, "cpu-onnxruntime-int8": int8_path}
        fp32_costs = layer_costs(model, shape, total_macs=macs)
        rows = [
            backend_row(label, b, model, paths, test, macs, fp32_costs, args) for b in args.backends
        ]
        int8_row = next(row for row in rows if row["backend"] == "cpu-onnxruntime-int8")
        int8_row["int8_size_ratio"] = int8.size_bytes / os.path.getsize(fp32_path)
        if trained:
            int8_row["accuracy"] = compare_to_fp32(
                _logits(int8_path, test, args.threads),
                _logits(fp32_path, test, args.threads),
                data.test.labels,
                size_bytes=int8.size_bytes,
                fp32_size_bytes=os.path.getsize(fp32_path),
            )
    return rows


def print_table(rows: list[dict]) -> None:
    print("| network | backend | format | p50 ms | floor ms | cold-cache floor ms | expected ms |"
          " p50 / floor | p50 / expected |")  # fmt: skip
    print("|---" * 9 + "|")
    for row in rows:
        if row["p50_ms"] is None:
            print(f"| {row['arch']} | {row['backend']} | - | {row['error']} |")
            continue
        expected = row.get("expected_ms")
        model = "- | -" if expected is None else f"{expected:.3f} | {row['p50_over_expected']:.2f}"
        print(
            f"| {row['arch']} | {row['backend']} | {row['peak_format']} | {row['p50_ms']:.3f} | "
            f"{row['floor_ms']:.3f} | {row['floor_dram_ms']:.3f} | "
            f"{model.split(' | ')[0]} | {row['p50_over_floor']:.2f} | {model.split(' | ')[1]} |"
        )
    print("\nthe five layers with the most time above their floor:")
    for row in rows:
        if row["p50_ms"] is None:
            continue
        layers = ", ".join(
            f"{layer['name']} ({layer['op']}, +{layer['above_floor_ms']:.3f} ms)"
            for layer in row["layers_most_above_floor"]
        )
        print(f"  {row['arch']} {row['backend']}: {layers}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", help="trained run directories (default: untrained)")
    parser.add_argument(
        "--archs", help="untrained networks matching this pattern (default: the study's five)"
    )
    parser.add_argument("--samples", type=int, default=300, help="timed samples (default 300)")
    parser.add_argument(
        "--calibration", type=int, default=256, help="int8 calibration images (default 256)"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--backends",
        type=lambda text: tuple(part.strip() for part in text.split(",") if part.strip()),
        default=cpu_backends(),
        help="comma-separated CPU backends (default: %(default)s; int8 is always measured)",
    )
    parser.add_argument(
        "--peak-cache", type=Path, help="peak cache directory (default: archbench's own)"
    )
    parser.add_argument(
        "--refresh-peak",
        action="store_true",
        help="probe every format's peak, each backend's operator costs and layer shapes again "
        "first (a cached probe from a busy spell makes floors too low or too high)",
    )
    parser.add_argument(
        "--json", type=Path, help="also write the rows here (one per network and backend)"
    )
    args = parser.parse_args()
    if "cpu-onnxruntime-int8" not in args.backends:
        args.backends = (*args.backends, "cpu-onnxruntime-int8")
    if args.refresh_peak:
        refresh_probes(args)
    rows = []
    for target in _targets(args):
        for row in network_rows(*target, args):
            rows.append(row)
            print(json.dumps(row), flush=True)
            ratio = row.get("p50_over_floor")
            if ratio is not None and ratio < INVARIANT:
                print(f"FLOOR BEATEN: {row['arch']} {row['backend']} p50/floor {ratio:.2f}, "
                      f"furthest below its floor: {below_own_floor(row)}", flush=True)  # fmt: skip
    print(f"{args.threads} threads")
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
