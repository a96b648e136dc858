"""The feature classifier, feature spaces and the sample-quality evaluation pipeline (recipes, CLI)."""
from __future__ import annotations

import pytest
import torch

import genzoo
from genzoo.metrics import features as feats
from genzoo.metrics.sample_quality import frechet_distance
from genzoo.models import Classifier, ClassifierConfig
from genzoo.recipes import merge_metrics


def test_classifier_features_logits_and_no_sampling():
    torch.manual_seed(0)
    m = Classifier(ClassifierConfig()).eval()
    x = torch.rand(3, 1, 28, 28)
    assert m.features(x).shape == (3, 128) and m(x).shape == (3, 10)
    with pytest.raises(NotImplementedError, match="does not sample"):
        m.sample(2)
    with pytest.raises(ValueError, match="expects"):
        m.features(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="labels"):
        m.loss(x)


def test_classifier_fit_learns_a_separable_problem_and_accuracy_is_exact():
    g = torch.Generator().manual_seed(0)
    n = 256
    labels = torch.arange(n) % 2
    images = torch.rand(n, 1, 28, 28, generator=g) * 0.3
    images[labels == 1, :, :, 14:] += 0.6  # class 1: bright right half
    m = Classifier(ClassifierConfig(channels=(8, 8), feature_dim=16, num_classes=2))
    before = m.accuracy(images, labels)
    m.fit(images, labels, steps=60, batch_size=32, lr=3e-3, shift=1)
    acc = m.accuracy(images, labels)
    with torch.no_grad():
        manual = float((m.eval()(images).argmax(1) == labels).float().mean())
    assert acc == pytest.approx(manual) and acc > 0.95 and acc >= before
    with pytest.raises(ValueError, match="labels"):
        m.fit(images, labels[:10], steps=1)


def test_classifier_fit_is_seeded():
    images = (torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    labels = torch.arange(64) % 10
    cfg = ClassifierConfig(channels=(4, 4), feature_dim=8)
    torch.manual_seed(0)
    a = Classifier(cfg)
    torch.manual_seed(0)
    b = Classifier(cfg)
    torch.manual_seed(7)  # fit reseeds: the global RNG state before it does not matter
    a.fit(images, labels, steps=3, batch_size=16, seed=1)
    b.fit(images, labels, steps=3, batch_size=16, seed=1)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=0, atol=0)


def test_feature_space_by_image_shape():
    assert feats.feature_space_for((1, 28, 28)) is feats.FMNIST
    assert feats.feature_space_for((3, 32, 32)) is feats.INCEPTION
    assert feats.feature_space_for((3, 64, 64)).fd_name == "FID"
    assert "never" not in feats.FMNIST.fd_name and "FID" not in feats.FMNIST.fd_name
    with pytest.raises(ValueError, match="no sample-quality feature space"):
        feats.feature_space_for((1, 32, 32))


class _Replay:
    """A stand-in 'model' whose samples are given images (in order), to test the pipeline."""

    device = torch.device("cpu")

    def __init__(self, images):
        self.images, self.pos = images, 0

    def sample(self, n, generator=None, temperature=1.0):
        out = self.images[self.pos:self.pos + n]
        self.pos += n
        return out


@pytest.fixture
def flat_space(monkeypatch):
    space = feats.FeatureSpace("flat-test", "fd_flat", "Fréchet distance (test)", "first 8 pixels", 8)
    monkeypatch.setitem(feats._EXTRACTORS, ("flat-test", "cpu"), lambda x: x.flatten(1)[:, :8] * 10)
    return space


def test_sample_quality_pipeline_on_replayed_real_images(flat_space):
    g = torch.Generator().manual_seed(0)
    real = torch.rand(600, 1, 4, 4, generator=g)
    other = torch.rand(600, 1, 4, 4, generator=g)
    ref = feats.embed(real, flat_space, batch_size=128)
    assert ref.dtype == torch.float64 and ref.shape == (600, 8)
    same = feats.sample_quality(_Replay(real), ref, flat_space, num_samples=600, batch_size=250,
                                kid_subset_size=200)
    assert same["fd"] == pytest.approx(0, abs=1e-6) and same["precision"] == 1 and same["recall"] == 1
    assert same["kid"] <= 1e-9
    fresh = feats.sample_quality(_Replay(other), ref, flat_space, num_samples=600, kid_subset_size=200)
    assert fresh["fd"] == pytest.approx(frechet_distance(ref, feats.embed(other, flat_space)))
    assert abs(fresh["kid"]) < 5 * fresh["kid_std"] + 1e-3  # one distribution: KID ~ 0 within its spread
    shifted = feats.sample_quality(_Replay((other * 0.5).clamp(0, 1)), ref, flat_space, num_samples=600,
                                   kid_subset_size=200)
    assert shifted["fd"] > 10 * fresh["fd"] and shifted["kid"] > 10 * max(fresh["kid"], 1e-4)
    assert shifted["recall"] < 0.5  # half-range samples miss most of the real manifold


def test_reference_features_are_cached_in_memory_and_on_disk(flat_space, tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path))
    calls = []
    base = feats._EXTRACTORS[("flat-test", "cpu")]
    monkeypatch.setitem(feats._EXTRACTORS, ("flat-test", "cpu"), lambda x: calls.append(1) or base(x))
    x = (torch.rand(10, 1, 4, 4) * 255).to(torch.uint8)
    a = feats.reference_features(x, flat_space)
    b = feats.reference_features(x, flat_space)
    assert a is b and len(calls) == 1
    files = list((tmp_path / "features").glob("flat-test-*.safetensors"))
    assert len(files) == 1
    feats._REFERENCE_CACHE.clear()  # a new process: read from disk, no extractor call
    torch.testing.assert_close(feats.reference_features(x, flat_space), a)
    assert len(calls) == 1
    feats._REFERENCE_CACHE.clear()
    files[0].write_bytes(b"garbage")  # a corrupt cache file is recomputed
    torch.testing.assert_close(feats.reference_features(x, flat_space), a)
    assert len(calls) == 2
    y = x.clone()
    y[0, 0, 0, 0] ^= 1  # other images: another entry
    feats.reference_features(y, flat_space)
    assert len(calls) == 3 and len(list((tmp_path / "features").glob("*.safetensors"))) == 2
    feats._REFERENCE_CACHE.clear()


def test_merge_metrics_replaces_by_key_and_keeps_order():
    old = [{"key": "a", "value": 1}, {"key": "fid", "value": 9}, {"key": "b", "value": 2}]
    new = [{"key": "fid", "value": 5}, {"key": "kid", "value": 0.1}]
    assert merge_metrics(old, new) == [{"key": "a", "value": 1}, {"key": "fid", "value": 5},
                                       {"key": "b", "value": 2}, {"key": "kid", "value": 0.1}]


def test_evaluate_rejects_unknown_groups():
    from genzoo.recipes import evaluate

    with pytest.raises(ValueError, match="unknown metric group"):
        evaluate(genzoo.create("vae"), "vae-fashion-mnist", groups=("speed",))
