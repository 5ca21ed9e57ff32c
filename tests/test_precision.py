"""The CUDA precision policy: switches set, recorded and restored (no GPU needed)."""

from __future__ import annotations

import subprocess

import pytest
import torch

from archbench.measure.precision import (
    PrecisionPolicy,
    applied,
    current_state,
    gpu_clocks,
    parse_clocks,
)


@pytest.fixture
def torch_defaults_like_a_fresh_process():
    """PyTorch's own defaults: matmul TF32 off, cuDNN TF32 on (the trap the policy closes)."""
    backends = torch.backends
    saved = (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32, backends.cudnn.benchmark)
    backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32 = False, True
    backends.cudnn.benchmark = True  # as a user's script might have left it
    yield
    backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32, backends.cudnn.benchmark = saved


def test_default_policy_turns_tf32_off_everywhere_and_restores(torch_defaults_like_a_fresh_process):
    with applied(PrecisionPolicy()) as state:
        assert state["tf32_matmul"] is False and state["tf32_cudnn"] is False
        assert state["cudnn_benchmark"] is False
        assert state["float32_matmul_precision"] == "highest"
        assert current_state() == state
    after = current_state()
    assert after["tf32_cudnn"] is True and after["cudnn_benchmark"] is True


def test_tf32_policy_allows_it_for_both_libraries(torch_defaults_like_a_fresh_process):
    with applied(PrecisionPolicy(tf32=True)) as state:
        assert state["tf32_matmul"] is True and state["tf32_cudnn"] is True
    assert current_state()["tf32_matmul"] is False


def test_switches_are_restored_when_the_measurement_fails(torch_defaults_like_a_fresh_process):
    with pytest.raises(RuntimeError), applied(PrecisionPolicy(tf32=True)):
        raise RuntimeError("measurement failed")
    assert current_state()["tf32_matmul"] is False


def test_clocks_parse_nvidia_smi_output():
    line = "1980, 2619, 1980, 2619, 72.31, 700.00, 41, P0\n"
    clocks = parse_clocks(line)
    assert clocks["clocks_sm"] == 1980.0 and clocks["clocks_max_mem"] == 2619.0
    assert clocks["power_draw"] == 72.31 and clocks["pstate"] == "P0"
    unsupported = parse_clocks("1410, 1215, 1410, 1215, [N/A], [Not Supported], 35, P0")
    assert unsupported["power_draw"] is None and unsupported["power_limit"] is None
    assert parse_clocks("1410, 1215") is None and parse_clocks("") is None


def test_unreadable_clocks_are_none_not_an_error():
    def missing(fields: str) -> str:
        raise FileNotFoundError("nvidia-smi")

    def failing(fields: str) -> str:
        raise subprocess.CalledProcessError(9, "nvidia-smi")

    assert gpu_clocks(missing) is None and gpu_clocks(failing) is None
