"""Flow models: exact likelihoods, the model contract, sampling, training options and errors."""
from __future__ import annotations

import math

import pytest
import torch

import genzoo
from genzoo.hub import CheckpointNotFoundError
from genzoo.metrics import dequantized_bpd
from genzoo.models import NICE, FlowModel, Glow, GlowConfig, NICEConfig, RealNVP, RealNVPConfig

TINY = {
    "glow": (Glow, GlowConfig(in_channels=1, image_size=8, num_levels=2, num_steps=2, hidden_channels=8)),
    "glow-additive-plain": (Glow, GlowConfig(in_channels=3, image_size=4, num_levels=2, num_steps=1, hidden_channels=4,
                                             coupling="additive", lu_decomposed=False, split_prior="standard",
                                             learn_top=False)),
    "glow-logit": (Glow, GlowConfig(in_channels=2, image_size=4, num_levels=1, num_steps=2, hidden_channels=4,
                                    preprocess="logit", logit_alpha=0.05)),
    "glow-classes": (Glow, GlowConfig(in_channels=1, image_size=4, num_levels=1, num_steps=2, hidden_channels=4,
                                      num_classes=3)),
    "realnvp": (RealNVP, RealNVPConfig(in_channels=1, image_size=8, num_scales=2, hidden_channels=4, num_blocks=1)),
    "realnvp-actnorm": (RealNVP, RealNVPConfig(in_channels=2, image_size=4, num_scales=2, hidden_channels=4,
                                               num_blocks=1, flow_norm="actnorm", net_norm="none")),
    "nice": (NICE, NICEConfig(in_channels=1, image_size=4, hidden_features=8, num_hidden_layers=2)),
    "nice-gaussian": (NICE, NICEConfig(in_channels=3, image_size=2, hidden_features=8, num_hidden_layers=1,
                                       prior="gaussian")),
}


def _tiny(name: str, dtype=torch.float32, perturb: bool = True) -> FlowModel:
    cls, cfg = TINY[name]
    torch.manual_seed(0)
    m = cls(cfg).to(dtype)
    x = torch.rand(16, *m.image_shape, dtype=dtype)
    m.train()
    m.data_init(x)
    if perturb:  # off the identity initialisation, so every term of the log-det is exercised
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m.eval()


