"""A torchvision/timm network keeps its own input channels for an untrained profile."""

from __future__ import annotations

import pytest

from archbench.profile.targets import untrained_network

pytest.importorskip("timm")


def test_timm_resnet18_without_a_dataset_has_timms_parameter_count() -> None:
    """timm and torchvision both give resnet18 with 1000 classes 11,689,512 parameters."""
    model, shape = untrained_network("timm:resnet18", num_classes=1000, input_size=224)
    assert shape == (3, 224, 224)
    assert sum(p.numel() for p in model.parameters()) == 11_689_512


def test_a_dataset_that_forces_other_channels_is_said_in_one_line() -> None:
    notes: list[str] = []
    model, shape = untrained_network(
        "timm:resnet18", num_classes=10, dataset="digits", input_size=32, note=notes.append
    )
    assert shape == (1, 32, 32)
    assert model.conv1.in_channels == 1
    (note,) = notes
    assert "1 input channel" in note and "its own: 3" in note and "digits" in note
