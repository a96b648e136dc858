"""Observation models p(x|z) of the VAE family, over **discrete** 8-bit (2^num_bits bins) data.

Because every likelihood here is a probability mass function over the bins, a negative
log-likelihood in nats converts to bits/dim exactly as ``nll / (D ln 2)`` (no dequantisation term).

* Bernoulli on binarised pixels (Kingma & Welling, arXiv:1312.6114). Bits/dim are then bits per
  *binary* dimension.
* Discretised logistic, one logistic per subpixel, edge bins extended to ±inf (PixelCNN++,
  Salimans et al., arXiv:1701.05517).
* Discretised Gaussian: the same construction with the normal CDF.

Data convention: ``x`` in [0, 1] on the grid ``k / (2^num_bits - 1)``, ``k = 0 .. 2^num_bits - 1``;
bin ``k`` covers ``x ± 0.5 / (2^num_bits - 1)``, bin 0 extends to -inf and the last bin to +inf.
``loc`` is in the same [0, 1] units, ``log_scale`` is the log of the logistic scale / Gaussian
standard deviation in those units.

Numerics: the interior bin mass F(u) - F(l) is computed as ``log F(a) + log1mexp(log F(b) - log F(a))``
on the side of the distribution where F is small (using F(-t) = 1 - F(t) for the right half), so no
probability is ever formed by subtracting two numbers close to 1.
"""
from __future__ import annotations

import math
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Likelihood = Literal["bernoulli", "logistic", "gaussian"]
Binarize = Literal["none", "dynamic", "threshold"]

#: lower bound on log-scales in [0, 1] units: scale 3.4e-4 keeps 99.4 % of a bin's mass at its centre
MIN_LOG_SCALE = -8.0
#: the decoder's raw log-scale output is offset by this, so an untrained model starts at scale 0.1
#: (a quarter of the data range) instead of 1 (the whole range) and trains faster
LOG_SCALE_OFFSET = math.log(0.1)
#: log1mexp's argument is kept below this so that a bin whose mass underflows gives a finite
#: log-probability (about -27.6 nats below the CDF) and finite gradients
_MAX_LOG_RATIO = -1e-12


def log1mexp(d: Tensor) -> Tensor:
    """``log(1 - exp(d))`` for ``d <= 0``, stable at both ends (Mächler 2012).

    Both branches are evaluated on clamped inputs so the unused branch of ``torch.where`` never
    produces inf/NaN gradients.
    """
    d = d.clamp(max=_MAX_LOG_RATIO)
    ln_half = -math.log(2.0)
    near_zero = torch.log(-torch.expm1(d.clamp(min=ln_half)))
    far = torch.log1p(-torch.exp(d.clamp(max=ln_half)))
    return torch.where(d > ln_half, near_zero, far)


def _discretized_log_prob(x: Tensor, loc: Tensor, log_scale: Tensor, num_bits: int,
                          log_cdf: Callable[[Tensor], Tensor]) -> Tensor:
    bins = 2 ** num_bits - 1
    half_width = 0.5 / bins
    inv_scale = torch.exp(-log_scale)
    upper = (x - loc + half_width) * inv_scale  # standardised upper bin edge
    lower = (x - loc - half_width) * inv_scale  # standardised lower bin edge
    # interior bins: for bins right of the centre use 1 - F(t) = F(-t), so that F(a), F(b) are small
    right_half = (upper + lower) > 0
    a = torch.where(right_half, -lower, upper)
    b = torch.where(right_half, -upper, lower)
    log_fa = log_cdf(a)
    interior = log_fa + log1mexp(log_cdf(b) - log_fa)
    first = log_cdf(upper)  # bin 0 holds (-inf, upper]
    last = log_cdf(-lower)  # the last bin holds [lower, +inf)
    k = torch.round(x * bins)
    return torch.where(k <= 0, first, torch.where(k >= bins, last, interior))


def discretized_logistic_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor, num_bits: int = 8) -> Tensor:
    """Elementwise log P(x) under a logistic(mean, exp(log_scale)) discretised to 2^num_bits bins.

    All arguments broadcast; ``x`` in [0, 1] on the bin grid (see the module docstring). Returns
    log-probabilities (nats) of the same broadcast shape; they sum (in probability) to 1 over bins.
    """
    return _discretized_log_prob(x, mean, log_scale, num_bits, F.logsigmoid)


def discretized_gaussian_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor, num_bits: int = 8) -> Tensor:
    """Elementwise log P(x) under a N(mean, exp(log_scale)^2) discretised to 2^num_bits bins.

    Same conventions as :func:`discretized_logistic_log_prob`, with the normal CDF (``log_ndtr``).
    """
    return _discretized_log_prob(x, mean, log_scale, num_bits, torch.special.log_ndtr)


