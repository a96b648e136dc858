"""CelebA (aligned & cropped faces): RGB images, 64x64 by default, the RealNVP/Glow preprocessing.

The data is not downloaded; you supply it (see :func:`not_found_message`): the folder
``img_align_celeba/`` of "Align&Cropped Images" (``img_align_celeba.zip``, 202,599 JPEGs of
178x218) from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, passed as
``load_dataset("celeba", root=...)`` or ``$GENZOO_CELEBA`` (``root=`` wins). ``root`` may be
``img_align_celeba/`` itself or the directory that holds it.

Images: the ``.jpg``/``.jpeg``/``.png`` files directly in the folder (not recursive), in
sorted file-name order. Each is converted to RGB, center-cropped to 148x148 (left
``(w - 148) // 2``, top ``(h - 148) // 2``: box (15, 35, 163, 183) for 178x218, the same as
torchvision's ``CenterCrop(148)``) and resized to ``image_size`` with Pillow's BICUBIC filter
(antialiased when shrinking; not resized when ``image_size`` is 148). No labels.

Split: when ``list_eval_partition.txt`` (lines ``<file> <0|1|2>``) is found in the image
folder, beside it (its parent), or in an ``Eval/`` subfolder of either, train = partition 0
(162,770 images) and test = partition 2 (19,962); partition 1 (validation, 19,867) is not
used. Files are matched by name without extension (so PNG re-encodings match too); listed
files that are absent are skipped with a warning. Without that file: image ``i`` of the
sorted list is test when ``i % 10 == 9``, train otherwise. ``limit=n`` keeps the first ``n``
images of the split. Only the requested split is decoded and cached.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from PIL import Image

from .base import (Arrays, Builder, DataFormatError, DatasetNotFoundError, every_tenth_split,
                   file_fingerprint, user_data_dir)

logger = logging.getLogger(__name__)

NAME = "celeba"
ENV_VAR = "GENZOO_CELEBA"
FOLDER = "img_align_celeba"
PARTITION_FILE = "list_eval_partition.txt"
PAGE_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
LICENCE = ("CelebA (Liu, Luo, Wang & Tang 2015, 'Deep Learning Face Attributes in the Wild'); "
           "non-commercial research use only, per the CelebA agreement")
DEFAULT_SIZE = 64
CROP = 148
RESAMPLE = Image.Resampling.BICUBIC
EXTENSIONS = (".jpg", ".jpeg", ".png")
PARTITIONS = {"train": 0, "test": 2}  # 1 = validation, unused


def not_found_message(problem: str) -> str:
    """How to get CelebA, for :class:`DatasetNotFoundError`."""
    return (
        f"CelebA not found: {problem}.\n"
        f"From {PAGE_URL} (Google Drive / Baidu links) download the 'Align&Cropped Images' "
        f"archive {FOLDER}.zip (202,599 JPEGs, 178x218) and the split file {PARTITION_FILE} "
        f"(folder 'Eval'). Unzip it (this creates {FOLDER}/) and put {PARTITION_FILE} beside "
        f"or inside {FOLDER}/, then pass its path:\n"
        f"  load_dataset('celeba', root='/path/to/{FOLDER}')   (or its parent directory)\n"
        f"  or set {ENV_VAR}=/path/to/{FOLDER}"
    )


def _list_images(directory: Path) -> list[Path]:
    return sorted((p for p in directory.iterdir()
                   if p.suffix.lower() in EXTENSIONS and p.is_file()), key=lambda p: p.name)


def locate(root: str | os.PathLike[str] | None) -> tuple[Path, list[Path], Path | None]:
    """(image folder, its images, partition file or None); raise if there are no images."""
    directory = user_data_dir(root, ENV_VAR, FOLDER, not_found_message)
    files = _list_images(directory)
    if not files:
        raise DatasetNotFoundError(not_found_message(
            f"{directory} holds no {'/'.join(EXTENSIONS)} images"))
    partition = None
    for d in (directory, directory.parent):
        for candidate in (d / PARTITION_FILE, d / "Eval" / PARTITION_FILE):
            if partition is None and candidate.is_file():
                partition = candidate
    return directory, files, partition


def read_partition(path: Path) -> dict[str, int]:
    """``{file stem: partition}`` from ``list_eval_partition.txt``."""
    out: dict[str, int] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise DataFormatError(f"{path}:{lineno}: expected '<file> <0|1|2>', got "
                                      f"{line.strip()!r}")
            out[Path(fields[0]).stem] = int(fields[1])
    return out


def split_files(files: list[Path], partition: Path | None, split: str) -> list[Path]:
    """The files of ``split``, in sorted order (see the module docstring)."""
    if partition is None:
        return [files[i] for i in every_tenth_split(len(files))[split]]
    parts = read_partition(partition)
    present = {p.stem for p in files}
    absent = sum(1 for stem, part in parts.items()
                 if part == PARTITIONS[split] and stem not in present)
    if absent:
        logger.warning("CelebA %s: %d images listed in %s are not in the folder", split, absent,
                       partition)
    unlisted = sum(1 for p in files if p.stem not in parts)
    if unlisted:
        logger.warning("CelebA: %d images are not listed in %s; ignored", unlisted, partition)
    return [p for p in files if parts.get(p.stem) == PARTITIONS[split]]


def preprocess(path: Path, size: int) -> np.ndarray:
    """One image as uint8 (3, size, size): RGB, center crop 148x148, BICUBIC resize."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataFormatError(f"{path}: cannot read image ({exc})") from exc
    w, h = img.size
    if w < CROP or h < CROP:
        raise DataFormatError(f"{path}: {w}x{h} is smaller than the {CROP}x{CROP} crop")
    left, top = (w - CROP) // 2, (h - CROP) // 2
    img = img.crop((left, top, left + CROP, top + CROP))
    if size != CROP:
        img = img.resize((size, size), RESAMPLE)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def prepare(split: str, image_size: int | None, root: str | os.PathLike[str] | None = None,
            limit: int | None = None) -> tuple[dict[str, Any], int, Builder]:
    """Return (cache-key parts, image size, builder) for ``split``; raise if data is missing."""
    size = DEFAULT_SIZE if image_size is None else int(image_size)
    if size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit}")
    directory, files, partition = locate(root)
    chosen = split_files(files, partition, split)
    if limit is not None:
        chosen = chosen[: int(limit)]
    if not chosen:
        raise DatasetNotFoundError(not_found_message(
            f"no {split} images in {directory}" + (f" per {partition}" if partition else "")))
    h = hashlib.sha256()
    for p in chosen:
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    key = {"dataset": NAME, "split": split, "root": str(directory.resolve()),
           "files": h.hexdigest(), "size": size, "crop": CROP, "resample": RESAMPLE.name,
           "pillow": PIL.__version__, "limit": limit,
           "partition": file_fingerprint(partition) if partition else "every-10th"}

    def make() -> dict[str, Arrays]:
        images = np.empty((len(chosen), 3, size, size), dtype=np.uint8)
        for i, p in enumerate(chosen):
            images[i] = preprocess(p, size)
            if (i + 1) % 10000 == 0:
                logger.info("CelebA %s: %d / %d images", split, i + 1, len(chosen))
        how = f"split by {partition}" if partition else "every 10th image to test"
        source = (f"CelebA aligned images {directory.resolve()} ({len(chosen)} {split} images, "
                  f"{how}; center crop {CROP}, BICUBIC to {size}x{size})")
        return {split: Arrays(images, None, source, LICENCE)}

    return key, size, make
