"""Profile one network: every figure the study reports, and the ones it should have.

:func:`profile_model` measures a model and writes its profile directory:

* ``profile.json``: parameters, serialized sizes, MACs (and ``complexity``: FLOPs, the
  convention, MACs per operator and the operators fvcore could not count), accuracy, ONNX
  export and parity, per-backend latency, the machine's peaks and a roofline reading, with the
  system description and the configuration (written last, atomically);
* ``state_dict.pt`` (``torch.save`` of the state dict: its size is the study's "storage size")
  and ``model.onnx`` (its size is reported too); both sizes are the real file sizes;
* ``macs_by_layer.csv`` (the heaviest layers) and ``confusion_matrix.csv`` (when labels are
  given).

A figure that cannot be produced is recorded as ``null`` with its reason, never dropped, and
never stops the other figures: a failed ONNX export still leaves accuracy and eager latency.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import files
from ..errors import ArchbenchError, describe_error
from ..evaluate.classification import accuracy_report, predict_logits
from ..evaluate.multilabel import DEFAULT_THRESHOLD, multilabel_report
from ..evaluate.regroup import GroupMap, evaluate_regrouped, write_regrouped
from ..measure import exclusive, precision
from ..measure.backends import backend_method, device_of, is_onnxruntime, parse_backends
from ..measure.complexity import count_complexity, count_parameters, macs_by_layer
from ..measure.export import OPSET, ExportResult, ParityResult, check_parity, export_onnx
from ..measure.formats import ELEMENT_BYTES, cached_format_peak, peak_format
from ..measure.latency import BackendResult, measure_latency
from ..measure.precision import PrecisionPolicy
from ..measure.roofline import MachinePeak, min_bytes_moved, roofline
from ..measure.sysinfo import describe_system
from ..train import rundir
from . import deployment
from .config import ProfileConfig
from .outputs import json_safe, save_state_dict, write_confusion, write_csv

# cuda-naive times kernel launches, not execution: a roofline of it would be meaningless.
NO_ROOFLINE = ("cuda-naive",)

Say = Callable[[str], None]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class _Inputs:
    """The checked images: latency, parity and evaluation sets, and the class names."""

    latency: torch.Tensor
    parity: torch.Tensor
    evaluation: torch.Tensor | None
    labels: torch.Tensor | None
    class_names: list[str]
    input_shape: tuple[int, ...]


def _check_inputs(samples, labels, eval_images, class_names, num_classes, config) -> _Inputs:
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4 or samples.shape[0] == 0:
        raise ArchbenchError("profiling needs a non-empty (N, C, H, W) tensor of test images")
    samples = samples.detach().to("cpu", torch.float32).contiguous()
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ArchbenchError(f"{len(names)} class names for {num_classes} classes")
    if labels is not None:
        eval_images = samples if eval_images is None else eval_images
        if eval_images.shape[0] != labels.shape[0]:
            raise ArchbenchError(
                f"{eval_images.shape[0]} evaluation images but {labels.shape[0]} labels"
            )
    return _Inputs(
        latency=samples[: config.samples] if config.samples is not None else samples,
        parity=samples[: config.parity_samples],
        evaluation=eval_images if labels is not None else None,
        labels=labels,
        class_names=names,
        input_shape=(1, *samples.shape[1:]),
    )


def _complexity(model, input_shape, out_dir: Path, top_layers: int, say: Say):
    """Parameters, the complexity record (or why not) and ``macs_by_layer.csv``."""
    params = count_parameters(model)
    complexity: dict[str, Any] | None = None
    macs: int | None = None
    macs_error: str | None = None
    layers_csv = out_dir / "macs_by_layer.csv"
    try:
        counted = count_complexity(model, input_shape)
        complexity, macs = counted.to_dict(), counted.macs
        if counted.uncounted_ops:
            say(f"  MACs leave out {', '.join(counted.uncounted_ops)} (no fvcore counter)")
    except Exception as error:  # recorded, not swallowed: macs is null with its reason
        macs_error = describe_error(error)
    try:
        layers = macs_by_layer(model, input_shape)[:top_layers]
        write_csv(
            layers_csv,
            ["rank", "name", "kind", "macs", "share"],
            [
                [rank, row.name, row.kind, row.macs, f"{row.macs / macs:.4f}" if macs else ""]
                for rank, row in enumerate(layers, start=1)
            ],
        )
    except Exception as error:
        layers_csv.unlink(missing_ok=True)  # no stale table from an earlier run
        say(f"  MACs by layer unavailable: {describe_error(error)}")
    return params, complexity, macs, macs_error


def _export_and_parity(model, onnx_path: Path, inputs: _Inputs, threads: int, say: Say):
    """``model.onnx`` and its parity with PyTorch, or why the export failed."""
    exported = export_onnx(model, onnx_path, input_shape=inputs.input_shape)
    if exported.ok:
        say(f"ONNX parity on {inputs.parity.shape[0]} samples")
        return exported, check_parity(model, onnx_path, inputs.parity, threads=threads)
    onnx_path.unlink(missing_ok=True)  # never leave a stale export from an earlier run
    say(f"  ONNX export failed: {exported.error}")
    parity = ParityResult(
        ok=False,
        max_abs_diff=None,
        top1_agreement=None,
        n=0,
        reason=f"not checked: ONNX export failed: {exported.error}",
    )
    return exported, parity


def _accuracy(model, inputs: _Inputs, out_dir: Path, threads: int, group_map, say: Say):
    """The accuracy and regrouped blocks and their files, when single-label labels were given."""
    if inputs.labels is None or inputs.labels.ndim == 2:
        (out_dir / "confusion_matrix.csv").unlink(missing_ok=True)  # none from an earlier run
        return None, None
    say(f"accuracy on {inputs.evaluation.shape[0]} images")
    logits = predict_logits(model, inputs.evaluation.to(torch.float32), threads=threads)
    accuracy, confusion = accuracy_report(logits, inputs.labels, inputs.class_names)
    write_confusion(out_dir / "confusion_matrix.csv", confusion, inputs.class_names)
    if group_map is None:
        return accuracy, None
    say(f"regrouped as {group_map.name}: merged confusion matrix and ROC")
    evaluation = evaluate_regrouped(group_map, logits, inputs.labels)
    return accuracy, {**evaluation.summary, "files": write_regrouped(out_dir, evaluation)}


def _multilabel(model, inputs: _Inputs, threshold: float, threads: int, say: Say):
    """The ``multilabel`` block, when the labels are multi-hot rows."""
    if inputs.labels is None or inputs.labels.ndim != 2:
        return None
    say(f"multi-label figures on {inputs.evaluation.shape[0]} images at threshold {threshold}")
    logits = predict_logits(model, inputs.evaluation.to(torch.float32), threads=threads)
    return multilabel_report(logits, inputs.labels, inputs.class_names, threshold)


def _latency(
    model, backends, exported: ExportResult, paths, made, inputs, config, threads: int, say: Say
) -> dict[str, BackendResult]:
    """Every backend asked for, each ``ok``, ``skipped`` or ``error`` with its reason."""
    latency: dict[str, BackendResult] = {}
    for backend in backends:
        if is_onnxruntime(backend) and backend not in paths:
            reason = deployment.missing_model_reason(backend, exported, made)
            if reason is not None:
                latency[backend] = BackendResult(
                    backend, "skipped", reason, backend_method(backend)
                )
                continue
        say(f"latency {backend} ({inputs.latency.shape[0]} samples)")
        result = latency[backend] = measure_latency(
            backend,
            model=model,
            onnx_path=paths.get(backend),
            samples=inputs.latency,
            warmup=config.warmup,
            threads=threads,
            batch_sizes=config.batch_sizes,
        )
        if result.ok and result.batch1 is not None:
            say(f"  {backend}: p50 {result.batch1.p50_ms:.3f} ms")
        else:
            say(f"  {backend}: {result.status} (reason in the summary)")
    return latency


def _rooflines(model, inputs, num_classes, macs, macs_error, latency, config, threads, say):
    """Each measured device's peaks per format, and each measured backend's roofline reading.

    Returns ``(peak, peak_formats, rooflines)``: ``peak[device]`` is the fp32 peak (bandwidths
    and cache levels included), ``peak_formats[device][format]`` every other format's peak that
    a backend was judged against, and each reading names its ``peak_format``.
    """
    measured = {
        backend: result
        for backend, result in latency.items()
        if result.ok and result.batch1 is not None and backend not in NO_ROOFLINE
    }
    formats = {backend: peak_format(backend, tf32=config.tf32) for backend in measured}
    wanted = dict.fromkeys((device_of(b), fmt) for b, fmt in formats.items())
    peaks = {
        (device, fmt): _peak(config, device, fmt, threads, macs, measured, formats, say)
        for device, fmt in dict.fromkeys([*((d, "fp32") for d, _ in wanted), *wanted])
    }
    peak = {device: value for (device, fmt), value in peaks.items() if fmt == "fp32"}
    peak_formats: dict[str, dict[str, Any]] = {}
    for (device, fmt), value in peaks.items():
        if fmt != "fp32":
            peak_formats.setdefault(device, {})[fmt] = value
    rooflines: dict[str, Any] = {}
    for backend, result in measured.items():
        fmt, found = formats[backend], peaks[(device_of(backend), formats[backend])]
        if macs is None:
            rooflines[backend] = {"error": f"MACs unavailable: {macs_error}"}
        elif "error" in found:
            rooflines[backend] = {"error": f"{fmt} peak unavailable: {found['error']}"}
        else:
            size = ELEMENT_BYTES[fmt]
            bytes_moved = min_bytes_moved(model, inputs.input_shape, num_classes, size, size)
            rooflines[backend] = roofline(
                macs, result.batch1.p50_ms, MachinePeak.from_dict(found), bytes_moved
            )
    return peak, peak_formats, rooflines


def _peak(config, device, fmt, threads, macs, measured, formats, say) -> dict[str, Any]:
    """The cached peak of one format, probed again (once) if a backend of it beat its FLOP/s.

    A peak probed while the machine was busy is too low, and a cached one would then report
    more than 100% of peak for every later profile. Only backends of the same format are
    compared: an int8 or bf16 backend is judged against its own format's peak, never fp32's.
    """
    say(f"{device} {fmt} peak (cached per machine)")
    try:
        peak = cached_format_peak(config.peak_cache_dir, device, threads, fmt)
        own = [
            r.batch1.p50_ms
            for b, r in measured.items()
            if formats[b] == fmt and device_of(b) == device
        ]
        if macs is not None and own and 2.0 * macs / (min(own) * 1e-3) / 1e9 > peak.gflops:
            say(f"{device}: a {fmt} network beat the cached {fmt} FLOP/s peak; probing it again")
            peak = cached_format_peak(config.peak_cache_dir, device, threads, fmt, refresh=True)
        return peak.to_dict()
    except Exception as error:
        return {"error": describe_error(error)}


def _measure(
    model: nn.Module,
    *,
    arch: str,
    num_classes: int,
    out_dir: Path,
    samples: torch.Tensor,
    labels: torch.Tensor | None,
    eval_images: torch.Tensor | None,
    class_names: list[str] | None,
    calibration: torch.Tensor | None,
    group_map: GroupMap | None,
    config: ProfileConfig,
    say: Say,
) -> dict[str, Any]:
    """Every figure of :func:`profile_model`, measured; the CSVs, ONNX and state dict written."""
    started_at = _now()
    backends = parse_backends(config.backends)
    threads = int(config.threads) if config.threads is not None else torch.get_num_threads()
    inputs = _check_inputs(samples, labels, eval_images, class_names, num_classes, config)
    out_dir.mkdir(parents=True, exist_ok=True)

    say("system and complexity")
    system = describe_system(threads)
    params, complexity, macs, macs_error = _complexity(
        model, inputs.input_shape, out_dir, config.top_layers, say
    )
    say("state dict and ONNX export")
    state_dict_bytes = save_state_dict(model, out_dir / "state_dict.pt")
    exported, parity = _export_and_parity(model, out_dir / "model.onnx", inputs, threads, say)
    paths, made = deployment.reduced_precision_models(
        model, backends, exported, calibration, config.calibration_samples, out_dir, say
    )
    accuracy, regrouped = _accuracy(model, inputs, out_dir, threads, group_map, say)
    threshold = config.threshold if config.threshold is not None else DEFAULT_THRESHOLD
    multilabel = _multilabel(model, inputs, threshold, threads, say)
    latency = _latency(model, backends, exported, paths, made, inputs, config, threads, say)
    images = inputs.evaluation if inputs.labels is not None else inputs.latency
    fp32_size = os.path.getsize(exported.path) if exported.ok else None
    # Reduced precisions are judged on top-1 against single labels; for multi-hot ones only
    # their agreement with fp32 is a figure.
    single_labels = inputs.labels if multilabel is None else None
    numerics = deployment.numerics(
        model, latency, paths, images, single_labels, fp32_size, threads, say
    )
    if config.cold_start:
        deployment.cold_starts(
            arch, num_classes, latency, paths, out_dir, inputs.latency[:1], threads, say
        )
    peak, peak_formats, rooflines = _rooflines(
        model, inputs, num_classes, macs, macs_error, latency, config, threads, say
    )
    deployment.layerwise(
        model,
        rooflines,
        {**peak_formats.get("cpu", {}), "fp32": peak.get("cpu", {"error": "not probed"})},
        latency,
        paths,
        inputs.latency[:1],
        macs,
        out_dir,
        threads,
        config.peak_cache_dir,
        say,
    )
    return {
        "arch": arch,
        "num_classes": int(num_classes),
        "system": system,
        "params": {"trainable": params.trainable, "total": params.total},
        "size_bytes": {
            "state_dict": state_dict_bytes,
            "onnx": fp32_size,
            "onnx_int8": (made.get("int8") or {}).get("size_bytes"),
        },
        "macs": macs,
        "macs_error": macs_error,
        "complexity": complexity,
        "accuracy": accuracy,
        "regrouped": regrouped,
        "multilabel": multilabel,
        "onnx": {
            "ok": exported.ok,
            "opset": OPSET,
            "error": exported.error,
            "parity": parity.to_dict(),
        },
        "quantization": made.get("int8"),
        "numerics": numerics,
        "latency": {backend: result.to_dict() for backend, result in latency.items()},
        "peak": peak,
        "peak_formats": peak_formats,
        "roofline": rooflines,
        "config": {
            **config.to_dict(),
            "resolved": {
                "threads": threads,
                "latency_samples": int(inputs.latency.shape[0]),
                "parity_samples": int(inputs.parity.shape[0]),
                "eval_samples": (
                    int(inputs.evaluation.shape[0]) if inputs.labels is not None else None
                ),
                "input_shape": list(inputs.input_shape),
            },
        },
        "started_at": started_at,
        "finished_at": _now(),
    }


def profile_model(
    model: nn.Module,
    *,
    arch: str,
    num_classes: int,
    out_dir: Path,
    samples: torch.Tensor,
    labels: torch.Tensor | None = None,
    eval_images: torch.Tensor | None = None,
    class_names: list[str] | None = None,
    calibration: torch.Tensor | None = None,
    group_map: GroupMap | None = None,
    config: ProfileConfig = ProfileConfig(),  # noqa: B008  (frozen, so a shared default is safe)
    progress: Callable[[str], None] | None = None,
    record_with: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure ``model`` and write its profile directory; return what ``profile.json`` holds.

    Args:
        model: the trained network (left on its device, its training flag restored).
        arch: architecture name recorded in the profile.
        num_classes: number of output classes.
        out_dir: directory to write into (created if needed).
        samples: real, normalized float32 test images ``(N, 3, 32, 32)`` for latency (the first
            ``config.samples``) and ONNX parity (the first ``config.parity_samples``).
        labels: when given, accuracy is computed on ``eval_images`` (default: ``samples``);
            multi-hot ``(N, K)`` labels give the ``multilabel`` block instead, at
            ``config.threshold``.
        eval_images: images matching ``labels``.
        class_names: names for per-class figures (default ``"0"``, ``"1"``, ...).
        calibration: normalized training images for int8 calibration (the int8 backend is
            skipped without them; never test images).
        group_map: also judge the model on these merged classes (``regrouped`` in the profile;
            ``regrouped_confusion_matrix.csv``, ``roc_curve.csv`` and ``roc_curve.png``).
        config: what to measure and how.
        progress: called with a short status line before each stage.
        record_with: entries saved with the figures (a trained run's ``protocol``), so the
            profile says under which training protocol its accuracy was reached.

    The measurement holds this machine alone among archbench jobs (no training epoch runs
    meanwhile, see :mod:`archbench.measure.exclusive`); ``exclusive`` in the profile says when,
    and how long it waited for that.
    """
    say = progress or (lambda line: None)
    record: dict[str, Any] = {}
    policy = PrecisionPolicy(tf32=config.tf32)
    say("waiting for this node to be free of other archbench jobs")
    if config.refresh_peak:
        deployment.forget_probes(config)
    # Latency and the peak probe under one precision policy, so their ratio compares like with
    # like; the GPU's clocks are read at the end, while it is still warm.
    with exclusive.measuring(record), precision.applied(policy) as precision_state:
        profile = _measure(
            model,
            arch=arch,
            num_classes=num_classes,
            out_dir=Path(out_dir),
            samples=samples,
            labels=labels,
            eval_images=eval_images,
            class_names=class_names,
            calibration=calibration,
            group_map=group_map,
            config=config,
            say=say,
        )
        clocks = precision.gpu_clocks() if torch.cuda.is_available() else None
    cuda_precision = {"policy": policy.to_dict(), **precision_state, "clocks": clocks}
    profile = json_safe(
        {**profile, **(record_with or {}), "cuda_precision": cuda_precision, "exclusive": record}
    )
    text = json.dumps(profile, indent=2, allow_nan=False) + "\n"
    files.write_bytes(Path(out_dir) / rundir.PROFILE, text.encode())
    say(f"wrote {Path(out_dir) / rundir.PROFILE}")
    return profile