def bernoulli_log_prob(x: Tensor, logits: Tensor) -> Tensor:
    """Elementwise ``x log sigmoid(l) + (1 - x) log sigmoid(-l)`` for binary ``x``; same shape."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none")


class ImageLikelihood(nn.Module):
    """p(x|z) on top of a decoder: turns the decoder's raw output into a distribution over images.

    The decoder emits ``params_per_channel * C`` channels:

    * ``"bernoulli"``: C logits.
    * ``"logistic"``: C locations and C per-pixel log-scales (the decoder predicts the scale, so it can
      be sharp on the flat background and broad on edges; ``log_scale = raw + log 0.1``, ≥ -8).
    * ``"gaussian"``: C locations; the standard deviation is a learned per-channel parameter
      ``log_sigma`` (shape ``(C,)``), i.e. the classic homoscedastic Gaussian decoder, discretised.

    Binarisation (Bernoulli only): ``"dynamic"`` draws x ~ Bernoulli(intensity) afresh in training
    mode and thresholds at 0.5 in eval mode, so evaluation numbers are on a fixed, deterministic
    binarisation of the data; ``"threshold"`` always thresholds at 0.5; ``"none"`` requires data that
    is already binary (values 0 or 1) and raises otherwise.
    """

    def __init__(self, kind: Likelihood, in_channels: int, num_bits: int = 8, binarize: Binarize = "none") -> None:
        super().__init__()
        if kind not in ("bernoulli", "logistic", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli', 'logistic' or 'gaussian', got {kind!r}")
        if binarize not in ("none", "dynamic", "threshold"):
            raise ValueError(f"binarize must be 'none', 'dynamic' or 'threshold', got {binarize!r}")
        if binarize != "none" and kind != "bernoulli":
            raise ValueError(f"binarize={binarize!r} only applies to the Bernoulli likelihood, not {kind!r}")
        if not (isinstance(num_bits, int) and 1 <= num_bits <= 16):
            raise ValueError(f"num_bits must be an int in [1, 16], got {num_bits!r}")
        self.kind, self.in_channels, self.num_bits, self.binarize = kind, in_channels, num_bits, binarize
        self.params_per_channel = 2 if kind == "logistic" else 1
        if kind == "gaussian":
            self.log_sigma = nn.Parameter(torch.full((in_channels,), LOG_SCALE_OFFSET))

    def prepare(self, x: Tensor) -> Tensor:
        """The discrete targets for images ``x`` ``(B, C, H, W)`` in [0, 1] (same shape).

        Bernoulli: binarised as documented in the class; otherwise snapped to the 2^num_bits grid.
        """
        if self.kind != "bernoulli":
            bins = 2 ** self.num_bits - 1
            return torch.round(x * bins) / bins
        if self.binarize == "dynamic" and self.training:
            return torch.bernoulli(x)
        if self.binarize == "none":
            if not bool(((x == 0) | (x == 1)).all()):
                raise ValueError("the Bernoulli likelihood with binarize='none' needs binary images (0 or 1); "
                                 "set binarize='dynamic' or 'threshold' for grey-level data")
            return x
        return (x > 0.5).to(x.dtype)

    def _split(self, h: Tensor) -> tuple[Tensor, Tensor]:
        if self.kind == "logistic":
            loc, raw = h.chunk(2, dim=1)
            return loc, (raw + LOG_SCALE_OFFSET).clamp(min=MIN_LOG_SCALE)
        log_sigma = self.log_sigma.clamp(min=MIN_LOG_SCALE).view(1, -1, 1, 1)
        return h, log_sigma.expand_as(h)

    def log_prob(self, x: Tensor, h: Tensor) -> Tensor:
        """log p(x|z) in nats, ``(B,)``, for prepared targets ``x`` ``(B, C, H, W)`` and decoder output ``h``."""
        if self.kind == "bernoulli":
            lp = bernoulli_log_prob(x, h)
        elif self.kind == "logistic":
            lp = discretized_logistic_log_prob(x, *self._split(h), num_bits=self.num_bits)
        else:
            lp = discretized_gaussian_log_prob(x, *self._split(h), num_bits=self.num_bits)
        return lp.flatten(1).sum(1)

    def mean(self, h: Tensor) -> Tensor:
        """The image the decoder output ``h`` stands for, ``(B, C, H, W)`` in [0, 1].

        Bernoulli: the pixel probabilities; logistic/Gaussian: the location clamped to [0, 1] (the
        mode of the interior bins; the exact discretised mean differs only near the edges).
        """
        if self.kind == "bernoulli":
            return torch.sigmoid(h)
        return self._split(h)[0].clamp(0.0, 1.0)
