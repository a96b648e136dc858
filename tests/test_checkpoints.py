"""Bundled checkpoints: load by name offline, sample deterministically, reproduce the card."""
from __future__ import annotations

import math

import pytest
import torch

import genzoo
from genzoo.hub import bundled_dir, read_card_metadata
from genzoo.layers import dequantize
from genzoo.metrics import dequantized_bpd
from genzoo.models import GAN, Classifier, FlowModel
from genzoo.recipes import _reconstruction_mse, evaluate_elbo_bpd, load_split
from genzoo.registry import get_entry, list_models

BUNDLED = [n for n in list_models("pretrained") if get_entry(n).published]
FLOWS = [n for n in BUNDLED if issubclass(get_entry(n).model_class, FlowModel)]
VAES = [n for n in BUNDLED if hasattr(get_entry(n).model_class, "elbo")]
VQ = [n for n in BUNDLED if issubclass(get_entry(n).model_class, genzoo.VQVAE)]
GANS = [n for n in BUNDLED if issubclass(get_entry(n).model_class, GAN)]
CLASSIFIERS = [n for n in BUNDLED if issubclass(get_entry(n).model_class, Classifier)]
SAMPLERS = [n for n in BUNDLED if n not in CLASSIFIERS]
# the sample-quality feature space of each sampling checkpoint: grey 28x28 -> genzoo F-MNIST features
GREY = [n for n in SAMPLERS if get_entry(n).config.in_channels == 1]
COLOUR = [n for n in SAMPLERS if n not in GREY]
# recipe time budgets of the issues that introduced each family (minutes on this 2-core CPU)
TIME_BUDGET_MIN = {**{n: 30 for n in VAES}, **{n: 45 for n in FLOWS}, **{n: 45 for n in VQ},
                   **{n: 45 for n in GANS}, **{n: 15 for n in CLASSIFIERS}}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No Hub: the bundled copy must be found without any request."""
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)


def test_every_published_checkpoint_is_bundled():
    assert BUNDLED, "no pretrained checkpoints registered"
    for name in BUNDLED:
        folder = bundled_dir() / name
        files = ("README.md", "config.json", "model.safetensors") + (("samples.png",) if name in SAMPLERS else ())
        for f in files:
            assert (folder / f).is_file(), f"{folder / f} missing"
        assert (folder / "model.safetensors").stat().st_size < 15 * 2**20


@pytest.mark.parametrize("name", SAMPLERS)
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
    budget = TIME_BUDGET_MIN[name]
    assert g["training"]["wall_time_s"] <= budget * 60, f"recipe must finish within {budget} minutes"


@pytest.mark.parametrize("name", VAES)
def test_card_elbo_reproduces(name):
    """The card's negative-ELBO bits/dim on the full test split is recomputed exactly (seeded)."""
    m = genzoo.load(name)
    card = {x["key"]: x for x in read_card_metadata(bundled_dir() / name)["genzoo"]["metrics"]}
    value = evaluate_elbo_bpd(m, name)
    assert value == pytest.approx(card["elbo_bpd"]["value"], abs=0.01)
    # the importance-sampled bound is tighter than the ELBO and on the card
    assert card["iwae_bpd"]["value"] < card["elbo_bpd"]["value"]


@pytest.mark.parametrize("name", VAES)
def test_iwae_on_subset_tighter_than_elbo(name):
    m = genzoo.load(name)
    x = load_split(get_entry(name), "test").images[:64]
    res = genzoo.metrics.importance_sampled_nll(m, x, num_samples=64,
                                                generator=torch.Generator().manual_seed(0))
    assert math.isfinite(res["nll"]) and res["nll"] <= -res["elbo"] + 1e-3


def test_every_bundled_checkpoint_has_a_family_test():
    assert set(BUNDLED) == set(FLOWS) | set(VAES) | set(VQ) | set(GANS) | set(CLASSIFIERS)


