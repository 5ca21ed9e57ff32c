"""Machine peaks and a roofline reading of a measured latency.

:func:`measure_peak` probes what this machine can do: fp32 FLOP/s from a large square matmul
(``2 n^3`` FLOPs, best of several) and, on the CPU, from a large 1x1 convolution in PyTorch and in
ONNX Runtime (the best probe is the peak: one BLAS library alone can be far from the hardware's
limit), and memory bandwidth as the best of a large tensor copy (bytes read plus bytes written:
the STREAM "copy" convention) and a large matrix-vector product in PyTorch and ONNX Runtime
(the matrix read once: what batch-1 inference of a big classifier does, and the access pattern
the libraries stream fastest).

:func:`roofline` then says how far a network's measured p50 is from the fastest time the peaks
allow. The bytes a forward pass must move are estimated by :func:`min_bytes_moved` as the
*compulsory* traffic: every parameter and floating-point buffer read once, the input read once,
the output written once. Activations are assumed to stay in cache, so the estimate (and the
memory-bound time derived from it) is a lower bound, which keeps ``lower_bound_ms`` a true
lower bound.
"""

from __future__ import annotations

import glob
import json
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import files, paths
from . import precision
from .caches import MAX_PROBE_BYTES, probe_cache_levels
from .onnxrt import create_session, in_memory_initializer
from .sysinfo import machine_id

DEFAULT_MATMUL_N = {"cpu": 2048, "cuda": 8192}
DEFAULT_COPY_BYTES = {"cpu": 256 * 2**20, "cuda": 1024 * 2**20}
DEFAULT_REPEATS = 5
CONV_SHAPE = (4, 512, 32, 32)  # CPU 1x1-convolution probe: 2.1 GFLOP per call
# Short probes (a few ms each, repeated): robust to a busy machine (see _short_probes).
SHORT_MATMUL_N = 512
SHORT_CONV_SHAPE = (1, 512, 16, 16)  # 134 MFLOP per call
SHORT_REPEATS = 30


@dataclass(frozen=True)
class MachinePeak:
    gflops: float  # fp32, best of the probes (see measure_peak)
    gbps: float  # GB/s (1e9 bytes), best of the bandwidth probes
    device: str
    threads: int | None
    matmul_n: int
    copy_bytes: int  # size of the copied tensor; traffic counted is twice this
    measured_at: str
    device_name: str | None = None
    probes: dict[str, float] = field(default_factory=dict)  # GFLOP/s of each probe
    bandwidth_probes: dict[str, float] = field(default_factory=dict)  # GB/s of each probe
    precision: dict | None = None  # CUDA: the TF32/cuDNN switches the probe ran under
    numeric_format: str = "fp32"  # whose FLOP/s ``gflops`` is (archbench.measure.formats)
    # Faster memory levels, fastest first: {"level", "bytes" (working set that fits), "gbps"}.
    cache_levels: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MachinePeak:
        if "bandwidth_probes" not in data:
            raise ValueError("a peak from before the bandwidth probes: measure again")
        if data.get("device") == "cpu" and "cache_levels" not in data:
            raise ValueError("a peak from before the cache-level probes: measure again")
        fields = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in fields})

    def level_for(self, nbytes: int) -> tuple[str, float]:
        """The fastest memory level a working set of ``nbytes`` fits, and its GB/s.

        A level is never charged below DRAM bandwidth: a faster level that probed slower (a
        noisy probe, or a "last-level cache" the size of DRAM) cannot make a floor higher.
        """
        for level in self.cache_levels:
            if nbytes <= level["bytes"]:
                return level["level"], max(float(level["gbps"]), self.gbps)
        return "DRAM", self.gbps


def _best_seconds_cpu(fn, repeats: int) -> float:
    fn()  # warm-up: allocations, thread pool start, page faults
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - start) / 1e9)
    return max(best, 1e-9)


def _best_seconds_cuda(fn, repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return max(best, 1e-9)


def _matmul_seconds(device: str, n: int, best, repeats: int) -> float:
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=generator, device=device)
    b = torch.randn(n, n, generator=generator, device=device)
    out = torch.empty(n, n, device=device)
    return best(lambda: torch.mm(a, b, out=out), repeats)


