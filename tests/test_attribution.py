"""Attribution maps through captum: exact on a linear model, shaped right on a CNN, drawn as PNG."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archbench.errors import ArchbenchError
from architectures import create_arch
from tests.digits_models import train_linear_digits

pytest.importorskip("captum")

from archbench.evaluate.attribution import (  # noqa: E402  (after the captum check)
    ImageChoice,
    attribution_maps,
    explain_images,
    last_conv_layer,
)

IGNORED_PIXEL = (5, 7)  # (row, column) whose weights are zeroed in every channel and class


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    trained = train_linear_digits(tmp_path_factory.mktemp("data"), steps=20)
    with torch.no_grad():
        trained.model[1].weight.view(10, 3, 32, 32)[:, :, IGNORED_PIXEL[0], IGNORED_PIXEL[1]] = 0
    return trained


def expected_map(values: torch.Tensor) -> torch.Tensor:
    """Largest magnitude over channels, scaled to [0, 1]: the documented reduction."""
    reduced = values.abs().amax(dim=0)
    return reduced / reduced.max()


def test_saliency_of_a_linear_model_is_the_predicted_class_weight(digits):
    inputs = digits.test_inputs[:6]
    predicted = digits.logits()[:6].argmax(dim=1)
    maps = attribution_maps(digits.model, inputs, predicted, "saliency")
    weights = digits.model[1].weight.detach().view(10, 3, 32, 32)
    assert maps.shape == (6, 32, 32)
    for index, target in enumerate(predicted.tolist()):
        torch.testing.assert_close(maps[index], expected_map(weights[target]))
    assert (maps[:, IGNORED_PIXEL[0], IGNORED_PIXEL[1]] == 0).all()
    assert maps.amax(dim=(1, 2)).allclose(torch.ones(6))


def test_integrated_gradients_of_a_linear_model_is_input_times_weight(digits):
    inputs = digits.test_inputs[:4]
    predicted = digits.logits()[:4].argmax(dim=1)
    maps = attribution_maps(digits.model, inputs, predicted, "integrated-gradients")
    weights = digits.model[1].weight.detach().view(10, 3, 32, 32)
    for index, target in enumerate(predicted.tolist()):
        expected = expected_map(inputs[index] * weights[target])
        torch.testing.assert_close(maps[index], expected, atol=1e-5, rtol=1e-4)
    assert (maps[:, IGNORED_PIXEL[0], IGNORED_PIXEL[1]] == 0).all()


def test_gradcam_maps_a_cnn_and_refuses_a_network_without_convolutions(digits):
    torch.manual_seed(0)
    cnn = create_arch("squeezenet_dsc", num_classes=10)
    assert isinstance(last_conv_layer(cnn), nn.Conv2d)
    inputs = digits.test_inputs[:2]
    maps = attribution_maps(cnn, inputs, torch.tensor([3, 5]), "gradcam")
    assert maps.shape == (2, 32, 32)
    assert maps.min() >= 0 and maps.max() <= 1
    assert all(parameter.requires_grad for parameter in cnn.parameters()), "weights restored"
    with pytest.raises(ArchbenchError, match="gradcam needs a convolutional layer"):
        attribution_maps(digits.model, inputs, torch.tensor([0, 0]), "gradcam")
    with pytest.raises(ArchbenchError, match="unknown attribution method"):
        attribution_maps(digits.model, inputs, torch.tensor([0, 0]), "lime")


def test_image_choice_parsing():
    assert ImageChoice.parse("misclassified") == ImageChoice(misclassified=True, count=16)
    assert ImageChoice.parse("misclassified:4") == ImageChoice(misclassified=True, count=4)
    assert ImageChoice.parse("8") == ImageChoice(misclassified=False, count=8)
    for bad in ("0", "wrong", "misclassified:x", "3:4"):
        with pytest.raises(ArchbenchError, match="--images"):
            ImageChoice.parse(bad)


def test_explain_draws_a_grid_of_misclassified_images(digits, tmp_path):
    path = tmp_path / "explain-saliency.png"
    record = explain_images(
        digits.model,
        digits.test_inputs,
        digits.test_images,
        digits.test_labels,
        class_names=digits.classes,
        method="saliency",
        choice=ImageChoice.parse("misclassified:6"),
        path=path,
        title="linear digits",
    )
    assert len(record["indices"]) == 6
    pairs = zip(record["labels"], record["predictions"], strict=True)
    assert all(label != guess for label, guess in pairs)
    wrong = (digits.logits().argmax(dim=1) != digits.test_labels).nonzero().reshape(-1)
    assert record["indices"] == wrong[:6].tolist()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib import image

    height, width = image.imread(path).shape[:2]
    assert width > 2 * height, "4 image|map pairs per row, 2 rows"
    assert not digits.model.training


def test_a_perfect_model_has_nothing_misclassified_to_show(digits, tmp_path):
    labels = digits.logits().argmax(dim=1)  # pretend the model is always right
    with pytest.raises(ArchbenchError, match="misclassifies no test image"):
        explain_images(
            digits.model,
            digits.test_inputs,
            digits.test_images,
            labels,
            class_names=digits.classes,
            method="saliency",
            choice=ImageChoice.parse("misclassified"),
            path=tmp_path / "x.png",
        )
    assert not (tmp_path / "x.png").exists()