@pytest.mark.parametrize("name", FLOWS)
def test_flow_card_bpd_reproduces(name):
    """The card's dequantised bits/dim on the whole test split, recomputed from the weights (within 0.02)."""
    m = genzoo.load(name)
    card = {x["key"]: x for x in read_card_metadata(bundled_dir() / name)["genzoo"]["metrics"]}
    seed = get_entry(name).recipe["eval"]["seed"]
    res = dequantized_bpd(m, load_split(get_entry(name), "test"), batch_size=500, seed=seed)
    assert res["bpd"] == pytest.approx(card["test_bpd"]["value"], abs=0.02)
    assert res["bpd"] < 8.0, "a trained flow must beat the uniform distribution (8 bits/dim)"


@pytest.mark.parametrize("name", FLOWS)
def test_flow_checkpoint_encode_decode_round_trip(name):
    """On the data the flow models (dequantised pixels, here the bin centres) the inverse is exact.
    Exact 0/1 pixels lie outside that support: a logit-preprocessed flow maps them to logit(1e-6), far
    from anything seen in training, where float32 round trips are not accurate."""
    m = genzoo.load(name)
    x = dequantize(load_split(get_entry(name), "test").to_tensor()[:4], noise=False)
    torch.testing.assert_close(m.decode(m.encode(x)), x, atol=1e-4, rtol=0)


def test_glow_fine_tune_from_checkpoint(tmp_path):
    """Fine-tuning a loaded Glow never re-initialises its ActNorms and keeps the weights loadable."""
    m = genzoo.load("glow-fashion-mnist")
    x = load_split(get_entry("glow-fashion-mnist"), "train").images[:256]
    before = dequantized_bpd(m, x, seed=0)["bpd"]
    genzoo.train(m, x, steps=3, batch_size=64, lr=1e-5, warmup_steps=0, progress=False, ema_decay=0.0)
    assert abs(dequantized_bpd(m, x, seed=0)["bpd"] - before) < 0.1
    m.save_pretrained(tmp_path)
    assert torch.equal(genzoo.Glow.from_pretrained(tmp_path).log_prob(x[:2] / 255.0), m.log_prob(x[:2] / 255.0))


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


@pytest.mark.parametrize("name", VQ)
def test_vq_card_numbers_reproduce(name):
    """Reconstruction MSE/PSNR, codebook usage/perplexity and the prior's bits per code on the whole
    test split are recomputed (deterministic: no sampling in the protocol)."""
    from genzoo.recipes import evaluate

    m = genzoo.load(name)
    card = {x["key"]: x["value"] for x in read_card_metadata(bundled_dir() / name)["genzoo"]["metrics"]}
    got = {x["key"]: x["value"] for x in evaluate(m, name, groups=("family",))}
    assert set(got) <= set(card)  # the card adds the sample-quality numbers (tested separately)
    for key, value in got.items():
        assert value == pytest.approx(card[key], rel=1e-3, abs=1e-4), key
    assert (bundled_dir() / name / "reconstructions.png").is_file()
    # the prior has learned something: well below a uniform distribution over the codes
    assert card["prior_bits_per_code"] < math.log2(m.config.num_codes) - 1


@pytest.mark.parametrize("name", VQ)
def test_vq_checkpoint_reconstructs_and_samples_with_top_k(name):
    m = genzoo.load(name)
    x = torch.as_tensor(load_split(get_entry(name), "test").images[:16]).float() / 255
    idx = m.encode(x)
    assert idx.shape == (16, m.config.grid_size, m.config.grid_size)
    err = (m.decode(idx) - x).pow(2).mean()
    shuffled = (m.decode(idx.flip(0)) - x).pow(2).mean()  # other images' codes reconstruct far worse
    assert err < 0.5 * shuffled
    s = m.sample(4, generator=torch.Generator().manual_seed(0), temperature=0.8, top_k=20)
    assert s.shape == (4, *m.image_shape) and s.min() >= 0 and s.max() <= 1


