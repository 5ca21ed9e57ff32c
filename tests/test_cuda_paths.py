"""CUDA code paths without a GPU where they can be: ONNX Runtime's silent fallback to the CPU
is caught with a fake session, and what a profile records about precision. The tests marked
``cuda`` need a GPU (benchmarks/gpu_check.sh runs them) and are skipped here."""

from __future__ import annotations

import onnxruntime
import pytest
import torch

from archbench.measure import backends, onnxrt, precision
from archbench.measure.export import export_onnx
from archbench.measure.latency import measure_latency
from architectures import create_arch

REAL_SESSION = onnxruntime.InferenceSession
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class FallbackSession:
    """What onnxruntime-gpu builds on a machine whose CUDA provider cannot load: a working
    session that runs on the CPU (measured: libcurand missing, or no driver)."""

    def __init__(self, source, sess_options=None, providers=None):
        self.asked = providers
        self.real = REAL_SESSION(source, providers=["CPUExecutionProvider"])

    def get_providers(self):
        return ["CPUExecutionProvider"]

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.fixture
def gpu_onnxruntime_without_gpu(monkeypatch):
    """onnxruntime that lists the CUDA provider, and falls back to the CPU when asked for it."""
    preloads = []
    monkeypatch.setattr(onnxrt, "_preloaded", False)
    monkeypatch.setattr(onnxruntime, "preload_dlls", lambda: preloads.append(1), raising=False)
    monkeypatch.setattr(
        onnxruntime,
        "get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(onnxruntime, "InferenceSession", FallbackSession)
    return preloads


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    exported = export_onnx(create_arch("squeezenet_dsc", num_classes=10), path,
                           input_shape=(1, 3, 32, 32))  # fmt: skip
    assert exported.ok, exported.error
    return path


def test_a_cuda_session_that_runs_on_the_cpu_is_reported(gpu_onnxruntime_without_gpu, onnx_file):
    opened = onnxrt.create_session(onnx_file, device="cuda", threads=1)
    assert opened.providers == ("CPUExecutionProvider",)
    assert opened.fallback == (
        "onnxruntime session fell back to CPUExecutionProvider instead of CUDAExecutionProvider"
    )
    assert opened.session.asked[0] == ("CUDAExecutionProvider", {"device_id": 0})
    assert gpu_onnxruntime_without_gpu == [1]  # the pip CUDA libraries were preloaded, once
    onnxrt.create_session(onnx_file, device="cuda", threads=1)
    assert gpu_onnxruntime_without_gpu == [1]


def test_a_fallen_back_session_is_skipped_never_timed_as_cuda(
    gpu_onnxruntime_without_gpu, onnx_file, monkeypatch
):
    monkeypatch.setattr(backends, "_cuda_skip_reason", lambda: None)  # torch "sees" a GPU
    result = measure_latency("cuda-onnxruntime", model=None, onnx_path=onnx_file,
                             samples=torch.randn(4, 3, 32, 32), warmup=1, threads=1)  # fmt: skip
    assert result.status == "skipped" and result.batch1 is None
    assert "fell back to CPUExecutionProvider" in result.reason


def test_the_peak_cache_keys_cuda_peaks_by_precision(tmp_path):
    from archbench.measure.roofline import peak_cache_path

    with precision.applied(precision.PrecisionPolicy(tf32=False)):
        fp32 = peak_cache_path(tmp_path, "cuda", 1)
    with precision.applied(precision.PrecisionPolicy(tf32=True)):
        tf32 = peak_cache_path(tmp_path, "cuda", 1)
    assert fp32 != tf32 and "fp32" in fp32.name and "tf32" in tf32.name


@pytest.mark.cuda
@needs_gpu
def test_cuda_backends_measure_under_the_fp32_policy(onnx_file, tmp_path):
    from archbench.measure.roofline import measure_peak

    model = create_arch("squeezenet_dsc", num_classes=10)
    samples = torch.randn(16, 3, 32, 32)
    for backend in ("cuda-eager", "cuda-onnxruntime"):
        result = measure_latency(backend, model=model, onnx_path=onnx_file, samples=samples,
                                 warmup=2, threads=1, batch_sizes=(1, 8))  # fmt: skip
        assert result.ok, result.reason
    with precision.applied(precision.PrecisionPolicy()):
        peak = measure_peak("cuda", matmul_n=1024, copy_bytes=64 * 2**20, repeats=2)
    assert peak.precision["tf32_matmul"] is False and peak.precision["tf32_cudnn"] is False
