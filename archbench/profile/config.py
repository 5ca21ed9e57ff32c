"""What a profile measures and how: backends, samples, threads, batch sizes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..measure.backends import BACKENDS
from ..measure.quantize import DEFAULT_CALIBRATION_SAMPLES


@dataclass(frozen=True)
class ProfileConfig:
    """Saved under ``config`` in ``profile.json``, with what each ``None`` resolved to."""

    backends: tuple[str, ...] = BACKENDS
    samples: int | None = 1000  # latency samples; None = all test samples
    warmup: int = 10
    threads: int | None = None  # None = torch.get_num_threads()
    batch_sizes: tuple[int, ...] = (1, 64)
    parity_samples: int = 100
    top_layers: int = 15
    peak_cache_dir: Path | None = None
    threshold: float | None = None  # multi-label: probability counted as predicted (run's, 0.5)
    tf32: bool = False  # CUDA fp32 matmuls and convolutions may use TF32 (measure.precision)
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES  # int8: training images calibrated on
    cold_start: bool = True  # fresh-interpreter cold start and memory per backend
    refresh_peak: bool = False  # probe the peaks and operator costs again instead of the cache

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["backends"] = list(self.backends)
        data["batch_sizes"] = list(self.batch_sizes)
        data["peak_cache_dir"] = str(self.peak_cache_dir) if self.peak_cache_dir else None
        return data
