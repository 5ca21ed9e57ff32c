"""A pretrained network as a feature extractor, and a new classifier on top of it.

Features are the last feature map, globally pooled (``avg`` or ``max``, seed 004's two choices)
into one vector per image. They come from ``forward_features`` where the network has it
(archbench's own networks, timm); otherwise from the input of the network's global pooling layer
(torchvision's ``avgpool``), captured with a hook; otherwise from the input of its classifier,
already pooled by the network itself.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ArchbenchError
from .anatomy import find_classifier, replace_module
from .freeze import freeze

POOLINGS = ("avg", "max")
GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


class FeatureExtractor(nn.Module):
    """``network`` up to its last feature map, globally pooled: images -> ``(N, D)`` features.

    ``input_size`` resizes the (normalized) batch first, so 32-pixel images can feed a network
    that expects 224; the resize is part of the extractor so cached and live features agree.
    """

    def __init__(self, network: nn.Module, pooling: str = "avg", input_size: int | None = None):
        super().__init__()
        if pooling not in POOLINGS:
            raise ArchbenchError(f"--pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
        self.pooling, self.input_size = pooling, input_size
        self._captured: list[torch.Tensor] = []
        classifier_name, _ = find_classifier(network)
        pools = [m for m in network.modules() if isinstance(m, GLOBAL_POOLS)]
        if callable(getattr(network, "forward_features", None)):
            self.source = "forward_features"
        elif pools:
            self.source = "global-pool input"
            pools[-1].register_forward_pre_hook(self._capture)
        else:
            if pooling != "avg":
                raise ArchbenchError(
                    f"{type(network).__name__} pools its features itself (no feature map to "
                    f"reach); use --pooling avg"
                )
            self.source = "classifier input"
        # The old classifier is never needed again: drop it so it costs neither time nor bytes.
        replace_module(network, classifier_name, nn.Identity())
        self.network = network

    def _capture(self, module: nn.Module, args) -> None:
        self._captured.append(args[0])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and images.shape[-1] != self.input_size:
            images = F.interpolate(
                images, size=(self.input_size, self.input_size), mode="bilinear",
                align_corners=False,
            )  # fmt: skip
        if self.source == "forward_features":
            feature_map = self.network.forward_features(images)
        elif self.source == "global-pool input":
            self._captured.clear()
            self.network(images)
            feature_map = self._captured.pop()
        else:
            feature_map = self.network(images)
        return global_pool(feature_map, self.pooling)

    def state_sha256(self) -> str:
        """A hash of the weights themselves: the cache key for features, whatever their source."""
        digest = hashlib.sha256()
        for name, tensor in self.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


def global_pool(features: torch.Tensor, pooling: str) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, C)`` by mean or max; tokens ``(N, T, C)`` are averaged."""
    if features.dim() == 4:
        if pooling == "max":
            return features.amax(dim=(2, 3))
        return features.mean(dim=(2, 3))
    if features.dim() == 3:
        return features.amax(dim=1) if pooling == "max" else features.mean(dim=1)
    return features.flatten(1)


class TransferHead(nn.Module):
    """A frozen feature extractor and a new linear classifier: ``--finetune head``.

    The extractor stays in eval mode with no gradients, so training only ever moves the
    classifier, and the classifier sees the same numbers the feature cache stores.
    """

    def __init__(self, backbone: FeatureExtractor, feature_dim: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        freeze(self.backbone)
        self.classifier = nn.Linear(feature_dim, num_classes)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(images))


def feature_dim(extractor: FeatureExtractor, image_shape: tuple[int, ...]) -> int:
    """The length of one feature vector, from one forward pass on zeros."""
    was_training = extractor.training
    extractor.eval()
    with torch.inference_mode():
        dim = extractor(torch.zeros(2, *image_shape)).shape[1]
    extractor.train(was_training)
    return int(dim)