def _conv_input(shape: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    batch, channels, height, width = shape
    x = torch.randn(batch, channels, height, width, generator=generator)
    weight = torch.randn(channels, channels, 1, 1, generator=generator) / channels**0.5
    return x, weight


def _torch_conv_seconds(shape, repeats: int) -> float:
    x, weight = _conv_input(shape)
    with torch.inference_mode():
        return _best_seconds_cpu(lambda: torch.nn.functional.conv2d(x, weight), repeats)


def _ort_conv_seconds(shape, threads: int, repeats: int) -> float:
    from onnx import TensorProto, helper, numpy_helper

    x, weight = _conv_input(shape)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "peak_conv1x1",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
        [numpy_helper.from_array(weight.numpy(), "w")],
    )
    session = _probe_session(graph, threads)
    feed = {"x": x.numpy()}
    return _best_seconds_cpu(lambda: session.run(None, feed), repeats)


def _probe_session(graph, threads: int, initializers=None):
    """A CPU session over a one-node probe graph (same settings as the latency backend).

    ``initializers``: the data of the graph's external-data initializers, by name.
    """
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 8)
    if not initializers:  # the checker looks for external data on disk
        onnx.checker.check_model(model)
    opened = create_session(
        model.SerializeToString(), device="cpu", threads=threads, initializers=initializers
    )
    return opened.session


def _copy_seconds(device: str, numel: int, best, repeats: int) -> float:
    src = torch.ones(numel, device=device)
    dst = torch.empty_like(src)
    return best(lambda: dst.copy_(src), repeats)


