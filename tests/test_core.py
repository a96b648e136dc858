"""Config serialisation, strict checkpoint loading, registry errors, input validation, grids."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from tiny_models import TinyConfig, TinyModel, tiny

import genzoo
from genzoo.modeling import config_from_dict, config_to_dict, load_from_folder, replace_config
from genzoo.registry import _REGISTRY, register


def test_config_round_trip():
    cfg = TinyConfig(in_channels=3, hidden=(4, 5), mode="b")
    data = json.loads(json.dumps(config_to_dict(cfg)))
    back = config_from_dict(TinyConfig, data)
    assert back == cfg and isinstance(back.hidden, tuple)


def test_unknown_config_field_names_it(tmp_path):
    tiny().save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["config"]["colour"] = "red"
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(genzoo.CheckpointError, match="colour"):
        load_from_folder(tmp_path)
    with pytest.raises(TypeError, match="no field.*depth"):
        replace_config(TinyConfig(), depth=3)


def test_unknown_model_suggests_close_matches():
    with pytest.raises(genzoo.UnknownModelError, match="Did you mean 'vae-fashion-mnist'"):
        genzoo.load("vae-fashon-mnist")
    with pytest.raises(genzoo.UnknownModelError, match="genzoo.list_models"):
        genzoo.create("completely-unrelated-xyz")


def test_duplicate_registration_and_create_overrides():
    register("tiny-thing", TinyModel, TinyConfig())
    try:
        with pytest.raises(ValueError, match="already registered"):
            register("tiny-thing", TinyModel, TinyConfig())
        with pytest.raises(genzoo.UnknownModelError, match="tiny-thing"):
            genzoo.create("tiny-thng")
        m = genzoo.create("tiny-thing", in_channels=3)
        assert m.image_shape == (3, 4, 4) and m.training
    finally:
        _REGISTRY.pop("tiny-thing")


def test_save_writes_only_checkpoint_files(tmp_path):
    m = tiny()
    m.save_pretrained(tmp_path, model_card="# card\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["model_class"] == "TinyModel" and meta["genzoo_version"] == genzoo.__version__
    loaded = TinyModel.from_pretrained(tmp_path)
    for k, v in m.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])


def _edit_weights(folder, edit):
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors")


@pytest.mark.parametrize("edit,match", [
    (lambda s: s.pop("net.weight"), "missing 1 tensors.*net.weight"),
    (lambda s: s.__setitem__("extra", torch.zeros(1)), "unexpected 1 tensors.*extra"),
    (lambda s: s.__setitem__("log_sigma", torch.zeros(5)), r"shape mismatch: log_sigma: checkpoint \(5,\)"),
])
def test_strict_loading(tmp_path, edit, match):
    tiny().save_pretrained(tmp_path)
    _edit_weights(tmp_path, edit)
    with pytest.raises(genzoo.CheckpointError, match=match):
        load_from_folder(tmp_path)


@pytest.mark.parametrize("corrupt", ["truncate", "garbage", "missing"])
def test_corrupt_weights(tmp_path, corrupt):
    tiny().save_pretrained(tmp_path)
    f = tmp_path / "model.safetensors"
    if corrupt == "truncate":
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif corrupt == "garbage":
        f.write_bytes(b"\x00not a safetensors file at all")
    else:
        f.unlink()
    with pytest.raises(genzoo.CheckpointError, match="corrupt or truncated|does not exist"):
        load_from_folder(tmp_path)


def test_wrong_class_and_not_a_checkpoint(tmp_path):
    tiny().save_pretrained(tmp_path / "t")
    with pytest.raises(genzoo.CheckpointError, match="holds a TinyModel, not a VAE"):
        genzoo.VAE.from_pretrained(tmp_path / "t")
    (tmp_path / "empty").mkdir()
    with pytest.raises(genzoo.CheckpointError, match="no config.json"):
        load_from_folder(tmp_path / "empty")
    with pytest.raises(genzoo.CheckpointNotFoundError, match="does not exist"):
        genzoo.load(str(tmp_path / "nothing-here/x/y"))


def test_dtype_argument(tmp_path):
    tiny().save_pretrained(tmp_path)
    m = load_from_folder(tmp_path, dtype=torch.float64)
    assert m.dtype == torch.float64 and not m.training


@pytest.mark.parametrize("x,match", [
    (torch.rand(2, 1, 5, 5), r"shape \(2, 1, 5, 5\).*expects \(B, 1, 4, 4\)"),
    (torch.rand(1, 4, 4), "shape"),
    (torch.randint(0, 255, (2, 1, 4, 4), dtype=torch.uint8), "dtype torch.uint8.*float images"),
    (torch.rand(2, 1, 4, 4) * 255, r"values in \[.*\]; images must be in \[0, 1\]"),
])
def test_check_images_errors(x, match):
    with pytest.raises(ValueError, match=match):
        tiny().loss(x)


def test_check_images_rejects_non_tensor():
    with pytest.raises(TypeError, match="torch.Tensor"):
        tiny().loss([[0.0]])


@pytest.mark.parametrize("channels,mode", [(1, "L"), (3, "RGB")])
def test_save_grid(tmp_path, channels, mode):
    images = torch.rand(6, channels, 5, 7)
    path = genzoo.save_grid(images, tmp_path / "g.png", nrow=3, padding=2)
    img = Image.open(path)
    assert img.mode == mode and img.size == (3 * (7 + 2) + 2, 2 * (5 + 2) + 2)
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        genzoo.save_grid(torch.rand(3, 5, 5), tmp_path / "bad.png")
