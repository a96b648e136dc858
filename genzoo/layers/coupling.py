"""Coupling layers (NICE arXiv:1410.8516, RealNVP arXiv:1605.08803, Glow arXiv:1807.03039) and
their conditioner networks.

A coupling splits ``x`` into ``x_a`` and ``x_b``; ``x_a`` passes unchanged and conditions a
transformation of ``x_b`` through a network ``net`` (any module, never inverted):

* ``kind="additive"`` (NICE): ``y_b = x_b + t(x_a)``, log-det 0;
* ``kind="affine"``: ``y_b = x_b * s + t`` with ``log s`` from the scale function
  ``"sigmoid"`` (Glow: ``s = sigmoid(h + 2)``, applied as ``(x_b + t) * s``), ``"tanh"``
  (RealNVP: ``log s = scale * tanh(h)`` with a learned per-channel ``scale``) or ``"exp"``.

Partitions: ``"half"`` (first/second half of the channels), ``"alternate"`` (even/odd channels or
features, NICE) and ``"checkerboard"`` (spatial, RealNVP; ``x_a = x * mask``); ``parity``
swaps the two parts. The network's last layer is zero-initialised, so a new coupling is the
identity.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bijector import Bijector, acc_sum, accum_dtype, merge_channels, split_channels, sum_except_batch, zeros_log_det
from .normalization import ConvActNorm

Kind = Literal["additive", "affine"]
Partition = Literal["half", "alternate", "checkerboard"]
ScaleFn = Literal["sigmoid", "tanh", "exp"]


def checkerboard(h: int, w: int, parity: int, like: Tensor) -> Tensor:
    """``(1, 1, H, W)`` mask, 1 where ``(i + j) % 2 == parity``."""
    i = torch.arange(h, device=like.device).view(-1, 1)
    j = torch.arange(w, device=like.device).view(1, -1)
    return ((i + j) % 2 == parity).to(like.dtype).view(1, 1, h, w)


class Coupling(Bijector):
    """Additive or affine coupling; see the module docstring. ``net`` maps ``x_a`` to the
    parameters of the transform: ``C_b`` channels (additive) or ``2 C_b`` (affine: shift, then
    log-scale pre-activation); for ``"checkerboard"`` ``C_b = C``."""

    def __init__(self, num_channels: int, net: nn.Module, kind: Kind = "affine", partition: Partition = "half",
                 parity: int = 0, scale_fn: ScaleFn = "sigmoid") -> None:
        super().__init__()
        if kind not in ("additive", "affine") or partition not in ("half", "alternate", "checkerboard") \
                or scale_fn not in ("sigmoid", "tanh", "exp") or parity not in (0, 1):
            raise ValueError(f"bad coupling options kind={kind!r} partition={partition!r} "
                             f"scale_fn={scale_fn!r} parity={parity!r}")
        self.net, self.kind, self.partition, self.parity, self.scale_fn = net, kind, partition, parity, scale_fn
        if kind == "affine" and scale_fn == "tanh":
            self.tanh_scale = nn.Parameter(torch.ones(self.split_sizes(num_channels, partition, parity)[1]))

    @staticmethod
    def split_sizes(c: int, partition: Partition = "half", parity: int = 0) -> tuple[int, int]:
        """Channels ``(C_a, C_b)`` of the conditioning and transformed parts for ``c`` input channels:
        the net maps ``C_a`` channels to ``C_b`` (additive) or ``2 C_b`` (affine) channels."""
        if partition == "checkerboard":
            return c, c
        first, second = c - c // 2, c // 2
        return (first, second) if parity == 0 else (second, first)

    # ---- partitions ------------------------------------------------------------------------
    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.partition == "half":
            a, b = split_channels(x)
        else:
            a, b = x[:, 0::2], x[:, 1::2]
        return (a, b) if self.parity == 0 else (b, a)

    def _merge(self, a: Tensor, b: Tensor) -> Tensor:
        if self.parity == 1:
            a, b = b, a
        if self.partition == "half":
            return merge_channels(a, b)
        out = torch.empty((a.shape[0], a.shape[1] + b.shape[1], *a.shape[2:]), device=a.device, dtype=a.dtype)
        out[:, 0::2], out[:, 1::2] = a, b
        return out

    def _params(self, cond: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(shift, log_scale)`` from the net; ``log_scale`` is None for additive couplings."""
        h = self.net(cond)
        if self.kind == "additive":
            return h, None
        shift, raw = h.chunk(2, dim=1)
        if self.scale_fn == "sigmoid":
            log_s = F.logsigmoid(raw.to(accum_dtype(raw.dtype)) + 2.0)
        elif self.scale_fn == "tanh":
            view = self.tanh_scale.view(1, -1, *([1] * (raw.dim() - 2)))
            log_s = view * torch.tanh(raw.to(accum_dtype(raw.dtype)))
        else:
            log_s = raw.to(accum_dtype(raw.dtype))
        return shift, log_s

    def _couple(self, xb: Tensor, shift: Tensor, log_s: Tensor | None, inverse: bool) -> Tensor:
        if log_s is None:
            return xb - shift if inverse else xb + shift
        s = log_s.exp().to(xb.dtype)
        if self.scale_fn == "sigmoid":  # Glow's order: (x + t) * s
            return xb / s - shift if inverse else (xb + shift) * s
        return (xb - shift) / s if inverse else xb * s + shift

    # ---- directions --------------------------------------------------------------------------
    def _transform(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        sign = -1.0 if inverse else 1.0
        if self.partition == "checkerboard":
            mask = checkerboard(x.shape[2], x.shape[3], self.parity, x)
            shift, log_s = self._params(x * mask)
            inv_mask = 1 - mask
            shift = shift * inv_mask
            if log_s is not None:
                log_s = log_s * inv_mask
            y = x * mask + inv_mask * self._couple(x, shift, log_s, inverse)
            ld = zeros_log_det(x) if log_s is None else sign * sum_except_batch(log_s)
            return y, ld
        a, b = self._split(x)
        shift, log_s = self._params(a)
        b = self._couple(b, shift, log_s, inverse)
        ld = zeros_log_det(x) if log_s is None else sign * sum_except_batch(log_s)
        return self._merge(a, b), ld

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._transform(x, inverse=False)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._transform(z, inverse=True)


# ---- conditioner networks -------------------------------------------------------------------
class ZeroConv2d(nn.Module):
    """3x3 conv, zero-initialised, output scaled by ``exp(3 * logs)`` (Glow): starts as zero."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.logs = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        s = torch.exp(3.0 * self.logs)
        # folding the scale into the weights costs a C_out x C_in x 9 multiply instead of a pass over x
        return F.conv2d(x, self.conv.weight * s.view(-1, 1, 1, 1), self.conv.bias * s, padding=self.conv.padding)


class GlowNet(nn.Module):
    """Glow's coupling network: conv3x3 + ActNorm, ReLU, conv1x1 + ActNorm, ReLU, ZeroConv3x3.

    The ActNorms are folded into their convolutions (:class:`ConvActNorm`).
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvActNorm(in_channels, hidden_channels, 3)
        self.conv2 = ConvActNorm(hidden_channels, hidden_channels, 1)
        self.out = ZeroConv2d(hidden_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        # NHWC: oneDNN's (CPU) and cuDNN's fast convolution paths; ~2x on the 128-channel convs here
        x = x.contiguous(memory_format=torch.channels_last)
        h = F.relu(self.conv1(x), inplace=True)
        return self.out(F.relu(self.conv2(h), inplace=True))


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; use 'batchnorm' or 'none'")


class ResNetNet(nn.Module):
    """RealNVP's coupling network: conv3x3 in, ``num_blocks`` pre-activation residual blocks
    (norm, ReLU, conv3x3, norm, ReLU, conv3x3), norm, ReLU, zero-initialised conv3x3 out."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_blocks: int = 2,
                 norm: Literal["batchnorm", "none"] = "batchnorm") -> None:
        super().__init__()
        self.inp = nn.Conv2d(in_channels, hidden_channels, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(_norm2d(norm, hidden_channels), nn.ReLU(), nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1),
                          _norm2d(norm, hidden_channels), nn.ReLU(), nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1))
            for _ in range(num_blocks))
        self.post = nn.Sequential(_norm2d(norm, hidden_channels), nn.ReLU())
        self.out = nn.Conv2d(hidden_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(self.post(h))


class MLPNet(nn.Module):
    """NICE's coupling function: ``num_layers`` hidden ReLU layers, linear zero-initialised output."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int, num_layers: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers += [nn.Linear(in_features if i == 0 else hidden_features, hidden_features), nn.ReLU()]
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(hidden_features if num_layers else in_features, out_features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.hidden(x))


class DiagonalScale(Bijector):
    """NICE's final scaling layer ``z = x * exp(s)`` per feature, ``log_det = sum(s)`` (§3.3)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(num_features))

    def _view(self, x: Tensor) -> Tensor:
        return self.log_scale.view(1, -1, *([1] * (x.dim() - 2)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        spatial = math.prod(x.shape[2:])
        return x * self._view(x).exp(), zeros_log_det(x) + spatial * acc_sum(self.log_scale)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        spatial = math.prod(z.shape[2:])
        return z * torch.exp(-self._view(z)), zeros_log_det(z) - spatial * acc_sum(self.log_scale)
