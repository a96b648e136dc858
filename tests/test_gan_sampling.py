"""GAN latent sampling: distributions, truncation, interpolation."""
from __future__ import annotations

import math

import pytest
import torch

from genzoo.models.gan.sampling import interpolation_grid, lerp, sample_latents, slerp


def test_gaussian_and_sphere_latents_are_seeded():
    a = sample_latents(1000, 16, generator=torch.Generator().manual_seed(0))
    b = sample_latents(1000, 16, generator=torch.Generator().manual_seed(0))
    assert a.shape == (1000, 16) and torch.equal(a, b)
    assert abs(float(a.mean())) < 0.05 and abs(float(a.std()) - 1) < 0.05
    s = sample_latents(50, 16, "sphere", generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(s.norm(dim=1), torch.full((50,), 4.0))


def test_truncation_bounds_every_coordinate_and_keeps_the_shape():
    z = sample_latents(2000, 8, truncation=0.5, generator=torch.Generator().manual_seed(0))
    assert float(z.abs().max()) <= 0.5 and z.shape == (2000, 8)
    # redrawn values are still spread over the interval (a truncated normal, not clipping to the edge)
    assert float((z.abs() > 0.49).float().mean()) < 0.05
    with pytest.raises(ValueError, match="truncation"):
        sample_latents(2, 8, truncation=0.0)
    with pytest.raises(ValueError, match="truncation applies"):
        sample_latents(2, 8, "sphere", truncation=1.0)


def test_slerp_endpoints_norm_and_angle():
    torch.manual_seed(0)
    a, b = torch.randn(3, 10, dtype=torch.float64), torch.randn(3, 10, dtype=torch.float64)
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    # equal-norm endpoints: interpolants keep the norm and split the angle evenly
    b = b / b.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)
    mid = slerp(a, b, 0.5)
    torch.testing.assert_close(mid.norm(dim=1), a.norm(dim=1))
    cos = lambda u, v: (u * v).sum(1) / (u.norm(dim=1) * v.norm(dim=1))  # noqa: E731
    torch.testing.assert_close(torch.arccos(cos(a, mid)), torch.arccos(cos(a, b)) / 2)
    # parallel endpoints fall back to lerp
    torch.testing.assert_close(slerp(a, 2 * a, 0.25), lerp(a, 2 * a, 0.25))


def test_interpolation_grid_shapes_and_modes():
    z0, z1 = torch.randn(2, 5), torch.randn(2, 5)
    for mode in ("linear", "spherical"):
        g = interpolation_grid(z0, z1, 7, mode)
        assert g.shape == (2, 7, 5)
        torch.testing.assert_close(g[:, 0], z0)
        torch.testing.assert_close(g[:, -1], z1)
    lin = interpolation_grid(z0, z1, 3, "linear")
    torch.testing.assert_close(lin[:, 1], (z0 + z1) / 2)
    with pytest.raises(ValueError, match="steps"):
        interpolation_grid(z0, z1, 1)
    assert math.isfinite(float(interpolation_grid(z0, z0, 4).sum()))
