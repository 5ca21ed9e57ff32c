"""Profile one trained network: every figure the study reports, and the ones it should have.

:func:`profile_model` measures a model and writes its run's profile directory:

* ``profile.json``: parameters, serialized sizes, MACs, accuracy, ONNX export and parity,
  per-backend latency, the machine's peaks and a roofline reading, with the system description
  and the configuration (written last, atomically);
* ``state_dict.pt`` (``torch.save`` of the state dict: its size is the study's "storage size")
  and ``model.onnx`` (its size is reported too); both sizes are the real file sizes;
* ``macs_by_layer.csv`` (the heaviest layers) and ``confusion_matrix.csv`` (when labels are
  given).

A figure that cannot be produced is recorded as ``null`` with its reason, never dropped, and
never stops the other figures: a failed ONNX export still leaves accuracy and eager latency.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.markup import escape
from torch import nn

from architectures import create_arch

from . import exclusive, files, runs
from .complexity import count_macs, count_parameters, macs_by_layer
from .data import DataConfig, load_data, normalize
from .errors import ArchbenchError
from .export import OPSET, ParityResult, check_parity, export_onnx
from .latency import (
    BACKENDS,
    BackendResult,
    backend_method,
    describe_error,
    device_of,
    measure_latency,
    parse_backends,
)
from .latency import torch_threads as _torch_threads
from .roofline import MachinePeak, cached_peak, min_bytes_moved, roofline
from .sysinfo import describe_system

EVAL_BATCH = 256
# cuda-naive times kernel launches, not execution: a roofline of it would be meaningless.
NO_ROOFLINE = ("cuda-naive",)


@dataclass(frozen=True)
class ProfileConfig:
    backends: tuple[str, ...] = BACKENDS
    samples: int | None = 1000  # latency samples; None = all test samples
    warmup: int = 10
    threads: int | None = None  # None = torch.get_num_threads()
    batch_sizes: tuple[int, ...] = (1, 64)
    parity_samples: int = 100
    top_layers: int = 15
    peak_cache_dir: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["backends"] = list(self.backends)
        data["batch_sizes"] = list(self.batch_sizes)
        data["peak_cache_dir"] = str(self.peak_cache_dir) if self.peak_cache_dir else None
        return data


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _json_safe(value: Any) -> Any:
    """Replace NaN/inf by ``None`` so the file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


# ------------------------------------------------------------------------------ accuracy


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], num_classes: int):
    """``num_classes x num_classes`` counts; rows are true classes, columns predictions."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.size} labels but {predictions.size} predictions")
    for name, values in (("label", labels), ("prediction", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} outside [0, {num_classes}): {values.min()}..{values.max()}")
    flat = labels * num_classes + predictions
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_metrics(
    confusion: np.ndarray, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Top-1, per-class precision/recall/F1/support and their unweighted (macro) means.

    A class never predicted has precision 0, one never present has recall 0, and F1 is 0 when
    precision + recall is 0 (scikit-learn's ``zero_division=0``).
    """
    confusion = np.asarray(confusion, dtype=np.int64)
    num_classes = confusion.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    true_positive = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    support = confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(support > 0, true_positive / support, 0.0)
        denominator = precision + recall
        f1 = np.where(denominator > 0, 2 * precision * recall / denominator, 0.0)
    n = int(confusion.sum())
    return {
        "top1": float(true_positive.sum() / n) if n else None,
        "n": n,
        "per_class": [
            {
                "class": names[i],
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in range(num_classes)
        ],
        "macro": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        },
    }


def accuracy_report(
    logits: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str] | None = None
) -> tuple[dict[str, Any], np.ndarray]:
    """Accuracy block of ``profile.json`` (top-1, top-5, per-class) and the confusion matrix."""
    logits = logits.detach().float().cpu()
    labels = labels.detach().long().cpu().reshape(-1)
    num_classes = logits.shape[1]
    confusion = confusion_matrix(labels.numpy(), logits.argmax(dim=1).numpy(), num_classes)
    report = classification_metrics(confusion, class_names)
    if num_classes >= 5 and labels.numel():
        top5 = logits.topk(5, dim=1).indices
        report["top5"] = float((top5 == labels[:, None]).any(dim=1).float().mean())
    else:
        report["top5"] = None
    ordered = {key: report[key] for key in ("top1", "top5", "n", "per_class", "macro")}
    return ordered, confusion


