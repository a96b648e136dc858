"""VAE family: likelihood maths, KL, IWAE bounds, Gumbel-softmax, and the model contract."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import genzoo
from genzoo.metrics import importance_sampled_nll
from genzoo.modeling import load_from_folder
from genzoo.models import VAE, CategoricalVAE, CategoricalVAEConfig, VAEConfig
from genzoo.models.vae import (bernoulli_log_prob, discretized_gaussian_log_prob, discretized_logistic_log_prob,
                               gumbel_softmax)

TINY = dict(image_size=8, hidden_channels=(8, 16), num_res_blocks=1)
GRID = torch.arange(256, dtype=torch.float64) / 255  # every 8-bit value in [0, 1]


def tiny_vae(**kw) -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(**{**TINY, "latent_dim": 4, **kw}))


def tiny_cat(**kw) -> CategoricalVAE:
    torch.manual_seed(0)
    return CategoricalVAE(CategoricalVAEConfig(**{**TINY, "num_latents": 3, "num_categories": 4, **kw}))


def images(b: int = 4, c: int = 1, s: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, s, s), generator=g).float() / 255


# ---------------------------------------------------------------- likelihood functions
def _brute_force(cdf, x, mean, log_scale):
    """P(bin) = CDF(upper) - CDF(lower), edges to ±inf, plainly in float64."""
    hw, s = 0.5 / 255, torch.exp(log_scale)
    upper = torch.where(x >= 1, torch.ones_like(x), cdf((x + hw - mean) / s))
    lower = torch.where(x <= 0, torch.zeros_like(x), cdf((x - hw - mean) / s))
    return upper - lower


@pytest.mark.parametrize("fn, cdf", [
    (discretized_logistic_log_prob, torch.sigmoid),
    (discretized_gaussian_log_prob, lambda t: 0.5 * (1 + torch.erf(t / math.sqrt(2)))),
])
def test_discretized_likelihood_normalised_and_matches_cdf_difference(fn, cdf):
    g = torch.Generator().manual_seed(0)
    mean = (torch.rand(50, 1, generator=g, dtype=torch.float64) * 1.4 - 0.2)
    log_scale = torch.rand(50, 1, generator=g, dtype=torch.float64) * 7 - 6  # scales 2.5e-3 .. 2.7
    lp = fn(GRID, mean, log_scale)                                          # (50, 256)
    assert torch.allclose(torch.logsumexp(lp, dim=1), torch.zeros(50, dtype=torch.float64), atol=1e-9)
    brute = _brute_force(cdf, GRID, mean, log_scale)
    ok = brute > 1e-12  # where plain subtraction is still accurate
    assert torch.allclose(lp.exp()[ok], brute[ok], rtol=1e-6, atol=1e-12)
    # float32 agrees with float64 and sums to one too
    lp32 = fn(GRID.float(), mean.float(), log_scale.float())
    assert torch.allclose(torch.logsumexp(lp32, 1).double(), torch.zeros(50, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(lp32.exp().double(), lp.exp(), atol=1e-5)


@pytest.mark.parametrize("fn", [discretized_logistic_log_prob, discretized_gaussian_log_prob])
def test_discretized_likelihood_stable_in_the_tails(fn):
    """Far-tail bins and very sharp or very broad scales: finite values and gradients in float32."""
    x = torch.tensor([0.0, 1.0, 0.5, 0.5, 0.2, 1.0, 0.0, 0.9])
    mean = torch.tensor([2.0, -1.0, -3.0, 4.0, 0.2, 1.0, 0.0, 0.1], requires_grad=True)
    log_scale = torch.tensor([-8.0, -8.0, -6.0, -6.0, -8.0, -8.0, 3.0, -4.0], requires_grad=True)
    lp = fn(x, mean, log_scale)
    ref = fn(x.double(), mean.double(), log_scale.double())
    assert torch.isfinite(lp).all() and (lp <= 0).all()
    assert torch.allclose(lp.double(), ref, rtol=1e-4)
    lp.sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()


def test_bernoulli_log_prob_matches_torch_distributions():
    logits = torch.randn(3, 1, 4, 4) * 5
    x = torch.bernoulli(torch.rand(3, 1, 4, 4))
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x)
    assert torch.allclose(bernoulli_log_prob(x, logits), expected, atol=1e-6)


def test_analytic_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    analytic = VAE.kl_divergence(mu, logvar).sum(-1)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z)).sum(-1).mean(0)
    assert torch.allclose(mc, analytic, atol=0.05 + 0.02 * analytic.max().item())


# ---------------------------------------------------------------- exact and bound relations
def test_prior_posterior_and_ignored_latent_make_all_bounds_equal():
    m = tiny_vae().eval()
    with torch.no_grad():
        m.encoder.net[-1].weight.zero_(); m.encoder.net[-1].bias.zero_()  # q(z|x) = N(0, I) = p(z)
        m.decoder.linear.weight.zero_()                                     # p(x|z) does not depend on z
    x = images(3)
    mu, logvar = m.posterior(x)
    assert torch.equal(mu, torch.zeros_like(mu)) and torch.equal(logvar, torch.zeros_like(logvar))
    with torch.no_grad():
        elbo = m.elbo(x)
        log_px = m.log_px_given_z(x, torch.randn(3, 4))
        assert torch.allclose(elbo, log_px, atol=1e-3)
        assert float(m.loss(x)["kl"]) == 0.0
        for k in (1, 7, 30):
            res = importance_sampled_nll(m, x, num_samples=k, chunk_size=4)
            assert res["nll"] == pytest.approx(-float(elbo.mean()), abs=1e-3)


def _train(model, data, steps=150, lr=3e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    torch.manual_seed(0)
    for step in range(steps):
        if hasattr(model, "on_train_step"):
            model.on_train_step(step, steps)
        batch = data[torch.randint(0, len(data), (32,))]
        loss = model.loss(batch)["loss"]
        opt.zero_grad(); loss.backward(); opt.step()
    return model.eval()


def _blobs(n=64, seed=0):
    """Bright squares at random places on a dark background, 8-bit, (n, 1, 8, 8)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 8, 8)
    for i, (r, c) in enumerate(torch.randint(0, 5, (n, 2), generator=g).tolist()):
        x[i, 0, r:r + 4, c:c + 4] = 200 / 255
    return x


