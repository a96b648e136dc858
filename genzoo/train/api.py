"""The one-call entry point :func:`train`."""
from __future__ import annotations

import os
from typing import Any

import torch

from ..modeling import GenerativeModel, replace_config
from .config import TrainConfig
from .adversarial import GANTrainer, is_adversarial
from .trainer import EvalFn, Trainer


def make_trainer(model: GenerativeModel, data: Any, config: TrainConfig, **kwargs: Any) -> Trainer:
    """The trainer for ``model``'s family: :class:`GANTrainer` for GANs, else :class:`Trainer`."""
    return (GANTrainer if is_adversarial(model) else Trainer)(model, data, config, **kwargs)


def train(model: GenerativeModel, data: Any, steps: int = 1000, out_dir: str | os.PathLike | None = None,
          eval_data: Any = None, resume: bool | str | os.PathLike = False, eval_fn: EvalFn | None = None,
          device: str | torch.device | None = None, **config_overrides: Any) -> GenerativeModel:
    """Train ``model`` on ``data`` with sensible defaults; returns it with EMA weights, in eval mode.

    Defaults: AdamW lr 1e-3, batch 64, warmup ``min(100, steps // 10)`` steps then cosine,
    grad_clip 1.0, EMA 0.999, progress bar on; a model's ``train_defaults`` dict overrides these (GANs:
    lr 2e-4, betas (0.5, 0.999), no warmup, constant lr, no clipping). Files (samples, metrics, trainer checkpoints)
    are written only when ``out_dir`` is given. Any :class:`TrainConfig` field can be overridden.
    """
    defaults = TrainConfig(steps=steps, lr=1e-3, batch_size=64, warmup_steps=min(100, steps // 10),
                           schedule="cosine", grad_clip=1.0, ema_decay=0.999, progress=True)
    defaults = replace_config(defaults, **getattr(model, "train_defaults", {}))
    config = replace_config(defaults, **config_overrides)
    trainer = make_trainer(model, data, config, eval_data=eval_data, out_dir=out_dir, eval_fn=eval_fn, device=device)
    return trainer.fit(resume=resume)
