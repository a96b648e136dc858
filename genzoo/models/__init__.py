"""Model families. Importing this package registers every architecture and checkpoint.

Explicit imports only (never ``import *``): one line per family.
"""
from .vae import VAE, CategoricalVAE, CategoricalVAEConfig, VAEConfig

__all__ = ["VAE", "VAEConfig", "CategoricalVAE", "CategoricalVAEConfig"]
