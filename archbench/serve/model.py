"""A run directory turned into a predictor: image bytes in, probabilities out.

The served model is the run's ``model.onnx`` (exported from ``best.pt`` when the run has none,
or an older one, or one of another input shape), run by ONNX Runtime on the CPU. The network
and its input come from :func:`archbench.train.restore.restore_run`, the function the profiler
uses: an upload is decoded to the dataset's native shape (:mod:`archbench.data.upload`), fitted
to the run's input shape and normalized by :class:`~archbench.train.restore.RunInputs`, so the
served tensor of a test image is the profiler's, bit for bit, for every kind of run.

Single-label runs answer softmax probabilities; multi-label runs answer one sigmoid probability
per label and the labels at or above the run's threshold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.upload import ImageTooLarge, NotAnImage, decode_native
from ..errors import ArchbenchError
from ..train.restore import RunInputs, restore_run

ONNX_FILE = "model.onnx"
MAX_PIXELS = 16_000_000  # default decode budget: a 12 MP photo passes, a 6000x6000 bomb does not
WARMUP_PASSES = 5

__all__ = ["ImageTooLarge", "NotAnImage", "RunModel", "load_run_model"]


@dataclass(frozen=True)
class StartupTimes:
    """Seconds spent making the model ready; the service reports them in ``/metadata``."""

    model_load_s: float  # run files, checkpoint, export when needed
    session_s: float  # ONNX Runtime session creation
    warmup_s: float  # untimed passes at batch 1 and the largest batch
    exported: bool  # whether model.onnx had to be exported from best.pt first


@dataclass
class RunModel:
    """What serving needs from a run: the ONNX session, the run's inputs and its task."""

    run_dir: Path
    arch: str
    classes: list[str]
    inputs: RunInputs
    onnx_path: Path
    session: object
    task: str = "classification"
    threshold: float | None = None  # multi-label: the probability that counts as present
    max_pixels: int = MAX_PIXELS
    startup: StartupTimes | None = None
    input_name: str = field(init=False)

    def __post_init__(self) -> None:
        self.input_name = self.session.get_inputs()[0].name

    @property
    def input_size(self) -> tuple[int, int, int]:
        return self.inputs.input_shape

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    def preprocess(self, data: bytes) -> np.ndarray:
        """Image bytes -> float32 ``(C, H, W)``, exactly as the profiler's test inputs are built."""
        native = decode_native(data, self.inputs.native_shape, max_pixels=self.max_pixels)
        return self.inputs.tensor(native[None])[0].numpy()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``(N, C, H, W)`` -> ``(N, classes)`` float64 probabilities: softmax, or a
        sigmoid per label for a multi-label run."""
        logits = self.session.run(None, {self.input_name: batch})[0].astype(np.float64)
        if self.multilabel:
            return 1 / (1 + np.exp(-logits))
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)


def _session(path: Path, threads: int | None):
    """A CPU session from archbench's one session factory; a provider fallback is an error."""
    from ..measure.onnxrt import create_session

    opened = create_session(path, device="cpu", threads=threads)
    if opened.fallback:
        raise ArchbenchError(f"cannot serve {path}: {opened.fallback}")
    return opened.session


def _one_line(error: BaseException) -> str:
    return " ".join(f"{error}".split()) or type(error).__name__


def _onnx_input_shape(path: Path) -> tuple[int, ...] | None:
    """``(C, H, W)`` of an exported model's input, or None when the file cannot be read."""
    try:
        import onnx

        dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type
        return tuple(int(d.dim_value) for d in dims.shape.dim[1:])
    except Exception:  # a damaged or foreign file is simply exported again
        return None


def ensure_onnx(run_dir: Path, model, input_shape: tuple[int, int, int]) -> tuple[Path, bool]:
    """The run's ``model.onnx``, exported from ``best.pt`` when missing, older than it, or made
    for another input shape (an older archbench exported every run at 3x32x32)."""
    from ..measure.export import export_onnx
    from ..train.rundir import BEST

    onnx_path = run_dir / ONNX_FILE
    best_path = run_dir / BEST
    if (
        onnx_path.is_file()
        and onnx_path.stat().st_mtime >= best_path.stat().st_mtime
        and _onnx_input_shape(onnx_path) == tuple(input_shape)
    ):
        return onnx_path, False
    exported = export_onnx(model, onnx_path, input_shape=(1, *input_shape))
    if not exported.ok:
        raise ArchbenchError(f"cannot export {best_path} to ONNX: {exported.error}")
    return onnx_path, True


def load_run_model(
    run_dir: Path,
    *,
    threads: int | None = None,
    warmup_batch: int = 16,
    max_pixels: int = MAX_PIXELS,
) -> RunModel:
    """Restore, export when needed, create the session and warm it up; each step timed."""
    started = time.perf_counter()
    restored = restore_run(Path(run_dir))
    classes = restored.classes
    if not (restored.inputs.mean and restored.inputs.std and classes):
        raise ArchbenchError(
            f"{restored.path}/best.pt records no class names or normalization to serve"
        )
    onnx_path, exported = ensure_onnx(restored.path, restored.model, restored.inputs.input_shape)
    loaded = time.perf_counter()
    threads = threads if threads is not None else restored.threads  # as the profiler does
    try:
        session = _session(onnx_path, threads)
    except ArchbenchError:
        raise
    except Exception as error:
        raise ArchbenchError(f"onnxruntime cannot load {onnx_path}: {_one_line(error)}") from None
    created = time.perf_counter()
    model = RunModel(
        run_dir=restored.path,
        arch=restored.arch,
        classes=classes,
        inputs=restored.inputs,
        onnx_path=onnx_path,
        session=session,
        task=restored.task,
        threshold=restored.threshold if restored.task == "multilabel" else None,
        max_pixels=max_pixels,
    )
    warm_up(model, warmup_batch)
    model.startup = StartupTimes(
        model_load_s=loaded - started,
        session_s=created - loaded,
        warmup_s=time.perf_counter() - created,
        exported=exported,
    )
    return model


def warm_up(model: RunModel, max_batch: int = 16) -> None:
    """A few untimed passes so the first real request does not pay for lazy initialization
    (ONNX Runtime's, and the decoders' imports: torchvision's JPEG decoder takes seconds)."""
    from ..data.upload import encode_png

    blank = torch.zeros(model.inputs.native_shape, dtype=torch.uint8)
    model.preprocess(encode_png(blank))
    for batch in (1, max_batch):
        zeros = np.zeros((batch, *model.input_size), dtype=np.float32)
        for _ in range(WARMUP_PASSES):
            model.predict(zeros)
