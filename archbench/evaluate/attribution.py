"""Which pixels a prediction rests on: captum attribution maps and a PNG grid of them.

Seed 002 shows a saliency map of a misclassified image; archbench draws them with captum instead
of hand-written gradients (``Saliency``, ``IntegratedGradients``, ``LayerGradCam``), so the maths
is the library's. Every map is reduced to one channel the same way — the largest magnitude over
the input channels — and scaled to [0, 1] per image, so maps of different methods read alike and
a pixel the model ignores stays exactly 0.

captum is an optional dependency (``pip install "archbench[explain]"``); without it the commands
that need it fail with one line saying so.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import files
from ..errors import ArchbenchError

METHODS = ("saliency", "integrated-gradients", "gradcam")
DEFAULT_MISCLASSIFIED = 16
INTEGRATED_GRADIENT_STEPS = 32


@dataclass(frozen=True)
class ImageChoice:
    """Which test images to explain: the first ``count`` misclassified ones, or simply the first."""

    misclassified: bool
    count: int

    @classmethod
    def parse(cls, text: str) -> ImageChoice:
        """``misclassified``, ``misclassified:K`` or a positive count ``N``."""
        head, _, tail = str(text).partition(":")
        try:
            if head == "misclassified":
                count = int(tail) if tail else DEFAULT_MISCLASSIFIED
                misclassified = True
            elif not tail:
                count, misclassified = int(head), False
            else:
                raise ValueError
        except ValueError:
            raise ArchbenchError(
                f"--images must be 'misclassified', 'misclassified:K' or a count N, got {text!r}"
            ) from None
        if count < 1:
            raise ArchbenchError(f"--images needs a positive count, got {count}")
        return cls(misclassified=misclassified, count=count)

    def select(self, predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Indices of the chosen test images, in test-set order."""
        if not self.misclassified:
            return torch.arange(min(self.count, labels.numel()))
        wrong = torch.nonzero(predictions.reshape(-1) != labels.reshape(-1)).reshape(-1)
        if not wrong.numel():
            raise ArchbenchError("the model misclassifies no test image; use --images N instead")
        return wrong[: self.count]


def _captum():
    try:
        from captum import attr
    except ImportError:
        raise ArchbenchError(
            'attribution maps need captum: pip install "archbench[explain]"'
        ) from None
    return attr


@contextmanager
def _gradients_to_input_only(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen weights for the duration, restored afterwards."""
    was_training = model.training
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    model.eval()
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield model
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
        model.train(was_training)


def last_conv_layer(model: nn.Module) -> nn.Conv2d:
    """Grad-CAM's layer: the last 2-D convolution, whose maps still have a spatial layout."""
    convolutions = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    if not convolutions:
        raise ArchbenchError(
            "gradcam needs a convolutional layer and this network has none; "
            "use --method saliency or integrated-gradients"
        )
    return convolutions[-1]


def attribution_maps(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, method: str = "saliency"
) -> torch.Tensor:
    """``(N, H, W)`` maps in [0, 1] of how much each pixel drives the ``targets`` class score.

    ``inputs`` are the normalized images the model sees; ``targets`` are usually its own
    predictions, so the map explains the decision that was made.
    """
    if method not in METHODS:
        raise ArchbenchError(f"unknown attribution method {method!r}; choose {', '.join(METHODS)}")
    attr = _captum()
    inputs = inputs.detach().to(torch.float32).clone().requires_grad_(True)
    targets = targets.detach().long().reshape(-1)
    with _gradients_to_input_only(model):
        if method == "saliency":
            raw = attr.Saliency(model).attribute(inputs, target=targets, abs=True)
        elif method == "integrated-gradients":
            raw = attr.IntegratedGradients(model).attribute(
                inputs,
                baselines=torch.zeros_like(inputs),
                target=targets,
                n_steps=INTEGRATED_GRADIENT_STEPS,
                internal_batch_size=64,
            )
        else:
            layer = last_conv_layer(model)
            cam = attr.LayerGradCam(model, layer).attribute(
                inputs, target=targets, relu_attributions=True
            )
            raw = attr.LayerAttribution.interpolate(
                cam, tuple(inputs.shape[-2:]), interpolate_mode="bilinear"
            )
    maps = raw.detach().abs().amax(dim=1)
    peak = maps.flatten(1).amax(dim=1).clamp_min(torch.finfo(maps.dtype).tiny)
    return maps / peak[:, None, None]


def draw_grid(
    path: Path,
    images: torch.Tensor,
    maps: torch.Tensor,
    *,
    labels: Sequence[int],
    predictions: Sequence[int],
    class_names: Sequence[str],
    title: str = "",
    columns: int = 4,
) -> None:
    """A PNG of ``image | map`` pairs, ``columns`` pairs per row, each titled true -> predicted.

    ``images`` are what a person should see (uint8 ``(N, C, H, W)``, 1 or 3 channels).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    count = images.shape[0]
    if count != maps.shape[0] or count == 0:
        raise ValueError(f"{count} images but {maps.shape[0]} maps")
    columns = min(columns, count)
    rows = -(-count // columns)
    figure, axes = plt.subplots(
        rows, 2 * columns, figsize=(2.4 * columns, 1.35 * rows + 0.4), squeeze=False
    )
    try:
        for axis in axes.flat:
            axis.axis("off")
        for index in range(count):
            row, column = divmod(index, columns)
            picture = images[index].detach().cpu().permute(1, 2, 0).numpy()
            gray = picture.shape[2] == 1
            image_axis, map_axis = axes[row, 2 * column], axes[row, 2 * column + 1]
            image_axis.imshow(picture[..., 0] if gray else picture, cmap="gray" if gray else None)
            truth, guess = class_names[int(labels[index])], class_names[int(predictions[index])]
            mark = "" if labels[index] == predictions[index] else " ✗"
            image_axis.set_title(f"{truth} → {guess}{mark}", fontsize=7)
            map_axis.imshow(maps[index].detach().cpu().numpy(), cmap="inferno", vmin=0, vmax=1)
        if title:
            figure.suptitle(title, fontsize=9)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(figure)
    files.write_bytes(Path(path), buffer.getvalue())


def explain_images(
    model: nn.Module,
    inputs: torch.Tensor,
    display: torch.Tensor,
    labels: torch.Tensor,
    *,
    class_names: Sequence[str],
    method: str,
    choice: ImageChoice,
    path: Path,
    title: str = "",
) -> dict:
    """Predict, choose the images, attribute the predicted class and draw the grid.

    Returns what was drawn (indices, labels, predictions), for the run's records.
    """
    with _gradients_to_input_only(model), torch.inference_mode():
        predictions = torch.cat([model(batch.float()).argmax(dim=1) for batch in inputs.split(256)])
    chosen = choice.select(predictions, labels)
    maps = attribution_maps(model, inputs[chosen], predictions[chosen], method)
    draw_grid(
        path,
        display[chosen],
        maps,
        labels=labels[chosen].tolist(),
        predictions=predictions[chosen].tolist(),
        class_names=class_names,
        title=title,
    )
    return {
        "method": method,
        "images": "misclassified" if choice.misclassified else "first",
        "indices": chosen.tolist(),
        "labels": labels[chosen].tolist(),
        "predictions": predictions[chosen].tolist(),
        "file": Path(path).name,
        "map": "max over channels of |attribution|, scaled to [0, 1] per image",
    }