def test_iwae_bound_tightens_with_k_on_a_trained_model():
    data = _blobs()
    m = _train(tiny_vae(latent_dim=2), data, steps=100)
    x = data[:16]
    nll = {k: importance_sampled_nll(m, x, num_samples=k, chunk_size=50, generator=torch.Generator().manual_seed(1))
           for k in (1, 10, 100)}
    assert nll[1]["nll"] == pytest.approx(-nll[1]["elbo"], abs=1e-6)  # k = 1 is the ELBO
    assert nll[100]["nll"] < -nll[100]["elbo"]
    assert nll[100]["nll"] <= nll[10]["nll"] + 0.2 <= nll[1]["nll"] + 0.4
    assert nll[100]["nll"] < nll[1]["nll"] - 0.3


def test_categorical_iwae_converges_to_exact_likelihood():
    """With 3 latents x 4 categories log p(x) can be enumerated (64 codes): IWAE -> exact, ELBO below it."""
    m = _train(tiny_cat(), _blobs(), steps=60)
    x = _blobs(8, seed=3)
    codes = torch.cartesian_prod(*[torch.arange(4)] * 3)  # (64, 3)
    with torch.no_grad():
        log_px = torch.stack([m.log_px_given_z(x, c.expand(8, 3).contiguous()) for c in codes]).double()
        exact = torch.logsumexp(log_px, 0) - 3 * math.log(4)                       # log p(x), (8,)
        log_q = m.posterior(x).double()                                            # (8, 3, 4)
        log_qz = log_q[:, torch.arange(3), codes].sum(-1).T                        # (64, 8)
        exact_elbo = (log_qz.exp() * (log_px - 3 * math.log(4) - log_qz)).sum(0)   # E_q[log p(x,z) - log q]
        torch.manual_seed(0)
        mc_elbo = m.elbo(x.repeat(400, 1, 1, 1)).view(400, 8).double().mean(0)
    assert (exact_elbo <= exact + 1e-6).all()
    assert torch.allclose(mc_elbo, exact_elbo, atol=0.05 * float(exact_elbo.abs().mean()) ** 0.5 + 0.3)
    res = importance_sampled_nll(m, x, num_samples=3000, chunk_size=1000, generator=torch.Generator().manual_seed(0))
    assert res["nll"] == pytest.approx(-float(exact.mean()), abs=0.05)


# ---------------------------------------------------------------- Gumbel-softmax
def test_gumbel_softmax_relaxed_samples_on_simplex():
    logits = torch.randn(100, 6, 5)
    for tau in (0.1, 1.0, 5.0):
        y = gumbel_softmax(logits, tau, generator=torch.Generator().manual_seed(0))
        assert (y >= 0).all() and torch.allclose(y.sum(-1), torch.ones(100, 6), atol=1e-5)
    low, high = (gumbel_softmax(logits, t, generator=torch.Generator().manual_seed(0)).max(-1).values.mean()
                 for t in (0.1, 5.0))
    assert low > high  # low temperature is closer to one-hot


