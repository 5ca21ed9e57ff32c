"""`archbench profile` and the profile at the end of `archbench run`, on real digits runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from archbench.cli import main
from archbench.train import rundir as runs
from tests.conftest import PROFILE_FAST, TINY_NET, copy_run
from tests.expected_archs import EXPECTED

FAST = PROFILE_FAST[2:]  # the shared run's profile flags, without its backends


@pytest.fixture(scope="module")
def run_dir(digits_run, tmp_path_factory) -> Path:
    """The session's one-epoch digits run, profiled by `archbench run` itself: a private copy,
    since a test here profiles it again."""
    return copy_run(digits_run, tmp_path_factory.mktemp("profiled"))


def read_profile(folder: Path) -> dict:
    return json.loads((folder / runs.PROFILE).read_text())


@pytest.mark.slow
def test_run_ends_with_a_profile_of_its_selected_checkpoint(run_dir):
    profile = read_profile(run_dir)
    result = json.loads((run_dir / runs.RESULT).read_text())
    assert profile["arch"] == "squeezenet_dsc" and profile["num_classes"] == 10
    # The profiler evaluates best.pt on the same test split the trainer reported on.
    assert profile["accuracy"]["n"] == 359
    # Other batches, so float32 sums in another order: a near-tied argmax may flip one image.
    assert profile["accuracy"]["top1"] == pytest.approx(result["test_top1"], abs=1.01 / 359)
    assert profile["params"]["trainable"] == 248_670
    assert set(profile["latency"]) == {
        "cpu-eager", "cpu-onnxruntime", "cpu-onnxruntime-int8", "cpu-eager-bf16"
    }  # fmt: skip
    assert profile["latency"]["cpu-eager"]["batch1"]["n"] == 30
    # int8 in the same profile: its accuracy on the same 359 images, size and cold start.
    int8 = profile["numerics"]["cpu-onnxruntime-int8"]
    assert int8["n"] == 359 and int8["top1_agreement"] >= 0.9
    assert int8["top1_delta_points"] == pytest.approx(100 * (int8["top1"] - int8["fp32_top1"]))
    # ONNX Runtime's fp32 against torch's: another summation order, one flipped image at most.
    assert profile["accuracy"]["top1"] == pytest.approx(int8["fp32_top1"], abs=1.01 / 359)
    assert profile["size_bytes"]["onnx_int8"] == (run_dir / "model.int8.onnx").stat().st_size
    assert profile["quantization"]["calibration_images"] == 64
    for backend in ("cpu-onnxruntime", "cpu-onnxruntime-int8"):
        cold = profile["latency"][backend]["cold_start"]
        assert cold["session_ms"] > 0 and cold["first_inference_ms"] > 0
        assert profile["latency"][backend]["memory"]["inference_memory_bytes"] > 0
        reading = profile["roofline"][backend]
        # Every FLOP counted once: a sum per layer against one division, float64 rounding apart.
        assert reading["layerwise_bound_ms"] >= reading["compute_bound_ms"] * (1 - 1e-12)
        assert len(reading["layers_furthest_from_bound"]) == 5
    assert profile["onnx"]["parity"]["ok"] is True
    assert profile["size_bytes"]["state_dict"] == (run_dir / "state_dict.pt").stat().st_size
    assert (run_dir / "confusion_matrix.csv").is_file()


@pytest.mark.slow
def test_profile_command_reprofiles_a_run_with_other_settings(run_dir, capsys):
    assert main(["profile", str(run_dir), "--backends", "cpu-eager", "--samples", "12"]) == 0
    out = capsys.readouterr().out
    assert "squeezenet_dsc" in out and "cpu-eager" in out and "top-1" in out
    profile = read_profile(run_dir)
    assert list(profile["latency"]) == ["cpu-eager"]
    assert profile["latency"]["cpu-eager"]["batch1"]["n"] == 12
    assert profile["config"]["resolved"]["threads"] == 2  # the run's own thread count


@pytest.mark.slow
def test_untrained_arch_profile_skips_cuda_with_a_reason(tmp_path, capsys):
    # The network does not matter here (expected_archs checks every network's counts): the
    # study's smallest one keeps the two CPU backends' latency sampling short.
    out_dir = tmp_path / "untrained"
    # No cold starts: test_run_ends_with_a_profile_of_its_selected_checkpoint checks them.
    code = main(
        ["profile", "--arch", "squeezenet_dsc", "--num-classes", "100", "--out", str(out_dir),
         "--data-dir", str(tmp_path / "data"), "--no-cold-start", *FAST]
    )  # fmt: skip
    assert code == 0
    profile = read_profile(out_dir)
    assert profile["accuracy"] is None and profile["num_classes"] == 100
    assert profile["params"]["trainable"] == EXPECTED["squeezenet_dsc"].params_c100
    for backend in ("cpu-eager", "cpu-onnxruntime"):
        assert profile["latency"][backend]["status"] == "ok"
        assert profile["latency"][backend]["batch1"]["p50_ms"] > 0
    if not torch.cuda.is_available():
        for backend in ("cuda-eager", "cuda-naive", "cuda-onnxruntime"):
            assert profile["latency"][backend]["status"] == "skipped"
            assert "CUDA" in profile["latency"][backend]["reason"]
        assert "cuda-eager skipped" in capsys.readouterr().out


def _copy_path(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    return copy


def _rewrite_best(run: Path, **changes) -> None:
    state = torch.load(run / runs.BEST, weights_only=True)
    state.update(changes)
    torch.save(state, run / runs.BEST)


def _expect_error(capsys, argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_run_without_checkpoint(run_dir, tmp_path, capsys):
    run = _copy_path(run_dir, tmp_path)
    (run / runs.BEST).unlink()
    _expect_error(capsys, ["profile", str(run)], "has no best.pt")


def test_checkpoint_for_another_arch_or_class_count(run_dir, tmp_path, capsys):
    run = _copy_path(run_dir, tmp_path)
    _rewrite_best(run, arch="mobilenet")
    _expect_error(capsys, ["profile", str(run)], "arch='mobilenet', expected 'squeezenet_dsc'")
    _rewrite_best(run, arch="squeezenet_dsc", num_classes=100)
    _expect_error(capsys, ["profile", str(run)], "num_classes=100, expected 10")


def test_checkpoint_whose_weights_do_not_fit(run_dir, tmp_path, capsys):
    from architectures import create_arch

    run = _copy_path(run_dir, tmp_path)
    _rewrite_best(run, model=create_arch("squeezenet", num_classes=10).state_dict())
    _expect_error(capsys, ["profile", str(run)], "does not fit squeezenet_dsc with 10 classes")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["profile", "--arch", "vgg19", "--backends", "cpu-eagr"], "did you mean 'cpu-eager'"),
        (["profile", "--arch", "vgg19", "--samples", "zero"], "--samples takes positive"),
        (["profile", "--arch", "vgg19", "--batch-sizes", "1,0"], "--batch-sizes takes positive"),
        (["profile", "--arch", "vgg-19"], "did you mean 'vgg19'"),
        (["profile"], "give a RUN_DIR"),
        (["profile", "no-such-run"], "does not exist"),
        (["run", "--backends", "gpu-eager"], "unknown backend 'gpu-eager'"),
    ],
)
def test_bad_profile_input(tmp_path, capsys, argv, message):
    _expect_error(capsys, [*argv, "--runs-dir", str(tmp_path / "runs")], message)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.json"))


@pytest.mark.slow
def test_run_on_the_real_cifar10_jpegs(cifar_mini_run):
    """`archbench run --dataset imagefolder:<cifar10-jpg-mini>`: trains, evaluates, profiles."""
    run = cifar_mini_run.run_dir
    assert run.name.endswith("-squeezenet_dsc-imagefolder-cifar10-jpg-mini")
    config = json.loads((run / runs.CONFIG).read_text())
    assert config["train"]["augment"] == "crop-flip"
    assert config["data"]["train"] + config["data"]["val"] == 2000
    assert config["data"]["classes"][:2] == ["airplane", "automobile"]
    profile = read_profile(run)
    assert profile["accuracy"]["n"] == 1000 and len(profile["accuracy"]["per_class"]) == 10
    assert profile["onnx"]["parity"]["ok"] is True


@pytest.mark.slow
def test_refresh_peak_probes_again_what_the_cache_holds(tmp_path, monkeypatch):
    """A peak cached in a busy spell is used by every profile until --refresh-peak replaces it."""
    from archbench.measure.roofline import MachinePeak, peak_cache_path

    monkeypatch.setenv("ARCHBENCH_CACHE", str(tmp_path / "cache"))
    # Low, as one probed in a busy spell, but not below what the tiny network reaches (that
    # the profile notices by itself, and probes again)
    stale = MachinePeak(50.5, 1.0, "cpu", 1, 64, 1024, "2020-01-01T00:00:00+00:00")
    path = peak_cache_path(None, "cpu", 1)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(stale.to_dict()))
    opcost = path.with_name(f"{path.stem}-opcost-cpu-eager.json")
    opcost.write_text("{}")  # unreadable: probed again anyway, but a refresh must remove it
    argv = ["profile", "--arch", TINY_NET, "--backends", "cpu-eager", "--threads", "1",
            "--samples", "5", "--warmup", "1", "--batch-sizes", "1", "--no-cold-start",
            "--quiet"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "cached")]) == 0
    assert read_profile(tmp_path / "cached")["peak"]["cpu"]["gflops"] == 50.5
    opcost.write_text("{}")
    assert main([*argv, "--out", str(tmp_path / "fresh"), "--refresh-peak"]) == 0
    fresh = read_profile(tmp_path / "fresh")
    assert fresh["peak"]["cpu"]["gflops"] != 50.5 and fresh["config"]["refresh_peak"] is True
    assert json.loads(path.read_text())["gflops"] == fresh["peak"]["cpu"]["gflops"]
    assert json.loads(opcost.read_text())["backend"] == "cpu-eager"  # probed again
