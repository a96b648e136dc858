"""Normalizing flows with exact likelihoods: NICE (arXiv:1410.8516), Real NVP (arXiv:1605.08803) and
Glow (arXiv:1807.03039), built from the shared bijectors of :mod:`genzoo.layers`."""
from .common import FlowModel, MultiscaleFlow, SplitPrior
from .glow import Glow, GlowConfig
from .nice import NICE, NICEConfig
from .realnvp import RealNVP, RealNVPConfig

__all__ = ["FlowModel", "Glow", "GlowConfig", "MultiscaleFlow", "NICE", "NICEConfig", "RealNVP", "RealNVPConfig",
           "SplitPrior"]
