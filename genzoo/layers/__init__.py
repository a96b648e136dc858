"""Shared building blocks. No registry or Hub imports here: layers know nothing of checkpoints.

Invertible layers follow one interface, :class:`Bijector`: ``forward(x) -> (z, log_det)`` and
``inverse(z) -> (x, log_det)`` with ``log_det`` of shape ``(B,)``.
"""
from .bijector import (AffineTransform, Bijector, Chain, LogitTransform, Squeeze, dequantize, merge_channels,
                       split_channels, squeeze2d, unsqueeze2d)
from .coupling import Coupling, DiagonalScale, GlowNet, MLPNet, ResNetNet, ZeroConv2d, checkerboard
from .invconv import ActNormInvConv, InvConv1x1
from .invertible_backprop import invertible_chain_forward
from .nearest_code import nearest_code
from .normalization import ActNorm, BatchNormFlow, ConvActNorm
from .quantizer import VectorQuantizer, rotation_trick
from .residual import ResidualBlock

__all__ = [
    "ActNorm", "ActNormInvConv", "AffineTransform", "BatchNormFlow", "Bijector", "Chain", "ConvActNorm",
    "Coupling", "DiagonalScale", "GlowNet", "InvConv1x1", "LogitTransform", "MLPNet", "ResNetNet", "Squeeze",
    "ZeroConv2d", "checkerboard", "dequantize", "invertible_chain_forward", "merge_channels", "split_channels",
    "squeeze2d", "unsqueeze2d", "nearest_code", "VectorQuantizer", "rotation_trick", "ResidualBlock",
]
