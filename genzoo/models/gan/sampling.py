"""Latent sampling for GANs: Gaussian or spherical latents, truncation, linear and spherical interpolation.

* ``sample_latents(n, dim, distribution="gaussian" | "sphere", truncation=None, generator=None)``: standard
  normal latents, or points uniform on the sphere of radius ``sqrt(dim)`` (where Gaussian latents
  concentrate). With ``truncation = t`` (Gaussian only), every coordinate with ``|z_i| > t`` is redrawn
  until it falls inside, the truncation trick of BigGAN (Brock et al., arXiv 1809.11096).
* ``slerp(a, b, t)``: spherical linear interpolation (Shoemake 1985; White, arXiv 1609.04468), which keeps
  interpolants at the typical norm of Gaussian latents; ``lerp`` for comparison.
* ``interpolation_grid(z0, z1, steps, mode)``: ``(rows, steps, dim)`` latents from each row of ``z0`` to ``z1``.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Distribution = Literal["gaussian", "sphere"]


def sample_latents(n: int, dim: int, distribution: Distribution = "gaussian", truncation: float | None = None,
                   generator: torch.Generator | None = None, device: torch.device | str | None = None,
                   max_redraws: int = 1000) -> Tensor:
    """``(n, dim)`` latents; seeded by ``generator`` (on ``device``)."""
    if n < 0 or dim < 1:
        raise ValueError(f"need n >= 0 and dim >= 1, got n={n}, dim={dim}")
    if distribution not in ("gaussian", "sphere"):
        raise ValueError(f"distribution must be 'gaussian' or 'sphere', got {distribution!r}")
    z = torch.randn(n, dim, generator=generator, device=device)
    if distribution == "sphere":
        if truncation is not None:
            raise ValueError("truncation applies to Gaussian latents; spherical latents have a fixed norm")
        return z / z.norm(dim=1, keepdim=True).clamp_min(1e-12) * dim ** 0.5
    if truncation is not None:
        if not truncation > 0:
            raise ValueError(f"truncation must be > 0, got {truncation}")
        for _ in range(max_redraws):
            outside = z.abs() > truncation
            if not outside.any():
                break
            z = torch.where(outside, torch.randn(z.shape, generator=generator, device=z.device), z)
        else:
            raise RuntimeError(f"truncation {truncation} too small: values still outside after {max_redraws} redraws")
    return z


def lerp(a: Tensor, b: Tensor, t: Tensor | float) -> Tensor:
    """``(1 − t) a + t b``."""
    return a + (b - a) * t


def slerp(a: Tensor, b: Tensor, t: Tensor | float, eps: float = 1e-7) -> Tensor:
    """Spherical interpolation along the last dimension; the norm is interpolated linearly, so equal-norm
    endpoints give equal-norm interpolants. Falls back to ``lerp`` for (anti)parallel endpoints."""
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na.clamp_min(eps), b / nb.clamp_min(eps)
    cos = (ua * ub).sum(-1, keepdim=True).clamp(-1, 1)
    omega = torch.arccos(cos)
    so = torch.sin(omega)
    ok = so.abs() > 1e-6
    safe = torch.where(ok, so, torch.ones_like(so))
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / safe
    norm = na + (nb - na) * t
    return torch.where(ok, direction * norm, lerp(a, b, t))


def interpolation_grid(z0: Tensor, z1: Tensor, steps: int,
                       mode: Literal["linear", "spherical"] = "spherical") -> Tensor:
    """``(rows, steps, dim)`` latents from ``z0[i]`` (t = 0) to ``z1[i]`` (t = 1); flatten for a generator."""
    if z0.shape != z1.shape or z0.dim() != 2:
        raise ValueError(f"z0 and z1 must both be (rows, dim), got {tuple(z0.shape)} and {tuple(z1.shape)}")
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    if mode not in ("linear", "spherical"):
        raise ValueError(f"mode must be 'linear' or 'spherical', got {mode!r}")
    t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device)[None, :, None]
    a, b = z0[:, None, :], z1[:, None, :]
    return lerp(a, b, t) if mode == "linear" else slerp(a.expand(-1, steps, -1), b.expand(-1, steps, -1), t)
