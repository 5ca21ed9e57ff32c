"""ONNX export with a pinned opset, and a parity check of the export against PyTorch.

The exporter is torch's TorchScript-based one (``dynamo=False``): it writes the pinned
:data:`OPSET` directly and needs no extra package. The torch.export-based exporter (the default
since torch 2.9) needs ``onnxscript``, picks its own opset and converts down to a requested one,
a path that fails for some operators; a benchmark needs the same graph every time.

Nothing here raises on a model that cannot be exported or does not match: the failure is a
result with its reason, so the rest of a profile is still produced.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import describe_error
from .models import eval_copy, model_device
from .onnxrt import create_session

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
PARITY_BATCH = 64


@dataclass(frozen=True)
class ExportResult:
    path: Path
    ok: bool
    size_bytes: int | None
    opset: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


@dataclass(frozen=True)
class ParityResult:
    """ONNX Runtime (CPU) against PyTorch (eval mode) on the same real samples.

    ``top1_agreement`` is the fraction of samples whose arg-max agrees exactly. A disagreement
    between two classes whose PyTorch logits are within ``atol`` of each other is a tie the
    tolerance cannot separate; those are counted in ``ties`` and do not fail the check.
    """

    ok: bool
    max_abs_diff: float | None
    top1_agreement: float | None
    n: int
    reason: str | None
    atol: float = 1e-4
    ties: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _export_kwargs() -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "opset_version": OPSET,
        "input_names": [INPUT_NAME],
        "output_names": [OUTPUT_NAME],
        "dynamic_axes": {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        "do_constant_folding": True,
    }
    # torch < 2.5 has no ``dynamo`` argument and always uses the TorchScript exporter.
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    return kwargs


def export_onnx(
    model: nn.Module, path: Path, *, input_shape: tuple[int, ...] = (1, 3, 32, 32)
) -> ExportResult:
    """Export ``model`` (in eval mode) to ``path`` with a dynamic batch axis.

    The file is written beside ``path`` under a temporary name, checked with
    ``onnx.checker.check_model``, then moved into place, so ``path`` is either the complete,
    valid export or untouched.
    """
    import onnx

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        dummy = torch.zeros(input_shape, device=model_device(model))
        with eval_copy(model), warnings.catch_warnings():
            # The TorchScript exporter announces its deprecation, and tracing warns about
            # Python-level control flow; neither changes the exported graph.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(model, (dummy,), str(tmp), **_export_kwargs())
        onnx.checker.check_model(str(tmp))
        exported = onnx.load(str(tmp), load_external_data=False)
        opsets = {entry.domain: entry.version for entry in exported.opset_import}
        opset = opsets.get("", opsets.get("ai.onnx"))
        if opset != OPSET:
            raise RuntimeError(f"exporter wrote opset {opset}, expected {OPSET}")
        os.replace(tmp, path)
    except Exception as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return ExportResult(
            path=path, ok=False, size_bytes=None, opset=OPSET, error=describe_error(error)
        )
    return ExportResult(path=path, ok=True, size_bytes=os.path.getsize(path), opset=OPSET)


def _failed(reason: str, n: int = 0, atol: float = 1e-4) -> ParityResult:
    return ParityResult(
        ok=False, max_abs_diff=None, top1_agreement=None, n=n, reason=reason, atol=atol
    )


def check_parity(
    model: nn.Module,
    onnx_path: Path,
    samples: torch.Tensor,
    *,
    atol: float = 1e-4,
    threads: int | None = None,
) -> ParityResult:
    """Compare ONNX Runtime's outputs with PyTorch's (eval mode) on ``samples``.

    Passes only if the largest absolute difference of any output is at most ``atol`` and the
    top-1 prediction agrees on every sample (up to ties within ``atol``, see
    :class:`ParityResult`).
    """
    onnx_path = Path(onnx_path)
    n = int(samples.shape[0]) if samples.ndim >= 1 else 0
    if n == 0:
        return _failed("no samples to compare", atol=atol)
    if not onnx_path.is_file():
        return _failed(f"ONNX file not found: {onnx_path}", atol=atol)
    try:
        opened = create_session(onnx_path, device="cpu", threads=threads)
    except Exception as error:
        return _failed(f"onnxruntime could not load the model: {describe_error(error)}", atol=atol)
    if opened.fallback:
        return _failed(opened.fallback, atol=atol)
    session, input_name = opened.session, opened.input_name

    samples = samples.detach().to("cpu", torch.float32).contiguous()
    device = model_device(model)
    try:
        expected, actual = [], []
        with eval_copy(model), torch.inference_mode():
            for start in range(0, n, PARITY_BATCH):
                batch = samples[start : start + PARITY_BATCH]
                expected.append(model(batch.to(device)).float().cpu().numpy())
                actual.append(session.run(None, {input_name: batch.numpy()})[0])
        reference = np.concatenate(expected)
        onnx_out = np.concatenate(actual).astype(np.float32, copy=False)
    except Exception as error:
        return _failed(f"inference failed: {describe_error(error)}", n=n, atol=atol)
    if reference.shape != onnx_out.shape:
        return _failed(
            f"output shapes differ: torch {reference.shape}, onnxruntime {onnx_out.shape}",
            n=n,
            atol=atol,
        )
    if not (np.isfinite(reference).all() and np.isfinite(onnx_out).all()):
        return _failed("non-finite outputs (NaN or inf)", n=n, atol=atol)

    max_diff = float(np.abs(reference - onnx_out).max()) if reference.size else 0.0
    flat_ref = reference.reshape(n, -1)
    torch_top1 = flat_ref.argmax(axis=1)
    onnx_top1 = onnx_out.reshape(n, -1).argmax(axis=1)
    agree = torch_top1 == onnx_top1
    rows = np.arange(n)
    margin = flat_ref[rows, torch_top1] - flat_ref[rows, onnx_top1]
    ties = int(np.sum(~agree & (margin <= atol)))
    mismatches = int(np.sum(~agree)) - ties
    agreement = float(agree.mean())

    problems = []
    if max_diff > atol:
        problems.append(f"max |torch - onnxruntime| = {max_diff:.3g} > atol {atol:g}")
    if mismatches:
        problems.append(f"top-1 differs on {mismatches} of {n} samples")
    return ParityResult(
        ok=not problems,
        max_abs_diff=max_diff,
        top1_agreement=agreement,
        n=n,
        reason="; ".join(problems) or None,
        atol=atol,
        ties=ties,
    )