def _predict(model: nn.Module, images: torch.Tensor, threads: int) -> torch.Tensor:
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with _torch_threads(threads), torch.inference_mode():
            for start in range(0, images.shape[0], EVAL_BATCH):
                batch = images[start : start + EVAL_BATCH].to(device)
                outputs.append(model(batch).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(outputs)


# ------------------------------------------------------------------------------ files


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    files.write_bytes(path, buffer.getvalue().encode())


def _write_confusion(path: Path, confusion: np.ndarray, class_names: Sequence[str]) -> None:
    rows = [[name, *map(int, counts)] for name, counts in zip(class_names, confusion, strict=True)]
    _write_csv(path, ["true\\predicted", *class_names], rows)


def _save_state_dict(model: nn.Module, path: Path) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    files.write_bytes(path, buffer.getvalue())
    return os.path.getsize(path)


# ------------------------------------------------------------------------------ profile


def _measure(
    model: nn.Module,
    *,
    arch: str,
    num_classes: int,
    out_dir: Path,
    samples: torch.Tensor,
    labels: torch.Tensor | None = None,
    eval_images: torch.Tensor | None = None,
    class_names: list[str] | None = None,
    config: ProfileConfig = ProfileConfig(),  # noqa: B008  (frozen, so a shared default is safe)
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every figure of :func:`profile_model`, measured; the CSVs, ONNX and state dict written."""
    say = progress or (lambda line: None)
    started_at = _now()
    backends = parse_backends(config.backends)
    threads = int(config.threads) if config.threads is not None else torch.get_num_threads()
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4 or samples.shape[0] == 0:
        raise ArchbenchError("profiling needs a non-empty (N, C, H, W) tensor of test images")
    samples = samples.detach().to("cpu", torch.float32).contiguous()
    input_shape = (1, *samples.shape[1:])
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ArchbenchError(f"{len(names)} class names for {num_classes} classes")
    if labels is not None:
        eval_images = samples if eval_images is None else eval_images
        if eval_images.shape[0] != labels.reshape(-1).shape[0]:
            raise ArchbenchError(
                f"{eval_images.shape[0]} evaluation images but {labels.numel()} labels"
            )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    latency_samples = samples[: config.samples] if config.samples is not None else samples
    parity_samples = samples[: config.parity_samples]

    say("system and complexity")
    system = describe_system(threads)
    params = count_parameters(model)
    macs: int | None = None
    macs_error: str | None = None
    layers_csv = out_dir / "macs_by_layer.csv"
    try:
        macs = count_macs(model, input_shape)
    except Exception as error:  # recorded, not swallowed: macs is null with its reason
        macs_error = describe_error(error)
    try:
        layers = macs_by_layer(model, input_shape)[: config.top_layers]
        _write_csv(
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

    say("state dict and ONNX export")
    state_dict_bytes = _save_state_dict(model, out_dir / "state_dict.pt")
    onnx_path = out_dir / "model.onnx"
    exported = export_onnx(model, onnx_path, input_shape=input_shape)
    if exported.ok:
        say(f"ONNX parity on {parity_samples.shape[0]} samples")
        parity = check_parity(model, onnx_path, parity_samples, threads=threads).to_dict()
    else:
        onnx_path.unlink(missing_ok=True)  # never leave a stale export from an earlier run
        say(f"  ONNX export failed: {exported.error}")
        parity = ParityResult(
            ok=False,
            max_abs_diff=None,
            top1_agreement=None,
            n=0,
            reason=f"not checked: ONNX export failed: {exported.error}",
        ).to_dict()

    accuracy = None
    if labels is not None:
        say(f"accuracy on {eval_images.shape[0]} images")
        logits = _predict(model, eval_images.to(torch.float32), threads)
        accuracy, confusion = accuracy_report(logits, labels, names)
        _write_confusion(out_dir / "confusion_matrix.csv", confusion, names)
    else:
        (out_dir / "confusion_matrix.csv").unlink(missing_ok=True)  # none from an earlier run

    latency: dict[str, BackendResult] = {}
    for backend in backends:
        if backend.endswith("-onnxruntime") and not exported.ok:
            latency[backend] = BackendResult(
                backend, "skipped", f"ONNX export failed: {exported.error}", backend_method(backend)
            )
            continue
        say(f"latency {backend} ({latency_samples.shape[0]} samples)")
        latency[backend] = measure_latency(
            backend,
            model=model,
            onnx_path=onnx_path if exported.ok else None,
            samples=latency_samples,
            warmup=config.warmup,
            threads=threads,
            batch_sizes=config.batch_sizes,
        )
        result = latency[backend]
        if result.ok and result.batch1 is not None:
            say(f"  {backend}: p50 {result.batch1.p50_ms:.3f} ms")
        else:
            say(f"  {backend}: {result.status} (reason in the summary)")

    measured = {
        backend: result
        for backend, result in latency.items()
        if result.ok and result.batch1 is not None and backend not in NO_ROOFLINE
    }
    bytes_moved = min_bytes_moved(model, input_shape, num_classes)
    peak = {
        device: _peak(config, device, threads, macs, measured, say)
        for device in dict.fromkeys(device_of(backend) for backend in measured)
    }
    rooflines: dict[str, Any] = {}
    for backend, result in measured.items():
        device = device_of(backend)
        if macs is None:
            rooflines[backend] = {"error": f"MACs unavailable: {macs_error}"}
        elif "error" in peak[device]:
            rooflines[backend] = {"error": f"{device} peak unavailable: {peak[device]['error']}"}
        else:
            rooflines[backend] = roofline(
                macs, result.batch1.p50_ms, MachinePeak.from_dict(peak[device]), bytes_moved
            )

    profile = {
        "arch": arch,
        "num_classes": int(num_classes),
        "system": system,
        "params": {"trainable": params.trainable, "total": params.total},
        "size_bytes": {
            "state_dict": state_dict_bytes,
            "onnx": os.path.getsize(onnx_path) if exported.ok else None,
        },
        "macs": macs,
        "macs_error": macs_error,
        "accuracy": accuracy,
        "onnx": {
            "ok": exported.ok,
            "opset": OPSET,
            "error": exported.error,
            "parity": parity,
        },
        "latency": {backend: result.to_dict() for backend, result in latency.items()},
        "peak": peak,
        "roofline": rooflines,
        "config": {
            **config.to_dict(),
            "resolved": {
                "threads": threads,
                "latency_samples": int(latency_samples.shape[0]),
                "parity_samples": int(parity_samples.shape[0]),
                "eval_samples": int(eval_images.shape[0]) if labels is not None else None,
                "input_shape": list(input_shape),
            },
        },
        "started_at": started_at,
        "finished_at": _now(),
    }
    return profile


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
    config: ProfileConfig = ProfileConfig(),  # noqa: B008  (frozen, so a shared default is safe)
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure ``model`` and write its profile directory; return what ``profile.json`` holds.

    Args:
        model: the trained network (left on its device, its training flag restored).
        arch: architecture name recorded in the profile.
        num_classes: number of output classes.
        out_dir: directory to write into (created if needed).
        samples: real, normalized float32 test images ``(N, 3, 32, 32)`` for latency (the first
            ``config.samples``) and ONNX parity (the first ``config.parity_samples``).
        labels: when given, accuracy is computed on ``eval_images`` (default: ``samples``).
        eval_images: images matching ``labels``.
        class_names: names for per-class figures (default ``"0"``, ``"1"``, ...).
        config: what to measure and how.
        progress: called with a short status line before each stage.

    The measurement holds this machine alone among archbench jobs (no training epoch runs
    meanwhile, see :mod:`archbench.exclusive`); ``exclusive`` in the profile says when, and how
    long it waited for that.
    """
    say = progress or (lambda line: None)
    record: dict[str, Any] = {}
    say("waiting for this node to be free of other archbench jobs")
    with exclusive.measuring(record):
        profile = _measure(
            model,
            arch=arch,
            num_classes=num_classes,
            out_dir=out_dir,
            samples=samples,
            labels=labels,
            eval_images=eval_images,
            class_names=class_names,
            config=config,
            progress=progress,
        )
    profile = _json_safe({**profile, "exclusive": record})
    text = json.dumps(profile, indent=2, allow_nan=False) + "\n"
    files.write_bytes(Path(out_dir) / runs.PROFILE, text.encode())
    say(f"wrote {Path(out_dir) / runs.PROFILE}")
    return profile


def _peak(config, device, threads, macs, measured, say) -> dict[str, Any]:
    """The device's cached peak, probed again (once) if a measured network beat its FLOP/s.

    A peak probed while the machine was busy is too low, and a cached one would then report
    more than 100% of peak for every later profile. (Only the compute side is checked: a network
    whose weights partly stay in the last-level cache between calls can legitimately run below
    the memory bound, which assumes every weight comes from DRAM.)
    """
    say(f"{device} peak (cached per machine)")
    try:
        peak = cached_peak(config.peak_cache_dir, device, threads)
        fastest = min(r.batch1.p50_ms for b, r in measured.items() if device_of(b) == device)
        if macs is not None and 2.0 * macs / (fastest * 1e-3) / 1e9 > peak.gflops:
            say(f"{device}: a network beat the cached FLOP/s peak; probing it again")
            peak = cached_peak(config.peak_cache_dir, device, threads, refresh=True)
        return peak.to_dict()
    except Exception as error:
        return {"error": describe_error(error)}


# ------------------------------------------------------------------------------ summary


def _mb(size: int | None) -> str:
    return f"{size / 1e6:.2f} MB" if size is not None else "-"


def print_summary(profile: dict[str, Any], console) -> None:
    """Render a profile (as returned or as read back from ``profile.json``) with rich."""
    from rich.markup import escape
    from rich.table import Table

    params = profile.get("params") or {}
    sizes = profile.get("size_bytes") or {}
    macs = profile.get("macs")
    console.print(
        f"[bold]{escape(str(profile.get('arch')))}[/] ({profile.get('num_classes')} classes)"
    )
    console.print(
        f"  params {params.get('trainable', 0):,} trainable"
        f" | state_dict {_mb(sizes.get('state_dict'))} | onnx {_mb(sizes.get('onnx'))}"
        f" | MACs {f'{macs / 1e6:.1f} M' if macs is not None else 'n/a'}"
    )
    accuracy = profile.get("accuracy")
    if accuracy:
        top5 = accuracy.get("top5")
        console.print(
            f"  accuracy top-1 {100 * accuracy['top1']:.2f}%"
            + (f", top-5 {100 * top5:.2f}%" if top5 is not None else "")
            + f", macro F1 {accuracy['macro']['f1']:.3f} on {accuracy['n']:,} images"
        )
    onnx = profile.get("onnx") or {}
    parity = onnx.get("parity") or {}
    if onnx.get("ok"):
        diff = parity.get("max_abs_diff")
        status = "ok" if parity.get("ok") else f"FAILED: {parity.get('reason')}"
        console.print(
            f"  ONNX opset {onnx.get('opset')}: parity {escape(status)}"
            + (f" (max |diff| {diff:.2g} on {parity.get('n')} samples)" if diff is not None else "")
        )
    else:
        console.print(f"  ONNX export failed: {escape(str(onnx.get('error')))}")

    system = profile.get("system") or {}
    table = Table(
        title=f"latency, batch 1 ({escape(str(system.get('cpu_model', '?')))}, "
        f"{system.get('torch_threads')} threads)"
    )
    table.add_column("backend", no_wrap=True)
    for column in ("mean ± std ms", "p50 ms", "p99 ms", "img/s by batch", "% of peak"):
        table.add_column(column, justify="right")
    rooflines = profile.get("roofline") or {}
    not_run = []
    for backend, result in (profile.get("latency") or {}).items():
        stats = result.get("batch1")
        if result.get("status") != "ok" or not stats:
            not_run.append(f"  {backend} {result.get('status')}: {result.get('reason')}")
            continue
        throughput = " ".join(
            f"{batch}:{rate:,.0f}" for batch, rate in (result.get("throughput") or {}).items()
        )
        fraction = (rooflines.get(backend) or {}).get("fraction_of_peak")
        table.add_row(
            backend + (" *" if backend in NO_ROOFLINE else ""),
            f"{stats['mean_ms']:.3f} ± {stats['std_ms']:.3f}",
            f"{stats['p50_ms']:.3f}",
            f"{stats['p99_ms']:.3f}",
            throughput or "-",
            f"{100 * fraction:.1f}%" if fraction is not None else "-",
        )
    if table.row_count:
        console.print(table)
    naive = (profile.get("latency") or {}).get("cuda-naive") or {}
    if naive.get("status") == "ok":
        console.print("  * no CUDA synchronization (the study's method): launch time only")
    for line in not_run:
        console.print(escape(line), highlight=False)


# ------------------------------------------------------------------------------ run directories


def _test_images(data_config: DataConfig, mean, std) -> tuple[torch.Tensor, torch.Tensor, list]:
    """The dataset's test split, normalized as in training: (images, labels, class names)."""
    data = load_data(data_config)
    images = normalize(data.test.images, data.mean if mean is None else mean,
                       data.std if std is None else std)  # fmt: skip
    return images, data.test.labels, list(data.classes)


def _say(console, quiet: bool) -> Callable[[str], None]:
    if quiet:
        return lambda line: None
    return lambda line: console.print(f"[dim]{escape(line)}[/]", highlight=False)


def profile_run(
    run_dir: Path,
    config: ProfileConfig = ProfileConfig(),
    *,
    console=None,
    quiet: bool = False,  # noqa: B008
) -> dict[str, Any]:
    """Profile a run's selected checkpoint (``best.pt``) on its own test split, into the run dir.

    The checkpoint must match the run's architecture and class count: a file copied in from
    another run is refused before anything is measured or written.
    """
    from rich.console import Console

    console = console or Console()
    info = runs.read_run(run_dir)
    train, described = info.config["train"], info.config.get("data", {})
    expect = {"arch": train["arch"], "num_classes": described.get("num_classes")}
    best_path = info.path / runs.BEST
    if not best_path.is_file():
        raise ArchbenchError(
            f"{info.path} has no {runs.BEST} to profile (status {info.status}); "
            "train it to completion or resume it first"
        )
    best = runs.load_checkpoint(best_path, expect={k: v for k, v in expect.items() if v})
    model = create_arch(best["arch"], num_classes=best["num_classes"])
    try:
        model.load_state_dict(best["model"])
    except RuntimeError as error:
        raise ArchbenchError(
            f"{best_path} does not fit {best['arch']} with {best['num_classes']} classes: "
            f"{str(error).splitlines()[0]}"
        ) from None
    data_config = DataConfig(
        dataset=train["dataset"],
        data_dir=Path(train["data_dir"]).expanduser() if train.get("data_dir") else None,
        val_fraction=train.get("val_fraction", 0.1),
        split_seed=train.get("seed", 0),
        download=False,
    )
    images, labels, classes = _test_images(data_config, best.get("mean"), best.get("std"))
    if config.threads is None and train.get("threads"):
        config = replace(config, threads=int(train["threads"]))
    say = _say(console, quiet)
    say(f"profiling {best['arch']} from {best_path} (epoch {best.get('epoch')})")
    profile = profile_model(
        model,
        arch=best["arch"],
        num_classes=best["num_classes"],
        out_dir=info.path,
        samples=images,
        labels=labels,
        class_names=classes or best.get("classes"),
        config=config,
        progress=say,
    )
    if not quiet:
        print_summary(profile, console)
    return profile


def profile_untrained(
    arch: str,
    *,
    num_classes: int = 10,
    dataset: str = "digits",
    data_dir: Path | None = None,
    out_dir: Path,
    config: ProfileConfig = ProfileConfig(),  # noqa: B008
    console=None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Profile a freshly initialized network: latency, size and MACs do not depend on training.

    Inputs are still real test images of ``dataset`` (the embedded digits by default), so the
    timed work is what a deployed model would see; accuracy is omitted.
    """
    from rich.console import Console

    console = console or Console()
    if num_classes < 1:
        raise ArchbenchError(f"--num-classes must be positive, got {num_classes}")
    torch.manual_seed(0)
    model = create_arch(arch, num_classes=num_classes)
    images, _, _ = _test_images(
        DataConfig(dataset=dataset, data_dir=data_dir, download=False), None, None
    )
    say = _say(console, quiet)
    say(f"profiling untrained {arch} ({num_classes} classes) on {dataset} test images -> {out_dir}")
    profile = profile_model(
        model,
        arch=arch,
        num_classes=num_classes,
        out_dir=out_dir,
        samples=images,
        config=config,
        progress=say,
    )
    if not quiet:
        print_summary(profile, console)
    return profile
