"""Training: :class:`Trainer`, :func:`train`, :class:`TrainConfig`, :class:`EMA`.

``fit()`` returns the model holding the EMA weights (what gets saved and published); the raw
weights, optimizer and RNG states are kept in ``<out_dir>/trainer_checkpoint/`` for resuming.
"""
from .config import TrainConfig, lr_factor
from .ema import EMA
from .api import train
from .trainer import Trainer, TrainingDivergedError

__all__ = ["Trainer", "TrainConfig", "train", "EMA", "TrainingDivergedError", "lr_factor"]
