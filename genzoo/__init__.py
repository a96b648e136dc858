"""genzoo: a PyTorch zoo of generative models with pretrained checkpoints."""
__version__ = "0.1.0"

from . import data, layers, metrics  # noqa: E402
from .hub import CheckpointNotFoundError  # noqa: E402
from .modeling import CheckpointError, GenerativeModel  # noqa: E402
from .models import (NICE, VAE, CategoricalVAE, CategoricalVAEConfig, FlowModel, Glow, GlowConfig,  # noqa: E402
                     NICEConfig, RealNVP, RealNVPConfig, VAEConfig, VQVAE, VQVAEConfig)
from .registry import UnknownModelError, create, list_models, load, register  # noqa: E402
from .train import TrainConfig, Trainer, train  # noqa: E402
from .utils import make_grid, save_grid  # noqa: E402

__all__ = [
    "CategoricalVAE", "CategoricalVAEConfig", "CheckpointError", "CheckpointNotFoundError", "FlowModel",
    "GenerativeModel", "Glow", "GlowConfig", "NICE", "NICEConfig", "RealNVP", "RealNVPConfig", "TrainConfig",
    "Trainer", "UnknownModelError", "VAE", "VAEConfig", "VQVAE", "VQVAEConfig",
    "create", "data", "layers", "list_models", "load", "make_grid", "metrics", "register", "save_grid", "train",
]