def test_straight_through_is_one_hot_with_gradients():
    logits = torch.randn(4, 3, 5, requires_grad=True)
    y = gumbel_softmax(logits, 0.7, hard=True)
    assert torch.allclose(y.detach(), F.one_hot(y.detach().argmax(-1), 5).float(), atol=1e-6)
    (y * torch.randn_like(y)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_hard_samples_follow_the_softmax():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    y = gumbel_softmax(probs.log().expand(40_000, 4), 1.0, hard=True, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(y.mean(0), probs, atol=0.01)


def test_temperature_annealing_schedule():
    m = tiny_cat(tau_init=2.0, tau_min=0.5, anneal_rate=1e-3)
    assert float(m.tau) == 2.0
    assert m.temperature_at(0) == 2.0
    assert m.temperature_at(500) == pytest.approx(2.0 * math.exp(-0.5))
    assert m.temperature_at(10_000) == 0.5  # floor
    m.on_train_step(700, 1000)
    assert float(m.tau) == pytest.approx(2.0 * math.exp(-0.7))
    assert "tau" in m.state_dict()


# ---------------------------------------------------------------- model contract (both families)
MODELS = {
    "vae-logistic": lambda: tiny_vae(),
    "vae-gaussian": lambda: tiny_vae(likelihood="gaussian", upsample="transposed"),
    "vae-bernoulli": lambda: tiny_vae(likelihood="bernoulli", binarize="dynamic", free_bits=0.1),
    "cat-relaxed": lambda: tiny_cat(),
    "cat-st-rgb": lambda: tiny_cat(in_channels=3, straight_through=True, likelihood="gaussian"),
}


@pytest.mark.parametrize("name", MODELS)
def test_loss_finite_and_every_parameter_gets_a_gradient(name):
    m = MODELS[name]().train()
    x = images(4, c=m.image_shape[0])
    out = m.loss(x)
    assert set(out) == {"loss", "nll_elbo_bpd", "recon", "kl"}
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


@pytest.mark.parametrize("name", MODELS)
def test_sample_encode_decode_and_save_load(name, tmp_path):
    m = MODELS[name]().eval()
    c = m.image_shape[0]
    s = m.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, c, 8, 8) and s.min() >= 0 and s.max() <= 1
    assert torch.equal(s, m.sample(5, generator=torch.Generator().manual_seed(0)))
    x = images(3, c=c)
    z = m.encode(x)
    if isinstance(m, VAE):
        assert z.shape == (3, 4) and z.dtype == torch.float32
    else:
        assert z.shape == (3, 3) and z.dtype == torch.int64
        assert torch.equal(m.decode(z), m.decode(F.one_hot(z, 4).float()))
    assert m.decode(z).shape == (3, c, 8, 8)
    if isinstance(m, CategoricalVAE):
        m.on_train_step(5000, 10_000)
    m.save_pretrained(tmp_path)
    loaded = load_from_folder(tmp_path)
    assert type(loaded) is type(m) and loaded.config == m.config
    assert torch.equal(loaded.sample(5, generator=torch.Generator().manual_seed(0)), m.sample(5, generator=torch.Generator().manual_seed(0)))
    gen = [torch.Generator().manual_seed(2) for _ in range(2)]
    assert torch.equal(loaded.importance_log_weights(x, 3, gen[0]), m.importance_log_weights(x, 3, gen[1]))
    if isinstance(m, CategoricalVAE):
        assert float(loaded.tau) == float(m.tau) < m.config.tau_init


@pytest.mark.parametrize("name", ["vae-logistic", "cat-relaxed"])
def test_invalid_inputs_raise_clear_errors(name):
    m = MODELS[name]()
    good = images(2)
    for method in (m.encode, m.loss, m.elbo, lambda x: m.importance_log_weights(x, 2)):
        with pytest.raises(ValueError, match="shape"):
            method(torch.rand(2, 3, 8, 8))
        with pytest.raises(ValueError, match="shape"):
            method(torch.rand(1, 8, 8))
        with pytest.raises(ValueError, match="dtype"):
            method((good * 255).to(torch.uint8))
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            method(good * 255)
    with pytest.raises(ValueError, match="n must"):
        m.sample(0)
    with pytest.raises(ValueError, match="expect|expected"):
        m.decode(torch.zeros(2, 7))


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        VAE(VAEConfig(image_size=30))
    with pytest.raises(ValueError, match="binary"):
        tiny_vae(likelihood="bernoulli").loss(images(2))
    with pytest.raises(ValueError, match="only applies"):
        tiny_vae(binarize="dynamic")
    with pytest.raises(ValueError, match="tau_min"):
        tiny_cat(tau_min=2.0)


@pytest.mark.parametrize("c, s", [(1, 28), (3, 32), (3, 64)])
def test_default_architecture_at_supported_resolutions(c, s):
    m = genzoo.create("vae", in_channels=c, image_size=s, hidden_channels=(8, 16, 32), latent_dim=8)
    assert m.decoder.size == s // 4
    assert m.elbo(images(2, c=c, s=s)).shape == (2,)
    assert "vae" in genzoo.list_models() and "categorical-vae" in genzoo.list_models()