@pytest.mark.parametrize("name", sorted(TINY))
def test_model_log_det_equals_brute_force_jacobian(name):
    m = _tiny(name, torch.float64)
    x = torch.rand(2, *m.image_shape, dtype=torch.float64)
    y = torch.tensor([0, 2]) if name == "glow-classes" else None
    eps, log_det = m._to_latent(x, y)
    assert eps.shape == (2, m.num_dims) and log_det.shape == (2,)
    for i in range(2):
        yi = None if y is None else y[i:i + 1]
        jac = torch.autograd.functional.jacobian(
            lambda v: m._to_latent(v.reshape(1, *m.image_shape), yi)[0].reshape(-1), x[i].reshape(-1))
        assert float(log_det[i]) == pytest.approx(float(torch.linalg.slogdet(jac)[1]), abs=1e-7)
    torch.testing.assert_close(m._from_latent(eps, y), x, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", sorted(TINY))
def test_loss_finite_and_every_parameter_gets_a_gradient(name):
    m = _tiny(name).train()
    out = m.loss(torch.rand(8, *m.image_shape))
    assert set(out) >= {"loss", "bpd"} and torch.isfinite(out["loss"])
    out["loss"].backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert sum(float(p.grad.abs().sum()) for p in m.parameters()) > 0


@pytest.mark.parametrize("name", sorted(TINY))
def test_sample_encode_decode_and_save_load(name, tmp_path):
    m = _tiny(name)
    kw = {"y": torch.tensor([0, 1, 2, 1])} if name == "glow-classes" else {}
    a = m.sample(4, generator=torch.Generator().manual_seed(0), **kw)
    b = m.sample(4, generator=torch.Generator().manual_seed(0), **kw)
    c = m.sample(4, generator=torch.Generator().manual_seed(1), **kw)
    assert a.shape == (4, *m.image_shape) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    x = torch.rand(4, *m.image_shape) * 0.8 + 0.1
    torch.testing.assert_close(m.decode(m.encode(x, **kw), **kw), x, atol=1e-4, rtol=1e-4)
    m.save_pretrained(tmp_path)
    again = type(m).from_pretrained(tmp_path)
    assert torch.equal(again.sample(4, generator=torch.Generator().manual_seed(0), **kw), a)
    assert torch.equal(again.log_prob(x, **kw), m.log_prob(x, **kw))


def test_temperature_zero_is_the_mode_and_temperature_scales_latents():
    m = _tiny("glow")
    a = m.sample(2, generator=torch.Generator().manual_seed(0), temperature=0.0)
    b = m.sample(2, generator=torch.Generator().manual_seed(5), temperature=0.0)
    assert torch.equal(a, b) and torch.equal(a[0], a[1])
    eps = m.encode(m.sample(3, generator=torch.Generator().manual_seed(0), temperature=0.5))
    ref = 0.5 * torch.randn((3, m.num_dims), generator=torch.Generator().manual_seed(0))
    inside = (m.decode(ref) > 0.01) & (m.decode(ref) < 0.99)  # clamping at [0, 1] is not invertible
    if inside.all():
        torch.testing.assert_close(eps, ref, atol=1e-4, rtol=1e-4)


def test_bits_per_dim_of_identity_flow_matches_closed_form():
    """A new additive Glow is the identity up to a rotation (ActNorm not yet initialised, zero-initialised
    couplings and priors), and a standard Gaussian is rotation invariant: log p(x) is exactly
    sum_i log N(x_i - 1/2; 0, 1), and on uniform 8-bit data the dequantised bits/dim has expectation
    (1/2 log 2 pi + 1/24 + ln 256) / ln 2."""
    torch.manual_seed(0)
    m = Glow(GlowConfig(in_channels=1, image_size=8, num_levels=2, num_steps=2, hidden_channels=8,
                        coupling="additive")).double().eval()
    x = torch.rand(10, 1, 8, 8, dtype=torch.float64)
    ref = (-0.5 * (x - 0.5) ** 2 - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
    # the 1x1 convs are float32 rotations cast to float64: orthogonal to ~1e-7, not exactly
    torch.testing.assert_close(m.log_prob(x), ref, atol=1e-4, rtol=0)
    images = torch.randint(0, 256, (4000, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    res = dequantized_bpd(m, images, seed=0)
    expected = (0.5 * math.log(2 * math.pi) + 1 / 24 + math.log(256)) / math.log(2)
    assert res["bpd"] == pytest.approx(expected, abs=4 * res["stderr"] + 1e-3)
    assert res["num_images"] == 4000 and res["bpd"] == dequantized_bpd(m, images, seed=0)["bpd"]


def test_nice_identity_with_logistic_prior_closed_form():
    m = NICE(NICEConfig(in_channels=1, image_size=4, hidden_features=8, num_hidden_layers=2)).double().eval()
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64)
    ref = (-x - 2 * torch.nn.functional.softplus(-x)).flatten(1).sum(1)  # log sigmoid'(x)
    torch.testing.assert_close(m.log_prob(x), ref, atol=1e-10, rtol=1e-10)


def test_class_conditional_glow_marginal_likelihood():
    m = _tiny("glow-classes", torch.float64)
    x = torch.rand(3, *m.image_shape, dtype=torch.float64)
    per_class = torch.stack([m.log_prob(x, torch.full((3,), k)) for k in range(3)])
    torch.testing.assert_close(m.log_prob(x), torch.logsumexp(per_class, 0) - math.log(3))
    assert not torch.allclose(per_class[0], per_class[1])
    with pytest.raises(ValueError, match="labels"):
        m.log_prob(x, torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="class-conditional"):
        m.sample(2)


def test_memory_saving_model_gradients_match():
    grads = []
    for saving in (False, True):
        torch.manual_seed(0)
        m = Glow(GlowConfig(in_channels=1, image_size=8, num_levels=2, num_steps=3, hidden_channels=8,
                            memory_saving=saving)).double()
        x = torch.rand(8, 1, 8, 8, dtype=torch.float64)
        m.data_init(x)
        torch.manual_seed(1)
        m.loss(x)["loss"].backward()
        grads.append([p.grad for p in m.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_sampling_does_not_recompute_inverses():
    m = _tiny("glow")
    from genzoo.layers import ActNormInvConv

    m.sample(2)
    caches = [mod.cache for mod in m.modules() if isinstance(mod, ActNormInvConv)]
    misses = [c.misses for c in caches]
    assert all(k == 1 for k in misses)
    m.sample(2)
    m.sample(3)
    assert [c.misses for c in caches] == misses


def test_torch_compile_matches_eager():
    m = _tiny("glow")
    x = torch.rand(4, *m.image_shape)
    eager = m.log_prob(x)
    compiled = torch.compile(m._to_latent, dynamic=False)
    eps, log_det = compiled(x)
    from genzoo.models.flows.common import base_log_prob

    torch.testing.assert_close(base_log_prob(eps, m.prior) + log_det, eager, atol=1e-4, rtol=1e-5)


def test_training_reduces_bpd():
    torch.manual_seed(0)
    m = Glow(GlowConfig(in_channels=1, image_size=8, num_levels=2, num_steps=2, hidden_channels=16))
    data = (torch.rand(256, 1, 8, 8) > 0.7).to(torch.uint8) * 200
    before = dequantized_bpd(m, data)["bpd"]
    genzoo.train(m, data, steps=60, batch_size=64, lr=3e-3, warmup_steps=5, progress=False, ema_decay=0.0)
    after = dequantized_bpd(m, data)["bpd"]
    assert after < before - 1.0


@pytest.mark.parametrize("cls,cfg,match", [
    (Glow, GlowConfig(image_size=28, num_levels=3), "divisible by 2"),
    (RealNVP, RealNVPConfig(memory_saving=True), "memory_saving"),
    (Glow, GlowConfig(num_steps=0), "num_steps"),
])
def test_config_errors(cls, cfg, match):
    with pytest.raises(ValueError, match=match):
        cls(cfg)


def test_input_errors():
    m = _tiny("glow")
    with pytest.raises(ValueError, match="expects"):
        m.log_prob(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m.log_prob(torch.rand(2, 1, 8, 8) * 3)
    with pytest.raises(ValueError, match="expects"):
        m.decode(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="temperature"):
        m.sample(2, temperature=-1.0)


@pytest.mark.parametrize("name", ["glow-celeba", "glow-cifar10", "realnvp-celeba"])
def test_paper_presets_say_weights_are_not_published(name):
    with pytest.raises(CheckpointNotFoundError, match=rf"not published yet.*genzoo train {name}"):
        genzoo.load(name)
    m = genzoo.create(name, num_steps=1) if name.startswith("glow") else genzoo.create(name, num_blocks=1)
    assert isinstance(m, FlowModel)


@pytest.mark.parametrize("name", ["glow", "realnvp", "nice"])
def test_paper_architectures_build(name):
    m = genzoo.create(name)
    assert m.sample(1, generator=torch.Generator().manual_seed(0)).shape == (1, *m.image_shape)


@pytest.mark.parametrize("name", ["glow-celeba", "glow-cifar10", "realnvp-celeba"])
def test_unpublished_preset_cards_are_current(name, tmp_path):
    """The committed card of a paper preset says the weights are not published and matches the registry."""
    from genzoo.hub import bundled_dir, read_card_metadata
    from genzoo.modeling import config_from_dict
    from genzoo.recipes import write_unpublished_card
    from genzoo.registry import get_entry

    folder = bundled_dir() / name
    assert not (folder / "model.safetensors").exists()
    text = (folder / "README.md").read_text()
    assert "Weights not published yet" in text and f"genzoo train {name}" in text
    assert read_card_metadata(folder)["datasets"] == [get_entry(name).dataset]
    write_unpublished_card(name, tmp_path)
    assert (tmp_path / "README.md").read_text() == text
    import json

    cfg = json.loads((folder / "config.json").read_text())
    assert config_from_dict(get_entry(name).model_class.config_class, cfg["config"]) == get_entry(name).config


def test_decode_overflow_gives_valid_images(caplog):
    """A latent far outside the typical set makes the affine inverse overflow: decode still returns
    images in [0, 1] and says so."""
    m = _tiny("glow")
    with torch.no_grad():
        for mod in m.modules():
            if hasattr(mod, "conv") and isinstance(getattr(mod, "logs", None), torch.nn.Parameter):
                mod.conv.bias.fill_(-40.0)  # coupling scales sigmoid(-38): the inverse divides by ~3e-17
    z = torch.full((2, m.num_dims), 30.0)
    with caplog.at_level("WARNING"):
        x = m.decode(z)
    assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1
    assert "overflowed" in caplog.text
