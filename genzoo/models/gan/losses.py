"""GAN losses as interchangeable objects, and the regularisers that go with them.

Every loss maps raw discriminator outputs ("logits", any shape; averaged over every element) to a
scalar that is *minimised*: ``discriminator_loss(real, fake)`` for D and ``generator_loss(fake)`` for G.

* ``NonSaturatingLoss`` — the original GAN (Goodfellow et al., arXiv 1406.2661) with the
  non-saturating generator loss: D ``softplus(−r) + softplus(f)``, G ``softplus(−f)``.
* ``LSGANLoss`` (Mao et al., arXiv 1611.04076), targets a=0, b=c=1: D ``½(r−1)² + ½f²``, G ``½(f−1)²``.
* ``WassersteinLoss`` (Arjovsky et al., arXiv 1701.07875): D ``f − r``, G ``−f``; Lipschitz by weight
  clipping (:func:`clip_weights`) or a gradient penalty (:func:`gradient_penalty`, WGAN-GP, arXiv 1704.00028).
* ``HingeLoss`` (Lim & Ye 2017; Miyato et al., arXiv 1802.05957): D ``relu(1−r) + relu(1+f)``, G ``−f``.
* ``FDivergenceLoss`` — f-GAN (Nowozin et al., arXiv 1606.00709, Table 2): with output activation ``g_f``
  and Fenchel conjugate ``f*``, D minimises ``−(E_P[g_f(r)] − E_Q[f*(g_f(f))])``, G minimises
  ``−E_Q[g_f(f)]`` (the paper's non-saturating generator objective). Divergences: ``"kl"``,
  ``"reverse_kl"``, ``"js"``, ``"pearson"``.

Regularisers: :func:`gradient_penalty` (on random interpolates), :func:`r1_penalty` (Mescheder et al.,
arXiv 1801.04406) and :func:`clip_weights`. Spectral normalisation uses
``torch.nn.utils.parametrizations.spectral_norm`` (power iteration; ``u``, ``v`` saved in the state dict).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GANLoss:
    """Base class: ``discriminator_loss(real, fake)`` and ``generator_loss(fake)``, both minimised."""

    name = "gan"

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        raise NotImplementedError

    def generator_loss(self, fake: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NonSaturatingLoss(GANLoss):
    name = "non_saturating"

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def generator_loss(self, fake: Tensor) -> Tensor:
        return F.softplus(-fake).mean()


class LSGANLoss(GANLoss):
    name = "lsgan"

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return 0.5 * (real - 1).pow(2).mean() + 0.5 * fake.pow(2).mean()

    def generator_loss(self, fake: Tensor) -> Tensor:
        return 0.5 * (fake - 1).pow(2).mean()


class WassersteinLoss(GANLoss):
    name = "wasserstein"

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return fake.mean() - real.mean()

    def generator_loss(self, fake: Tensor) -> Tensor:
        return -fake.mean()


class HingeLoss(GANLoss):
    name = "hinge"

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def generator_loss(self, fake: Tensor) -> Tensor:
        return -fake.mean()


# f-GAN Table 2: output activation g_f and Fenchel conjugate f* of each divergence
_LOG2 = math.log(2.0)
_DIVERGENCES: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "kl": (lambda v: v, lambda t: torch.exp(t - 1)),
    "reverse_kl": (lambda v: -torch.exp(-v), lambda t: -1 - torch.log(-t)),
    "pearson": (lambda v: v, lambda t: 0.25 * t * t + t),
    # JS: g_f(v) = log 2 − log(1 + e^{−v}); f*(g_f(v)) = −log(2 − e^{g_f(v)}) = softplus(v) − log 2
    "js": (lambda v: _LOG2 - F.softplus(-v), lambda t: -torch.log(2 - torch.exp(t))),
}


class FDivergenceLoss(GANLoss):
    """f-GAN variational divergence minimisation for ``divergence`` in kl, reverse_kl, js, pearson."""

    def __init__(self, divergence: str) -> None:
        if divergence not in _DIVERGENCES:
            raise ValueError(f"divergence must be one of {sorted(_DIVERGENCES)}, got {divergence!r}")
        self.divergence = divergence
        self.name = f"f_{divergence}"
        self.activation, self.conjugate = _DIVERGENCES[divergence]

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        if self.divergence == "js":  # the stable form of f*(g_f(v))
            conj = F.softplus(fake) - _LOG2
        else:
            conj = self.conjugate(self.activation(fake))
        return -(self.activation(real).mean() - conj.mean())

    def generator_loss(self, fake: Tensor) -> Tensor:
        return -self.activation(fake).mean()

    def __repr__(self) -> str:
        return f"FDivergenceLoss({self.divergence!r})"


LOSSES: dict[str, Callable[[], GANLoss]] = {
    "non_saturating": NonSaturatingLoss, "lsgan": LSGANLoss, "wasserstein": WassersteinLoss, "hinge": HingeLoss,
    **{f"f_{d}": (lambda d=d: FDivergenceLoss(d)) for d in _DIVERGENCES},
}


def make_loss(name: str) -> GANLoss:
    """A loss by name: non_saturating, lsgan, wasserstein, hinge, f_kl, f_reverse_kl, f_js, f_pearson."""
    if name not in LOSSES:
        raise ValueError(f"unknown GAN loss {name!r}; choose from {sorted(LOSSES)}")
    return LOSSES[name]()


# ---------------------------------------------------------------- regularisers
def gradient_penalty(discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None, target: float = 1.0) -> Tensor:
    """WGAN-GP: ``E[(‖∇_x̂ D(x̂)‖₂ − target)²]`` at ``x̂ = ε x_real + (1 − ε) x_fake``, ``ε ~ U(0, 1)`` per
    sample; differentiable (``create_graph``) so it trains D."""
    if real.shape != fake.shape:
        raise ValueError(f"real and fake batches differ in shape: {tuple(real.shape)} vs {tuple(fake.shape)}")
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), generator=generator, device=real.device,
                     dtype=real.dtype)
    x = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = discriminator(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - target).pow(2).mean()


def r1_penalty(discriminator: Callable[[Tensor], Tensor], real: Tensor) -> Tensor:
    """R1: ``E[‖∇_x D(x)‖²]`` on real data (multiply by γ/2); differentiable so it trains D."""
    x = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x).sum(), x, create_graph=True)
    return grad.flatten(1).pow(2).sum(1).mean()


@torch.no_grad()
def clip_weights(module: nn.Module, clip: float) -> None:
    """WGAN weight clipping: every parameter clamped to ``[−clip, clip]`` (call after each D step)."""
    if clip <= 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    for p in module.parameters():
        p.clamp_(-clip, clip)
