"""The GAN family. So far: networks, losses and regularisers, latent sampling (models and checkpoints follow)."""
from .losses import (FDivergenceLoss, GANLoss, HingeLoss, LSGANLoss, NonSaturatingLoss, WassersteinLoss, clip_weights,
                     gradient_penalty, make_loss, r1_penalty)
from .nets import Discriminator, Generator, ModulatedBatchNorm
from .sampling import interpolation_grid, lerp, sample_latents, slerp

__all__ = ["Discriminator", "Generator", "ModulatedBatchNorm", "FDivergenceLoss", "GANLoss", "HingeLoss",
           "LSGANLoss", "NonSaturatingLoss", "WassersteinLoss", "clip_weights", "gradient_penalty", "make_loss",
           "r1_penalty", "interpolation_grid", "lerp", "sample_latents", "slerp"]
