"""The VQ family: VQ-VAE (arXiv:1711.00937) with SimVQ codebooks (arXiv:2411.02038) and a PixelCNN prior."""
from .prior import GatedPixelCNN
from .vqvae import VQVAE, VQVAEConfig

__all__ = ["GatedPixelCNN", "VQVAE", "VQVAEConfig"]
