"""Sample-quality metrics between two sets of features: Fréchet distance, KID, precision/recall.

Pure PyTorch, batched, computed in float64. The features come from a feature network (an InceptionV3
gives FID; any other network gives "Fréchet distance in <that network>'s features" and must be named
so). Each function takes ``(N, F)`` real and ``(M, F)`` generated features.

* Fréchet distance (Heusel et al., arXiv 1706.08500): ``‖μ_r − μ_g‖² + tr(Σ_r + Σ_g − 2 (Σ_r Σ_g)^{1/2})``
  between Gaussians fitted to the two sets. ``tr((Σ_r Σ_g)^{1/2})`` is computed as the sum of the square
  roots of the eigenvalues of the symmetric PSD matrix ``Σ_r^{1/2} Σ_g Σ_r^{1/2}`` (same eigenvalues).
* KID (Bińkowski et al., arXiv 1801.01401): the unbiased MMD² estimate with the cubic polynomial kernel
  ``k(x, y) = (xᵀy / F + 1)³``, averaged over ``num_subsets`` random subsets of ``subset_size``.
* Precision / recall (Kynkäänniemi et al., arXiv 1904.06991): each set's manifold is the union of
  balls around its points with radius the distance to the k-th nearest neighbour in that set;
  precision = fraction of generated points inside the real manifold, recall = fraction of real
  points inside the generated manifold.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def _features(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[0] < 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (N, F) tensor of features with N >= 2, got {shape}")
    return x.detach().to(torch.float64)


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``(F,)`` and covariance ``(F, F)`` (unbiased, float64) of ``(N, F)`` features."""
    x = _features(features, "features")
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def frechet_distance_from_stats(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``."""
    mu1, mu2, sigma1, sigma2 = (t.to(torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(f"mismatched statistics: means {tuple(mu1.shape)}, {tuple(mu2.shape)}; "
                         f"covariances {tuple(sigma1.shape)}, {tuple(sigma2.shape)}")
    evals, evecs = torch.linalg.eigh((sigma1 + sigma1.T) / 2)
    root1 = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T  # Σ1^{1/2}
    inner = root1 @ sigma2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt)


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two ``(N, F)`` feature sets."""
    return frechet_distance_from_stats(*gaussian_stats(real), *gaussian_stats(fake))


def _poly_kernel(a: Tensor, b: Tensor) -> Tensor:
    return (a @ b.T / a.shape[1] + 1) ** 3


def kernel_inception_distance(real: Tensor, fake: Tensor, num_subsets: int = 100, subset_size: int = 1000,
                              generator: torch.Generator | None = None) -> tuple[float, float]:
    """KID: mean and standard deviation over subsets of the unbiased polynomial-kernel MMD².

    ``subset_size`` is capped at the smaller set's size; subsets are drawn without replacement within a
    subset, independently across subsets, with ``generator`` (default: a fresh generator seeded 0).
    """
    x, y = _features(real, "real"), _features(fake, "fake")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sizes differ: real {x.shape[1]}, fake {y.shape[1]}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
    m = min(subset_size, x.shape[0], y.shape[0])
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    values = []
    for _ in range(num_subsets):
        xs = x[torch.randperm(x.shape[0], generator=g)[:m].to(x.device)]
        ys = y[torch.randperm(y.shape[0], generator=g)[:m].to(y.device)]
        kxx, kyy, kxy = _poly_kernel(xs, xs), _poly_kernel(ys, ys), _poly_kernel(xs, ys)
        off = m * (m - 1)
        mmd = ((kxx.sum() - kxx.diagonal().sum()) / off + (kyy.sum() - kyy.diagonal().sum()) / off
               - 2 * kxy.mean())
        values.append(float(mmd))
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1))
    return mean, std


def _kth_neighbour_radius(x: Tensor, k: int, batch: int) -> Tensor:
    radii = []
    for i in range(0, x.shape[0], batch):
        d = torch.cdist(x[i:i + batch], x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # k + 1: the point itself is at distance 0
    return torch.cat(radii)


def _inside(points: Tensor, centres: Tensor, radii: Tensor, batch: int) -> Tensor:
    hits = []
    for i in range(0, points.shape[0], batch):
        d = torch.cdist(points[i:i + batch], centres)
        hits.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(hits)


def precision_recall(real: Tensor, fake: Tensor, k: int = 3, batch: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (k-NN manifolds, arXiv 1904.06991)."""
    x, y = _features(real, "real"), _features(fake, "fake")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sizes differ: real {x.shape[1]}, fake {y.shape[1]}")
    if not 1 <= k < min(x.shape[0], y.shape[0]):
        raise ValueError(f"k must be in [1, {min(x.shape[0], y.shape[0]) - 1}] for these set sizes, got {k}")
    r_real, r_fake = _kth_neighbour_radius(x, k, batch), _kth_neighbour_radius(y, k, batch)
    precision = float(_inside(y, x, r_real, batch).double().mean())
    recall = float(_inside(x, y, r_fake, batch).double().mean())
    return precision, recall
