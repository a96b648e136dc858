"""Generator and discriminator networks of the GAN family.

Two layouts, chosen by ``architecture``:

* ``"dcgan"`` (Radford et al., arXiv 1511.06434). Generator: ``z (B, latent_dim)`` -> linear to
  ``(h_0, b, b)`` -> [norm, ReLU, upsample x2] per level -> norm, ReLU, 3x3 conv -> tanh. Upsampling is a
  4x4 stride-2 transposed conv, or nearest x2 + 3x3 conv (``upsample="nearest"``, which avoids checkerboard
  artifacts). Discriminator: 3x3 conv, then [LeakyReLU(0.2), 4x4 stride-2 conv] per level down to ``b x b``,
  LeakyReLU, flatten, linear -> ``features (B, out_features)``.
* ``"resnet"`` (the SNGAN/WGAN-GP ResNets, Miyato et al. arXiv 1802.05957 appendix, Gulrajani et al.
  arXiv 1704.00028): generator blocks ``norm-ReLU-up-conv3-norm-ReLU-conv3`` + ``up-conv1`` shortcut;
  discriminator blocks ``ReLU-conv3-ReLU-conv3-avgpool`` + ``conv1-avgpool`` shortcut (the first block
  without the leading ReLU and without downsampling), then ReLU, global sum pooling, linear.

Images have side ``image_size = base_size * 2^(len(hidden_channels) - 1)`` (``base_size`` 4 gives 32x32
from three levels, 7 gives 28x28). Generator normalisation (``norm``):

* ``"batch"``: batch norm;
* ``"self_modulated"`` (Chen et al., arXiv 1810.01365): batch norm without affine parameters whose
  per-channel scale and shift are predicted from ``z`` by a small MLP (``γ = 1 + Δγ(z)``, ``β(z)``);
* ``"conditional"``: class-conditional batch norm (per-class scale and shift; needs ``num_classes``).

Discriminator output ``(score, features)``: ``score`` is a linear head on the features (``score="linear"``)
or their mean (``score="mean"``, O-GAN's orthogonal decomposition, arXiv 1903.01931). ``cascade = L > 1``
(cascading rejection, arXiv 1911.10979) gives ``L`` scores, shape ``(B, L)``: score ``i`` is
``<v_i, w_i> + b_i`` where ``v_1`` are the features and ``v_{i+1} = v_i − (<v_i, w_i> / |w_i|²) w_i``
removes the direction the previous score looked at, so each level judges what the earlier ones
ignored. Optional spectral normalisation of every conv/linear (arXiv 1802.05957) and a projection term
``<embed(y), features>`` (added to the first score) for class conditioning (Miyato & Koyama, arXiv 1802.05637).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Norm = Literal["batch", "self_modulated", "conditional"]
Upsample = Literal["transposed", "nearest"]
Architecture = Literal["dcgan", "resnet"]
Score = Literal["linear", "mean"]


def image_side(base_size: int, levels: int) -> int:
    return base_size * 2 ** (levels - 1)


def _check(architecture: str, levels: int, base_size: int) -> None:
    if architecture not in ("dcgan", "resnet"):
        raise ValueError(f"architecture must be 'dcgan' or 'resnet', got {architecture!r}")
    if levels < 1 or base_size < 1:
        raise ValueError(f"need at least one level and base_size >= 1, got {levels} levels, base_size {base_size}")


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


def _upsampler(cin: int, cout: int, mode: Upsample) -> nn.Module:
    if mode == "transposed":
        return nn.ConvTranspose2d(cin, cout, 4, 2, 1)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1))


class GBlock(nn.Module):
    """Residual generator block: norm-ReLU-up-conv3-norm-ReLU-conv3 plus an up-conv1 shortcut."""

    def __init__(self, cin: int, cout: int, upsample: Upsample, norm: Norm, latent_dim: int, num_classes: int):
        super().__init__()
        self.norm1 = ModulatedBatchNorm(cin, norm, latent_dim, num_classes)
        self.up = _upsampler(cin, cout, upsample)
        self.norm2 = ModulatedBatchNorm(cout, norm, latent_dim, num_classes)
        self.conv = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor, z: Tensor, y: Tensor | None) -> Tensor:
        h = self.up(F.relu(self.norm1(x, z, y)))
        h = self.conv(F.relu(self.norm2(h, z, y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class Generator(nn.Module):
    """Generator ``(B, latent_dim)`` -> images ``(B, C, S, S)`` in [-1, 1] (see the module docstring)."""

    def __init__(self, latent_dim: int, out_channels: int, hidden_channels: tuple[int, ...] = (256, 128, 64),
                 upsample: Upsample = "nearest", norm: Norm = "batch", num_classes: int = 0,
                 architecture: Architecture = "dcgan", base_size: int = 4) -> None:
        super().__init__()
        if upsample not in ("transposed", "nearest"):
            raise ValueError(f"upsample must be 'transposed' or 'nearest', got {upsample!r}")
        h = tuple(hidden_channels)
        _check(architecture, len(h), base_size)
        self.latent_dim, self.h0, self.norm_mode, self.base_size = latent_dim, h[0], norm, base_size
        self.architecture = architecture
        self.image_size = image_side(base_size, len(h))
        self.fc = nn.Linear(latent_dim, h[0] * base_size * base_size)
        if architecture == "dcgan":
            self.norms = nn.ModuleList(ModulatedBatchNorm(c, norm, latent_dim, num_classes) for c in h)
            self.ups = nn.ModuleList(_upsampler(cin, cout, upsample) for cin, cout in zip(h[:-1], h[1:]))
        else:
            self.blocks = nn.ModuleList(GBlock(cin, cout, upsample, norm, latent_dim, num_classes)
                                        for cin, cout in zip(h[:-1], h[1:]))
            self.final_norm = ModulatedBatchNorm(h[-1], norm, latent_dim, num_classes)
        self.out = nn.Conv2d(h[-1], out_channels, 3, padding=1)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        x = self.fc(z).view(-1, self.h0, self.base_size, self.base_size)
        if self.architecture == "dcgan":
            for i, norm in enumerate(self.norms):
                x = F.relu(norm(x, z, y))
                if i < len(self.ups):
                    x = self.ups[i](x)
        else:
            for block in self.blocks:
                x = block(x, z, y)
            x = F.relu(self.final_norm(x, z, y))
        return torch.tanh(self.out(x))


class DBlock(nn.Module):
    """Residual discriminator block: [ReLU]-conv3-ReLU-conv3-[avgpool] plus a conv1-[avgpool] shortcut."""

    def __init__(self, cin: int, cout: int, sn, downsample: bool, first: bool) -> None:
        super().__init__()
        self.conv1, self.conv2 = sn(nn.Conv2d(cin, cout, 3, padding=1)), sn(nn.Conv2d(cout, cout, 3, padding=1))
        self.shortcut = sn(nn.Conv2d(cin, cout, 1))
        self.downsample, self.first = downsample, first

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        s = self.shortcut(x)
        if self.downsample:
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s


class Discriminator(nn.Module):
    """Discriminator: images ``(B, C, S, S)`` -> ``(score, features (B, out_features))``; the score has
    shape ``(B,)``, or ``(B, cascade)`` with cascading rejection."""

    def __init__(self, in_channels: int, image_size: int, hidden_channels: tuple[int, ...] = (64, 128, 256),
                 out_features: int = 1, spectral_norm: bool = False, num_classes: int = 0,
                 architecture: Architecture = "dcgan", base_size: int = 4, score: Score = "linear",
                 cascade: int = 1) -> None:
        super().__init__()
        h = tuple(hidden_channels)
        _check(architecture, len(h), base_size)
        if image_size != image_side(base_size, len(h)):
            raise ValueError(f"image_size={image_size} does not match base_size={base_size} with {len(h)} levels "
                             f"(gives {image_side(base_size, len(h))}); need image_size = base_size * 2^(levels - 1)")
        if score not in ("linear", "mean"):
            raise ValueError(f"score must be 'linear' or 'mean', got {score!r}")
        if cascade < 1 or (score == "mean" and cascade > 1):
            raise ValueError(f"cascade must be >= 1 and needs score='linear' when > 1; got cascade={cascade}, "
                             f"score={score!r}")
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        if architecture == "dcgan":
            layers: list[nn.Module] = [sn(nn.Conv2d(in_channels, h[0], 3, padding=1))]
            for cin, cout in zip(h[:-1], h[1:]):
                layers += [nn.LeakyReLU(0.2), sn(nn.Conv2d(cin, cout, 4, 2, 1))]
            layers += [nn.LeakyReLU(0.2), nn.Flatten(), sn(nn.Linear(h[-1] * base_size * base_size, out_features))]
        else:
            layers = [DBlock(in_channels, h[0], sn, downsample=False, first=True)]
            layers += [DBlock(cin, cout, sn, downsample=True, first=False) for cin, cout in zip(h[:-1], h[1:])]
            layers += [nn.ReLU(), _SumPool(), sn(nn.Linear(h[-1], out_features))]
        self.features = nn.Sequential(*layers)
        self.score_mode, self.cascade = score, cascade
        linear_head = score == "linear" and (out_features > 1 or cascade > 1)
        self.head = sn(nn.Linear(out_features, cascade)) if linear_head else None
        self.embed = sn(nn.Embedding(num_classes, out_features)) if num_classes > 0 else None

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        feats = self.features(x)
        if self.score_mode == "mean":
            score = feats.mean(1)
        elif self.head is None:
            score = feats.squeeze(1)
        elif self.cascade == 1:
            score = self.head(feats).squeeze(1)
        else:
            score = cascade_scores(feats, self.head.weight, self.head.bias)
        if self.embed is not None:
            if y is None:
                raise ValueError("the projection discriminator needs class labels y")
            proj = (self.embed(y) * feats).sum(1)
            score = score + proj if score.dim() == 1 else torch.cat([score[:, :1] + proj[:, None], score[:, 1:]], 1)
        return score, feats


class _SumPool(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.sum(dim=(2, 3))


def cascade_scores(v: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Cascading rejection scores ``(B, L)`` of features ``v (B, F)`` with directions ``weight (L, F)``:
    score ``i`` is ``<v_i, w_i> (+ b_i)``, then ``v_{i+1} = v_i − (<v_i, w_i> / |w_i|²) w_i``."""
    scores = []
    for i in range(weight.shape[0]):
        w = weight[i]
        s = v @ w
        scores.append(s if bias is None else s + bias[i])
        v = v - (s / w.dot(w).clamp_min(1e-12))[:, None] * w
    return torch.stack(scores, 1)
