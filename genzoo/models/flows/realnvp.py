"""Real NVP (Dinh, Sohl-Dickstein & Bengio, arXiv:1605.08803).

Data ``x`` in [0, 1] goes through the logit transform ``logit(alpha + (1 - 2 alpha) x)`` (§4.1,
log-det included, so likelihoods stay on [0, 1]^D). Each of ``num_scales - 1`` scales applies three
affine couplings with alternating checkerboard masks, a squeeze, three couplings with alternating
channel masks, then factors out half of the channels (standard Gaussian prior); the last scale
applies four checkerboard couplings. Couplings use ``log s = scale * tanh(h)`` and a ResNet
conditioner (batch norm inside, optional). A bijective batch norm (§3.7) or ActNorm follows each
coupling.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from ...layers import ActNorm, BatchNormFlow, Chain, Coupling, LogitTransform, ResNetNet, Squeeze
from ...registry import register
from .common import FlowModel, MultiscaleFlow, check_divisible


@dataclass(frozen=True)
class RealNVPConfig:
    in_channels: int = 3                                  # image channels C
    image_size: int = 32                                  # H = W, divisible by 2^(num_scales - 1)
    num_scales: int = 3                                   # scales; all but the last end with a factor-out
    hidden_channels: int = 64                             # width of the ResNet conditioners
    num_blocks: int = 8                                   # residual blocks per conditioner
    net_norm: Literal["batchnorm", "none"] = "batchnorm"  # normalisation inside the conditioners
    flow_norm: Literal["batchnorm", "actnorm", "none"] = "batchnorm"  # bijective norm after each coupling
    logit_alpha: float = 0.05                             # logit preprocessing margin (paper: 0.05 CIFAR-10, 1e-6 MNIST)
    num_bits: int = 8                                     # bits per subpixel of the data
    memory_saving: bool = False                           # recompute activations in backward (needs flow_norm != batchnorm)


class RealNVP(FlowModel):
    """Multi-scale Real NVP. ``RealNVP(RealNVPConfig(...))``; images ``(B, C, H, W)`` in [0, 1]."""

    config_class = RealNVPConfig

    def __init__(self, config: RealNVPConfig) -> None:
        super().__init__(config)
        if config.num_scales < 1:
            raise ValueError("RealNVPConfig.num_scales must be >= 1")
        if config.memory_saving and config.flow_norm == "batchnorm":
            raise ValueError("RealNVPConfig.memory_saving needs flow_norm 'actnorm' or 'none': a batch-norm "
                             "bijector in training mode cannot reconstruct its input from its output")
        check_divisible("RealNVPConfig", config.image_size, config.num_scales - 1)
        self.preprocess = LogitTransform(config.logit_alpha)
        c = config.in_channels
        levels = []
        for i in range(config.num_scales):
            last = i == config.num_scales - 1
            steps: list[nn.Module] = []
            for j in range(4 if last else 3):
                steps += self._coupling(c, "checkerboard", j % 2)
            if not last:
                steps.append(Squeeze())
                c *= 4
                for j in range(3):
                    steps += self._coupling(c, "half", j % 2)
                c -= c // 2
            levels.append(Chain(steps, memory_saving=config.memory_saving))
        self.flow = MultiscaleFlow(levels, [None] * (config.num_scales - 1), self.image_shape)

    def _coupling(self, c: int, partition: str, parity: int) -> list[nn.Module]:
        cfg = self.config
        cin, cout = Coupling.split_sizes(c, partition, parity)  # type: ignore[arg-type]
        net = ResNetNet(cin, cfg.hidden_channels, 2 * cout, cfg.num_blocks, cfg.net_norm)
        out: list[nn.Module] = [Coupling(c, net, kind="affine", partition=partition, parity=parity,  # type: ignore[arg-type]
                                         scale_fn="tanh")]
        if cfg.flow_norm == "batchnorm":
            out.append(BatchNormFlow(c))
        elif cfg.flow_norm == "actnorm":
            out.append(ActNorm(c))
        return out

    def _to_latent(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h, log_det = self.preprocess(x)
        eps_list, top, ld = self.flow(h)
        return self.flow.flatten(eps_list, top), log_det + ld

    def _from_latent(self, eps: Tensor, y: Tensor | None = None) -> Tensor:
        eps_list, top = self.flow.unflatten(eps)
        return self.preprocess.inverse(self.flow.inverse(eps_list, top))[0]


register("realnvp", RealNVP, RealNVPConfig(),
         description="Real NVP (arXiv:1605.08803): CIFAR-10 configuration, 3 scales, 8 residual blocks, 64 "
                     "channels, batch norm")
register("realnvp-celeba", RealNVP,
         RealNVPConfig(in_channels=3, image_size=64, num_scales=5, hidden_channels=32, num_blocks=2),
         hub_id="genzoo/realnvp-celeba", dataset="celeba", published=False,
         description="Real NVP configuration for CelebA 64x64 (148 centre crop): 5 scales, 2 residual blocks, "
                     "32 channels (paper §4.1).",
         recipe={"data": {"name": "celeba", "image_size": 64},
                 "train": {"steps": 200000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 1000,
                           "ema_decay": 0.999, "grad_clip": 100.0, "weight_decay": 5e-5, "seed": 0},
                 "eval": {"seed": 0}})
register(
    "realnvp-fashion-mnist", RealNVP,
    RealNVPConfig(in_channels=1, image_size=28, num_scales=2, hidden_channels=32, num_blocks=1,
                  flow_norm="actnorm", logit_alpha=1e-6),
    hub_id="genzoo/realnvp-fashion-mnist", dataset="fashion-mnist",
    description="Real NVP on Fashion-MNIST (28x28 grey; 2 scales, ResNet conditioners with 1 block of 32 channels "
                "and batch norm, ActNorm after each coupling, logit alpha 1e-6 as for MNIST in the paper), "
                "trained by genzoo's own recipe on the 60k training split.",
    recipe={"data": {"name": "fashion-mnist"},
            "train": {"steps": 3000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 200, "ema_decay": 0.999,
                      "grad_clip": 20.0, "eval_every": 1000, "sample_every": 1000, "checkpoint_every": 1000,
                      "seed": 0},
            "eval": {"seed": 0}},
)
