"""The profile's summary on the terminal: sizes, accuracy, parity and a latency table."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from .model import NO_ROOFLINE


def _mb(size: int | None) -> str:
    return f"{size / 1e6:.2f} MB" if size is not None else "-"


def print_summary(profile: dict[str, Any], console) -> None:
    """Render a profile (as returned or as read back from ``profile.json``) with rich."""
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
        " (1 MAC = 2 FLOPs)"
    )
    uncounted = (profile.get("complexity") or {}).get("uncounted_ops") or {}
    if uncounted:
        missed = ", ".join(f"{op} x{count}" for op, count in uncounted.items())
        console.print(f"  MACs leave out {escape(missed)} (no fvcore counter)", highlight=False)
    accuracy = profile.get("accuracy")
    if accuracy:
        top5 = accuracy.get("top5")
        console.print(
            f"  accuracy top-1 {100 * accuracy['top1']:.2f}%"
            + (f", top-5 {100 * top5:.2f}%" if top5 is not None else "")
            + f", macro F1 {accuracy['macro']['f1']:.3f} on {accuracy['n']:,} images"
        )
    multilabel = profile.get("multilabel")
    if multilabel:
        kinds = multilabel["kinds"]
        console.print(
            f"  multi-label at {multilabel['threshold']}: Hamming error "
            f"{multilabel['hamming_error']:.4f} (all-negative "
            f"{multilabel['all_negative_hamming_error']:.4f}), mAP {multilabel['map']:.3f} "
            f"(constant score {multilabel['all_negative_map']:.3f}), micro F1 "
            f"{multilabel['micro']['f1']:.3f}, macro F1 {multilabel['macro']['f1']:.3f}; "
            + ", ".join(f"{kind} {100 * kinds[kind]:.1f}%" for kind in kinds)
            + f" of {multilabel['n']:,} images"
        )
    regrouped = profile.get("regrouped")
    if regrouped:
        auc = regrouped.get("roc_auc")
        console.print(
            f"  regrouped ({escape(str(regrouped['name']))}): accuracy "
            f"{100 * regrouped['accuracy']:.2f}% ({regrouped['errors']} errors), macro F1 "
            f"{regrouped['macro']['f1']:.3f}, ROC-AUC "
            + (f"{auc:.4f}" if auc is not None else "n/a")
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
    columns = (
        "mean ± std ms",
        "p50 ms",
        "p99 ms",
        "img/s by batch",
        "% of peak",
        "× floor",
        "× expected",
    )
    for column in columns:
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
        reading = rooflines.get(backend) or {}
        fraction = reading.get("fraction_of_peak")
        over_floor, over_expected = reading.get("p50_over_floor"), reading.get("p50_over_expected")
        table.add_row(
            backend + (" *" if backend in NO_ROOFLINE else ""),
            f"{stats['mean_ms']:.3f} ± {stats['std_ms']:.3f}",
            f"{stats['p50_ms']:.3f}",
            f"{stats['p99_ms']:.3f}",
            throughput or "-",
            f"{100 * fraction:.1f}%" if fraction is not None else "-",
            f"{over_floor:.2f}" if over_floor is not None else "-",
            f"{over_expected:.2f}" if over_expected is not None else "-",
        )
    if table.row_count:
        console.print(table)
        console.print(
            "  × floor: p50 over its floor (own format's peak and bytes, cache levels); "
            "× expected: p50 over the overhead model (a model, not a bound)"
        )
    naive = (profile.get("latency") or {}).get("cuda-naive") or {}
    if naive.get("status") == "ok":
        console.print("  * no CUDA synchronization (the study's method): launch time only")
    for line in not_run:
        console.print(escape(line), highlight=False)
