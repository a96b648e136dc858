"""The GAN family: :class:`GAN` (DCGAN, WGAN, WGAN-GP, LSGAN, hinge + spectral norm, f-GANs, O-GAN,
cascading rejection, self-modulation), its networks, losses, regularisers and latent utilities."""
from .gan import GAN, GANConfig, correlation
from .losses import (FDivergenceLoss, GANLoss, HingeLoss, LSGANLoss, NonSaturatingLoss, WassersteinLoss, clip_weights,
                     gradient_penalty, make_loss, r1_penalty)
from .nets import Discriminator, Generator, ModulatedBatchNorm, cascade_scores
from .sampling import interpolation_grid, lerp, sample_latents, slerp

__all__ = ["GAN", "GANConfig", "correlation", "Discriminator", "Generator", "ModulatedBatchNorm", "cascade_scores",
           "FDivergenceLoss", "GANLoss", "HingeLoss", "LSGANLoss", "NonSaturatingLoss", "WassersteinLoss",
           "clip_weights", "gradient_penalty", "make_loss", "r1_penalty", "interpolation_grid", "lerp",
           "sample_latents", "slerp"]
