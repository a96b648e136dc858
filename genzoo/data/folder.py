"""Image folders: any directory of ``.png`` / ``.jpg`` / ``.jpeg`` / ``.webp`` files.

Files are found recursively and taken in sorted order of their path relative to the folder
(POSIX form). Each image is converted to RGB (``channels=3``, the default) or grayscale
(``channels=1``; images with transparency are composited on white first), center-cropped to
a square (side = shorter edge) and resized with LANCZOS to ``image_size`` (default: the
cropped side of the first image). Split: image ``i`` is test when ``i % 10 == 9``, train
otherwise. No labels. Use it for CelebA, CIFAR-10 (as images), FFHQ, ... that you have.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from PIL import Image

from .base import Arrays, Builder, DataFormatError, DatasetNotFoundError, every_tenth_split

logger = logging.getLogger(__name__)

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


def list_images(root: Path) -> list[Path]:
    """Image files under ``root``, recursively, sorted by relative POSIX path."""
    files = [p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _open(path: Path, channels: int) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, rgba)
            return img.convert("RGB" if channels == 3 else "L")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataFormatError(f"{path}: cannot read image ({exc})") from exc


def _square(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return img


def prepare(path: str | Path, split: str, image_size: int | None, channels: int = 3
            ) -> tuple[str, dict[str, Any], int, Builder]:
    """Return (name, cache-key parts, image size, builder) for the folder ``path``."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"image folder {root} does not exist (or is not a directory); pass a dataset name "
            "or a directory of .png/.jpg/.jpeg/.webp files")
    files = list_images(root)
    if not files:
        raise DatasetNotFoundError(
            f"image folder {root} holds no images ({', '.join(EXTENSIONS)}, searched recursively)")
    if image_size is None:
        size = min(_open(files[0], channels).size)
    else:
        size = int(image_size)
    if size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    key = {"dataset": "folder", "root": str(root.resolve()), "files": h.hexdigest(),
           "size": size, "channels": channels, "pillow": PIL.__version__, "split": "every-10th"}

    def make() -> dict[str, Arrays]:
        images = np.empty((len(files), channels, size, size), dtype=np.uint8)
        for i, p in enumerate(files):
            arr = np.asarray(_square(_open(p, channels), size), dtype=np.uint8)
            images[i] = arr.reshape(size, size, channels).transpose(2, 0, 1)
        source = f"image folder {root.resolve()} ({len(files)} images)"
        licence = f"user-supplied images from {root.resolve()} (check their licence)"
        return {s: Arrays(images[idx], None, source, licence)
                for s, idx in every_tenth_split(len(images)).items()}

    return f"folder-{root.resolve().name or 'root'}", key, size, make
