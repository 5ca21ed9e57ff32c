"""A run directory turned into a predictor: image bytes in, class probabilities out.

The served model is the run's ``model.onnx`` (exported from ``best.pt`` when the run has none,
or an older one), run by ONNX Runtime on the CPU. Preprocessing is the run's test-time
transform, taken from the same code that built the run's data: decode to RGB and resize to the
network's input size as :mod:`archbench.data.imagefolder` does (bilinear, aspect ratio not
kept), then :func:`archbench.data.normalize` with the mean and std saved in ``best.pt``.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ArchbenchError

ONNX_FILE = "model.onnx"
MAX_PIXELS = 40_000_000  # a decompression bomb is refused before it is decoded
WARMUP_PASSES = 5


class NotAnImage(ValueError):
    """The body is not an image this server can read (HTTP 415)."""


class ImageTooLarge(ValueError):
    """The image decodes to more pixels than :data:`MAX_PIXELS` (HTTP 413)."""


@dataclass(frozen=True)
class StartupTimes:
    """Seconds spent making the model ready; the service reports them in ``/metadata``."""

    model_load_s: float  # run files, checkpoint, export when needed
    session_s: float  # ONNX Runtime session creation
    warmup_s: float  # untimed passes at batch 1 and the largest batch
    exported: bool  # whether model.onnx had to be exported from best.pt first


@dataclass
class RunModel:
    """What serving needs from a run: the ONNX session and the run's preprocessing."""

    run_dir: Path
    arch: str
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int, int]  # (channels, height, width) of the exported network
    onnx_path: Path
    session: object
    startup: StartupTimes | None = None
    input_name: str = field(init=False)

    def __post_init__(self) -> None:
        self.input_name = self.session.get_inputs()[0].name

    def preprocess(self, data: bytes) -> np.ndarray:
        """Image bytes -> float32 ``(C, H, W)``, exactly as the profiler's test inputs are built."""
        pixels = decode_image(data, self.input_size[1:])
        return normalize_pixels(pixels, self.mean, self.std)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``(N, C, H, W)`` -> ``(N, classes)`` float64 probabilities (softmax)."""
        logits = self.session.run(None, {self.input_name: batch})[0].astype(np.float64)
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


def decode_image(data: bytes, size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``(3, H, W)`` RGB pixels of an encoded image, resized as the image folders are."""
    from PIL import Image, UnidentifiedImageError

    from ..data import imagefolder

    if not data:
        raise NotAnImage("not an image: the body is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except UnidentifiedImageError:
        raise NotAnImage("not an image: not a format PIL knows") from None
    except Exception as error:  # PIL raises many types for damaged headers
        raise NotAnImage(f"not an image: {_one_line(error)}") from None
    if width * height > MAX_PIXELS:
        raise ImageTooLarge(f"image of {width}x{height} pixels exceeds {MAX_PIXELS:,} pixels")
    if tuple(size) != (imagefolder.SIZE, imagefolder.SIZE):
        raise ArchbenchError(f"serving supports {imagefolder.SIZE}x{imagefolder.SIZE} inputs only")
    try:
        return imagefolder._decode_pil("upload", data)
    except ArchbenchError as error:  # "cannot read image upload: <why>"
        raise NotAnImage(f"not an image: {str(error).split(': ', 1)[-1]}") from None


def normalize_pixels(pixels: torch.Tensor, mean, std) -> np.ndarray:
    from ..data import normalize

    return normalize(pixels, mean, std).numpy()


def _one_line(error: BaseException) -> str:
    return " ".join(f"{error}".split()) or type(error).__name__


def ensure_onnx(run_dir: Path, best: dict) -> tuple[Path, bool]:
    """The run's ``model.onnx``, exported from ``best.pt`` when missing or older than it."""
    from ..measure.export import export_onnx
    from ..train.rundir import BEST
    from ..train.transfer.setup import trained_model

    onnx_path = run_dir / ONNX_FILE
    best_path = run_dir / BEST
    if onnx_path.is_file() and onnx_path.stat().st_mtime >= best_path.stat().st_mtime:
        return onnx_path, False
    model = trained_model(best, best_path)  # a plain network, or a head on a backbone
    exported = export_onnx(model, onnx_path)
    if not exported.ok:
        raise ArchbenchError(f"cannot export {best_path} to ONNX: {exported.error}")
    return onnx_path, True


def load_run_model(
    run_dir: Path, *, threads: int | None = None, warmup_batch: int = 16
) -> RunModel:
    """Load, export when needed, create the session and warm it up; each step timed."""
    from ..train.rundir import BEST, load_checkpoint, read_run

    started = time.perf_counter()
    info = read_run(Path(run_dir))
    best_path = info.path / BEST
    if not best_path.is_file():
        raise ArchbenchError(f"{info.path} has no {BEST} to serve (status {info.status})")
    if info.config["train"].get("task", "classification") == "multilabel":
        raise ArchbenchError(
            f"{info.path} is a multi-label run: the service answers one class per image "
            "(softmax probabilities); archbench profile gives a multi-label run's figures"
        )
    described = info.config.get("data", {})
    expect = {"arch": info.config["train"]["arch"], "num_classes": described.get("num_classes")}
    best = load_checkpoint(best_path, expect={k: v for k, v in expect.items() if v})
    mean = best.get("mean") or described.get("mean")
    std = best.get("std") or described.get("std")
    classes = best.get("classes") or described.get("classes")
    if not (mean and std and classes):
        raise ArchbenchError(f"{best_path} records no class names or normalization to serve")
    onnx_path, exported = ensure_onnx(info.path, best)
    loaded = time.perf_counter()
    if threads is None and info.config["train"].get("threads"):
        threads = int(info.config["train"]["threads"])  # as the profiler does
    try:
        session = _session(onnx_path, threads)
    except Exception as error:
        raise ArchbenchError(f"onnxruntime cannot load {onnx_path}: {_one_line(error)}") from None
    shape = session.get_inputs()[0].shape  # ["batch", C, H, W]
    input_size = tuple(int(v) for v in shape[1:])
    created = time.perf_counter()
    model = RunModel(
        run_dir=info.path,
        arch=best["arch"],
        classes=[str(name) for name in classes],
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        input_size=input_size,  # type: ignore[arg-type]
        onnx_path=onnx_path,
        session=session,
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
    """A few untimed passes so the first real request does not pay for lazy initialization."""
    for batch in (1, max_batch):
        zeros = np.zeros((batch, *model.input_size), dtype=np.float32)
        for _ in range(WARMUP_PASSES):
            model.predict(zeros)
