"""The deployment stages of a profile: reduced-precision models, their accuracy against fp32,
cold start and inference memory per backend, and the layer-wise roofline.

Each stage records ``null`` with a reason rather than stopping the profile: a network that
cannot be quantized still gets its fp32 figures.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import describe_error
from ..evaluate.classification import predict_logits
from ..measure.backends import EAGER_DTYPES, device_of, is_onnxruntime, parse_backends
from ..measure.coldstart import ColdStartSpec, measure_cold_start
from ..measure.export import ExportResult, export_onnx
from ..measure.formats import costs_in_format
from ..measure.layer_probes import cached_layer_ms, count_other_ops
from ..measure.layerwise import (
    CSV_HEADER,
    eager_layer_times,
    layer_costs,
    layer_costs_to_csv_rows,
    layerwise_roofline,
    onnxruntime_layer_times,
)
from ..measure.models import eval_copy, torch_threads
from ..measure.numerics import REDUCED_PRECISION, compare_to_fp32
from ..measure.onnxrt import create_session
from ..measure.overhead import cached_op_costs, floor_figures
from ..measure.quantize import calibration_subset, quantize_int8
from ..measure.roofline import MachinePeak, forget_cached_probes
from .config import ProfileConfig
from .outputs import write_csv

Say = Callable[[str], None]
INT8_FILE = "model.int8.onnx"
FP16_FILE = "model.fp16.onnx"
NO_COLD_START = ("cuda-naive",)  # the same model and session as cuda-eager


def reduced_precision_models(
    model: nn.Module,
    backends: tuple[str, ...],
    exported: ExportResult,
    calibration: torch.Tensor | None,
    calibration_samples: int,
    out_dir: Path,
    say: Say,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """The ONNX file each ONNX Runtime backend runs, and how the int8 model was made."""
    paths: dict[str, Path] = {}
    made: dict[str, Any] = {}
    if not exported.ok:
        return paths, made
    paths.update({b: exported.path for b in backends if b.endswith("-onnxruntime")})
    if "cpu-onnxruntime-int8" in backends:
        if calibration is None:
            made["int8"] = {"ok": False, "error": "no training images to calibrate on"}
        else:
            images = calibration_subset(calibration, calibration_samples)
            say(f"int8 static quantization, calibrated on {images.shape[0]} training images")
            result = quantize_int8(exported.path, out_dir / INT8_FILE, images)
            made["int8"] = result.to_dict()
            if result.ok:
                paths["cpu-onnxruntime-int8"] = result.path
    if "cuda-onnxruntime-fp16" in backends and torch.cuda.is_available():
        try:
            half = copy.deepcopy(model).to("cuda").half().eval()
            result = export_onnx(half, out_dir / FP16_FILE, input_shape=(1, 3, 32, 32))
            made["fp16"] = result.to_dict()
            if result.ok:
                paths["cuda-onnxruntime-fp16"] = result.path
        except Exception as error:  # recorded: the backend is then skipped with this reason
            made["fp16"] = {"ok": False, "error": describe_error(error)}
    return paths, made


def missing_model_reason(backend: str, exported: ExportResult, made: dict) -> str | None:
    """Why an ONNX Runtime backend has no model file to run, or ``None`` to let it try."""
    if not exported.ok:
        return f"ONNX export failed: {exported.error}"
    precision = REDUCED_PRECISION.get(backend)
    if precision in made and not made[precision].get("ok"):
        return f"no {precision} model: {made[precision].get('error')}"
    return None


def _backend_logits(backend, model, path, images, threads) -> torch.Tensor:
    if is_onnxruntime(backend):
        opened = create_session(path, device=device_of(backend), threads=threads)
        if opened.fallback:
            raise RuntimeError(opened.fallback)
        dtype = np.float16 if backend.endswith("-fp16") else np.float32
        chunks = [
            opened.session.run(None, {opened.input_name: batch.numpy().astype(dtype)})[0]
            for batch in images.split(256)
        ]
        return torch.from_numpy(np.concatenate(chunks).astype(np.float32))
    converted = copy.deepcopy(model).to(device_of(backend), EAGER_DTYPES[backend]).eval()
    with torch.inference_mode():
        return torch.cat(
            [
                converted(batch.to(device_of(backend), EAGER_DTYPES[backend])).float().cpu()
                for batch in images.split(256)
            ]
        )


def numerics(model, latency, paths, images, labels, fp32_size, threads, say) -> dict[str, Any]:
    """Accuracy against fp32 of every reduced-precision backend that ran."""
    reduced = [b for b, r in latency.items() if b in REDUCED_PRECISION and r.ok]
    if not reduced:
        return {}
    fp32_logits = predict_logits(model, images, threads=threads)
    figures: dict[str, Any] = {}
    for backend in reduced:
        say(f"accuracy of {backend} against fp32 on {images.shape[0]} images")
        path = paths.get(backend)
        try:
            logits = _backend_logits(backend, model, path, images, threads)
            size = os.path.getsize(path) if path is not None else None
            figures[backend] = {
                "precision": REDUCED_PRECISION[backend],
                **compare_to_fp32(
                    logits, fp32_logits, labels, size_bytes=size, fp32_size_bytes=fp32_size
                ),
            }
        except Exception as error:
            figures[backend] = {"error": describe_error(error)}
    return figures


def cold_starts(arch, num_classes, latency, paths, out_dir, sample, threads, say) -> None:
    """``cold_start`` and ``memory`` of each backend that ran, from fresh interpreters."""
    for backend, result in latency.items():
        if not result.ok or backend in NO_COLD_START:
            continue
        say(f"cold start and memory of {backend} in a fresh interpreter")
        spec = ColdStartSpec(
            backend=backend,
            arch=arch,
            num_classes=num_classes,
            threads=threads,
            state_dict=str(out_dir / "state_dict.pt"),
            onnx=str(paths[backend]) if backend in paths else None,
        )
        try:
            figures = measure_cold_start(spec, sample)
        except Exception as error:
            result.cold_start = {"error": describe_error(error)}
            continue
        memory_keys = ("peak_rss_bytes", "baseline_rss_bytes", "inference_memory_bytes")
        result.memory = {key: figures.pop(key) for key in memory_keys}
        result.cold_start = figures


def layer_times(backend, model, paths, sample, costs, threads) -> dict[str, float]:
    """Each layer's measured milliseconds on ``backend`` (CPU; ``paths``: its ONNX file)."""
    if backend in EAGER_DTYPES or backend == "cpu-eager":
        dtype = EAGER_DTYPES.get(backend, torch.float32)
        with eval_copy(model, "cpu") as cpu_model, torch_threads(threads):
            # a copy in another dtype: eval_copy may yield the caller's own model
            converted = copy.deepcopy(cpu_model).to(dtype) if dtype != torch.float32 else cpu_model
            return eager_layer_times(converted, sample.to(dtype), costs)
    if backend in paths:
        return onnxruntime_layer_times(paths[backend], sample, costs, threads=threads)
    return {}


