"""One encoded image (an upload) decoded to a dataset's native shape, within a pixel budget.

A served image must reach the network exactly as the run's test images did: first the shape the
dataset holds (``dataset_shape``: digits 1x32x32, MNIST 1x28x28, image folders 3x32x32, ...),
then the run's own fitting (:func:`archbench.data.fit_images`: pad or resize, channels). This
module does the first step for bytes: a file of the image-folder shape goes through the image
folders' own decoder (:func:`archbench.data.imagefolder.decode_one`); anything else is decoded by
PIL to grayscale or RGB, resized to the native size (bilinear, as the image folders resize) when
it differs, and given the native channels by :func:`archbench.data.shapes.fit_channels`.

The pixel count comes from the header (``Image.open`` reads nothing else) and is refused before
any pixel is decoded: a 4 KB 1-bit PNG can declare 36 million pixels.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from ..errors import ArchbenchError
from . import imagefolder
from .shapes import Shape, fit_channels

GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"})


class NotAnImage(ValueError):
    """The bytes are not an image PIL can read (a server answers 415)."""


class ImageTooLarge(ValueError):
    """The header declares more pixels than allowed (a server answers 413)."""


def image_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` from the header alone; refuses an empty, unknown or too large image."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise NotAnImage("not an image: the body is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except UnidentifiedImageError:
        raise NotAnImage("not an image: not a format PIL knows") from None
    except Image.DecompressionBombError as error:  # past PIL's own (global) limit
        raise ImageTooLarge(_one_line(error)) from None
    except Exception as error:  # PIL raises many types for damaged headers
        raise NotAnImage(f"not an image: {_one_line(error)}") from None
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image of {width}x{height} pixels exceeds the limit of {max_pixels:,} pixels"
        )
    return width, height


def decode_native(data: bytes, native_shape: Shape, *, max_pixels: int) -> torch.Tensor:
    """uint8 ``(C, H, W)`` at ``native_shape``, decoded as the dataset's own images were."""
    image_size(data, max_pixels)
    channels, height, width = native_shape
    try:
        if (channels, height, width) == (3, imagefolder.SIZE, imagefolder.SIZE):
            return imagefolder.decode_one("upload", data)
        pixels = _decode_pil(data, (width, height))
    except ArchbenchError as error:  # "cannot read image upload: <why>"
        raise NotAnImage(f"not an image: {str(error).split(': ', 1)[-1]}") from None
    except Exception as error:  # PIL raises many types for damaged data
        raise NotAnImage(f"not an image: {_one_line(error)}") from None
    return fit_channels(pixels[None], channels)[0]


def encode_png(pixels: torch.Tensor) -> bytes:
    """uint8 ``(1 or 3, H, W)`` -> PNG bytes (grayscale for one channel): lossless, so
    :func:`decode_native` gives the same pixels back."""
    from PIL import Image

    array = pixels.permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buffer, format="PNG")
    return buffer.getvalue()


def _decode_pil(data: bytes, size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``(1 or 3, H, W)``: grayscale stays one channel, anything else becomes RGB."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        mode = "L" if image.mode in GRAY_MODES else "RGB"
        image.draft(mode, size)  # JPEG: decode at a reduced scale when large
        converted = image.convert(mode)
    if converted.size != size:
        converted = converted.resize(size, Image.Resampling.BILINEAR)
    array = np.array(converted, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _one_line(error: BaseException) -> str:
    return " ".join(f"{error}".split()) or type(error).__name__
