"""Small real models on the embedded digits set, trained in under a second, for evaluation tests.

The evaluation code judges predictions; these give it real ones — a linear classifier trained on
the real digits training split and evaluated on the real test split — rather than made-up logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from archbench.data import DataConfig, load_data, normalize


@dataclass
class DigitsModel:
    model: nn.Module
    test_inputs: torch.Tensor  # normalized float32, what the model sees
    test_images: torch.Tensor  # uint8, what a person sees
    test_labels: torch.Tensor
    classes: list[str]

    def logits(self) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.eval()(self.test_inputs)


def train_linear_digits(data_dir: Path, *, steps: int = 60, seed: int = 0) -> DigitsModel:
    """A linear classifier (3x32x32 -> 10) trained full-batch with Adam on the digits train set."""
    data = load_data(DataConfig(dataset="digits", data_dir=data_dir, download=False))
    train_inputs = normalize(data.train.images, data.mean, data.std)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(train_inputs[0].numel(), len(data.classes)))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(train_inputs), data.train.labels)
        loss.backward()
        optimizer.step()
    return DigitsModel(
        model=model.eval(),
        test_inputs=normalize(data.test.images, data.mean, data.std),
        test_images=data.test.images,
        test_labels=data.test.labels,
        classes=list(data.classes),
    )
