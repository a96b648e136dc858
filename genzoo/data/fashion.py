"""Fashion-MNIST: 60,000 train + 10,000 test 28x28 grayscale images, 10 classes.

Where the IDX files are looked for, in order (the first directory holding both files of the
requested split wins; ``.gz`` or uncompressed):

1. ``$GENZOO_DATA_DIR/fashion-mnist/``
2. ``<cache>/raw/fashion-mnist/``
3. ``/usr/share/datasets/fashion-mnist/`` (Debian/Ubuntu package ``dataset-fashion-mnist``)

When none has them and ``download=True``, the canonical files are downloaded from Zalando's
S3 bucket into ``<cache>/raw/fashion-mnist/`` and checked against the sha256 digests below.

Digests. ``CANONICAL_SHA256`` are the sha256 of the files served at :data:`BASE_URL` (the same
digests as tensorflow-datasets' ``url_checksums/fashion_mnist.txt``). They were verified
here: the Debian files hold the same deflate streams, with only the gzip header normalised
(no file name, mtime 2020-06-05); putting back the original header (file name, mtime
1504176606 / 1504176627) gives files whose md5 equal the published canonical md5s
(8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...) and whose sha256 are these. The Debian
files' own sha256 (``DEBIAN_SHA256``) are accepted too, for mirrors that serve them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .base import Arrays, Builder, DatasetNotFoundError, DataFormatError, file_fingerprint
from .idx import ChecksumError, download_file, read_idx

logger = logging.getLogger(__name__)

NAME = "fashion-mnist"
LICENCE = "Fashion-MNIST by Zalando Research (Xiao, Rasul & Vollgraf 2017), MIT licence"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SYSTEM_DIRS: list[Path] = [Path("/usr/share/datasets/fashion-mnist")]

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CANONICAL_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
CANONICAL_SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
DEBIAN_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
EXPECTED_COUNTS = {"train": 60000, "test": 10000}


def search_dirs(root: Path) -> list[Path]:
    """Directories searched for the IDX files, in order."""
    dirs: list[Path] = []
    env = os.environ.get("GENZOO_DATA_DIR")
    if env:
        dirs.append(Path(env).expanduser() / NAME)
    dirs.append(root / "raw" / NAME)
    dirs.extend(SYSTEM_DIRS)
    return dirs


def _find_in(directory: Path, split: str) -> tuple[Path, Path] | None:
    found = []
    for fname in FILES[split]:
        for candidate in (directory / fname, directory / fname[: -len(".gz")]):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            return None
    return found[0], found[1]


def locate(split: str, root: Path) -> tuple[Path, Path] | None:
    """(images, labels) paths for ``split``, or ``None`` when not on this machine."""
    for d in search_dirs(root):
        hit = _find_in(d, split)
        if hit is not None:
            return hit
    return None


def not_found_message(root: Path, extra: str = "") -> str:
    """How to get the data, for :class:`DatasetNotFoundError`."""
    names = ", ".join(f for pair in FILES.values() for f in pair)
    searched = "\n".join(f"  - {d}" for d in search_dirs(root))
    return (
        f"Fashion-MNIST not found. Searched:\n{searched}\n{extra}"
        "Get it with one of:\n"
        "  - sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu; installs to "
        "/usr/share/datasets/fashion-mnist)\n"
        f"  - put the 4 files ({names}) from {BASE_URL} in {root / 'raw' / NAME}\n"
        f"  - or put them in a directory <dir>/{NAME}/ and set GENZOO_DATA_DIR=<dir>\n"
        "  - or call load_dataset('fashion-mnist', download=True) on a machine with internet."
    )


def download(split: str, root: Path) -> tuple[Path, Path]:
    """Download the two files of ``split`` into ``<root>/raw/fashion-mnist`` (sha256-checked)."""
    dest_dir = root / "raw" / NAME
    paths = []
    for fname in FILES[split]:
        dest = dest_dir / fname
        ok = {CANONICAL_SHA256[fname], DEBIAN_SHA256[fname]}
        if not dest.is_file():
            download_file(BASE_URL + fname, dest, ok)
        paths.append(dest)
    return paths[0], paths[1]


def prepare(split: str, root: Path, download_ok: bool) -> tuple[dict[str, Any], Builder]:
    """Return (cache-key parts, builder) for ``split``; raise when the data is missing."""
    paths = locate(split, root)
    if paths is None:
        if not download_ok:
            raise DatasetNotFoundError(not_found_message(root, "(download=False)\n"))
        try:
            paths = download(split, root)
        except ChecksumError as exc:
            raise DatasetNotFoundError(not_found_message(
                root, f"Download rejected: {exc} (the file was deleted).\n")) from exc
        except OSError as exc:  # URLError, timeouts, HTTP errors, disk errors
            logger.warning("Fashion-MNIST download failed: %s", exc)
            raise DatasetNotFoundError(not_found_message(
                root, f"Download from {BASE_URL} failed: {exc}\n")) from exc
    img_path, lbl_path = paths
    key = {"dataset": NAME, "split": split,
           "files": [file_fingerprint(img_path), file_fingerprint(lbl_path)]}

    def make() -> dict[str, Arrays]:
        images = read_idx(img_path, expect_ndim=3)
        labels = read_idx(lbl_path, expect_ndim=1)
        if images.shape[0] != labels.shape[0]:
            raise DataFormatError(
                f"{img_path} has {images.shape[0]} images but {lbl_path} has "
                f"{labels.shape[0]} labels")
        if images.shape[1:] != (28, 28):
            raise DataFormatError(f"{img_path}: expected 28x28 images, got {images.shape[1:]}")
        if labels.size and labels.max() > 9:
            raise DataFormatError(f"{lbl_path}: label {labels.max()} out of range 0..9")
        if images.shape[0] != EXPECTED_COUNTS[split]:
            logger.warning("%s: %d images, expected %d", img_path, images.shape[0],
                           EXPECTED_COUNTS[split])
        source = f"Fashion-MNIST IDX files {img_path} and {lbl_path}"
        return {split: Arrays(images[:, None], labels.astype(np.int64), source, LICENCE)}

    return key, make