def _gemv_matrix(numel: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A square fp32 matrix of about ``numel`` elements and a vector: a classifier at batch 1."""
    side = int(numel**0.5)
    generator = torch.Generator().manual_seed(0)
    return torch.rand(side, side, generator=generator), torch.rand(side, generator=generator)


def _torch_gemv_seconds(device: str, numel: int, best, repeats: int) -> tuple[float, int]:
    matrix, vector = (t.to(device) for t in _gemv_matrix(numel))
    with torch.inference_mode():
        return best(lambda: torch.mv(matrix, vector), repeats), matrix.numel() * 4


def _ort_gemv_seconds(numel: int, threads: int, repeats: int) -> tuple[float, int]:
    """Reading a large weight once per call, as batch-1 inference of a big classifier does."""
    from onnx import TensorProto, helper

    matrix, vector = _gemv_matrix(numel)
    side = matrix.shape[0]
    # The weight is a constant initializer, as in a network, but its bytes reach ONNX Runtime
    # from memory (an external-data entry): serializing 256 MB into the protobuf took 2 s a probe.
    weight = in_memory_initializer("w", matrix.numpy())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "peak_gemv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, side])],
        [weight],
    )
    session = _probe_session(graph, threads, {"w": matrix.numpy()})
    feed = {"x": vector.numpy()[None, :]}
    return _best_seconds_cpu(lambda: session.run(None, feed), repeats), matrix.numel() * 4


def _short_probes(threads: int, repeats: int) -> dict[str, float]:
    """The matmul and ONNX Runtime 1x1 convolution again, a few milliseconds each, many times.

    A probe longer than a scheduler time slice runs at a fraction of the machine on a busy one,
    and a floor from that peak is then beaten by the network measured next. Short bursts,
    repeated, catch at least one uninterrupted slice: the best of them is the machine's rate.
    """
    n, many = SHORT_MATMUL_N, max(repeats, SHORT_REPEATS)
    probes = {"torch_matmul_short": 2 * n**3 / _matmul_seconds("cpu", n, _best_seconds_cpu, many)}
    try:
        batch, channels, height, width = SHORT_CONV_SHAPE
        flops = 2 * batch * channels * channels * height * width
        probes["onnxruntime_conv1x1_short"] = flops / _ort_conv_seconds(
            SHORT_CONV_SHAPE, threads, many
        )
    except ImportError:
        pass
    return {name: rate / 1e9 for name, rate in probes.items()}


def _ort_reader(threads: int, repeats: int):
    """GB/s of ONNX Runtime's matrix-vector product over a matrix of ``n`` bytes, or ``None``."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None

    def read(nbytes: int) -> float:
        seconds, moved = _ort_gemv_seconds(max(nbytes // 4, 1), threads, repeats)
        return moved / seconds / 1e9

    return read


def measure_peak(
    device: str = "cpu",
    threads: int | None = None,
    *,
    matmul_n: int | None = None,
    copy_bytes: int | None = None,
    conv_shape: tuple[int, int, int, int] | None = CONV_SHAPE,
    repeats: int = DEFAULT_REPEATS,
) -> MachinePeak:
    """Probe fp32 GFLOP/s and copy GB/s on ``device`` ("cpu" or "cuda").

    The FLOP/s peak is the best of several probes, each the best of ``repeats`` runs: a square
    ``matmul_n`` matmul (``2 n^3`` FLOPs) and, on the CPU, a 1x1 convolution of ``conv_shape``
    (N, C, H, W) in PyTorch (oneDNN) and in ONNX Runtime (MLAS). One library is not enough: on
    AMD CPUs MKL's sgemm runs AVX2 code and reaches about half of what oneDNN's and MLAS's
    AVX-512 kernels do, so a matmul-only "peak" is beaten by the networks themselves.
    ``conv_shape=None`` leaves the convolution probes out. Every probe's figure is kept in
    ``probes``.

    On the CPU, ``threads`` intra-op threads are used (default: torch's current count) and the
    previous count is restored. On CUDA, timing uses CUDA events with synchronization, under
    the caller's precision policy (:func:`archbench.measure.precision.applied`; profiles turn
    TF32 off unless asked), which the result records in ``precision``.
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA is not available")
    n = int(matmul_n or DEFAULT_MATMUL_N[device])
    nbytes = int(copy_bytes or DEFAULT_COPY_BYTES[device])
    previous = torch.get_num_threads()
    if device == "cpu" and threads is not None:
        torch.set_num_threads(int(threads))
    probes: dict[str, float] = {}
    try:
        used_threads = torch.get_num_threads() if device == "cpu" else None
        best = _best_seconds_cpu if device == "cpu" else _best_seconds_cuda
        probes["torch_matmul"] = 2 * n**3 / _matmul_seconds(device, n, best, repeats) / 1e9
        if device == "cpu" and conv_shape is not None:
            batch, channels, height, width = conv_shape
            conv_flops = 2 * batch * channels * channels * height * width
            probes["torch_conv1x1"] = conv_flops / _torch_conv_seconds(conv_shape, repeats) / 1e9
            try:
                seconds = _ort_conv_seconds(conv_shape, used_threads, repeats)
                probes["onnxruntime_conv1x1"] = conv_flops / seconds / 1e9
            except ImportError:
                pass  # no ONNX Runtime here: its probe is simply not part of the peak
        if device == "cpu":
            probes.update(_short_probes(used_threads, repeats))
        bandwidth: dict[str, float] = {}
        copy_s = _copy_seconds(device, nbytes // 4, best, repeats)
        bandwidth["torch_copy"] = 2 * (nbytes // 4) * 4 / copy_s / 1e9
        seconds, read = _torch_gemv_seconds(device, nbytes // 4, best, repeats)
        bandwidth["torch_gemv"] = read / seconds / 1e9
        if device == "cpu":
            try:
                seconds, read = _ort_gemv_seconds(nbytes // 4, used_threads, repeats)
                bandwidth["onnxruntime_gemv"] = read / seconds / 1e9
            except ImportError:
                pass
        levels = (
            probe_cache_levels(
                used_threads,
                repeats,
                reader=_ort_reader(used_threads, repeats),
                max_bytes=min(MAX_PROBE_BYTES, nbytes // 2),  # larger ones are DRAM's probe
            )
            if device == "cpu"
            else []
        )
    finally:
        torch.set_num_threads(previous)
    name = torch.cuda.get_device_name(0) if device == "cuda" else None
    return MachinePeak(
        gflops=max(probes.values()),
        gbps=max(bandwidth.values()),
        device=device,
        threads=used_threads,
        matmul_n=n,
        copy_bytes=(nbytes // 4) * 4,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        device_name=name,
        probes=probes,
        bandwidth_probes=bandwidth,
        precision=precision.current_state() if device == "cuda" else None,
        cache_levels=levels,
    )


def _onnxruntime_version() -> str:
    try:
        import onnxruntime
    except ImportError:
        return "none"
    return onnxruntime.__version__


def peak_cache_path(cache_dir: Path | None, device: str, threads: int | None) -> Path:
    """Where :func:`cached_peak` keeps the probe for this machine, device, threads and torch."""
    directory = Path(cache_dir) if cache_dir is not None else paths.peak_cache_dir()
    threads = threads if threads is not None else torch.get_num_threads()
    parts = [machine_id(), device, f"t{threads}", f"torch{torch.__version__}"]
    if device == "cpu":
        parts.append(f"ort{_onnxruntime_version()}")
    if device == "cuda":  # a TF32 peak is another figure than an fp32 one
        parts.append("tf32" if precision.current_state()["tf32_matmul"] else "fp32")
        if torch.cuda.is_available():
            parts.append(torch.cuda.get_device_name(0))
    key = re.sub(r"[^A-Za-z0-9.+-]+", "_", "-".join(parts))
    return directory / f"{key}.json"


def forget_cached_probes(cache_dir: Path | None, device: str, threads: int | None) -> list[Path]:
    """Remove this machine's cached peak and what was probed beside it (other formats' peaks,
    operator costs): the next profile probes them again. For a peak cached in a busy spell,
    which makes every later floor too high and every share of peak too low."""
    base = peak_cache_path(cache_dir, device, threads)
    cached = [base, *base.parent.glob(f"{glob.escape(base.stem)}-*.json")]
    removed = [path for path in cached if path.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def cached_peak(
    cache_dir: Path | None = None,
    device: str = "cpu",
    threads: int | None = None,
    *,
    refresh: bool = False,
) -> MachinePeak:
    """:func:`measure_peak`, measured once per machine/device/threads/torch and then reused.

    The cache lives in ``cache_dir`` (default ``$ARCHBENCH_CACHE/peak``, that is
    ``~/.cache/archbench/peak`` unless set: :mod:`archbench.paths`); an unreadable entry
    is measured again and overwritten.
    """
    threads = threads if threads is not None else torch.get_num_threads()
    path = peak_cache_path(cache_dir, device, threads)
    if not refresh and path.is_file():
        try:
            return MachinePeak.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            pass  # corrupt or from an incompatible version: measure again
    peak = measure_peak(device, threads)
    files.write_json(path, peak.to_dict())
    return peak


def min_bytes_moved(
    model: nn.Module,
    input_shape: tuple[int, ...],
    output_numel: int,
    dtype_bytes: int = 4,
    weight_bytes: int | None = None,
) -> int:
    """Compulsory bytes of one forward pass: parameters + floating buffers + input + output.

    Integer buffers (BatchNorm's ``num_batches_tracked``) are not read in eval mode and are left
    out. Activations are assumed cache-resident, so this is a lower bound. ``weight_bytes``:
    bytes of one weight in the backend's format (``None``: the parameters' own size).
    """
    weights = sum(p.numel() * (weight_bytes or p.element_size()) for p in model.parameters())
    weights += sum(
        b.numel() * (weight_bytes or b.element_size())
        for b in model.buffers()
        if b.is_floating_point()
    )
    input_numel = 1
    for dim in input_shape:
        input_numel *= int(dim)
    return int(weights + (input_numel + int(output_numel)) * dtype_bytes)


def roofline(macs: int, p50_ms: float, peak: MachinePeak, bytes_moved: int) -> dict[str, Any]:
    """Where a measured batch-1 latency sits against this machine's peaks.

    Returns achieved GFLOP/s (``2 * macs`` FLOPs in ``p50_ms``), its fraction of the matmul
    peak, the compute-bound and memory-bound times the peaks allow, their maximum
    (``lower_bound_ms``), the arithmetic intensity (FLOP per byte) and which bound dominates.
    """
    flops = 2.0 * macs
    compute_ms = flops / (peak.gflops * 1e9) * 1e3
    memory_ms = bytes_moved / (peak.gbps * 1e9) * 1e3
    achieved = flops / (p50_ms * 1e-3) / 1e9 if p50_ms > 0 else None
    return {
        "achieved_gflops": achieved,
        "fraction_of_peak": achieved / peak.gflops if achieved is not None else None,
        "compute_bound_ms": compute_ms,
        "memory_bound_ms": memory_ms,
        "lower_bound_ms": max(compute_ms, memory_ms),
        "bound": "compute" if compute_ms >= memory_ms else "memory",
        "arithmetic_intensity": flops / bytes_moved if bytes_moved > 0 else None,
        "bytes_moved": int(bytes_moved),
        "p50_ms": p50_ms,
        "peak_gflops": peak.gflops,
        "peak_gbps": peak.gbps,
        "peak_format": peak.numeric_format,
    }
