"""torchvision and timm networks by name: built, trained a step, exported and profiled for real.

The parametrised test runs each network through what ``archbench run`` and ``profile`` do, on
the real digits set at the network's resolved input shape; the rest checks that every way an
``--arch`` value can be wrong is one clear :class:`ArchitectureError`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from archbench.cli import main
from archbench.data import BatchLoader, DataConfig, dataset_shape, load_data, normalize
from archbench.measure import roofline as roofline_module
from archbench.measure.complexity import count_complexity, count_macs
from archbench.profile import ProfileConfig, profile_model
from architectures import (
    ArchitectureError,
    arch_info,
    check_output,
    create_arch,
    is_user_reference,
    list_archs,
)
from tests.test_measure import small_peak

# Small and quick on 2 cores; together they cover both libraries, fixed and settable channels.
NETWORKS = [
    "torchvision.models:squeezenet1_1",
    "torchvision.models:shufflenet_v2_x0_5",
    "timm:mobilenetv3_small_050",
    "timm:test_efficientnet",
]

GELU_NET = """
import torch.nn.functional as F
from torch import nn

class GeluNet(nn.Module):
    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(F.gelu(self.conv(x)).amax(dim=(2, 3)))

def build(num_classes, in_channels=3):
    return GeluNet(num_classes, in_channels)
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def peak_cache(tmp_path_factory) -> Path:
    """One (shrunk) peak and one set of operator-cost probes for the module's profiles."""
    return tmp_path_factory.mktemp("peak")


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.slow
def test_network_builds_trains_exports_and_profiles(
    name, data_dir, peak_cache, tmp_path, monkeypatch
):
    info = arch_info(name)
    shape = info.input_shape(dataset_shape("digits"))
    # torchvision fixes 3 channels (digits replicated); timm takes digits' own single channel.
    assert shape == ((1, 32, 32) if info.channels_settable else (3, 32, 32))
    data = load_data(DataConfig("digits", data_dir=data_dir, input_shape=shape))
    assert data.train.images.shape[1:] == shape and len(data.mean) == shape[0]

    torch.manual_seed(0)
    model = create_arch(name, num_classes=10, in_channels=shape[0])
    check_output(model, name, shape, 10)
    loader = BatchLoader(
        data.train, batch_size=32, mean=data.mean, std=data.std, shuffle=True, augment="crop"
    )
    images, labels = next(iter(loader))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

    monkeypatch.setattr(roofline_module, "measure_peak", small_peak)
    # The node lock would make this profile wait for other archbench jobs' training epochs.
    monkeypatch.setenv("ARCHBENCH_LOCK_DIR", str(tmp_path / "locks"))
    test_images = normalize(data.test.images[:16], data.mean, data.std)
    config = ProfileConfig(
        backends=("cpu-eager", "cpu-onnxruntime"), samples=4, warmup=1, threads=1,
        batch_sizes=(1,), parity_samples=16, top_layers=3, peak_cache_dir=peak_cache,
    )  # fmt: skip
    profile = profile_model(
        model.eval(), arch=name, num_classes=10, out_dir=tmp_path / "profile",
        samples=test_images, labels=data.test.labels[:16], config=config,
    )  # fmt: skip
    assert profile["onnx"]["ok"], profile["onnx"]
    assert profile["onnx"]["parity"]["ok"], profile["onnx"]["parity"]
    assert profile["macs"] == count_macs(model, (1, *shape)) > 0
    assert profile["complexity"]["macs"] == profile["macs"]
    assert profile["complexity"]["flops"] == 2 * profile["macs"]
    assert sum(profile["complexity"]["by_operator"].values()) == profile["macs"]
    assert all(profile["latency"][b]["status"] == "ok" for b in config.backends)


def test_gelu_network_names_what_its_mac_count_misses(tmp_path):
    path = tmp_path / "gelu_net.py"
    path.write_text(GELU_NET)
    model = create_arch(f"{path}:build", num_classes=10)
    complexity = count_complexity(model, (1, 3, 32, 32))
    assert complexity.unsupported_ops["aten::gelu"] == 1
    assert "aten::gelu" in complexity.uncounted_ops
    record = complexity.to_dict()
    conv_macs = 8 * 32 * 32 * 3 * 9
    assert record["macs"] == conv_macs + 8 * 10 and record["flops"] == 2 * record["macs"]
    assert record["by_operator"] == {"conv": conv_macs, "linear": 80}
    assert record["convention"] == "1 MAC = one fused multiply-add = 2 FLOPs"


def run_cli(*args: str, lock_dir: Path) -> subprocess.CompletedProcess:
    """The real console entry point; its own lock directory, so it never waits for other jobs."""
    env = {**os.environ, "ARCHBENCH_LOCK_DIR": str(lock_dir), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "archbench", *args], capture_output=True, text=True, timeout=600,
        env=env,
    )  # fmt: skip


