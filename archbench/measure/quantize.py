"""Static post-training int8 quantization of an exported model with ONNX Runtime.

MLPerf Tiny's deployment rule is int8 with an accuracy floor, so the int8 model is built the way
ONNX Runtime's documentation advises for CNNs and measured like any other backend:

1. ``quant_pre_process`` (shape inference and graph optimization) on the fp32 export;
2. ``quantize_static`` in QDQ format with per-channel int8 weights and uint8 activations
   (U8S8, what ORT's x86 kernels run fastest; 7-bit weights on CPUs without VNNI, see
   :func:`cpu_has_vnni`), calibrated with min/max ranges observed on real, normalized training
   images (never test images: calibrating on the test split would leak it);
3. the result written beside the fp32 model under a temporary name and moved into place, so the
   int8 file is either complete or absent.

How the calibration images were chosen and every quantization setting are returned as the
``method`` record, so a profile says exactly which int8 model its figures belong to.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archbench.errors import ArchbenchError, describe_error

DEFAULT_CALIBRATION_SAMPLES = 256
CALIBRATION_SEED = 0


@dataclass(frozen=True)
class QuantizeConfig:
    """How the int8 model is made (recorded with its figures)."""

    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    calibration_batch: int = 32
    per_channel: bool = True
    calibrate_method: str = "MinMax"  # MinMax | Entropy | Percentile (onnxruntime's names)
    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    reduce_range: bool | None = None  # None: on x86 CPUs without VNNI (see cpu_has_vnni)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QuantizeResult:
    path: Path
    ok: bool
    size_bytes: int | None
    calibration_images: int
    method: dict[str, Any]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


def cpu_has_vnni() -> bool | None:
    """Whether this CPU has VNNI (AVX512-VNNI or AVX-VNNI); ``None`` when it cannot tell.

    Without VNNI, ONNX Runtime's x86 U8S8 kernels multiply-add pairs with ``vpmaddubsw``, whose
    16-bit sums saturate with full-range 8-bit weights; ORT's documentation advises
    ``reduce_range`` (7-bit weights) there. Measured here (AVX2, no VNNI) on squeezenet_dsc
    trained on digits: 8-bit weights cost 3.9 points of top-1 and 91% agreement with fp32,
    7-bit weights +0.3 points and 98.9%.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return any(flag in flags.split() for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def calibration_subset(
    train_images: torch.Tensor, count: int, seed: int = CALIBRATION_SEED
) -> torch.Tensor:
    """``count`` training images drawn by a seeded permutation (all of them if fewer).

    Zero images is an :class:`ArchbenchError`: min/max ranges of nothing would quantize every
    activation to a meaningless scale.
    """
    if count < 1:
        raise ArchbenchError(f"--calibration-samples must be positive, got {count}")
    if train_images.ndim != 4 or train_images.shape[0] == 0:
        raise ArchbenchError("int8 calibration needs at least one training image; got none")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(train_images.shape[0], generator=generator)[:count]
    return train_images.index_select(0, order)


class CalibrationImages:
    """A ``CalibrationDataReader`` (onnxruntime recognises it by its ``get_next``): yields
    ``{input_name: batch}`` over real images, once, which is all min/max calibration reads."""

    def __init__(self, images: torch.Tensor, input_name: str, batch: int):
        if images.ndim != 4 or images.shape[0] == 0:
            raise ArchbenchError("int8 calibration needs at least one image; got none")
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        self._batches: Iterator[np.ndarray] = iter(
            [array[start : start + batch] for start in range(0, array.shape[0], batch)]
        )
        self.input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self.input_name: batch}


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    calibration: torch.Tensor,
    *,
    config: QuantizeConfig = QuantizeConfig(),  # noqa: B008  (frozen)
    input_name: str = "input",
) -> QuantizeResult:
    """Quantize ``fp32_path`` into ``int8_path`` calibrated on ``calibration`` images.

    ``calibration`` must hold at least one normalized image (else :class:`ArchbenchError`); a
    failure inside onnxruntime is returned as a result with its reason, and leaves no file.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    n = int(calibration.shape[0]) if calibration.ndim == 4 else 0
    if n == 0:
        raise ArchbenchError("int8 calibration needs at least one training image; got none")
    reader = CalibrationImages(calibration, input_name, config.calibration_batch)
    reduce_range = config.reduce_range
    if reduce_range is None:
        reduce_range = cpu_has_vnni() is False
    method = {
        **config.to_dict(),
        "reduce_range": reduce_range,
        "format": "QDQ",
        "calibration": f"{n} training images, seeded permutation (seed {CALIBRATION_SEED}), "
        "normalized as in training, no augmentation",
        "preprocess": "onnxruntime.quantization.shape_inference.quant_pre_process",
    }
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = int8_path.with_name(f".{int8_path.name}.{os.getpid()}.tmp")
    try:
        with tempfile.TemporaryDirectory(prefix="archbench-quant-") as work:
            prepared = Path(work) / "preprocessed.onnx"
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(tmp),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=config.per_channel,
                reduce_range=reduce_range,
                activation_type=getattr(QuantType, config.activation_type),
                weight_type=getattr(QuantType, config.weight_type),
                calibrate_method=getattr(CalibrationMethod, config.calibrate_method),
            )
        os.replace(tmp, int8_path)
    except Exception as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return QuantizeResult(int8_path, False, None, n, method, describe_error(error))
    return QuantizeResult(int8_path, True, os.path.getsize(int8_path), n, method)
