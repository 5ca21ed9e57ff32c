"""Datasets in memory as uint8 tensors, and the batches the trainer and profiler iterate.

Every dataset becomes uint8 images ``(N, C, H, W)`` with int64 labels (multi-label sets: uint8
multi-hot ``(N, K)`` targets), at the shape the network takes (``DataConfig.input_shape``,
default the study's 3x32x32, so every study network keeps its parameter count whatever it is
trained on; ``None`` keeps the dataset's native shape, :data:`NATIVE_SHAPES`). Grayscale is
replicated for 3-channel networks and RGB becomes luma for 1-channel ones; another size is
reached by one antialiased bilinear resize of the whole set, cached under
``<data_dir>/resized/`` (see :mod:`archbench.data.shapes`).

Datasets (``--dataset``):

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes; works
  offline). Pixels 0-16 are scaled to 0-255 and upscaled x4 to 32x32 (bilinear): native 1x32x32.
  Train/test split: fixed, stratified, seed 0, ``round(0.2 * n)`` of each class to test ->
  1,438 train and 359 test images; with the default ``val_fraction`` 0.1 the training split
  gives 145 validation images, leaving 1,293 for training.
- ``cifar10``, ``cifar100``: torchvision's python pickles under the data directory
  (``cifar-10-batches-py/``, ``cifar-100-python/``, or their ``.tar.gz``), 50,000 train and
  10,000 test images; CIFAR-100 uses the 100 fine labels. Files whose md5 differs from the
  release's (an archive rebuilt from other copies of the images by
  :mod:`archbench.data.cifar_archive`) are read as they are, with a warning.
- ``mnist``, ``fashion-mnist``: torchvision's files (``MNIST/raw/``, ``FashionMNIST/raw/``),
  native 1x28x28; for a 32x32 network they are zero-padded by 2 pixels (not resized), as the
  study did.
- ``imagefolder:PATH``: ``PATH/train/<class>/*`` and ``PATH/test/<class>/*`` (class index =
  sorted folder name), decoded once and cached; see :mod:`archbench.data.imagefolder`.
- multi-label: ``digits-mosaic``, ``mosaic:DATASET`` (2x2 mosaics of a single-label set) and
  ``csv:PATH`` (image path and labels columns); see :mod:`archbench.data.multilabel`. Their
  validation split is a seeded random share (no single class to stratify on).

``train_limit`` keeps the first N of a seeded permutation of the training split (after the
validation split), so smaller training sets nest inside larger ones.

The data directory is ``DataConfig.data_dir``, else ``$ARCHBENCH_DATA``, else
``$ARCHBENCH_CACHE/data`` (default ``~/.cache/archbench/data``). torchvision sets are
downloaded there when missing and ``download`` is on (with a 10 s socket timeout); a set that
cannot be found or fetched is one :class:`~archbench.errors.ArchbenchError` naming the directory
and the files expected.

Validation split: ``val_fraction`` of the training split, per class ``round(fraction * n)``
images chosen by a permutation seeded with ``split_seed`` (``val`` is None when it is 0).

Normalization: the study's constants (``CIFAR_MEAN``, ``CIFAR_STD``) for CIFAR-10/100; for every
other set the exact per-channel mean and std of the training split (after the validation split
is removed), cached in ``<data_dir>/stats/``.

Augmentation (batched tensor ops, deterministic given a generator): ``crop`` (random 32x32
window of the 4-pixel zero-padded image), ``flip`` (horizontal, p=0.5), ``crop-flip`` (the
study's reference code, default for CIFAR and image folders) and ``none``; digit and grayscale
sets default to ``crop``, since mirrored digits are not digits.
"""

from .datasets import (
    CIFAR_MEAN,
    CIFAR_STD,
    DATASET_NAMES,
    NATIVE_SHAPES,
    STUDY_SHAPE,
    DataConfig,
    ImageData,
    Split,
    channel_stats,
    dataset_pad_to,
    dataset_shape,
    default_data_dir,
    load_data,
    resolve_dataset_name,
    stratified_split,
)
from .loader import AUGMENTATIONS, BatchLoader, augment, normalize
from .shapes import fit_images

__all__ = [
    "AUGMENTATIONS",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "DATASET_NAMES",
    "NATIVE_SHAPES",
    "STUDY_SHAPE",
    "BatchLoader",
    "DataConfig",
    "ImageData",
    "Split",
    "augment",
    "channel_stats",
    "dataset_pad_to",
    "dataset_shape",
    "default_data_dir",
    "fit_images",
    "load_data",
    "normalize",
    "resolve_dataset_name",
    "stratified_split",
]
