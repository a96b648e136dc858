"""Gated PixelCNN prior over grids of discrete codes, for VQ-VAE.

An autoregressive model ``p(z) = prod_{i,j} p(z_ij | z_<ij)`` over an ``(H, W)`` grid of integer code
indices in raster order, the gated PixelCNN of van den Oord et al., "Conditional Image Generation
with PixelCNN Decoders" (arXiv:1606.05328), as used as the prior of the VQ-VAE (van den Oord et al.,
"Neural Discrete Representation Learning", arXiv:1711.00937).

Causality is obtained with shifted, cropped convolutions instead of masks (``p = kernel_size // 2``):

* vertical stack: a ``(p + 1) x kernel_size`` convolution, zero-padded ``p`` columns left and right and
  ``p + s`` rows on top only, keeping the first ``H`` output rows. Output row ``i`` then sees input rows
  ``i - p - s .. i - s``. The first layer uses ``s = 1``, so from the start the vertical features at row
  ``i`` depend only on rows *strictly above* ``i``; later layers use ``s = 0`` and keep that property.
* horizontal stack: a ``1 x (p + 1)`` convolution, zero-padded ``p + s`` columns on the left only, keeping
  the first ``W`` output columns, so column ``j`` sees columns ``j - p - s .. j - s`` of the same row.
  The first layer ("mask A", ``s = 1``) excludes the current position; later layers ("mask B", ``s = 0``)
  include it, which is safe because their input already excludes it.
* the vertical-to-horizontal connection (1x1 conv of the vertical pre-activation, added to the
  horizontal one) needs no extra shift, because vertical features at row ``i`` only see rows ``< i``.

Hence the logits at ``(i, j)`` depend only on positions before ``(i, j)`` in raster order, and since the
vertical stack spreads ``p`` columns each way per layer there is no blind spot. Each layer applies the
gate ``tanh(a) * sigmoid(b)``; the horizontal stack has a 1x1 conv and a residual connection (except
in the first layer, where a residual would leak the current code). With ``num_classes > 0`` a learned
per-class bias is added to both stacks' pre-activations in every layer.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _gate(x: Tensor) -> Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class _GatedLayer(nn.Module):
    """One gated layer: vertical and horizontal stacks, shifted so that nothing leaks."""

    def __init__(self, channels: int, kernel_size: int, first: bool, num_classes: int) -> None:
        super().__init__()
        self.pad = kernel_size // 2
        self.first = first
        self.v_conv = nn.Conv2d(channels, 2 * channels, (self.pad + 1, kernel_size))
        self.h_conv = nn.Conv2d(channels, 2 * channels, (1, self.pad + 1))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.class_bias = nn.Embedding(num_classes, 4 * channels) if num_classes > 0 else None

    def forward(self, v: Tensor, h: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor]:
        height, width = v.shape[-2:]
        shift = 1 if self.first else 0
        # vertical: rows i-p-shift .. i-shift (top padding only, crop the extra bottom rows)
        v_pre = self.v_conv(F.pad(v, (self.pad, self.pad, self.pad + shift, 0)))[:, :, :height]
        # horizontal: columns j-p-shift .. j-shift of the same row (left padding only, crop)
        h_pre = self.h_conv(F.pad(h, (self.pad + shift, 0, 0, 0)))[:, :, :, :width]
        h_pre = h_pre + self.v_to_h(v_pre)
        if self.class_bias is not None and labels is not None:
            bias_v, bias_h = self.class_bias(labels)[:, :, None, None].chunk(2, dim=1)
            v_pre, h_pre = v_pre + bias_v, h_pre + bias_h
        h_new = self.h_out(_gate(h_pre))
        if not self.first:
            h_new = h_new + h
        return _gate(v_pre), h_new


class GatedPixelCNN(nn.Module):
    """Gated PixelCNN prior over ``(H, W)`` grids of code indices in ``[0, num_codes)``.

    Args:
        num_codes: codebook size ``K`` (number of categories per position).
        hidden_channels: width ``C`` of the code embedding and of both stacks.
        num_layers: number of gated layers (the first is type "A", the others type "B").
        kernel_size: odd spatial kernel size ``k``; each layer grows the receptive field by ``k // 2``.
        num_classes: if > 0, the model is class-conditional and ``labels`` must be given.
    """

    def __init__(self, num_codes: int, hidden_channels: int = 64, num_layers: int = 8, kernel_size: int = 3,
                 num_classes: int = 0) -> None:
        super().__init__()
        if num_codes < 1 or hidden_channels < 1 or num_layers < 1:
            raise ValueError("num_codes, hidden_channels and num_layers must be >= 1, got "
                             f"{num_codes}, {hidden_channels}, {num_layers}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_codes = num_codes
        self.num_classes = num_classes
        self.embedding = nn.Embedding(num_codes, hidden_channels)
        self.layers = nn.ModuleList(_GatedLayer(hidden_channels, kernel_size, i == 0, num_classes)
                                    for i in range(num_layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden_channels, hidden_channels, 1), nn.ReLU(),
                                  nn.Conv2d(hidden_channels, num_codes, 1))

    def _check_labels(self, labels: Tensor | None, batch: int) -> Tensor | None:
        if self.num_classes == 0:
            if labels is not None:
                raise ValueError("labels given but the model is unconditional (num_classes=0)")
            return None
        if labels is None:
            raise ValueError(f"the model is class-conditional (num_classes={self.num_classes}): labels are required")
        if labels.dtype != torch.long or labels.shape != (batch,):
            raise ValueError(f"labels must be an int64 tensor of shape ({batch},), got {labels.dtype} "
                             f"{tuple(labels.shape)}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes})")
        return labels

    def _check_indices(self, indices: Tensor) -> None:
        if indices.dim() != 3:
            raise ValueError(f"indices must have shape (B, H, W), got {tuple(indices.shape)}")
        if indices.dtype != torch.long:
            raise ValueError(f"indices must be int64 (torch.long), got {indices.dtype}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_codes):
            raise ValueError(f"indices must lie in [0, {self.num_codes}), got range "
                             f"[{int(indices.min())}, {int(indices.max())}]")

    def forward(self, indices: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(B, H, W)`` int64 codes (+ ``(B,)`` labels) -> ``(B, num_codes, H, W)`` logits.

        The logits at ``(i, j)`` depend only on the codes before ``(i, j)`` in raster order.
        """
        self._check_indices(indices)
        labels = self._check_labels(labels, indices.shape[0])
        x = self.embedding(indices).permute(0, 3, 1, 2)
        v, h = x, x
        for layer in self.layers:
            v, h = layer(v, h, labels)
        return self.head(h)

    def nll(self, indices: Tensor, labels: Tensor | None = None) -> Tensor:
        """``(B, H, W)`` int64 codes -> ``(B,)`` negative log-likelihood in nats, summed over positions."""
        logits = self(indices, labels)
        return F.cross_entropy(logits, indices, reduction="none").sum(dim=(1, 2))

    @torch.no_grad()
    def sample(self, n: int, height: int, width: int, generator: torch.Generator | None = None,
               temperature: float = 1.0, top_k: int | None = None, device: torch.device | str | None = None,
               labels: Tensor | None = None) -> Tensor:
        """Draw ``n`` grids in raster order; returns ``(n, height, width)`` int64 codes.

        ``temperature`` (> 0) divides the logits; ``top_k`` keeps only the ``k`` largest logits at each
        position (``top_k=1`` is greedy decoding). ``labels``: ``(n,)`` int64, required iff
        ``num_classes > 0``. Deterministic given a seeded ``generator`` on the sampling device.
        """
        if n < 1 or height < 1 or width < 1:
            raise ValueError(f"n, height and width must be >= 1, got {n}, {height}, {width}")
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                                  or not 1 <= top_k <= self.num_codes):
            raise ValueError(f"top_k must be an int in [1, {self.num_codes}] or None, got {top_k!r}")
        device = torch.device(device) if device is not None else self.embedding.weight.device
        if generator is not None and (generator.device.type != device.type or (
                generator.device.index is not None and device.index is not None
                and generator.device.index != device.index)):
            raise ValueError(f"generator is on {generator.device} but sampling runs on {device}")
        if labels is not None:
            labels = labels.to(device)
        self._check_labels(labels, n)
        codes = torch.zeros(n, height, width, dtype=torch.long, device=device)
        for i in range(height):
            for j in range(width):
                # causality: rows below i cannot influence row i, so only the first i + 1 rows are run
                logits = self(codes[:, : i + 1], labels)[:, :, i, j].float() / temperature
                if top_k is not None and top_k < self.num_codes:
                    values, keep = logits.topk(top_k, dim=1)
                    logits = torch.full_like(logits, float("-inf")).scatter(1, keep, values)
                probs = torch.softmax(logits, dim=1)
                codes[:, i, j] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return codes