def layerwise(model, rooflines, peaks, latency, paths, sample, macs, out_dir, threads, cache, say):
    """Each CPU reading's floor (its format's peak and bytes, cache levels), cold-cache floor,
    overhead model and the layers furthest from the floor; ``layerwise_roofline.csv``.

    ``peaks`` maps a numeric format to its CPU peak (a dict, or one with an ``error``).
    """
    readings = {b: r for b, r in rooflines.items() if "error" not in r and device_of(b) == "cpu"}
    if not readings:
        return
    say("layer-wise roofline")
    try:
        fp32_costs = layer_costs(model, tuple(sample.shape), total_macs=macs)
    except Exception as error:
        for reading in readings.values():
            reading["layerwise_error"] = describe_error(error)
        return
    rows: list[list[Any]] = []
    costs_of: dict[str, Any] = {}
    for backend, reading in readings.items():
        fmt = reading["peak_format"]
        if "error" in peaks.get(fmt, {"error": ""}):
            reading["layerwise_error"] = f"{fmt} peak unavailable"
            continue
        peak = MachinePeak.from_dict(peaks[fmt])
        if fmt not in costs_of:
            costs_of[fmt] = costs_in_format(fp32_costs, fmt)
            rows.extend(layer_costs_to_csv_rows(costs_of[fmt], peak))
        costs = costs_of[fmt]
        times: dict[str, float] = {}
        try:
            times = layer_times(backend, model, paths, sample, costs, threads)
        except Exception as error:
            reading["layer_times_error"] = describe_error(error)
        p50 = latency[backend].batch1.p50_ms
        reading.update(layerwise_roofline(costs, peak, p50, times))
        reading.update(
            floors(costs, peak, p50, times, backend, threads, cache, (model, paths, sample))
        )
    if rows:
        write_csv(out_dir / "layerwise_roofline.csv", CSV_HEADER, rows)
    else:
        (out_dir / "layerwise_roofline.csv").unlink(missing_ok=True)  # none from an earlier run


def floors(costs, peak, p50, times, backend, threads, cache, network) -> dict[str, Any]:
    """The floors and the overhead model (its error recorded when the probe fails).

    ``network`` is ``(model, paths, sample)``: what the backend runs, to count the operators
    without weights that the model charges too.
    """
    model, paths, sample = network
    try:
        op_costs = cached_op_costs(cache, backend, threads)
        with eval_copy(model, "cpu") as cpu_model, torch_threads(threads):
            other = count_other_ops(backend, cpu_model, paths.get(backend), sample, threads)
            alone = cached_layer_ms(cache, backend, cpu_model, costs, threads)
    except Exception as error:
        figures = floor_figures(costs, peak, p50, times, None)
        return {**figures, "overhead_model_error": describe_error(error)}
    return floor_figures(costs, peak, p50, times, op_costs, other, alone)


def forget_probes(config: ProfileConfig) -> None:
    """``--refresh-peak``: drop the cached peaks and operator costs of the devices profiled, so
    this profile probes them again (once each) under the machine as it is now."""
    threads = config.threads or torch.get_num_threads()
    for device in sorted({device_of(backend) for backend in parse_backends(config.backends)}):
        forget_cached_probes(config.peak_cache_dir, device, threads)
