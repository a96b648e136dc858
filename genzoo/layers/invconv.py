"""Invertible 1x1 convolution (Glow, arXiv:1807.03039 §3.2), plain or LU-decomposed.

Plain: a learned ``C x C`` matrix ``W`` (initialised as a random rotation), ``log_det = H W log|det W|``.
LU: ``W = P L (U + diag(sign_s * exp(log_s)))`` with a fixed permutation ``P``, unit lower ``L`` and
strictly upper ``U``; ``log_det = H W sum(log_s)`` costs O(C) instead of O(C^3).

In eval mode the weight, its inverse and the log-det are cached and reused until a parameter
changes (tracked by the tensors' version counters), so sampling never recomputes an inverse per
call. :class:`ActNormInvConv` extends the cache to ActNorm followed by the 1x1 conv, which is one
affine 1x1 convolution in both directions.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bijector import Bijector, acc_sum, accum_dtype, zeros_log_det
from .normalization import ActNorm


class _EvalCache:
    """Values derived from parameters, recomputed only when a parameter or buffer changes."""

    def __init__(self) -> None:
        self.key: Any = None
        self.value: Any = None
        self.misses = 0  # number of recomputations (tests check sampling does not recompute)

    def get(self, module: nn.Module, compute: Callable[[], Any]) -> Any:
        if module.training or torch.is_grad_enabled() or torch.compiler.is_compiling():
            return compute()
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in
                    (*module.parameters(), *module.buffers()))
        if key != self.key:
            self.value, self.key = compute(), key
            self.misses += 1
        return self.value


def _inverse(w: Tensor) -> Tensor:
    """``W^-1``, computed in float64 (the 1x1 convs are small) and returned in ``W``'s dtype."""
    return torch.linalg.inv(w.double()).to(w.dtype)


class InvConv1x1(Bijector):
    """``z = W x`` over channels at every pixel; ``lu=True`` for the LU-decomposed form."""

    def __init__(self, num_channels: int, lu: bool = True) -> None:
        super().__init__()
        self.lu = lu
        w = torch.linalg.qr(torch.randn(num_channels, num_channels))[0]
        if not lu:
            self.weight = nn.Parameter(w)
        else:
            p, lower, upper = torch.linalg.lu(w)
            s = torch.diagonal(upper)
            self.register_buffer("perm", p)
            self.register_buffer("sign_s", torch.sign(s))
            self.register_buffer("lower_mask", torch.tril(torch.ones(num_channels, num_channels), -1))
            self.lower = nn.Parameter(lower)
            self.upper = nn.Parameter(torch.triu(upper, 1))
            self.log_s = nn.Parameter(torch.log(torch.abs(s)))
        self.cache = _EvalCache()

    def weight_and_logdet(self) -> tuple[Tensor, Tensor]:
        """``(W (C, C), log|det W|)`` computed from the parameters (log-det in float32 or wider)."""
        if not self.lu:
            w = self.weight
            return w, torch.linalg.slogdet(w.to(accum_dtype(w.dtype)))[1]
        eye = torch.eye(self.lower.shape[0], device=self.lower.device, dtype=self.lower.dtype)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ (lower @ upper), acc_sum(self.log_s)

    def _cached(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(W, W^-1, log|det W|)``; reused in eval mode, recomputed in training (see :class:`_EvalCache`)."""
        def compute() -> tuple[Tensor, Tensor, Tensor]:
            w, ld = self.weight_and_logdet()
            return w, _inverse(w), ld
        return self.cache.get(self, compute)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training or torch.is_grad_enabled():
            w, ld = self.weight_and_logdet()
        else:
            w, _, ld = self._cached()
        z = F.conv2d(x, w.to(x.dtype)[:, :, None, None])
        return z, zeros_log_det(x) + x.shape[2] * x.shape[3] * ld

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        _, w_inv, ld = self._cached()
        x = F.conv2d(z, w_inv.to(z.dtype)[:, :, None, None])
        return x, zeros_log_det(z) - z.shape[2] * z.shape[3] * ld


class ActNormInvConv(Bijector):
    """ActNorm followed by an invertible 1x1 conv, the first two ops of a Glow step.

    ``z = W diag(s) (x + b)`` is one affine 1x1 convolution, so in eval mode it runs as a single
    conv (weight ``W diag(s)``, bias ``W diag(s) b``) forward and a single conv backward
    (weight ``diag(1/s) W^-1``, bias ``-b``), with everything cached. Training runs the two ops as
    written, so autograd and ActNorm's data-dependent init behave as usual.
    """

    def __init__(self, num_channels: int, lu: bool = True) -> None:
        super().__init__()
        self.actnorm = ActNorm(num_channels)
        self.invconv = InvConv1x1(num_channels, lu=lu)
        self.cache = _EvalCache()

    def _fused(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        def compute():
            w, ld = self.invconv.weight_and_logdet()
            s, b = self.actnorm.log_scale.exp(), self.actnorm.loc
            wf = w * s.view(1, -1)
            w_inv = _inverse(w) / s.view(-1, 1)
            return wf, wf @ b, w_inv, -b, ld + acc_sum(self.actnorm.log_scale)
        return self.cache.get(self, compute)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training or torch.is_grad_enabled():
            z, ld1 = self.actnorm(x)
            z, ld2 = self.invconv(z)
            return z, ld1 + ld2
        wf, bf, _, _, ld = self._fused()
        z = F.conv2d(x, wf.to(x.dtype)[:, :, None, None], bf.to(x.dtype))
        return z, zeros_log_det(x) + x.shape[2] * x.shape[3] * ld

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.training:
            x, ld1 = self.invconv.inverse(z)
            x, ld2 = self.actnorm.inverse(x)
            return x, ld1 + ld2
        _, _, w_inv, b_inv, ld = self._fused()
        x = F.conv2d(z, w_inv.to(z.dtype)[:, :, None, None]) + b_inv.to(z.dtype).view(1, -1, 1, 1)
        return x, zeros_log_det(z) - z.shape[2] * z.shape[3] * ld
