"""Tests of the paper-preset loaders of genzoo.data: CIFAR-10 (python batches) and CelebA.

The real datasets are not on this machine: the tests build tiny fake copies in tmp_path
(CIFAR-10 pickles with the official structure; CelebA-shaped 178x218 PNGs).
"""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo.data import DataFormatError, DatasetNotFoundError, list_datasets, load_dataset
from genzoo.data import celeba as celeba_mod
from genzoo.data import cifar as cifar_mod


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path):
    for var in ("GENZOO_CIFAR10", "GENZOO_CELEBA", "GENZOO_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "default-cache"))


# ------------------------------------------------------------------------------------ cifar


def _write_batch(path: Path, data: np.ndarray, labels: list[int]) -> None:
    batch = {b"batch_label": path.name.encode(), b"labels": labels, b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch) -> dict:
    """<tmp>/cifar/cifar-10-batches-py with 4 images per file; MD5 patched to match them."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar" / cifar_mod.FOLDER
    folder.mkdir(parents=True)
    hwc: dict[str, np.ndarray] = {}
    labels: dict[str, list[int]] = {}
    md5 = {}
    for i, name in enumerate(cifar_mod.FILES["train"] + cifar_mod.FILES["test"]):
        imgs = rng.integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)  # (N, H, W, C)
        # CIFAR rows: 1024 red values, then 1024 green, then 1024 blue, each row-major
        data = np.ascontiguousarray(imgs.transpose(0, 3, 1, 2).reshape(4, 3072))
        data[1, 1 * 1024 + 3 * 32 + 7] = 200 + i  # image 1, green, row 3, column 7
        imgs[1, 3, 7, 1] = 200 + i
        labels[name] = [(i + k) % 10 for k in range(4)]
        hwc[name] = imgs
        _write_batch(folder / name, data, labels[name])
        md5[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    monkeypatch.setattr(cifar_mod, "MD5", md5)
    return {"folder": folder, "hwc": hwc, "labels": labels, "md5": md5}


def test_cifar_shapes_order_and_layout(fake_cifar, tmp_path):
    cache = tmp_path / "cache"
    train = load_dataset("cifar10", "train", root=fake_cifar["folder"].parent, cache_dir=cache)
    test = load_dataset("cifar10", split="test", root=str(fake_cifar["folder"]), cache_dir=cache)
    assert (len(train), len(test)) == (20, 4)
    for ds, n in ((train, 20), (test, 4)):
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (n, 3, 32, 32)
        assert ds.labels.dtype == torch.int64 and ds.labels.shape == (n,)
        assert ds.name == "cifar10" and ds.image_shape == (3, 32, 32)
        assert "Krizhevsky" in ds.licence and "md5-checked" in ds.source
    train_files = cifar_mod.FILES["train"]
    expected = np.concatenate([fake_cifar["hwc"][f] for f in train_files])
    assert np.array_equal(train.images.permute(0, 2, 3, 1).numpy(), expected)  # CHW layout
    assert train.labels.tolist() == sum((fake_cifar["labels"][f] for f in train_files), [])
    assert test.labels.tolist() == fake_cifar["labels"]["test_batch"]
    for i, f in enumerate(train_files):  # the marked pixel: image 1 of each file, (c,h,w)=(1,3,7)
        assert train.images[4 * i + 1, 1, 3, 7].item() == 200 + i
    assert test.images[1, 1, 3, 7].item() == 205
    assert torch.equal(test[1], test.images[1].float() / 255)


def test_cifar_cache_aliases_and_env(fake_cifar, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_dataset("cifar10", "test", root=fake_cifar["folder"], cache_dir=cache)
    (cache_file,) = (cache / "datasets").glob("cifar10-test-32-*.npz")

    def no_unpickling(*args, **kwargs):
        raise AssertionError("cached data must not be unpickled again")

    monkeypatch.setattr(cifar_mod.pickle, "load", no_unpickling)
    monkeypatch.setenv("GENZOO_CIFAR10", str(fake_cifar["folder"]))
    for name in ("cifar10", "cifar-10", "CIFAR", "cifar_10"):
        again = load_dataset(name, "test", cache_dir=cache)  # via $GENZOO_CIFAR10, cached
        assert torch.equal(again.images, first.images)
        assert torch.equal(again.labels, first.labels)
    assert not list((cache / "datasets").glob("*.tmp")) and cache_file.is_file()


def test_cifar_md5_mismatch_is_refused_before_unpickling(fake_cifar, tmp_path, monkeypatch):
    folder = fake_cifar["folder"]
    blob = bytearray((folder / "test_batch").read_bytes())
    blob[-20] ^= 0xFF  # tampered pixel data
    (folder / "test_batch").write_bytes(bytes(blob))
    with pytest.raises(DataFormatError, match="test_batch.*md5"):
        load_dataset("cifar10", "test", root=folder, cache_dir=tmp_path / "cache")

    # a pickle that would run code is never loaded: the official md5s do not match it
    monkeypatch.setattr(cifar_mod, "MD5", dict(cifar_mod.MD5))
    monkeypatch.setitem(cifar_mod.MD5, "data_batch_1", "c99cafc152244af753f735de768cd75f")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump(Evil(), f, protocol=2)
    with pytest.raises(DataFormatError, match="data_batch_1.*c99cafc152244af753f735de768cd75f"):
        load_dataset("cifar10", "train", root=folder, cache_dir=tmp_path / "cache")
    assert not marker.exists()


def test_cifar_bad_structure_and_arguments(fake_cifar, tmp_path, monkeypatch):
    folder = fake_cifar["folder"]
    _write_batch(folder / "test_batch", np.zeros((2, 1024), np.uint8), [0, 1])  # grayscale?
    monkeypatch.setitem(cifar_mod.MD5, "test_batch",
                        hashlib.md5((folder / "test_batch").read_bytes()).hexdigest())
    with pytest.raises(DataFormatError, match="test_batch.*3072"):
        load_dataset("cifar10", "test", root=folder, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="32"):
        load_dataset("cifar10", image_size=64, root=folder, cache_dir=tmp_path / "cache")
    with pytest.raises(TypeError, match="limit"):
        load_dataset("cifar10", root=folder, limit=3, cache_dir=tmp_path / "cache")


def test_cifar_missing_says_what_to_download(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10", cache_dir=tmp_path)
    msg = str(err.value)
    for part in ("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar.html",
                 "root=", "GENZOO_CIFAR10", "cifar-10-batches-py", "GENZOO_CIFAR10 is not set"):
        assert part in msg, part
    with pytest.raises(DatasetNotFoundError, match="is not a directory"):
        load_dataset("cifar", root=tmp_path / "nowhere", cache_dir=tmp_path)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "data_batch_1").write_bytes(b"")
    with pytest.raises(DatasetNotFoundError, match="(?s)data_batch_2.*cifar-10-python.tar.gz"):
        load_dataset("cifar10", "train", root=partial, cache_dir=tmp_path)


# ----------------------------------------------------------------------------------- celeba

RED, GREEN = (255, 0, 0), (0, 255, 0)
CROP_BOX = (15, 35, 163, 183)  # center 148x148 of 178x218


def _face(i: int) -> Image.Image:
    """178x218: red outside the central 148 crop, a green 1-px ring just inside it, and a
    flat colour (0, 10 i, 100) in the middle."""
    img = Image.new("RGB", (178, 218), RED)
    left, top, right, bottom = CROP_BOX
    img.paste(GREEN, CROP_BOX)
    img.paste((0, 10 * i, 100), (left + 1, top + 1, right - 1, bottom - 1))
    return img


def _celeba(root: Path, n: int, partition: dict[int, int] | None = None,
            partition_at: Path | None = None) -> Path:
    folder = root / celeba_mod.FOLDER
    folder.mkdir(parents=True)
    for i in range(n):
        _face(i).save(folder / f"{i + 1:06d}.png")
    if partition is not None:
        lines = [f"{i + 1:06d}.jpg {p}" for i, p in partition.items()]  # official names: .jpg
        target = partition_at or root
        target.mkdir(parents=True, exist_ok=True)
        (target / celeba_mod.PARTITION_FILE).write_text("\n".join(lines) + "\n")
    return folder


def _ids(ds) -> list[int]:
    """Recover i from the flat centre colour (0, 10 i, 100)."""
    c = ds.images.shape[-1] // 2
    return [round(v / 10) for v in ds.images[:, 1, c, c].tolist()]


def test_celeba_crop_removes_border(tmp_path):
    folder = _celeba(tmp_path / "data", 3)
    full = load_dataset("celeba", "train", image_size=148, root=folder, cache_dir=tmp_path / "c")
    assert full.images.shape == (3, 3, 148, 148) and full.labels is None
    x = full.images
    assert not (x[:, 0] == 255).any()  # no red border pixel survives the crop
    ring = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)
    assert (ring.permute(0, 2, 1) == torch.tensor(GREEN, dtype=torch.uint8)).all()
    inner = x[:, :, 1:-1, 1:-1]
    assert (inner[:, 0] == 0).all() and (inner[:, 2] == 100).all()

    small = load_dataset("celeba", "train", root=folder, cache_dir=tmp_path / "c")  # default 64
    assert small.images.shape == (3, 3, 64, 64) and small.images.dtype == torch.uint8
    assert small.images[:, 0].max() < 128  # BICUBIC: the green ring blurs, red never enters
    assert small.images[:, 0, 16:48, 16:48].eq(0).all()
    assert small.images[:, 2, 16:48, 16:48].eq(100).all()
    assert _ids(small) == [0, 1, 2]  # every 10th to test: 3 images are all train
    assert "CelebA" in small.licence and "every 10th" in small.source


def test_celeba_official_partition(tmp_path, monkeypatch):
    partition = {i: (0, 0, 1, 2)[i % 4] for i in range(12)}
    partition.pop(11)  # listed as 2 ... then absent from the list: image 12 is ignored
    folder = _celeba(tmp_path / "data", 12, partition)  # list file beside img_align_celeba/
    cache = tmp_path / "c"
    train = load_dataset("celeba", "train", image_size=16, root=tmp_path / "data",
                         cache_dir=cache)
    test = load_dataset("celeba", "test", image_size=16, root=folder, cache_dir=cache)
    assert _ids(train) == [0, 1, 4, 5, 8, 9]  # partition 0, sorted
    assert _ids(test) == [3, 7]  # partition 2; validation (1) unused
    assert train.images.shape == (6, 3, 16, 16) and "list_eval_partition.txt" in train.source
    limited = load_dataset("celeba", "train", image_size=16, root=folder, limit=4,
                           cache_dir=cache)
    assert _ids(limited) == [0, 1, 4, 5]
    (cache_file,) = (cache / "datasets").glob("celeba-test-16-*.npz")

    def boom(*args, **kwargs):
        raise AssertionError("cached images must not be decoded again")

    monkeypatch.setattr(celeba_mod, "preprocess", boom)
    monkeypatch.setenv("GENZOO_CELEBA", str(folder))
    again = load_dataset("celeb-a", "test", image_size=16, cache_dir=cache)
    assert torch.equal(again.images, test.images) and cache_file.is_file()


def test_celeba_partition_inside_eval_and_fallback(tmp_path):
    part = {i: (0, 2)[i % 2] for i in range(6)}
    folder = _celeba(tmp_path / "a", 6, part, partition_at=tmp_path / "a" / "img_align_celeba"
                     / "Eval")
    test = load_dataset("celeba", "test", image_size=8, root=folder, cache_dir=tmp_path / "c")
    assert _ids(test) == [1, 3, 5]
    # no list file: sorted names, every 10th image (index 9, 19, ...) to test; JPEGs too
    folder = _celeba(tmp_path / "b", 21)
    _face(0).save(folder / "000000.jpg", quality=95)  # sorts first, shifts the others
    (folder / "notes.txt").write_text("not an image")
    train = load_dataset("celeba", "train", image_size=8, root=folder, cache_dir=tmp_path / "c")
    test = load_dataset("celeba", "test", image_size=8, root=folder, cache_dir=tmp_path / "c")
    assert (len(train), len(test)) == (20, 2)
    assert _ids(test) == [8, 18]  # positions 9 and 19 of [jpg, 0, 1, ..., 20]


def test_celeba_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("celeba", cache_dir=tmp_path)
    msg = str(err.value)
    for part in ("Align&Cropped Images", "img_align_celeba.zip", "list_eval_partition.txt",
                 "mmlab.ie.cuhk.edu.hk", "root=", "GENZOO_CELEBA"):
        assert part in msg, part
    with pytest.raises(DatasetNotFoundError, match="is not a directory"):
        load_dataset("celeba", root=tmp_path / "nowhere", cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="holds no"):
        load_dataset("celeba", root=tmp_path / "empty", cache_dir=tmp_path)

    folder = _celeba(tmp_path / "data", 2)
    (tmp_path / "data" / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg x\n")
    with pytest.raises(DataFormatError, match="list_eval_partition.txt:2"):
        load_dataset("celeba", root=folder, cache_dir=tmp_path)
    (tmp_path / "data" / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 1\n")
    with pytest.raises(DatasetNotFoundError, match="no test images"):
        load_dataset("celeba", "test", root=folder, cache_dir=tmp_path)
    Image.new("RGB", (100, 100)).save(folder / "000000.png")
    (tmp_path / "data" / "list_eval_partition.txt").unlink()
    with pytest.raises(DataFormatError, match="000000.png.*smaller"):
        load_dataset("celeba", root=folder, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="limit"):
        load_dataset("celeba", root=folder, limit=0, cache_dir=tmp_path)
    with pytest.raises(TypeError, match="channels"):
        load_dataset("celeba", root=folder, channels=1, cache_dir=tmp_path)


def test_paper_datasets_listed():
    names = list_datasets()
    assert "cifar10" in names and "celeba" in names
    assert "cifar-10-batches-py" not in names["celeba"]