SAMPLE_QUALITY_KEYS = {"kid", "precision", "recall"}


def _card(name):
    return {x["key"]: x["value"] for x in read_card_metadata(bundled_dir() / name)["genzoo"]["metrics"]}


def _check_sample_quality(name):
    from genzoo.recipes import sample_quality_metrics

    m = genzoo.load(name)
    card = _card(name)
    got = {x["key"]: x["value"] for x in sample_quality_metrics(m, name)}
    fd_key = "fd_fmnist" if name in GREY else "fid"
    assert set(got) == SAMPLE_QUALITY_KEYS | {fd_key} and set(got) <= set(card), "card lacks sample quality"
    for key, value in got.items():
        assert value == pytest.approx(card[key], rel=1e-3, abs=1e-4), key


@pytest.mark.parametrize("name", GREY)
def test_grey_sample_quality_card_numbers_reproduce(name):
    """Fréchet distance (genzoo Fashion-MNIST features), KID and precision/recall on every grey card."""
    _check_sample_quality(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", COLOUR)
def test_colour_sample_quality_card_numbers_reproduce(name):
    """FID / KID / precision / recall in InceptionV3 features (about 3 min each on 2 CPU cores)."""
    _check_sample_quality(name)


@pytest.mark.parametrize("name", COLOUR)
def test_colour_cards_carry_fid(name):
    card = _card(name)
    assert {"fid"} | SAMPLE_QUALITY_KEYS <= set(card)
    assert 0 < card["fid"] < 500 and 0 <= card["precision"] <= 1 and 0 <= card["recall"] <= 1


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_card_accuracy_reproduces(name):
    from genzoo.recipes import evaluate

    m = genzoo.load(name)
    got = {x["key"]: x["value"] for x in evaluate(m, name)}
    assert set(got) == {"test_accuracy"}
    assert got["test_accuracy"] == pytest.approx(_card(name)["test_accuracy"], abs=1e-4)
    assert got["test_accuracy"] > 0.88
    with pytest.raises(NotImplementedError, match="does not sample"):
        m.sample(2)


@pytest.mark.parametrize("name", GANS)
def test_gan_checkpoint_samples_truncation_and_interpolation(name):
    m = genzoo.load(name)
    assert isinstance(m, GAN)
    s = m.sample(6, generator=torch.Generator().manual_seed(0), truncation=0.7)
    assert s.shape == (6, *m.image_shape) and 0 <= float(s.min()) and float(s.max()) <= 1
    assert m.interpolate(2, 4, generator=torch.Generator().manual_seed(0)).shape == (8, *m.image_shape)
    # the discriminator scores held-out real images above the EMA generator's samples on average
    real = torch.as_tensor(load_split(get_entry(name), "test").images[:256]).float() / 255
    fake = m.sample(256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float(m.discriminate(real).mean()) > float(m.discriminate(fake).mean())


@pytest.mark.parametrize("name", [n for n in GANS if get_entry(n).config.ogan_weight > 0])
def test_ogan_encoder_reconstructions_beat_random_codes(name):
    m = genzoo.load(name)
    x = torch.as_tensor(load_split(get_entry(name), "test").images[:500]).float() / 255
    z = m.encode(x)
    assert z.shape == (500, m.config.latent_dim)
    err = (m.reconstruct(x) - x).pow(2).mean()
    random_codes = (m.generate(m.sample_latents(500, torch.Generator().manual_seed(0))) - x).pow(2).mean()
    shuffled = (m.generate(z.roll(1, 0)) - x).pow(2).mean()
    assert err < 0.8 * random_codes and err < 0.8 * shuffled
    assert _card(name)["recon_mse"] == pytest.approx(float(
        _reconstruction_mse(m, load_split(get_entry(name), "test").images)), rel=1e-3)
    assert (bundled_dir() / name / "reconstructions.png").is_file()
