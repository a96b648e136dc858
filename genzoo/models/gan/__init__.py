"""The GAN family. So far: interchangeable losses and regularisers (models and checkpoints follow)."""
from .losses import (FDivergenceLoss, GANLoss, HingeLoss, LSGANLoss, NonSaturatingLoss, WassersteinLoss, clip_weights,
                     gradient_penalty, make_loss, r1_penalty)

__all__ = ["FDivergenceLoss", "GANLoss", "HingeLoss", "LSGANLoss", "NonSaturatingLoss", "WassersteinLoss",
           "clip_weights", "gradient_penalty", "make_loss", "r1_penalty"]
