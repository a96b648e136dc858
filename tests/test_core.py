"""Config serialisation, strict checkpoint loading, registry errors, input validation, grids."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import OtherConfig, OtherTinyModel, TinyConfig, TinyModel, outputs, tiny

import genzoo
from genzoo.modeling import config_from_dict, config_to_dict, load_from_folder, replace_config
from genzoo.registry import _REGISTRY, register


@pytest.fixture
def temp_names():
    """Registry names added by a test, removed at teardown."""
    names: list[str] = []
    yield names
    for n in names:
        _REGISTRY.pop(n, None)


# --------------------------------------------------------------------------- configs
def test_config_round_trip(tmp_path):
    cfg = TinyConfig(in_channels=3, hidden=(4, 5), activation="tanh")
    data = json.loads(json.dumps(config_to_dict(cfg)))
    assert data == {"in_channels": 3, "image_size": 4, "hidden": [4, 5], "activation": "tanh"}
    back = config_from_dict(TinyConfig, data)
    assert back == cfg and isinstance(back.hidden, tuple) and hash(back) == hash(cfg)
    TinyModel(cfg).save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["model_class"] == "TinyModel" and meta["genzoo_version"] == genzoo.__version__
    assert meta["config"] == data
    assert load_from_folder(tmp_path).config == cfg


def test_unknown_config_field_names_it(tmp_path):
    tiny().save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["config"]["colour"] = "red"
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(genzoo.CheckpointError, match="colour"):
        load_from_folder(tmp_path)
    with pytest.raises(genzoo.CheckpointError, match="colour"):
        TinyModel.from_pretrained(tmp_path)


def test_bad_config_json(tmp_path):
    tiny().save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(genzoo.CheckpointError, match="not a valid genzoo config"):
        load_from_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_class": "NoSuchModel", "config": {}}))
    with pytest.raises(genzoo.CheckpointError, match="unknown model_class 'NoSuchModel'"):
        load_from_folder(tmp_path)


def test_replace_config():
    cfg = TinyConfig()
    assert replace_config(cfg, image_size=8) == TinyConfig(image_size=8)
    with pytest.raises(TypeError, match=r"no field.*\['depth'\]"):
        replace_config(cfg, depth=3)


# --------------------------------------------------------------------------- registry
def test_unknown_model_suggests_close_matches(temp_names):
    temp_names.append("tiny-thing")
    register("tiny-thing", TinyModel, TinyConfig())
    for call in (genzoo.create, genzoo.load):
        with pytest.raises(genzoo.UnknownModelError, match="Did you mean 'tiny-thing'") as e:
            call("tiny-thng")
        assert str(e.value).startswith("unknown model 'tiny-thng'")  # readable, not KeyError-quoted
    with pytest.raises(genzoo.UnknownModelError, match="genzoo.list_models") as e:
        genzoo.create("completely-unrelated-xyz")
    assert "Did you mean" not in str(e.value)
    assert isinstance(e.value, KeyError)


def test_registration(temp_names):
    temp_names += ["tiny-thing", "tiny-thing-ckpt"]
    register("tiny-thing", TinyModel, TinyConfig())
    with pytest.raises(ValueError, match="'tiny-thing' is already registered"):
        register("tiny-thing", TinyModel, TinyConfig(in_channels=3))
    assert _REGISTRY["tiny-thing"].config == TinyConfig()
    with pytest.raises(TypeError, match="config must be a TinyConfig"):
        register("tiny-wrong-config", TinyModel, OtherConfig())
    assert "tiny-wrong-config" not in _REGISTRY
    register("tiny-thing-ckpt", TinyModel, TinyConfig(), hub_id="tester/tiny-thing")
    assert "tiny-thing" in genzoo.list_models("architecture")
    assert "tiny-thing-ckpt" in genzoo.list_models("pretrained")
    assert "tiny-thing" not in genzoo.list_models("pretrained")
    m = genzoo.create("tiny-thing", in_channels=3, hidden=(2,))
    assert type(m) is TinyModel and m.image_shape == (3, 4, 4) and m.training
    with pytest.raises(TypeError, match="no field"):
        genzoo.create("tiny-thing", depth=2)


def test_model_takes_its_own_config():
    with pytest.raises(TypeError, match="TinyModel takes a TinyConfig, got OtherConfig"):
        TinyModel(OtherConfig())


# --------------------------------------------------------------------------- persistence
def test_save_writes_only_checkpoint_files(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["config.json", "model.safetensors"]
    tiny_model.save_pretrained(tmp_path / "b", model_card="# card\n")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert (tmp_path / "b" / "README.md").read_text() == "# card\n"
    tiny_model.save_pretrained(tmp_path / "b")  # overwriting leaves no temp files either
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = TinyModel.from_pretrained(tmp_path / "a")
    assert not loaded.training
    assert loaded.state_dict().keys() == tiny_model.state_dict().keys()
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert torch.equal(outputs(loaded), outputs(tiny_model))
    assert torch.equal(outputs(genzoo.load(str(tmp_path / "a"))), outputs(tiny_model))


def test_trained_weights_round_trip(tmp_path, tiny_model):
    opt = torch.optim.SGD(tiny_model.parameters(), lr=0.5)
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    before = tiny_model.loss(x)["loss"].item()
    for _ in range(3):
        opt.zero_grad()
        tiny_model.loss(x)["loss"].backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_model.parameters())
        opt.step()
    with torch.no_grad():
        tiny_model.pixel_mean.fill_(0.3)
    assert tiny_model.loss(x)["loss"].item() < before
    tiny_model.save_pretrained(tmp_path)
    loaded = TinyModel.from_pretrained(tmp_path)
    assert torch.equal(loaded.pixel_mean, torch.full((1,), 0.3))
    assert torch.equal(outputs(loaded), outputs(tiny_model.eval()))


def _edit_weights(folder, edit):
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors")


@pytest.mark.parametrize("edit,match", [
    (lambda s: s.pop("enc.weight"), r"missing 1 tensors \(e.g. \['enc.weight'\]\)"),
    (lambda s: s.pop("pixel_mean"), r"missing 1 tensors \(e.g. \['pixel_mean'\]\)"),
    (lambda s: s.__setitem__("extra", torch.zeros(1)), r"unexpected 1 tensors \(e.g. \['extra'\]\)"),
    (lambda s: s.__setitem__("dec.bias", torch.zeros(5)), r"shape mismatch: dec.bias: checkpoint \(5,\) vs model \(1,\)"),
])
def test_strict_loading(tmp_path, edit, match):
    tiny().save_pretrained(tmp_path)
    _edit_weights(tmp_path, edit)
    with pytest.raises(genzoo.CheckpointError, match=match) as e:
        TinyModel.from_pretrained(tmp_path)
    assert "do not match TinyModel" in str(e.value) and "model.safetensors" in str(e.value)


@pytest.mark.parametrize("corrupt,match", [
    ("truncate", "corrupt or truncated"),
    ("garbage", "corrupt or truncated"),
    ("empty", "corrupt or truncated"),
    ("missing", "does not exist"),
])
def test_corrupt_weights(tmp_path, corrupt, match):
    tiny().save_pretrained(tmp_path)
    f = tmp_path / "model.safetensors"
    if corrupt == "truncate":
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif corrupt == "garbage":
        f.write_bytes(b"\x00not a safetensors file at all" * 10)
    elif corrupt == "empty":
        f.write_bytes(b"")
    else:
        f.unlink()
    with pytest.raises(genzoo.CheckpointError, match=match) as e:
        TinyModel.from_pretrained(tmp_path)
    assert str(f) in str(e.value)


def test_wrong_class_and_not_a_checkpoint(tmp_path):
    tiny().save_pretrained(tmp_path / "t")
    with pytest.raises(genzoo.CheckpointError, match="holds a TinyModel, not a OtherTinyModel"):
        OtherTinyModel.from_pretrained(tmp_path / "t")
    assert type(genzoo.GenerativeModel.from_pretrained(tmp_path / "t")) is TinyModel
    (tmp_path / "empty").mkdir()
    with pytest.raises(genzoo.CheckpointError, match="no config.json"):
        load_from_folder(tmp_path / "empty")
    with pytest.raises(genzoo.CheckpointNotFoundError, match="does not exist"):
        genzoo.load(str(tmp_path / "nothing-here"))
    with pytest.raises(genzoo.CheckpointNotFoundError, match="does not exist"):
        TinyModel.from_pretrained(tmp_path / "nothing-here")


def test_registry_checkpoint_of_wrong_class(tmp_path, monkeypatch, temp_names):
    OtherTinyModel(OtherConfig()).save_pretrained(tmp_path / "tiny-mislabelled")
    monkeypatch.setenv("GENZOO_MODEL_CARDS", str(tmp_path))
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)  # bundled copy only, no Hub request
    temp_names.append("tiny-mislabelled")
    register("tiny-mislabelled", TinyModel, TinyConfig(), hub_id="tester/tiny-mislabelled")
    with pytest.raises(genzoo.CheckpointError, match="holds a OtherTinyModel, not a TinyModel"):
        genzoo.load("tiny-mislabelled")


@pytest.mark.parametrize("dtype", [None, torch.float64, torch.bfloat16])
def test_dtype_and_device_arguments(tmp_path, tiny_model, dtype):
    tiny_model.save_pretrained(tmp_path)
    m = TinyModel.from_pretrained(tmp_path, dtype=dtype, device="cpu")
    assert m.dtype == (dtype or torch.float32) and m.device == torch.device("cpu") and not m.training
    assert m.pixel_mean.dtype == (dtype or torch.float32)  # buffers follow too
    assert outputs(m).dtype == (dtype or torch.float32)
    m = genzoo.load(str(tmp_path), dtype=dtype, device=torch.device("cpu"))
    assert m.dtype == (dtype or torch.float32)
    if dtype == torch.float64:  # same function, up to float32 rounding
        x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(m._net(x.double()).float(), tiny_model._net(x), atol=1e-6)


# --------------------------------------------------------------------------- inputs and images
@pytest.mark.parametrize("x,match", [
    (torch.rand(2, 1, 5, 5), r"shape \(2, 1, 5, 5\).*expects \(B, 1, 4, 4\)"),
    (torch.rand(2, 3, 4, 4), r"shape \(2, 3, 4, 4\).*expects \(B, 1, 4, 4\)"),
    (torch.rand(1, 4, 4), r"shape \(1, 4, 4\)"),
    (torch.randint(0, 255, (2, 1, 4, 4), dtype=torch.uint8), "dtype torch.uint8.*float images"),
    (torch.rand(2, 1, 4, 4) * 255, r"values in \[.*\]; images must be in \[0, 1\]"),
    (torch.rand(2, 1, 4, 4) - 0.5, r"values in \[-.*\]; images must be in \[0, 1\]"),
    (torch.full((2, 1, 4, 4), float("nan")), "images must be in"),
])
def test_check_images_errors(tiny_model, x, match):
    with pytest.raises(ValueError, match=match):
        tiny_model.check_images(x)
    with pytest.raises(ValueError, match=match):
        tiny_model.loss(x)


def test_check_images_accepts_and_rejects_non_tensor(tiny_model):
    x = torch.rand(2, 1, 4, 4)
    assert tiny_model.check_images(x) is x
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        tiny_model.loss([[0.0]])
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        tiny_model.check_images(x.numpy())


def test_sample_contract(tiny_model):
    s = tiny_model.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 1, 4, 4) and s.dtype == torch.float32 and 0 <= s.min() and s.max() <= 1
    assert torch.equal(outputs(tiny_model), outputs(tiny_model))


@pytest.mark.parametrize("channels,mode", [(1, "L"), (3, "RGB")])
def test_save_grid(tmp_path, channels, mode):
    images = torch.rand(6, channels, 5, 7)
    path = genzoo.save_grid(images, tmp_path / "sub" / "g.png", nrow=3, padding=2)
    img = Image.open(path)
    assert img.format == "PNG" and img.mode == mode
    assert img.size == (3 * (7 + 2) + 2, 2 * (5 + 2) + 2)  # (width, height)
    px = torch.from_numpy(np.asarray(img, dtype=np.float32)).reshape(img.size[1], img.size[0], channels)
    first = images[0].permute(1, 2, 0).reshape(-1, channels)  # pixels of image 0 at offset (2, 2)
    got = px[2:7, 2:9].reshape(-1, channels) / 255
    assert torch.allclose(got, first, atol=1 / 255)
    assert sorted(p.name for p in path.parent.iterdir()) == ["g.png"]  # no temp file left
    big = genzoo.save_grid(images, tmp_path / "big.png", nrow=3, padding=2, scale=2)
    assert Image.open(big).size == (2 * img.size[0], 2 * img.size[1])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        genzoo.save_grid(torch.rand(3, 5, 5), tmp_path / "bad.png")
