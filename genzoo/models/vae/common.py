"""What the Gaussian and the categorical VAE share: conv encoder/decoder, p(x|z), loss bookkeeping.

A plain mixin (not a :class:`~genzoo.modeling.GenerativeModel`, so it is not a model class of its
own); ``VAE`` and ``CategoricalVAE`` inherit from it and from ``GenerativeModel``.
"""
from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from .blocks import ConvDecoder, ConvEncoder
from .likelihoods import ImageLikelihood


class ConvLatentVariableMixin:
    """Builds ``encoder``, ``decoder`` and ``likelihood`` and implements the shared plumbing."""

    encoder: ConvEncoder
    decoder: ConvDecoder
    likelihood: ImageLikelihood

    def _build(self, config: Any, encoder_features: int, latent_features: int) -> None:
        if config.beta < 0:
            raise ValueError(f"{type(config).__name__}.beta must be >= 0, got {config.beta}")
        self.likelihood = ImageLikelihood(config.likelihood, config.in_channels, config.num_bits, config.binarize)
        self.encoder = ConvEncoder(config, encoder_features)
        self.decoder = ConvDecoder(config, latent_features,
                                   self.likelihood.params_per_channel * config.in_channels)

    @property
    def num_dims(self) -> int:
        """D = C * H * W, the number of (sub)pixels a log-likelihood is summed over."""
        return math.prod(self.image_shape)  # type: ignore[attr-defined]

    def _targets(self, x: Tensor, name: str = "x") -> Tensor:
        """Validate images ``(B, C, H, W)`` in [0, 1] and return the discrete targets of p(x|z)."""
        return self.likelihood.prepare(self.check_images(x, name))  # type: ignore[attr-defined]

    def _log_px(self, target: Tensor, z: Tensor) -> Tensor:
        """log p(target | z) in nats for ``z`` ``(..., F)`` and ``target`` ``(B, C, H, W)``.

        ``z`` may carry leading sample dimensions ``(k, B, F)``; the result is then ``(k, B)``.
        """
        lead = z.shape[:-1]
        h = self.decoder(z.reshape(-1, z.shape[-1]))
        t = target.expand(*lead[:-1], *target.shape).reshape(-1, *target.shape[1:])
        return self.likelihood.log_prob(t, h).view(lead)

    def _decode_mean(self, z: Tensor) -> Tensor:
        return self.likelihood.mean(self.decoder(z))

    def _loss_dict(self, log_px: Tensor, kl: Tensor, kl_penalty: Tensor) -> dict[str, Tensor]:
        """``log_px``, ``kl`` ``(B,)`` nats; ``kl_penalty`` the batch-mean KL term to optimise (scalar)."""
        d = self.num_dims
        recon = -log_px.mean()
        neg_elbo = recon + kl.mean()
        return {
            "loss": (recon + self.config.beta * kl_penalty) / d,  # type: ignore[attr-defined]
            "nll_elbo_bpd": neg_elbo.detach() / (d * math.log(2)),
            "recon": recon.detach(),
            "kl": kl.mean().detach(),
        }

    @staticmethod
    def _check_sample_args(n: int, temperature: float) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")

    @staticmethod
    def _check_num_samples(num_samples: int) -> None:
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
