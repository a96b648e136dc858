"""GAN losses on hand-made logits, f-GAN optima, gradient penalty vs finite differences, spectral norm."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genzoo.models.gan.losses import (FDivergenceLoss, clip_weights, gradient_penalty, make_loss, r1_penalty)

R = torch.tensor([2.0, -1.0])  # real logits
Fk = torch.tensor([0.5, -3.0])  # fake logits


def sp(x):
    return math.log1p(math.exp(x))


@pytest.mark.parametrize("name, d_expected, g_expected", [
    ("non_saturating", ((sp(-2) + sp(1)) / 2 + (sp(0.5) + sp(-3)) / 2), (sp(-0.5) + sp(3)) / 2),
    ("lsgan", (0.5 * (1 + 4) / 2 + 0.5 * (0.25 + 9) / 2), 0.5 * (0.25 + 16) / 2),
    ("wasserstein", (-1.25 - 0.5), 1.25),
    ("hinge", ((0 + 2) / 2 + (1.5 + 0) / 2), 1.25),
    ("f_kl", -(0.5 - (math.exp(-0.5) + math.exp(-4)) / 2), -(-1.25)),
    ("f_pearson", -(0.5 - ((0.0625 + 0.5) + (2.25 - 3)) / 2), 1.25),
])
def test_losses_on_hand_made_logits(name, d_expected, g_expected):
    loss = make_loss(name)
    assert float(loss.discriminator_loss(R, Fk)) == pytest.approx(d_expected, rel=1e-6)
    assert float(loss.generator_loss(Fk)) == pytest.approx(g_expected, rel=1e-6)


def _two_point(p, q, v):
    """Logit batches whose empirical distributions are P = (p, 1-p) and Q = (q, 1-q) on two points
    (4 samples each), with logit v[i] at point i."""
    n = 4
    real = torch.tensor([v[0]] * round(p * n) + [v[1]] * round((1 - p) * n), dtype=torch.float64)
    fake = torch.tensor([v[0]] * round(q * n) + [v[1]] * round((1 - q) * n), dtype=torch.float64)
    return real, fake


@pytest.mark.parametrize("divergence", ["kl", "reverse_kl", "pearson", "js"])
def test_f_gan_discriminator_optimum_gives_the_divergence(divergence):
    p, q = [0.75, 0.25], [0.25, 0.75]
    ratio = [p[i] / q[i] for i in range(2)]
    optimum = {"kl": [1 + math.log(r) for r in ratio], "pearson": [2 * (r - 1) for r in ratio],
               "reverse_kl": [math.log(r) for r in ratio], "js": [math.log(r) for r in ratio]}[divergence]
    value = {"kl": sum(p[i] * math.log(p[i] / q[i]) for i in range(2)),
             "reverse_kl": sum(q[i] * math.log(q[i] / p[i]) for i in range(2)),
             "pearson": sum((p[i] - q[i]) ** 2 / q[i] for i in range(2)),
             "js": sum(p[i] * math.log(2 * p[i] / (p[i] + q[i])) + q[i] * math.log(2 * q[i] / (p[i] + q[i]))
                       for i in range(2))}[divergence]
    loss = FDivergenceLoss(divergence)
    real, fake = _two_point(p[0], q[0], optimum)
    assert -float(loss.discriminator_loss(real, fake)) == pytest.approx(value, rel=1e-9)
    # any other critic gives a smaller lower bound
    worse = _two_point(p[0], q[0], [optimum[0] - 0.3, optimum[1] + 0.2])
    assert -float(loss.discriminator_loss(*worse)) < value


def test_js_stable_form_equals_the_conjugate_formula():
    loss = FDivergenceLoss("js")
    v = torch.linspace(-5, 5, 11, dtype=torch.float64)
    naive = -(loss.activation(v).mean() - loss.conjugate(loss.activation(v)).mean())
    assert float(loss.discriminator_loss(v, v)) == pytest.approx(float(naive), rel=1e-12)


def test_unknown_loss_names_the_choices():
    with pytest.raises(ValueError, match="hinge"):
        make_loss("relativistic")
    with pytest.raises(ValueError, match="divergence"):
        FDivergenceLoss("hellinger")


def _critic():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(27, 1)).double()


def test_gradient_penalty_matches_finite_differences():
    d = _critic()
    real, fake = torch.randn(3, 1, 3, 3, dtype=torch.float64), torch.randn(3, 1, 3, 3, dtype=torch.float64)
    gp = gradient_penalty(d, real, fake, generator=torch.Generator().manual_seed(5))
    eps = torch.rand((3, 1, 1, 1), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x = eps * real + (1 - eps) * fake
    h = 1e-6
    norms = []
    for i in range(3):
        grad = torch.zeros(9, dtype=torch.float64)
        for j in range(9):
            e = torch.zeros(9, dtype=torch.float64)
            e[j] = h
            xp, xm = x[i].flatten() + e, x[i].flatten() - e
            grad[j] = (d(xp.view(1, 1, 3, 3)) - d(xm.view(1, 1, 3, 3))).item() / (2 * h)
        norms.append(grad.norm())
    expected = float(((torch.stack(norms) - 1) ** 2).mean())
    assert float(gp.detach()) == pytest.approx(expected, rel=1e-6)
    gp.backward()  # differentiable: trains the critic (the last bias does not affect input gradients)
    assert d[0].weight.grad.abs().sum() > 0 and d[3].weight.grad.abs().sum() > 0


def test_r1_penalty_closed_form():
    w = torch.tensor([[1.0, -2.0, 0.5]])

    def d(x):
        return (x * w).sum(1)
    real = torch.randn(4, 3)
    assert float(r1_penalty(d, real)) == pytest.approx(float((w ** 2).sum()), rel=1e-6)


def test_spectral_norm_estimate_converges_and_is_saved():
    torch.manual_seed(0)
    lin = nn.utils.parametrizations.spectral_norm(nn.Linear(6, 9))
    w = lin.parametrizations.weight.original.detach()
    for _ in range(50):  # one power iteration per training-mode forward
        lin(torch.randn(2, 6))
    assert float(torch.linalg.matrix_norm(lin.weight.detach(), 2)) == pytest.approx(1.0, abs=1e-4)
    sigma = float(torch.linalg.matrix_norm(w, 2))
    estimate = float((w / lin.weight.detach()).mean())
    assert estimate == pytest.approx(sigma, rel=1e-4)
    state = lin.state_dict()
    assert "parametrizations.weight.0._u" in state and "parametrizations.weight.0._v" in state


def test_clip_weights():
    d = _critic()
    clip_weights(d, 0.01)
    assert all(float(p.detach().abs().max()) <= 0.01 for p in d.parameters())
    with pytest.raises(ValueError):
        clip_weights(d, 0.0)
