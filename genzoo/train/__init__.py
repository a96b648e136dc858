"""Training: :class:`Trainer` (:class:`GANTrainer` for GANs), :func:`train`, :class:`TrainConfig`, :class:`EMA`.

``fit()`` returns the model holding the EMA weights (what gets saved and published); the raw
weights, optimizer and RNG states are kept in ``<out_dir>/trainer_checkpoint/`` for resuming.
"""
from .config import TrainConfig, lr_factor
from .ema import EMA
from .adversarial import GANTrainer, is_adversarial
from .api import make_trainer, train
from .trainer import Trainer, TrainingDivergedError

__all__ = ["Trainer", "GANTrainer", "TrainConfig", "train", "make_trainer", "is_adversarial", "EMA",
           "TrainingDivergedError", "lr_factor"]
