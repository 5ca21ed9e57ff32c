"""The registry and its networks, checked against the study's (and seed 002's) figures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archbench.measure.complexity import count_macs, count_parameters
from architectures import (
    ArchitectureError,
    DepthwiseSeparable,
    Fire,
    FireDSC,
    arch_info,
    create_arch,
    list_archs,
    register_arch,
)
from architectures import _registry as registry
from tests.expected_archs import EXPECTED, MACS_TOLERANCE

ARCHS = list_archs()


def test_every_registered_network_has_an_expected_entry():
    missing = sorted(set(ARCHS) - set(EXPECTED))
    assert not missing, (
        f"registered networks without an entry in tests/expected_archs.py: {missing}; "
        "add their parameter counts and MACs there"
    )
    assert set(EXPECTED) <= set(ARCHS), "expected table names a network that is not registered"


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("num_classes", [10, 100])
def test_parameter_counts_match_the_study(name, num_classes):
    expected = EXPECTED[name]
    want = expected.params_c10 if num_classes == 10 else expected.params_c100
    got = count_parameters(create_arch(name, num_classes=num_classes)).trainable
    assert got == want, f"{name} with {num_classes} classes has {got:,} params, study has {want:,}"


@pytest.mark.parametrize("name", ARCHS)
def test_macs_match_the_reference_code(name):
    macs = count_macs(create_arch(name, num_classes=10), (1, *arch_info(name).input_size))
    want = EXPECTED[name].macs_c10
    assert abs(macs - want) / want <= MACS_TOLERANCE, f"{name}: {macs / 1e6:.1f} M MACs"


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("num_classes", [10, 100])
def test_forward_gives_one_score_per_class(name, num_classes):
    model = create_arch(name, num_classes=num_classes).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, *arch_info(name).input_size))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


def test_fire_output_channels_are_the_two_expand_branches():
    fire = Fire(96, 16, 64, 48)
    assert fire.out_chs == 112
    assert fire(torch.randn(1, 96, 8, 8)).shape == (1, 112, 8, 8)
    dsc = FireDSC(96, 16, 64, 48)
    assert dsc(torch.randn(1, 96, 8, 8)).shape == (1, 112, 8, 8)


def _ordered_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if not list(m.children())]


def test_fire_dsc_has_no_batchnorm_between_depthwise_and_pointwise():
    branch = FireDSC(64, 16, 32, 32).expand3x3
    layers = _ordered_layers(branch)
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2
    depthwise, pointwise = (layers[i] for i in convs)
    assert depthwise.groups == depthwise.in_channels == 16 and depthwise.kernel_size == (3, 3)
    assert pointwise.kernel_size == (1, 1) and pointwise.out_channels == 32
    between = layers[convs[0] + 1 : convs[1]]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in between)
    assert any(isinstance(m, nn.ReLU) for m in between)
    assert depthwise.bias is None and pointwise.bias is None


def test_mobilenet_block_keeps_batchnorm_after_depthwise():
    layers = _ordered_layers(DepthwiseSeparable(32, 64, stride=2))
    assert [type(m) for m in layers] == [
        nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.ReLU
    ]  # fmt: skip
    assert layers[0].stride == (2, 2)


def test_wildcards_select_families():
    assert list_archs("squeezenet*") == ["squeezenet", "squeezenet_dsc"]
    assert list_archs("nothing*") == []
    assert list_archs() == sorted(list_archs())


def test_unknown_name_suggests_close_match():
    with pytest.raises(ArchitectureError, match="did you mean 'squeezenet_dsc'"):
        create_arch("squeezenet-dsc")
    with pytest.raises(ArchitectureError, match="unknown architecture 'resnet'"):
        arch_info("resnet")


def test_arch_info_carries_metadata():
    info = arch_info("squeezenet_dsc")
    assert info.family == "squeezenet"
    assert info.input_size == (3, 32, 32)
    assert "Souza" in info.paper
    assert info.description


def test_duplicate_registration_is_refused(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    with pytest.raises(ValueError, match="already registered"):

        @register_arch(family="x", description="clash")
        def squeezenet(*, num_classes=10):  # noqa: F811
            return nn.Linear(1, num_classes)


def test_mlp_is_seed_002s_network_at_its_native_input_size():
    info = arch_info("mlp")
    assert info.input_size == (1, 28, 28)
    model = create_arch("mlp", num_classes=10)
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(784, 128), (128, 10)]
    dropout = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert [m.p for m in dropout] == [0.2]
    # On 3x32x32 inputs it would be a different network (the seed's 393,344 + 1,290 parameters).
    wider = create_arch("mlp", num_classes=10, in_channels=3, image_size=32)
    assert count_parameters(wider).trainable == 393_344 + 1_290


def test_in_channels_changes_only_the_stem():
    model = create_arch("squeezenet", num_classes=10, in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


USER_NET = '''
from torch import nn

def build(num_classes, in_channels=3):
    """A tiny user network."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes),
    )

def not_a_model(num_classes):
    return "nope"
'''


def test_user_file_builder(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(USER_NET)
    model = create_arch(f"{path}:build", num_classes=7)
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 7)
    assert arch_info(f"{path}:build").description == "A tiny user network."
    with pytest.raises(ArchitectureError, match="not a torch.nn.Module"):
        create_arch(f"{path}:not_a_model")
    with pytest.raises(ArchitectureError, match="did you mean 'build'"):
        create_arch(f"{path}:buidl")


def test_user_module_builder(tmp_path, monkeypatch):
    package = tmp_path / "my_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(USER_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    model = create_arch("my_package.nets:build", num_classes=4, in_channels=1)
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 4)
    with pytest.raises(ArchitectureError, match="cannot import module 'no_such_pkg.nets'"):
        create_arch("no_such_pkg.nets:build")


def test_error_in_user_file_names_file_and_line(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import torch\n\nx = 1\nraise RuntimeError('boom in user code')\n")
    with pytest.raises(ArchitectureError) as caught:
        create_arch(f"{path}:build")
    message = str(caught.value)
    assert f"{path}:4" in message and "boom in user code" in message

    syntax = tmp_path / "syntax.py"
    syntax.write_text("def build(num_classes):\n    return (\n")
    with pytest.raises(ArchitectureError, match=r"syntax\.py:\d+.*SyntaxError"):
        create_arch(f"{syntax}:build")


def test_missing_user_file_is_a_clear_error(tmp_path):
    with pytest.raises(ArchitectureError, match="architecture file not found"):
        create_arch(f"{tmp_path / 'nope.py'}:build")
