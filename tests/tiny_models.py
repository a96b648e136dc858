"""A tiny GenerativeModel for core and Hub tests (a per-pixel Gaussian through a 1x1 conv)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from genzoo.modeling import GenerativeModel


@dataclass(frozen=True)
class TinyConfig:
    in_channels: int = 1                    # image channels
    image_size: int = 4                     # H = W
    hidden: tuple[int, ...] = (3,)          # a tuple field (survives JSON as a tuple)
    mode: Literal["a", "b"] = "a"           # a Literal string field


class TinyModel(GenerativeModel):
    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        c = config.in_channels
        self.net = nn.Conv2d(c, c, 1)
        self.log_sigma = nn.Parameter(torch.zeros(c))
        self.register_buffer("seen", torch.zeros(()))

    def loss(self, batch):
        x = self.check_images(batch, "batch")
        d = x - self.net(x)
        s = self.log_sigma.view(1, -1, 1, 1)
        nll = 0.5 * (d / s.exp()) ** 2 + s + 0.5 * math.log(2 * math.pi)
        return {"loss": nll.mean()}

    @torch.no_grad()
    def sample(self, n, generator=None, temperature=1.0):
        shape = (n, *self.image_shape)
        z = torch.rand(shape, generator=generator)
        return torch.sigmoid(self.net(z) * temperature)


def tiny(seed: int = 0, **overrides) -> TinyModel:
    torch.manual_seed(seed)
    return TinyModel(TinyConfig(**overrides))
