"""Normalising bijectors: ActNorm (Glow, arXiv:1807.03039 §3.1) and flow batch norm (RealNVP,
arXiv:1605.08803 §3.7), plus ``ConvActNorm``, a convolution with ActNorm folded into its weights.

ActNorm's data-dependent initialisation (zero mean, unit variance per channel on the first
batch) happens once: it is guarded by the ``initialized`` buffer, which is saved with the weights,
so loaded or already-trained weights are never re-initialised.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bijector import Bijector, acc_sum, zeros_log_det


def _channel_view(t: Tensor, x: Tensor) -> Tensor:
    """Per-channel vector ``(C,)`` shaped to broadcast over ``x`` (``(B, C)`` or ``(B, C, H, W)``)."""
    return t.view(1, -1, *([1] * (x.dim() - 2)))


def _spatial(x: Tensor) -> int:
    return x[0, 0].numel()


@torch.no_grad()
def _init_actnorm(loc: Tensor, log_scale: Tensor, initialized: Tensor, h: Tensor, eps: float) -> None:
    """ActNorm's data-dependent init: ``loc = -mean``, ``log_scale = -log(std + eps)`` per channel of ``h``."""
    dims = [0, *range(2, h.dim())]
    h = h.detach().float()
    mean = h.mean(dims)
    std = h.std(dims, unbiased=False) if h.shape[0] * _spatial(h) > 1 else torch.ones_like(mean)
    loc.copy_(-mean)
    log_scale.copy_(-torch.log(std + eps))
    initialized.fill_(True)


class ActNorm(Bijector):
    """``z = (x + loc) * exp(log_scale)`` per channel; works on ``(B, C)`` and ``(B, C, H, W)``.

    ``log_det = H W sum(log_scale)``. On the first forward in training mode (or :meth:`initialize`),
    ``loc`` and ``log_scale`` are set so the output has zero mean and unit variance per channel.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(num_channels))
        self.log_scale = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("initialized", torch.tensor(False))
        self.eps = eps

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Data-dependent init from a batch ``x`` (no-op if already initialised)."""
        if not bool(self.initialized):
            _init_actnorm(self.loc, self.log_scale, self.initialized, x, self.eps)

    def _maybe_init(self, x: Tensor) -> None:
        if self.training and not torch.compiler.is_compiling() and not bool(self.initialized):
            self.initialize(x)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._maybe_init(x)
        z = (x + _channel_view(self.loc, x)) * _channel_view(self.log_scale.exp(), x)
        return z, zeros_log_det(x) + _spatial(x) * acc_sum(self.log_scale)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = z * _channel_view(torch.exp(-self.log_scale), z) - _channel_view(self.loc, z)
        return x, zeros_log_det(z) - _spatial(z) * acc_sum(self.log_scale)


class BatchNormFlow(Bijector):
    """Batch normalisation as a bijector (RealNVP §3.7): ``z = (x - mu) / sqrt(var + eps) * exp(log_gamma) + beta``.

    Training uses batch statistics (and updates running averages); evaluation and ``inverse`` use
    the running averages, where the map is an exact per-example bijection.
    """

    def __init__(self, num_channels: int, momentum: float = 0.05, eps: float = 1e-4) -> None:
        super().__init__()
        self.log_gamma = nn.Parameter(torch.zeros(num_channels))
        self.beta = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("running_mean", torch.zeros(num_channels))
        self.register_buffer("running_var", torch.ones(num_channels))
        self.momentum, self.eps = momentum, eps

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not self.training:
            return self.running_mean, self.running_var
        dims = [0, *range(2, x.dim())]
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        with torch.no_grad():
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
            self.running_var.lerp_(var.detach().to(self.running_var.dtype), self.momentum)
        return mean, var

    def _log_scale(self, var: Tensor) -> Tensor:
        return self.log_gamma - 0.5 * torch.log(var + self.eps)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, var = self._stats(x)
        ls = self._log_scale(var)
        z = (x - _channel_view(mean, x)) * _channel_view(ls.exp(), x) + _channel_view(self.beta, x)
        return z, zeros_log_det(x) + _spatial(x) * acc_sum(ls)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        ls = self._log_scale(self.running_var)
        x = (z - _channel_view(self.beta, z)) * _channel_view(torch.exp(-ls), z) + _channel_view(self.running_mean, z)
        return x, zeros_log_det(z) - _spatial(z) * acc_sum(ls)


class ConvActNorm(nn.Module):
    """``ActNorm(conv(x))`` computed as one convolution: the per-channel affine map is folded into
    the convolution's weight and bias (exact), saving two elementwise passes per call.

    The ActNorm statistics are initialised from the first training batch, like :class:`ActNorm`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.normal_(self.weight, std=0.05)  # Glow's initialisation of the coupling convs
        self.loc = nn.Parameter(torch.zeros(out_channels))
        self.log_scale = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("initialized", torch.tensor(False))
        self.padding = kernel_size // 2

    def forward(self, x: Tensor) -> Tensor:
        if self.training and not torch.compiler.is_compiling() and not bool(self.initialized):
            with torch.no_grad():
                h = F.conv2d(x, self.weight, padding=self.padding)
            _init_actnorm(self.loc, self.log_scale, self.initialized, h, 1e-6)
        s = self.log_scale.exp()
        return F.conv2d(x, self.weight * s.view(-1, 1, 1, 1), self.loc * s, padding=self.padding)
