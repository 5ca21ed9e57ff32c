"""What a backend with other numerics (int8, bf16, fp16) costs in accuracy against fp32.

Every such backend is judged on the same test images as the fp32 model, in the same profile:
its top-1, the difference in points against fp32 (negative = worse), the fraction of images on
which its top-1 prediction agrees with fp32's (MLPerf-style parity: a model can keep its
accuracy while changing many individual answers), and the size of what it deploys.
"""

from __future__ import annotations

from typing import Any

import torch

INT8_BACKEND = "cpu-onnxruntime-int8"
REDUCED_PRECISION = {
    "cpu-onnxruntime-int8": "int8",
    "cpu-eager-bf16": "bf16",
    "cuda-eager-fp16": "fp16",
    "cuda-onnxruntime-fp16": "fp16",
}


def numerics_of(backend: str) -> str:
    """``"fp32"``, or the reduced precision a backend runs in."""
    return REDUCED_PRECISION.get(backend, "fp32")


def bf16_skip_reason() -> str | None:
    """Why eager bf16 inference is not measured on this CPU, or ``None`` when it is supported.

    Without native bf16 instructions (AVX512-BF16 or AMX) oneDNN emulates it, slower than fp32:
    a figure of the emulation, not of bf16.
    """
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if supported is None or not supported():
        return "this CPU has no native bf16 support (oneDNN reports none): emulation only"
    return None


def compare_to_fp32(
    logits: torch.Tensor,
    fp32_logits: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    size_bytes: int | None,
    fp32_size_bytes: int | None,
) -> dict[str, Any]:
    """Top-1, its difference against fp32 in points, top-1 agreement and size ratio.

    Without labels (an untrained network) only the agreement and the sizes are figures.
    """
    predictions = logits.float().cpu().argmax(dim=1)
    reference = fp32_logits.float().cpu().argmax(dim=1)
    if predictions.shape != reference.shape:
        raise ValueError(f"{predictions.numel()} predictions against {reference.numel()} of fp32")
    top1 = fp32_top1 = None
    if labels is not None:
        labels = labels.reshape(-1).cpu()
        if labels.shape != predictions.shape:
            raise ValueError(f"{predictions.numel()} predictions for {labels.numel()} labels")
        top1 = (predictions == labels).float().mean().item()
        fp32_top1 = (reference == labels).float().mean().item()
    return {
        "top1": top1,
        "fp32_top1": fp32_top1,
        "top1_delta_points": 100.0 * (top1 - fp32_top1) if top1 is not None else None,
        "top1_agreement": (predictions == reference).float().mean().item(),
        "n": int(predictions.numel()),
        "size_bytes": size_bytes,
        "size_ratio": size_bytes / fp32_size_bytes if size_bytes and fp32_size_bytes else None,
    }
