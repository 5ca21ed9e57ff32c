"""The latency benchmark cases, defined once for pytest-benchmark and for the A/B worker.

A case is one registered network on one CPU backend, timed as a batch-1 forward pass of a fixed
input with a fixed thread count. ``tests/benchmarks/test_latency_bench.py`` (stored-baseline
mode) and ``benchmarks/ab_worker.py`` (A/B mode) both build their cases here, so the two modes
cannot drift apart.

Self-contained on purpose: the A/B worker imports this file from the working tree but the
networks from an older revision, whose internal modules may have moved. So it relies only on
the most stable API — ``architectures.create_arch(name, num_classes=10)`` and
``architectures.list_archs()`` — plus torch, onnxruntime and ``inputs.py`` beside this file.
torch is imported only where a case is built, so the driver that merely names and selects cases
stays light.
"""

from __future__ import annotations

import fnmatch
import inspect
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

try:
    from . import inputs  # imported as benchmarks.latency_cases (the tests)
except ImportError:
    import inputs  # imported from benchmarks/ (the scripts and the A/B worker)

BACKENDS = ("cpu-eager", "cpu-onnxruntime")
INPUT_SHAPE = (1, 3, 32, 32)
NUM_CLASSES = 10
ONNX_OPSET = 17
INPUT_SEED = 0


def case_name(arch: str, backend: str) -> str:
    return f"{arch}-{backend}"


def all_cases() -> list[tuple[str, str]]:
    """Every (network, backend) pair, in a stable order."""
    from architectures import list_archs

    return [(arch, backend) for arch in sorted(list_archs()) for backend in BACKENDS]


def select_cases(cases: list[tuple[str, str]], select: str | None) -> list[tuple[str, str]]:
    """Cases whose ``arch-backend`` name matches one of the comma-separated glob patterns.

    A pattern without a wildcard matches as a substring (``squeezenet_dsc`` is both backends).
    """
    if not select:
        return list(cases)
    patterns = [p.strip() for p in select.split(",") if p.strip()]
    patterns = [p if any(c in p for c in "*?[") else f"*{p}*" for p in patterns]
    return [c for c in cases if any(fnmatch.fnmatchcase(case_name(*c), p) for p in patterns)]


def make_input() -> torch.Tensor:
    """A fixed, seeded input image: latency does not depend on pixel values, only on shape."""
    import torch

    generator = torch.Generator().manual_seed(INPUT_SEED)
    return torch.randn(INPUT_SHAPE, generator=generator)


def _native_input(arch: str, image: torch.Tensor) -> torch.Tensor:
    """``image``, or a seeded one of the network's input shape when that differs."""
    if tuple(image.shape[1:]) == inputs.input_shape(arch):
        return image
    return inputs.seeded_input(arch, seed=INPUT_SEED)


def _export(model: torch.nn.Module, path: Path, shape: tuple[int, ...]) -> None:
    import torch

    kwargs = {"opset_version": ONNX_OPSET, "input_names": ["input"], "do_constant_folding": True}
    # torch < 2.5 has no ``dynamo`` argument and always uses the TorchScript exporter.
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(shape),), str(path), **kwargs)


def build_forward(
    arch: str, backend: str, image: torch.Tensor, threads: int, scratch: Path
) -> Callable[[], object]:
    """A zero-argument callable running one batch-1 forward pass of ``arch`` on ``backend``.

    Runs it once and checks the output is finite logits of shape (1, 10), so a case that times
    a broken network fails instead of reporting a fast number. ``threads`` sets ONNX Runtime's
    intra-op threads; the caller sets torch's (``torch.set_num_threads``).
    """
    import torch

    from architectures import create_arch

    model = create_arch(arch, num_classes=NUM_CLASSES).eval()
    image = _native_input(arch, image)
    if backend == "cpu-eager":

        def forward():
            with torch.inference_mode():
                return model(image)

    elif backend == "cpu-onnxruntime":
        import onnxruntime as ort

        path = Path(scratch) / f"{arch}.onnx"
        _export(model, path, tuple(image.shape))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        feed = {session.get_inputs()[0].name: image.numpy()}

        def forward():
            return session.run(None, feed)

    else:
        raise ValueError(f"unknown backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    out = forward()
    logits = out if isinstance(out, torch.Tensor) else torch.from_numpy(out[0])
    if logits.shape != (1, NUM_CLASSES) or not torch.isfinite(logits).all():
        raise RuntimeError(f"{case_name(arch, backend)} gave {tuple(logits.shape)} non-logits")
    return forward
