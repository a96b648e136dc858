"""IDX file reader (the MNIST / Fashion-MNIST format) and a checked, atomic downloader.

IDX layout: two zero bytes, a type code (``0x08`` = unsigned byte, the only one used here),
the number of dimensions, then one big-endian uint32 per dimension, then the data. So image
files start with the magic number 2051 (``00 00 08 03``) and label files with 2049
(``00 00 08 01``). Files may be gzip-compressed (detected from the gzip magic bytes).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import struct
import tempfile
import urllib.request
import zlib
from pathlib import Path
from typing import Collection

import numpy as np

from .base import DataFormatError

logger = logging.getLogger(__name__)

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049
_UBYTE = 0x08


def read_idx(path: str | os.PathLike[str], expect_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes into a uint8 array.

    Raises:
        DataFormatError: the file is truncated, not gzip/IDX, has a wrong magic number, or
            its size does not match its header. The message names the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as f:  # type: ignore[operator]
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(f"{path}: cannot read IDX data ({exc}); the file is corrupt, "
                              "delete it and get it again") from exc
    if len(raw) < 4:
        raise DataFormatError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != _UBYTE or ndim == 0:
        raise DataFormatError(
            f"{path}: bad IDX magic number {raw[:4].hex()} (expected 000008xx, e.g. 00000803 "
            "for images, 00000801 for labels)")
    if expect_ndim is not None and ndim != expect_ndim:
        magic = IDX_IMAGES_MAGIC if expect_ndim == 3 else IDX_LABELS_MAGIC
        raise DataFormatError(
            f"{path}: IDX magic {struct.unpack('>I', raw[:4])[0]} but expected {magic} "
            f"({expect_ndim}-d data)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path}: IDX header truncated")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != expected:
        raise DataFormatError(
            f"{path}: IDX header says shape {dims} ({expected} bytes) but the file holds "
            f"{len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class ChecksumError(OSError):
    """A downloaded file did not have an expected sha256 (it has been deleted)."""


def download_file(url: str, dest: Path, sha256: Collection[str], timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, checking its sha256.

    The data goes to a temporary file in ``dest``'s directory and is moved into place with
    ``os.replace`` only when its sha256 is one of ``sha256``; otherwise the temporary file is
    deleted and :class:`ChecksumError` is raised. Network errors propagate (``OSError``) and
    leave nothing behind.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for block in iter(lambda: resp.read(1 << 20), b""):
                h.update(block)
                out.write(block)
        digest = h.hexdigest()
        if digest not in sha256:
            raise ChecksumError(
                f"sha256 mismatch for {url}: got {digest}, expected {' or '.join(sorted(sha256))}")
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    logger.info("downloaded %s -> %s", url, dest)
    return dest
