"""Tiny GenerativeModels for core and Hub tests (a small conv autoencoder-style generator)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genzoo.modeling import GenerativeModel


@dataclass(frozen=True)
class TinyConfig:
    in_channels: int = 1                    # image channels
    image_size: int = 4                     # H = W
    hidden: tuple[int, ...] = (3,)          # a tuple field (must come back from JSON as a tuple)
    activation: Literal["relu", "tanh"] = "relu"  # a Literal string field


class TinyModel(GenerativeModel):
    """x → conv3x3 → act → conv1x1 → sigmoid; samples decode uniform noise around a learned mean."""

    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        c, h = config.in_channels, config.hidden[0]
        self.enc = nn.Conv2d(c, h, 3, padding=1)
        self.dec = nn.Conv2d(h, c, 1)
        self.register_buffer("pixel_mean", torch.full((c,), 0.5))  # a buffer that must round-trip

    def _net(self, x: Tensor) -> Tensor:
        act = torch.relu if self.config.activation == "relu" else torch.tanh
        return torch.sigmoid(self.dec(act(self.enc(x - self.pixel_mean.view(1, -1, 1, 1)))))

    def loss(self, batch: Tensor) -> dict[str, Tensor]:
        x = self.check_images(batch, "batch")
        recon = F.mse_loss(self._net(x), x)
        return {"loss": recon, "recon": recon.detach()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        z = torch.rand((n, *self.image_shape), generator=generator, device=self.device, dtype=self.dtype)
        return self._net(self.pixel_mean.view(1, -1, 1, 1) + temperature * (z - 0.5))


@dataclass(frozen=True)
class OtherConfig:
    in_channels: int = 1                    # image channels
    image_size: int = 4                     # H = W


class OtherTinyModel(GenerativeModel):
    """A second class, to check that a checkpoint of one class does not load as another."""

    config_class = OtherConfig

    def __init__(self, config: OtherConfig) -> None:
        super().__init__(config)
        self.w = nn.Parameter(torch.zeros(config.in_channels))


def tiny(seed: int = 0, **overrides) -> TinyModel:
    """A ``TinyModel`` whose weights depend only on ``seed`` (the global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyModel(TinyConfig(**overrides))


def outputs(model: GenerativeModel) -> Tensor:
    """Deterministic outputs that change whenever any weight or buffer changes."""
    return model.sample(3, generator=torch.Generator().manual_seed(0))
