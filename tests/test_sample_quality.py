"""Fréchet distance, KID and precision/recall on sets with known answers."""
from __future__ import annotations

import math

import pytest
import torch

from genzoo.metrics.sample_quality import (frechet_distance, frechet_distance_from_stats, gaussian_stats,
                                           kernel_inception_distance, precision_recall)


def _gauss(n, mean, scale, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, len(mean), generator=g, dtype=torch.float64) * torch.tensor(scale) + torch.tensor(mean)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = _gauss(500, [0.0, 1.0, -2.0, 0.5], [1.0, 2.0, 0.5, 1.0], 0) @ torch.randn(4, 4, dtype=torch.float64)
    assert abs(frechet_distance(x, x)) < 1e-8


def test_frechet_distance_closed_forms():
    # diagonal covariances: ||mu1 - mu2||^2 + sum (s1 - s2)^2
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    s1, s2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 9.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    assert frechet_distance_from_stats(mu1, torch.diag(s1), mu2, torch.diag(s2)) == pytest.approx(expected, abs=1e-10)
    # non-commuting 2x2: tr sqrt(A) = sqrt(tr A + 2 sqrt(det A)) for A = S1 S2 with positive eigenvalues
    a = torch.tensor([[2.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, -0.3], [-0.3, 3.0]], dtype=torch.float64)
    prod = a @ b
    tr_sqrt = math.sqrt(float(prod.trace()) + 2 * math.sqrt(float(torch.linalg.det(prod))))
    expected = float(a.trace() + b.trace()) - 2 * tr_sqrt
    zero = torch.zeros(2, dtype=torch.float64)
    assert frechet_distance_from_stats(zero, a, zero, b) == pytest.approx(expected, abs=1e-10)
    # from samples: converges to the closed form of the generating Gaussians
    x, y = _gauss(200_000, [0.0, 0.0], [1.0, 2.0], 1), _gauss(200_000, [1.0, 0.0], [2.0, 2.0], 2)
    assert frechet_distance(x, y) == pytest.approx(1 + 1, abs=0.05)


def test_gaussian_stats_and_errors():
    x = _gauss(1000, [1.0, 2.0], [1.0, 1.0], 3)
    mu, sigma = gaussian_stats(x)
    assert mu.shape == (2,) and sigma.shape == (2, 2)
    with pytest.raises(ValueError, match=r"\(N, F\)"):
        frechet_distance(torch.zeros(5), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(torch.randn(10, 2), torch.randn(10, 3))


def test_kid_is_unbiased_and_separates_distributions():
    x, y = _gauss(2000, [0.0] * 8, [1.0] * 8, 4), _gauss(2000, [0.0] * 8, [1.0] * 8, 5)
    mean, std = kernel_inception_distance(x, y, num_subsets=50, subset_size=500)
    assert abs(mean) < 3 * std / math.sqrt(50) + 1e-4  # same distribution: zero in expectation
    z = _gauss(2000, [0.5] * 8, [1.0] * 8, 6)
    shifted, _ = kernel_inception_distance(x, z, num_subsets=50, subset_size=500)
    assert shifted > 10 * max(abs(mean), std / math.sqrt(50))
    # the unbiased estimator of identical sets (same points) is not biased upwards: it is <= 0
    same, _ = kernel_inception_distance(x, x, num_subsets=5, subset_size=200)
    assert same <= 1e-12
    # seeded subsets: reproducible
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert kernel_inception_distance(x, z, 3, 100, g1) == kernel_inception_distance(x, z, 3, 100, g2)


def test_precision_recall():
    x = _gauss(400, [0.0, 0.0], [1.0, 1.0], 8)
    assert precision_recall(x, x, k=3) == (1.0, 1.0)
    far = x + 100.0
    assert precision_recall(x, far, k=3) == (0.0, 0.0)
    # mode collapse: generated points cover a small part of the real manifold -> high precision, low recall
    collapsed = _gauss(400, [1.5, 1.5], [0.05, 0.05], 9)
    p, r = precision_recall(x, collapsed, k=3)
    assert p > 0.9 and r < 0.2
    with pytest.raises(ValueError, match="k must be"):
        precision_recall(x[:3], x[:3], k=3)