@pytest.mark.slow
def test_profile_json_records_gelu_as_unsupported(tmp_path):
    path = tmp_path / "gelu_net.py"
    path.write_text(GELU_NET)
    out = tmp_path / "profile"
    result = run_cli(
        "profile", "--arch", f"{path}:build", "--backends", "cpu-eager", "--samples", "3",
        "--warmup", "0", "--batch-sizes", "1", "--threads", "1", "--input-size", "16",
        "--out", str(out), lock_dir=tmp_path / "locks",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    profile = json.loads((out / "profile.json").read_text())
    complexity = profile["complexity"]
    assert complexity["unsupported_ops"] == {"aten::gelu": 1, "aten::amax": 1}
    assert complexity["convention"] == "1 MAC = one fused multiply-add = 2 FLOPs"
    # digits are 1-channel natively and the user builder takes in_channels; --input-size 16
    assert profile["config"]["resolved"]["input_shape"] == [1, 1, 16, 16]
    assert profile["macs"] == 8 * 16 * 16 * 1 * 9 + 80
    assert "MACs leave out aten::amax x1, aten::gelu x1" in " ".join(result.stdout.split())


def test_max_pooling_is_recorded_but_not_a_missed_mac():
    complexity = count_complexity(create_arch("vgg19", num_classes=10))
    assert complexity.unsupported_ops["aten::max_pool2d"] == 5
    assert "aten::max_pool2d" not in complexity.uncounted_ops


def test_listing_with_wildcards():
    assert list_archs("torchvision.models:squeezenet*") == [
        "torchvision.models:squeezenet1_0",
        "torchvision.models:squeezenet1_1",
    ]
    assert "torchvision.models:resnet18" in list_archs("torchvision.models:*")
    assert list_archs("timm:mobilenetv3_small_0*") == [
        "timm:mobilenetv3_small_050",
        "timm:mobilenetv3_small_075",
    ]
    assert not is_user_reference("timm:resnet18") and is_user_reference("my.nets:build")


def test_foreign_metadata():
    resnet = arch_info("torchvision.models:resnet18")
    assert (resnet.family, resnet.input_size, resnet.channels_settable) == (
        "torchvision", (3, 224, 224), False
    )  # fmt: skip
    assert resnet.description.startswith("ResNet-18 from Deep Residual Learning")
    assert arch_info("torchvision.models:inception_v3").input_size == (3, 299, 299)
    assert arch_info("timm:mobilenetv3_small_050").input_size == (3, 224, 224)
    # a foreign network follows the dataset; --input-size overrides; registered ones are fixed
    assert resnet.input_shape((1, 28, 28)) == (3, 28, 28)
    assert resnet.input_shape((1, 28, 28), size=64) == (3, 64, 64)
    assert arch_info("timm:resnet18").input_shape((1, 28, 28)) == (1, 28, 28)
    assert arch_info("squeezenet").input_shape((1, 28, 28)) == (3, 32, 32)
    with pytest.raises(ArchitectureError, match="positive"):
        resnet.input_shape((3, 32, 32), size=0)


def test_googlenet_trains_on_plain_logits():
    model = create_arch("torchvision.models:googlenet", num_classes=10).train()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)  # no auxiliary-head tuple


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("torchvision.models:resnt18", "did you mean 'torchvision.models:resnet18'"),
        ("torchvision.models:no_such_net", "list them with: archbench list"),
        ("timm:mobilenetv3_smal_050", "did you mean 'timm:mobilenetv3_small_050'"),
        ("resnet18", "did you mean 'torchvision.models:resnet18'"),
    ],
)
def test_unknown_names_get_the_close_match(name, message):
    with pytest.raises(ArchitectureError, match=message):
        create_arch(name)


def test_channels_only_when_the_builder_takes_them():
    with pytest.raises(ArchitectureError, match="cannot take 1-channel input; it expects 3"):
        create_arch("torchvision.models:shufflenet_v2_x0_5", in_channels=1)
    model = create_arch("timm:mobilenetv3_small_050", num_classes=5, in_channels=1)
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 5)


def test_timm_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # what Python does for a missing package
    with pytest.raises(ArchitectureError, match=r"pip install 'archbench\[timm\]'"):
        create_arch("timm:resnet18")


def test_failing_builder_and_wrong_output_are_one_line(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(
        "from torch import nn\n"
        "def broken(num_classes):\n"
        "    raise ValueError('width must be\\n a multiple of 8')\n"
        "def no_logits(num_classes):\n"
        "    return nn.Flatten()\n"
    )
    with pytest.raises(ArchitectureError) as caught:
        create_arch(f"{path}:broken")
    assert str(caught.value) == (
        f"building {path}:broken failed: ValueError: width must be a multiple of 8"
    )
    model = create_arch(f"{path}:no_logits")
    with pytest.raises(ArchitectureError, match=r"returns \(2, 3072\).*expected logits"):
        check_output(model, "no_logits", (3, 32, 32), 10)
    squeeze = create_arch("torchvision.models:squeezenet1_1")
    with pytest.raises(ArchitectureError, match="cannot run on 3x8x8 input: RuntimeError"):
        check_output(squeeze, "squeezenet1_1", (3, 8, 8), 10)


@pytest.mark.slow
def test_cli_unknown_torchvision_name_is_one_line(tmp_path):
    result = run_cli(
        "profile", "--arch", "torchvision.models:no_such_net", "--runs-dir", str(tmp_path / "runs"),
        lock_dir=tmp_path / "locks",
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0
    assert "torchvision.models:no_such_net" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_cli_network_too_small_for_the_input_writes_nothing(tmp_path, capsys):
    status = main(
        ["profile", "--arch", "torchvision.models:squeezenet1_1", "--input-size", "8",
         "--runs-dir", str(tmp_path / "runs")]
    )  # fmt: skip
    assert status == 2 and "cannot run on 3x8x8 input" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_list_torchvision_names_as_json(capsys):
    assert main(["list", "--format", "json", "torchvision.models:squeezenet1_1"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["family"] == "torchvision" and row["input_size"] == "3x224x224"
    assert row["params_c10"] == 727_626 and row["macs_c10"] > 250e6
    assert row["macs_miss"] == ""  # only max pooling goes uncounted, and it multiplies nothing
