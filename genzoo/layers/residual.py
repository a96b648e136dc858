"""Residual conv block and activation names shared by the convolutional autoencoders (VAE, VQ-VAE)."""
from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

Activation = Literal["silu", "relu", "elu", "leaky_relu"]

_ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": lambda: nn.LeakyReLU(0.2)}


def make_activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]()


class ResidualBlock(nn.Module):
    """``x + conv1x1(act(conv3x3(act(x))))`` (pre-activation, no normalisation: keeps eval == train)."""

    def __init__(self, channels: int, activation: str) -> None:
        super().__init__()
        self.net = nn.Sequential(make_activation(activation), nn.Conv2d(channels, channels, 3, padding=1),
                                 make_activation(activation), nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)
