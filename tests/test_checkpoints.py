"""Bundled checkpoints: load by name offline, sample deterministically, reproduce the card."""
from __future__ import annotations

import math

import pytest
import torch

import genzoo
from genzoo.hub import bundled_dir, read_card_metadata
from genzoo.recipes import evaluate_elbo_bpd, load_split
from genzoo.registry import get_entry, list_models

BUNDLED = [n for n in list_models("pretrained") if get_entry(n).published]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No Hub: the bundled copy must be found without any request."""
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)


def test_every_published_checkpoint_is_bundled():
    assert BUNDLED, "no pretrained checkpoints registered"
    for name in BUNDLED:
        folder = bundled_dir() / name
        for f in ("README.md", "config.json", "model.safetensors", "samples.png"):
            assert (folder / f).is_file(), f"{folder / f} missing"
        assert (folder / "model.safetensors").stat().st_size < 15 * 2**20


@pytest.mark.parametrize("name", BUNDLED)
def test_load_and_sample_deterministic(name):
    m = genzoo.load(name)
    assert not m.training
    a = m.sample(8, generator=torch.Generator().manual_seed(0))
    b = m.sample(8, generator=torch.Generator().manual_seed(0))
    c = m.sample(8, generator=torch.Generator().manual_seed(1))
    assert a.shape == (8, *m.image_shape)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name", BUNDLED)
def test_card_metadata(name):
    meta = read_card_metadata(bundled_dir() / name)
    assert meta["library_name"] == "genzoo"
    assert meta["datasets"] == [get_entry(name).dataset]
    assert meta["model-index"][0]["results"], "card has no metrics"
    g = meta["genzoo"]
    for key in ("command", "seed", "hardware", "wall_time_s", "commit"):
        assert key in g["training"], key
    assert g["training"]["wall_time_s"] <= 30 * 60, "recipe must finish within 30 minutes"


@pytest.mark.parametrize("name", BUNDLED)
def test_card_elbo_reproduces(name):
    """The card's negative-ELBO bits/dim on the full test split is recomputed exactly (seeded)."""
    m = genzoo.load(name)
    card = {x["key"]: x for x in read_card_metadata(bundled_dir() / name)["genzoo"]["metrics"]}
    value = evaluate_elbo_bpd(m, name)
    assert value == pytest.approx(card["elbo_bpd"]["value"], abs=0.01)
    # the importance-sampled bound is tighter than the ELBO and on the card
    assert card["iwae_bpd"]["value"] < card["elbo_bpd"]["value"]


@pytest.mark.parametrize("name", BUNDLED)
def test_iwae_on_subset_tighter_than_elbo(name):
    m = genzoo.load(name)
    x = load_split(get_entry(name), "test").images[:64]
    res = genzoo.metrics.importance_sampled_nll(m, x, num_samples=64,
                                                generator=torch.Generator().manual_seed(0))
    assert math.isfinite(res["nll"]) and res["nll"] <= -res["elbo"] + 1e-3


def test_fine_tune_from_checkpoint_and_round_trip(tmp_path):
    """The README flow: load -> genzoo.train (fine-tune) -> save_pretrained -> from_pretrained."""
    m = genzoo.load("vae-fashion-mnist")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    data = load_split(get_entry("vae-fashion-mnist"), "train").images[:512]
    out = genzoo.train(m, data, steps=5, batch_size=64, progress=False)
    assert out is m and not m.training
    assert any(not torch.equal(before[k], v) for k, v in m.state_dict().items())
    m.save_pretrained(tmp_path)
    again = genzoo.VAE.from_pretrained(tmp_path)
    g = torch.Generator().manual_seed(3)
    assert torch.equal(again.sample(4, generator=g), m.sample(4, generator=torch.Generator().manual_seed(3)))
