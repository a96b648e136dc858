"""What every flow model shares: the :class:`FlowModel` contract and the multi-scale architecture.

A flow maps images ``x`` in [0, 1] to a latent ``eps`` under a fixed base density (standard
Gaussian or logistic) through bijections, so ``log p(x) = log p_base(eps) + log|det d eps/dx|``
exactly. Likelihoods are densities on [0, 1]^D; bits/dim follow the discrete convention on
uniformly dequantised data (see :func:`genzoo.layers.dequantize` and
:func:`genzoo.metrics.bits_per_dim`): ``bpd = (-log p(x + u) + D num_bits ln 2) / (D ln 2)``.
"""
from __future__ import annotations

import logging
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...layers import Chain, Squeeze, ZeroConv2d, dequantize, merge_channels, split_channels
from ...layers.bijector import accum_dtype, sum_except_batch, zeros_log_det
from ...modeling import GenerativeModel

logger = logging.getLogger(__name__)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def base_log_prob(eps: Tensor, prior: Literal["gaussian", "logistic"]) -> Tensor:
    """Log-density ``(B,)`` of a standard Gaussian or standard logistic at ``eps`` ``(B, ...)``."""
    e = eps.to(accum_dtype(eps.dtype))
    if prior == "gaussian":
        return sum_except_batch(-0.5 * e * e - _HALF_LOG_2PI)
    return sum_except_batch(-F.softplus(e) - F.softplus(-e))


def base_sample(shape: tuple[int, ...], prior: Literal["gaussian", "logistic"], generator: torch.Generator | None,
                device: torch.device, dtype: torch.dtype) -> Tensor:
    if prior == "gaussian":
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype).clamp(1e-7, 1 - 1e-7)
    return torch.log(u) - torch.log1p(-u)


