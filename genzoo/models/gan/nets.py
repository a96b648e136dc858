"""Generator and discriminator networks of the GAN family (DCGAN layout, arXiv 1511.06434).

Generator: ``z (B, latent_dim)`` -> linear to ``(h_0, 4, 4)`` -> [norm, ReLU, upsample x2 (4x4
stride-2 transposed conv, or nearest x2 + 3x3 conv, which avoids checkerboard artifacts)] per level ->
norm, ReLU, 3x3 conv -> tanh: images in [-1, 1] of side ``4 * 2^len(hidden)``. Normalisation:

* ``"batch"``: batch norm;
* ``"self_modulated"`` (Chen et al., arXiv 1810.01365): batch norm without affine parameters whose
  per-channel scale and shift are predicted from ``z`` by a small MLP (``γ = 1 + Δγ(z)``, ``β(z)``);
* ``"conditional"``: class-conditional batch norm (per-class scale and shift; needs ``num_classes``).

Discriminator: 3x3 conv, then [LeakyReLU(0.2), 4x4 stride-2 conv] per level down to 4x4, LeakyReLU,
flatten -> ``features (B, out_features)``; the score is a linear head on the features (``out_features``
> 1 gives the feature vector O-GAN needs). Optional spectral normalisation of every conv/linear
(arXiv 1802.05957) and a projection term ``<embed(y), features>`` for class conditioning
(Miyato & Koyama, arXiv 1802.05637).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Norm = Literal["batch", "self_modulated", "conditional"]
Upsample = Literal["transposed", "nearest"]


class ModulatedBatchNorm(nn.Module):
    """Batch norm whose scale/shift come from a latent (self-modulation) or a class label (conditional)."""

    def __init__(self, channels: int, mode: Norm, latent_dim: int = 0, num_classes: int = 0,
                 hidden: int = 32) -> None:
        super().__init__()
        self.mode = mode
        self.bn = nn.BatchNorm2d(channels, affine=(mode == "batch"))
        if mode == "self_modulated":
            if latent_dim < 1:
                raise ValueError("self-modulated batch norm needs latent_dim >= 1")
            self.mlp = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * channels))
            nn.init.zeros_(self.mlp[-1].weight)  # starts as plain batch norm (γ = 1, β = 0)
            nn.init.zeros_(self.mlp[-1].bias)
        elif mode == "conditional":
            if num_classes < 1:
                raise ValueError("conditional batch norm needs num_classes >= 1")
            self.embed = nn.Embedding(num_classes, 2 * channels)
            nn.init.zeros_(self.embed.weight)
        elif mode != "batch":
            raise ValueError(f"norm must be 'batch', 'self_modulated' or 'conditional', got {mode!r}")

    def forward(self, x: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        h = self.bn(x)
        if self.mode == "batch":
            return h
        if self.mode == "self_modulated":
            if z is None:
                raise ValueError("self-modulated batch norm needs the latent z")
            params = self.mlp(z)
        else:
            if y is None:
                raise ValueError("conditional batch norm needs class labels y")
            params = self.embed(y)
        dgamma, beta = params.chunk(2, dim=1)
        return h * (1 + dgamma[:, :, None, None]) + beta[:, :, None, None]


class Generator(nn.Module):
    """DCGAN-style generator ``(B, latent_dim)`` -> images ``(B, C, S, S)`` in [-1, 1]."""

    def __init__(self, latent_dim: int, out_channels: int, hidden_channels: tuple[int, ...] = (256, 128, 64),
                 upsample: Upsample = "nearest", norm: Norm = "batch", num_classes: int = 0) -> None:
        super().__init__()
        if upsample not in ("transposed", "nearest"):
            raise ValueError(f"upsample must be 'transposed' or 'nearest', got {upsample!r}")
        h = tuple(hidden_channels)
        self.latent_dim, self.h0, self.norm_mode = latent_dim, h[0], norm
        self.image_size = 4 * 2 ** (len(h) - 1)
        self.fc = nn.Linear(latent_dim, h[0] * 16)
        self.norms = nn.ModuleList(ModulatedBatchNorm(c, norm, latent_dim, num_classes) for c in h)
        ups: list[nn.Module] = []
        for cin, cout in zip(h[:-1], h[1:]):
            ups.append(nn.ConvTranspose2d(cin, cout, 4, 2, 1) if upsample == "transposed" else
                       nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1)))
        self.ups = nn.ModuleList(ups)
        self.out = nn.Conv2d(h[-1], out_channels, 3, padding=1)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        x = self.fc(z).view(-1, self.h0, 4, 4)
        for i, norm in enumerate(self.norms):
            x = F.relu(norm(x, z, y))
            if i < len(self.ups):
                x = self.ups[i](x)
        return torch.tanh(self.out(x))


class Discriminator(nn.Module):
    """DCGAN-style discriminator: images ``(B, C, S, S)`` -> ``(score (B,), features (B, out_features))``."""

    def __init__(self, in_channels: int, image_size: int, hidden_channels: tuple[int, ...] = (64, 128, 256),
                 out_features: int = 1, spectral_norm: bool = False, num_classes: int = 0) -> None:
        super().__init__()
        h = tuple(hidden_channels)
        if image_size != 4 * 2 ** (len(h) - 1):
            raise ValueError(f"image_size={image_size} needs len(hidden_channels) = log2(image_size / 4) + 1; "
                             f"got {len(h)} levels (for {4 * 2 ** (len(h) - 1)}x{4 * 2 ** (len(h) - 1)} images)")
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        layers: list[nn.Module] = [sn(nn.Conv2d(in_channels, h[0], 3, padding=1))]
        for cin, cout in zip(h[:-1], h[1:]):
            layers += [nn.LeakyReLU(0.2), sn(nn.Conv2d(cin, cout, 4, 2, 1))]
        layers += [nn.LeakyReLU(0.2), nn.Flatten(), sn(nn.Linear(h[-1] * 16, out_features))]
        self.features = nn.Sequential(*layers)
        self.head = sn(nn.Linear(out_features, 1)) if out_features > 1 else None
        self.embed = sn(nn.Embedding(num_classes, out_features)) if num_classes > 0 else None

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        feats = self.features(x)
        score = (self.head(feats) if self.head is not None else feats).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise ValueError("the projection discriminator needs class labels y")
            score = score + (self.embed(y) * feats).sum(1)
        return score, feats
