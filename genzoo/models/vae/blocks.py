"""Convolutional encoder/decoder shared by the VAE family (Gaussian and categorical latents).

Encoder, for ``hidden_channels = (h_0, ..., h_{L-1})``::

    conv3x3(C -> h_0)                                   at full resolution S
    [num_res_blocks x ResidualBlock(h_i); act; conv4x4 stride 2 (h_i -> h_{i+1})]   i = 0 .. L-2
    num_res_blocks x ResidualBlock(h_{L-1}); act; flatten; linear -> out_features

so there are ``L - 1`` downsamplings and the bottleneck is ``h_{L-1} x S/2^(L-1) x S/2^(L-1)``
(28 -> 14 -> 7, 32 -> 16 -> 8, 64 -> 32 -> 16 with the default three levels). The decoder mirrors it:
linear -> reshape, residual blocks, and ``L - 1`` upsamplings (nearest x2 + conv3x3, or a 4x4
stride-2 transposed conv), then act + conv3x3 to the likelihood's parameter channels.
``image_size`` must be divisible by ``2^(L-1)``; :func:`check_conv_config` says so otherwise.
"""
from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn

from ...layers.residual import Activation, ResidualBlock, make_activation  # noqa: F401  (re-exported)

Upsample = Literal["nearest", "transposed"]


def check_conv_config(config: Any) -> int:
    """Validate the fields shared by the family's configs; returns the bottleneck size S/2^(L-1)."""
    name = type(config).__name__
    if int(config.in_channels) < 1:
        raise ValueError(f"{name}.in_channels must be >= 1, got {config.in_channels}")
    hidden = tuple(config.hidden_channels)
    if not hidden or any(int(h) < 1 for h in hidden):
        raise ValueError(f"{name}.hidden_channels must be a non-empty tuple of positive ints, got {hidden}")
    factor = 2 ** (len(hidden) - 1)
    if config.image_size < factor or config.image_size % factor:
        raise ValueError(
            f"{name}.image_size={config.image_size} is not divisible by 2^(len(hidden_channels)-1) = {factor}: "
            f"{len(hidden) - 1} stride-2 downsamplings need it (e.g. 28 works with 3 levels, 32/64 with up to 6/7)")
    if config.num_res_blocks < 0:
        raise ValueError(f"{name}.num_res_blocks must be >= 0, got {config.num_res_blocks}")
    if config.upsample not in ("nearest", "transposed"):
        raise ValueError(f"{name}.upsample must be 'nearest' or 'transposed', got {config.upsample!r}")
    make_activation(config.activation)
    return config.image_size // factor


class ConvEncoder(nn.Module):
    """Images ``(B, C, S, S)`` -> features ``(B, out_features)`` (see the module docstring)."""

    def __init__(self, config: Any, out_features: int) -> None:
        super().__init__()
        size = check_conv_config(config)
        h, act, r = tuple(config.hidden_channels), config.activation, config.num_res_blocks
        layers: list[nn.Module] = [nn.Conv2d(config.in_channels, h[0], 3, padding=1)]
        for i in range(len(h)):
            layers += [ResidualBlock(h[i], act) for _ in range(r)]
            if i + 1 < len(h):
                layers += [make_activation(act), nn.Conv2d(h[i], h[i + 1], 4, stride=2, padding=1)]
        layers += [make_activation(act), nn.Flatten(), nn.Linear(h[-1] * size * size, out_features)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """Latents ``(B, in_features)`` -> raw likelihood parameters ``(B, out_channels, S, S)``."""

    def __init__(self, config: Any, in_features: int, out_channels: int) -> None:
        super().__init__()
        self.size = check_conv_config(config)
        h, act, r = tuple(config.hidden_channels), config.activation, config.num_res_blocks
        self.bottleneck = h[-1]
        self.linear = nn.Linear(in_features, h[-1] * self.size * self.size)
        layers: list[nn.Module] = []
        for i in reversed(range(len(h))):
            layers += [ResidualBlock(h[i], act) for _ in range(r)]
            if i > 0:
                layers.append(make_activation(act))
                if config.upsample == "nearest":
                    layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(h[i], h[i - 1], 3, padding=1)]
                else:
                    layers.append(nn.ConvTranspose2d(h[i], h[i - 1], 4, stride=2, padding=1))
        layers += [make_activation(act), nn.Conv2d(h[0], out_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.linear(z).view(-1, self.bottleneck, self.size, self.size))
