"""The :class:`Bijector` interface and the structural bijectors every flow shares.

Convention (design.md): ``forward(x) -> (z, log_det)`` maps data to latent and
``inverse(z) -> (x, log_det)`` maps back; ``log_det`` is ``log |det dz/dx|`` (resp.
``log |det dx/dz|``) per example, always shape ``(B,)``, never ``None``. Log-dets are accumulated
in float32 at least, so bfloat16/float16 autocast does not round them (a Glow on 64x64 images sums
~10^4 terms of a few nats each).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def zeros_log_det(x: Tensor) -> Tensor:
    """A ``(B,)`` zero log-det on ``x``'s device, in ``x``'s dtype or float32 if that is narrower."""
    return torch.zeros(x.shape[0], device=x.device, dtype=accum_dtype(x.dtype))


def accum_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype log-dets are accumulated in: float32 for half types, the dtype itself otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def acc_sum(t: Tensor) -> Tensor:
    """Sum of all elements of ``t`` in the log-det accumulation dtype (a scalar)."""
    return t.to(accum_dtype(t.dtype)).sum()


def sum_except_batch(t: Tensor) -> Tensor:
    """``t`` summed over all but the first dimension, in the log-det accumulation dtype: ``(B,)``."""
    return t.to(accum_dtype(t.dtype)).flatten(1).sum(1)


class Bijector(nn.Module):
    """An invertible map with a tractable log-determinant. Subclasses implement both directions."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


class Chain(Bijector):
    """Bijectors applied in order; ``inverse`` runs them in reverse. Log-dets add up.

    ``memory_saving=True`` (training only) recomputes each block's activations from its output in
    the backward pass instead of storing them (RevNets, arXiv:1707.04585; i-RevNet,
    arXiv:1802.07088), so activation memory does not grow with the chain's length; see
    :mod:`genzoo.layers.invertible_backprop`.
    """

    def __init__(self, bijectors: list[nn.Module] | tuple[nn.Module, ...], memory_saving: bool = False) -> None:
        super().__init__()
        self.bijectors = nn.ModuleList(bijectors)
        self.memory_saving = memory_saving

    def __len__(self) -> int:
        return len(self.bijectors)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.memory_saving and self.training and torch.is_grad_enabled():
            from .invertible_backprop import invertible_chain_forward

            return invertible_chain_forward(list(self.bijectors), x)
        log_det = zeros_log_det(x)
        for b in self.bijectors:
            x, ld = b(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        log_det = zeros_log_det(z)
        for b in reversed(self.bijectors):
            z, ld = b.inverse(z)
            log_det = log_det + ld
        return z, log_det


def squeeze2d(x: Tensor, factor: int = 2) -> Tensor:
    """``(B, C, H, W) -> (B, C f^2, H/f, W/f)``: each f x f patch becomes f^2 channels (Glow order)."""
    b, c, h, w = x.shape
    if h % factor or w % factor:
        raise ValueError(f"squeeze needs H and W divisible by {factor}, got {h}x{w}")
    x = x.reshape(b, c, h // factor, factor, w // factor, factor)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(b, c * factor * factor, h // factor, w // factor)


def unsqueeze2d(x: Tensor, factor: int = 2) -> Tensor:
    """Inverse of :func:`squeeze2d`."""
    b, c, h, w = x.shape
    if c % (factor * factor):
        raise ValueError(f"unsqueeze needs C divisible by {factor * factor}, got {c}")
    x = x.reshape(b, c // (factor * factor), factor, factor, h, w)
    return x.permute(0, 1, 4, 2, 5, 3).reshape(b, c // (factor * factor), h * factor, w * factor)


class Squeeze(Bijector):
    """Space-to-depth (volume preserving: log-det 0)."""

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return squeeze2d(x, self.factor), zeros_log_det(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return unsqueeze2d(z, self.factor), zeros_log_det(z)


def split_channels(x: Tensor) -> tuple[Tensor, Tensor]:
    """Split ``(B, C, ...)`` into the first ``ceil(C/2)`` and the remaining channels."""
    c = x.shape[1]
    return x[:, : c - c // 2], x[:, c - c // 2:]


def merge_channels(a: Tensor, b: Tensor) -> Tensor:
    """Inverse of :func:`split_channels`."""
    return torch.cat([a, b], dim=1)


class AffineTransform(Bijector):
    """Fixed ``z = scale * x + shift`` (e.g. Glow's ``x - 0.5`` on [0, 1] data)."""

    def __init__(self, scale: float = 1.0, shift: float = 0.0) -> None:
        super().__init__()
        if scale == 0:
            raise ValueError("AffineTransform scale must be non-zero")
        self.scale, self.shift = float(scale), float(shift)

    def _ld(self, x: Tensor, sign: float) -> Tensor:
        d = math.prod(x.shape[1:])
        return zeros_log_det(x) + sign * d * math.log(abs(self.scale))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * self.scale + self.shift, self._ld(x, 1.0)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return (z - self.shift) / self.scale, self._ld(z, -1.0)


class LogitTransform(Bijector):
    """RealNVP's preprocessing (arXiv:1605.08803 §4.1): ``z = logit(alpha + (1 - 2 alpha) x)``.

    Maps [0, 1] data to the real line; ``alpha`` keeps the logit finite at 0 and 1. The log-det is
    part of the density, so likelihoods stay in [0, 1] data space.
    """

    def __init__(self, alpha: float = 0.05) -> None:
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"LogitTransform alpha must be in [0, 0.5), got {alpha}")
        self.alpha = float(alpha)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a = self.alpha
        y = a + (1 - 2 * a) * x
        z = torch.log(y) - torch.log1p(-y)
        # dz/dx = (1 - 2a) / (y (1 - y))
        ld = math.log(1 - 2 * a) - torch.log(y) - torch.log1p(-y)
        return z, sum_except_batch(ld)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        a = self.alpha
        y = torch.sigmoid(z)
        x = (y - a) / (1 - 2 * a)
        # dx/dz = y (1 - y) / (1 - 2a); log y(1-y) = -softplus(-z) - softplus(z)
        ld = -nn.functional.softplus(-z) - nn.functional.softplus(z) - math.log(1 - 2 * a)
        return x, sum_except_batch(ld)


def dequantize(x: Tensor, num_bits: int = 8, generator: torch.Generator | None = None,
               noise: bool = True) -> Tensor:
    """Uniform dequantisation of images in [0, 1] holding ``k/255`` values.

    Pixel ``k`` (reduced to ``num_bits`` by dropping low bits) becomes ``(k + u) / 2^num_bits`` with
    ``u ~ U(0, 1)`` (``noise=False``: ``u = 1/2``, the bin centre). The result lies in [0, 1) and a
    continuous density ``p`` on it bounds the discrete likelihood:
    ``-log2 P(k) <= -log2 p(x + u) - D num_bits`` in expectation over ``u`` (Theis et al. 2016).
    """
    k = torch.round(x * 255)
    if num_bits < 8:
        k = torch.floor(k / 2 ** (8 - num_bits))
    if noise:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    else:
        u = torch.full_like(x, 0.5)
    return (k + u) / 2 ** num_bits
