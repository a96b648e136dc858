"""Model families. Importing this package registers every architecture and checkpoint.

Explicit imports only (never ``import *``): one line per family.
"""
from .classifier import Classifier, ClassifierConfig
from .gan import GAN, GANConfig
from .flows import NICE, FlowModel, Glow, GlowConfig, NICEConfig, RealNVP, RealNVPConfig
from .vae import VAE, CategoricalVAE, CategoricalVAEConfig, VAEConfig
from .vq import VQVAE, GatedPixelCNN, VQVAEConfig

__all__ = ["Classifier", "ClassifierConfig", "GAN", "GANConfig", "VAE", "VAEConfig", "CategoricalVAE", "CategoricalVAEConfig", "FlowModel", "Glow", "GlowConfig",
           "NICE", "NICEConfig", "RealNVP", "RealNVPConfig", "VQVAE", "VQVAEConfig", "GatedPixelCNN"]