class FlowModel(GenerativeModel):
    """Base of NICE, RealNVP and Glow. Subclasses implement :meth:`_to_latent` and :meth:`_from_latent`.

    Config fields used here: ``in_channels``, ``image_size``, ``num_bits``; ``prior`` if present
    (default Gaussian).
    """

    @property
    def prior(self) -> Literal["gaussian", "logistic"]:
        return getattr(self.config, "prior", "gaussian")

    @property
    def num_dims(self) -> int:
        return math.prod(self.image_shape)

    # ---- subclass hooks -------------------------------------------------------------------
    def _to_latent(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(eps (B, D), log_det (B,))`` with ``log p(x) = log p_base(eps) + log_det``."""
        raise NotImplementedError

    def _from_latent(self, eps: Tensor, y: Tensor | None = None) -> Tensor:
        """Images ``(B, C, H, W)`` (unclamped) from latents ``eps`` ``(B, D)``."""
        raise NotImplementedError

    # ---- public API -------------------------------------------------------------------------
    def log_prob(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Log-density (nats) ``(B,)`` of images ``x`` ``(B, C, H, W)`` viewed as points of [0, 1]^D.

        Pass uniformly dequantised images for a likelihood of 8-bit data (:meth:`bits_per_dim`
        does that); ``y``: class labels ``(B,)`` for class-conditional models.
        """
        return self._log_prob(self.check_images(x), y)

    def _log_prob(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        eps, log_det = self._to_latent(x, y)
        return base_log_prob(eps, self.prior) + log_det

    def bits_per_dim(self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """Per-image bits/dim ``(B,)`` of 8-bit images ``x`` in [0, 1] under uniform dequantisation
        (one noise draw from ``generator``), in the discrete convention."""
        x = self.check_images(x)
        return self._bpd(self._log_prob(dequantize(x, self.config.num_bits, generator=generator), y))

    def _bpd(self, log_p: Tensor) -> Tensor:
        d = self.num_dims
        return (-log_p + d * self.config.num_bits * math.log(2)) / (d * math.log(2))

    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Latents ``(B, D)`` of images ``x`` ``(B, C, H, W)``, standardised under the prior (all scales
        concatenated); :meth:`decode` inverts it exactly."""
        return self._to_latent(self.check_images(x), y)[0]

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Images ``(B, C, H, W)`` in [0, 1] of latents ``z`` ``(B, D)``.

        Latents far outside the typical set (e.g. some at temperature 1) can make an affine coupling's
        inverse divide by a vanishing scale and overflow; such pixels (inf / nan) are returned as 0 or 1
        (nan: 0) and a warning says how many. Everything else is clamped to [0, 1].
        """
        if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[1] != self.num_dims:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"z has shape {shape}; {type(self).__name__} expects (B, {self.num_dims})")
        x = self._from_latent(z, y)
        bad = ~torch.isfinite(x)
        if bad.any():
            logger.warning("%d of %d decoded values overflowed (non-finite) in %d of %d images; set to 0 or 1",
                           int(bad.sum()), x.numel(), int(bad.flatten(1).any(1).sum()), x.shape[0])
            x = torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0)
        return x.clamp(0, 1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
               y: Tensor | None = None) -> Tensor:
        """``n`` images ``(n, C, H, W)`` in [0, 1] from latents ``eps ~ p_base`` scaled by ``temperature``."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if not temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        eps = base_sample((n, self.num_dims), self.prior, generator, self.device, self.dtype)
        return self.decode(eps * temperature, y)

    def loss(self, batch: Tensor) -> dict[str, Tensor]:
        """Mean bits/dim of the dequantised batch (torch's global RNG draws the noise)."""
        x = dequantize(self.check_images(batch, "batch"), self.config.num_bits)
        bpd = self._bpd(self._log_prob(x)).mean()
        return {"loss": bpd, "bpd": bpd.detach()}

    @torch.no_grad()
    def data_init(self, batch: Tensor) -> None:
        """Run one forward pass in training mode so every ActNorm initialises from data."""
        self.loss(batch)


class SplitPrior(nn.Module):
    """Glow's learned conditional prior for a factored-out half: ``(mean, log_scale) = ZeroConv(z_kept)``."""

    def __init__(self, kept_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ZeroConv2d(kept_channels, 2 * out_channels)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        mean, logs = self.conv(h).chunk(2, dim=1)
        return mean, logs


class MultiscaleFlow(nn.Module):
    """Levels of bijectors with a factor-out after each level but the last (RealNVP §3.6).

    After level ``i < L-1`` the second half of the channels leaves the flow; its prior is standard
    (``split_priors[i] is None``) or conditioned on the kept half (:class:`SplitPrior`). Factored-out
    latents are standardised, so ``forward`` returns ``(eps_list, h_top, log_det)`` with every
    ``eps`` standard under the base density, and ``h_top`` the unstandardised last level.
    """

    def __init__(self, levels: list[Chain], split_priors: list[nn.Module | None], in_shape: tuple[int, int, int]) -> None:
        super().__init__()
        if len(split_priors) != len(levels) - 1:
            raise ValueError("need one split prior per level but the last")
        self.levels = nn.ModuleList(levels)
        self.split_priors = nn.ModuleList([p if p is not None else nn.Identity() for p in split_priors])
        self._learned = [p is not None for p in split_priors]
        c, h, w = in_shape
        self.latent_shapes: list[tuple[int, int, int]] = []
        for i, level in enumerate(levels):
            for b in level.bijectors:
                if isinstance(b, Squeeze):
                    c, h, w = c * b.factor ** 2, h // b.factor, w // b.factor
            if i < len(levels) - 1:
                self.latent_shapes.append((c // 2, h, w))
                c -= c // 2
        self.latent_shapes.append((c, h, w))

    def _prior(self, i: int, h: Tensor) -> tuple[Tensor, Tensor] | None:
        return self.split_priors[i](h) if self._learned[i] else None

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        log_det = zeros_log_det(x)
        eps_list: list[Tensor] = []
        h = x
        for i, level in enumerate(self.levels):
            h, ld = level(h)
            log_det = log_det + ld
            if i < len(self.levels) - 1:
                h, z = split_channels(h)
                prior = self._prior(i, h)
                if prior is not None:
                    mean, logs = prior
                    z = (z - mean) * torch.exp(-logs)
                    log_det = log_det - sum_except_batch(logs)
                eps_list.append(z)
        return eps_list, h, log_det

    def inverse(self, eps_list: list[Tensor], h_top: Tensor) -> Tensor:
        h = h_top
        for i in reversed(range(len(self.levels))):
            if i < len(self.levels) - 1:
                z = eps_list[i]
                prior = self._prior(i, h)
                if prior is not None:
                    mean, logs = prior
                    z = z * torch.exp(logs) + mean
                h = merge_channels(h, z)
            h, _ = self.levels[i].inverse(h)
        return h

    def flatten(self, eps_list: list[Tensor], top: Tensor) -> Tensor:
        return torch.cat([e.flatten(1) for e in [*eps_list, top]], dim=1)

    def unflatten(self, eps: Tensor) -> tuple[list[Tensor], Tensor]:
        parts, i = [], 0
        for shape in self.latent_shapes:
            n = math.prod(shape)
            parts.append(eps[:, i:i + n].reshape(eps.shape[0], *shape))
            i += n
        return parts[:-1], parts[-1]


def check_divisible(name: str, image_size: int, num_squeezes: int) -> None:
    if image_size % (2 ** num_squeezes):
        raise ValueError(f"{name}: image_size {image_size} must be divisible by 2^{num_squeezes} "
                         f"({num_squeezes} squeeze operations)")
