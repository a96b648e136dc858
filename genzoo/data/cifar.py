"""CIFAR-10: 50,000 train + 10,000 test 32x32 RGB images, 10 classes, from the python batches.

The data is not downloaded (genzoo has no network access to it); you supply the "CIFAR-10
python version" from https://www.cs.toronto.edu/~kriz/cifar.html: extract
``cifar-10-python.tar.gz`` and pass the ``cifar-10-batches-py`` folder (or its parent) as
``load_dataset("cifar10", root=...)`` or ``$GENZOO_CIFAR10`` (``root=`` wins).

Files: ``data_batch_1`` .. ``data_batch_5`` (train, in that order) and ``test_batch`` (test).
Each is a pickled dict with ``b"data"`` (uint8, N x 3072: 1024 red, then green, then blue
values, each 32x32 row-major) and ``b"labels"`` (N ints in 0..9). They are pickles, so each
file's md5 is checked against the official digests (:data:`MD5`) *before* it is unpickled
(``pickle.load(f, encoding="bytes")``); a mismatch raises :class:`DataFormatError` naming
the file. Output: images uint8 (N, 3, 32, 32) (``data.reshape(N, 3, 32, 32)``), labels
int64, in file order. Labels follow :data:`CLASSES`. One split is built and cached per call.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from .base import Arrays, Builder, DataFormatError, DatasetNotFoundError, file_fingerprint, user_data_dir

logger = logging.getLogger(__name__)

NAME = "cifar10"
ENV_VAR = "GENZOO_CIFAR10"
FOLDER = "cifar-10-batches-py"
TARBALL = "cifar-10-python.tar.gz"
TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"
PAGE_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
TARBALL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
LICENCE = ("CIFAR-10 by Alex Krizhevsky, Vinod Nair and Geoffrey Hinton (Krizhevsky 2009, "
           "'Learning Multiple Layers of Features from Tiny Images'); cite the tech report")
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
SIZE = 32

FILES = {
    "train": ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"),
    "test": ("test_batch",),
}
#: Official md5 of the python-version batch files (as listed by torchvision). Checked before
#: unpickling; tests replace this dict to load fake batches.
MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
EXPECTED_COUNTS = {"train": 50000, "test": 10000}


def not_found_message(problem: str) -> str:
    """How to get CIFAR-10, for :class:`DatasetNotFoundError`."""
    return (
        f"CIFAR-10 not found: {problem}.\n"
        f"Download the CIFAR-10 python version, {TARBALL} (170,498,071 bytes, md5 "
        f"{TARBALL_MD5}), from {PAGE_URL} ({TARBALL_URL}), extract it with "
        f"`tar xzf {TARBALL}` (this creates {FOLDER}/ with data_batch_1..5 and test_batch), "
        "then pass its path:\n"
        f"  load_dataset('cifar10', root='/path/to/{FOLDER}')   (or its parent directory)\n"
        f"  or set {ENV_VAR}=/path/to/{FOLDER}"
    )


def locate(split: str, root: str | os.PathLike[str] | None) -> list[Path]:
    """Paths of the batch files of ``split``; raise :class:`DatasetNotFoundError` if absent."""
    directory = user_data_dir(root, ENV_VAR, FOLDER, not_found_message)
    paths = [directory / f for f in FILES[split]]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(not_found_message(
            f"{directory} lacks {', '.join(missing)} (needed for the {split} split)"))
    return paths


def md5_of(path: Path) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Check the md5 of one batch file, then unpickle it; return (uint8 N,3,32,32, int64 N)."""
    expected = MD5.get(path.name)
    actual = md5_of(path)
    if expected is None or actual != expected:
        raise DataFormatError(
            f"{path}: md5 {actual} does not match the official CIFAR-10 python batch md5 "
            f"{expected}; not unpickling it. Get {TARBALL} again from {PAGE_URL}")
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"])
    except (pickle.UnpicklingError, EOFError, OSError, KeyError, TypeError, ValueError,
            AttributeError, ImportError) as exc:
        raise DataFormatError(f"{path}: not a CIFAR-10 python batch ({exc!r})") from exc
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIZE * SIZE:
        raise DataFormatError(f"{path}: b'data' must be uint8 (N, 3072), got "
                              f"{data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataFormatError(f"{path}: b'labels' must hold {data.shape[0]} integers, got "
                              f"{labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataFormatError(f"{path}: labels out of range 0..9")
    return data.reshape(-1, 3, SIZE, SIZE), labels.astype(np.int64)


def prepare(split: str, image_size: int | None, root: str | os.PathLike[str] | None = None
            ) -> tuple[dict[str, Any], int, Builder]:
    """Return (cache-key parts, image size, builder) for ``split``; raise if data is missing."""
    if image_size not in (None, SIZE):
        raise ValueError(f"cifar10 images are 32x32; image_size must be None or 32, got "
                         f"{image_size}")
    paths = locate(split, root)
    key = {"dataset": NAME, "split": split, "files": [file_fingerprint(p) for p in paths],
           "md5": [MD5.get(p.name) for p in paths]}

    def make() -> dict[str, Arrays]:
        parts = [read_batch(p) for p in paths]
        images = np.ascontiguousarray(np.concatenate([im for im, _ in parts]))
        labels = np.concatenate([lb for _, lb in parts])
        if images.shape[0] != EXPECTED_COUNTS[split]:
            logger.warning("CIFAR-10 %s: %d images, expected %d", split, images.shape[0],
                           EXPECTED_COUNTS[split])
        source = f"CIFAR-10 python batches {', '.join(str(p) for p in paths)} (md5-checked)"
        return {split: Arrays(images, labels, source, LICENCE)}

    return key, SIZE, make
