"""Core types of :mod:`genzoo.data`: the dataset class, errors, cache and split helpers.

Everything here is standalone (numpy, torch and the standard library only); no other part of
``genzoo`` is imported.

Cache files are ``.npz`` archives (no pickles: ``np.load(..., allow_pickle=False)``) holding
``images`` (uint8, N x C x H x W), optionally ``labels`` (int64), and the ``source`` and
``licence`` strings. They are written atomically: a temporary file in the same directory,
then ``os.replace``. A cache file that cannot be read is logged, deleted and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)

#: Bump when a conversion changes, so that old cache files are not reused.
CACHE_FORMAT_VERSION = 1

SPLITS = ("train", "test")


class DatasetNotFoundError(FileNotFoundError):
    """The data for a dataset is not on this machine (and could not be downloaded)."""


class DataFormatError(ValueError):
    """A data file exists but is corrupt or not in the expected format."""


def check_split(split: str) -> str:
    """Return ``split`` if it is ``"train"`` or ``"test"``; raise ``ValueError`` otherwise."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def every_tenth_split(n: int) -> dict[str, np.ndarray]:
    """Indices of the fixed split used by emoji and image folders.

    Item ``i`` (0-based, in the dataset's documented order) goes to the test split when
    ``i % 10 == 9``, otherwise to train: 90 % / 10 %, deterministic, no RNG involved.
    """
    idx = np.arange(n)
    is_test = idx % 10 == 9
    return {"train": idx[~is_test], "test": idx[is_test]}


class ImageDataset(Dataset):
    """An in-memory image dataset.

    Attributes:
        images: ``torch.uint8`` tensor of shape (N, C, H, W), contiguous.
        labels: ``torch.int64`` tensor of shape (N,), or ``None``.
        name, split: dataset name and ``"train"``/``"test"``.
        licence: credit / licence string to show on model cards.
        source: where the data came from (files, package, URL).
        num_bits: bits per channel of the stored images (8).

    ``ds[i]`` returns the image ``i`` as a float32 (C, H, W) tensor in [0, 1].
    """

    def __init__(
        self,
        images: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray | None,
        name: str,
        split: str,
        licence: str,
        source: str,
        num_bits: int = 8,
    ) -> None:
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 (N, C, H, W) tensor, got "
                             f"{images.dtype} {tuple(images.shape)}")
        self.images = images.contiguous()
        if labels is not None:
            labels = torch.as_tensor(labels).to(torch.int64).contiguous()
            if labels.shape != (images.shape[0],):
                raise ValueError(f"labels shape {tuple(labels.shape)} != ({images.shape[0]},)")
        self.labels = labels
        self.name = name
        self.split = split
        self.licence = licence
        self.source = source
        self.num_bits = num_bits

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index].to(torch.float32) / 255.0

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    def to_tensor(self) -> torch.Tensor:
        """All images as a float32 (N, C, H, W) tensor in [0, 1]."""
        return self.images.to(torch.float32) / 255.0

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"shape={self.image_shape}, labels={'yes' if self.labels is not None else 'no'})"
        )


# --------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------


def cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    """``cache_dir``, else ``$GENZOO_CACHE``, else ``~/.cache/genzoo``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("GENZOO_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "genzoo"


def file_fingerprint(path: Path) -> list[Any]:
    """Cheap identity of a file for cache keys: resolved path, size and mtime (ns)."""
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def cache_key(parts: Mapping[str, Any]) -> str:
    """Short stable hash of everything that changes a converted array."""
    payload = json.dumps({"v": CACHE_FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cache_path(root: Path, name: str, split: str, size: int, key: str) -> Path:
    """``<root>/datasets/<name>-<split>-<size>-<key>.npz``."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return root / "datasets" / f"{safe}-{split}-{size}-{key}.npz"


@dataclass
class Arrays:
    """Converted data of one split before it becomes an :class:`ImageDataset`."""

    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray | None  # int64 (N,)
    source: str
    licence: str


#: A builder converts the source data; it returns the splits it built (one or both).
Builder = Callable[[], "dict[str, Arrays]"]


def atomic_write_bytes_from(path: Path, write: Any) -> None:
    """Call ``write(fileobj)`` on a temp file next to ``path``, then ``os.replace`` it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_cache(path: Path, arrays: Arrays) -> None:
    """Write ``arrays`` to ``path`` atomically (uncompressed npz, no pickles)."""
    data: dict[str, np.ndarray] = {
        "images": np.ascontiguousarray(arrays.images, dtype=np.uint8),
        "source": np.array(arrays.source),
        "licence": np.array(arrays.licence),
    }
    if arrays.labels is not None:
        data["labels"] = np.ascontiguousarray(arrays.labels, dtype=np.int64)
    try:
        atomic_write_bytes_from(path, lambda f: np.savez(f, **data))
    except OSError as exc:  # a read-only cache must not stop the user
        logger.warning("could not write dataset cache %s: %s", path, exc)
        return
    logger.info("cached %s", path)


def load_cache(path: Path) -> Arrays | None:
    """Read a cache file; return ``None`` (and delete it) when it is missing or corrupt."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            images = z["images"]
            labels = z["labels"] if "labels" in z.files else None
            source = str(z["source"])
            licence = str(z["licence"])
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"bad images array {images.dtype} {images.shape}")
        if labels is not None and (labels.dtype != np.int64 or labels.shape != images.shape[:1]):
            raise ValueError(f"bad labels array {labels.dtype} {labels.shape}")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        logger.warning("dataset cache %s is corrupt (%s); rebuilding it", path, exc)
        try:
            path.unlink()
        except OSError:
            pass
        return None
    logger.debug("loaded cached dataset %s", path)
    return Arrays(images, labels, source, licence)


def user_data_dir(root: str | os.PathLike[str] | None, env_var: str, folder: str,
                  not_found: Callable[[str], str]) -> Path:
    """The folder of a dataset the user supplies: ``root`` (or ``$env_var``), or its ``folder``
    subfolder when present. Raises :class:`DatasetNotFoundError` with ``not_found(problem)``."""
    if root is None:
        root = os.environ.get(env_var)
        if not root:
            raise DatasetNotFoundError(not_found(f"no root= given and ${env_var} is not set"))
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DatasetNotFoundError(not_found(f"{base} is not a directory"))
    return base / folder if (base / folder).is_dir() else base
