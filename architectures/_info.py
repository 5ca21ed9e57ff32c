"""What the registry knows about a network, and the error it raises: shared by every source."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

Builder = Callable[..., nn.Module]
Shape = tuple[int, int, int]


class ArchitectureError(ValueError):
    """An architecture that cannot be found, loaded or built; the message is for the user."""


@dataclass(frozen=True)
class ArchInfo:
    """What the registry knows about a network besides how to build it.

    ``input_size`` is the ``(channels, height, width)`` the network was designed for (what
    ``archbench list`` counts MACs at). A registered network is always fed that shape; one that
    ``follows_dataset`` (torchvision, timm and user networks) is fed the dataset's own size, and
    its channels too when ``channels_settable`` (otherwise ``input_size``'s channels, with
    grayscale replicated).
    """

    name: str
    family: str
    description: str
    paper: str = ""
    input_size: Shape = (3, 32, 32)
    builder: Builder | None = None
    follows_dataset: bool = False
    channels_settable: bool = True

    def input_shape(self, dataset_shape: Shape, size: int | None = None) -> Shape:
        """The ``(C, H, W)`` to feed this network from a dataset of ``dataset_shape``.

        ``size`` (``--input-size``) overrides height and width for any network.
        """
        if size is not None and (not isinstance(size, int) or size < 1):
            raise ArchitectureError(f"input size must be a positive integer, got {size!r}")
        if self.follows_dataset:
            channels, height, width = dataset_shape
            if not self.channels_settable:
                channels = self.input_size[0]
        else:
            channels, height, width = self.input_size
        if size is not None:
            height = width = size
        return int(channels), int(height), int(width)
