"""genzoo.data: image datasets for training and evaluating generative models.

Standalone (imports nothing else from genzoo)::

    from genzoo.data import load_dataset, list_datasets
    ds = load_dataset("fashion-mnist", split="train")   # "mnist", "emoji", or an image folder
    ds = load_dataset("cifar10", split="test", root="/data/cifar-10-batches-py")
    ds = load_dataset("celeba", split="train", root="/data/img_align_celeba")  # 64x64
    ds.images      # uint8 (N, C, H, W);  ds.labels: int64 (N,) or None
    ds[i]          # float32 (C, H, W) in [0, 1]
    ds.to_tensor() # float32 (N, C, H, W) in [0, 1]

Sources, splits and caching are documented in :mod:`genzoo.data.fashion`,
:mod:`genzoo.data.mnist`, :mod:`genzoo.data.emoji`, :mod:`genzoo.data.cifar`,
:mod:`genzoo.data.celeba`, :mod:`genzoo.data.folder` and :mod:`genzoo.data.datasets`.
"""

from .base import DataFormatError, DatasetNotFoundError, ImageDataset
from .datasets import list_datasets, load_dataset
from .idx import ChecksumError, read_idx

__all__ = [
    "ChecksumError",
    "DataFormatError",
    "DatasetNotFoundError",
    "ImageDataset",
    "list_datasets",
    "load_dataset",
    "read_idx",
]
