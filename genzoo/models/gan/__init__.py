"""The GAN family. So far: networks, interchangeable losses and regularisers (models and checkpoints follow)."""
from .losses import (FDivergenceLoss, GANLoss, HingeLoss, LSGANLoss, NonSaturatingLoss, WassersteinLoss, clip_weights,
                     gradient_penalty, make_loss, r1_penalty)
from .nets import Discriminator, Generator, ModulatedBatchNorm

__all__ = ["Discriminator", "Generator", "ModulatedBatchNorm", "FDivergenceLoss", "GANLoss", "HingeLoss",
           "LSGANLoss", "NonSaturatingLoss", "WassersteinLoss", "clip_weights", "gradient_penalty", "make_loss",
           "r1_penalty"]
