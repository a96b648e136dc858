"""Training configuration: one frozen, JSON-compatible dataclass and the learning-rate schedule."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from ..modeling import config_from_dict, config_to_dict

Schedule = Literal["cosine", "constant"]
AmpMode = Literal["auto", "off", "bf16", "fp16"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the data, model and output folder aside).

    Steps are optimizer steps; a step consumes ``grad_accum`` micro-batches of ``batch_size``
    images each. ``*_every`` fields count optimizer steps; 0 switches that feature off.
    """

    steps: int = 1000                     # total optimizer steps (the LR schedule always spans these)
    batch_size: int = 64                  # images per micro-batch (capped at the dataset size)
    lr: float = 1e-3                      # peak learning rate of AdamW
    weight_decay: float = 0.0             # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    warmup_steps: int = 100               # linear warmup from lr/warmup_steps to lr over these steps
    schedule: Schedule = "cosine"         # after warmup: cosine decay to lr*min_lr_ratio, or constant
    min_lr_ratio: float = 0.0             # final lr of the cosine schedule, as a fraction of lr
    grad_clip: float = 1.0                # max global grad norm (0 = no clipping; the norm is still logged)
    grad_accum: int = 1                   # micro-batches per optimizer step (loss divided by this)
    ema_decay: float = 0.999              # EMA of weights and buffers (0 = no EMA); the EMA is what is kept
    eval_every: int = 500                 # evaluate on eval_data / eval_fn every this many steps (0 = never)
    eval_batches: int = 10                # batches of eval_data per evaluation (always the first ones)
    sample_every: int = 1000              # write a sample grid every this many steps (0 = never; needs out_dir)
    num_samples: int = 64                 # images in each sample grid
    checkpoint_every: int = 1000          # trainer checkpoint every this many steps and at the end (needs out_dir)
    seed: int = 0                         # seeds the data order, torch's global RNG and the sample grids
    amp: AmpMode = "auto"                 # auto: CUDA bf16 if supported else fp16+GradScaler; CPU: off
    progress: bool = True                 # show a tqdm progress bar
    log_every: int = 50                   # append means of the logged losses to history every this many steps

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two floats, got {self.betas}")
        positive = {"steps": self.steps, "batch_size": self.batch_size, "grad_accum": self.grad_accum,
                    "log_every": self.log_every, "eval_batches": self.eval_batches,
                    "num_samples": self.num_samples}
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}")
        for name in ("warmup_steps", "eval_every", "sample_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 0, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"TrainConfig.schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise ValueError(f"TrainConfig.amp must be 'auto', 'off', 'bf16' or 'fp16', got {self.amp!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("TrainConfig.grad_clip and weight_decay must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return config_from_dict(cls, data)


def lr_factor(config: TrainConfig, step_index: int) -> float:
    """Multiplier of ``config.lr`` for the step with 0-based index ``step_index``.

    With ``t = step_index + 1`` (the 1-based step number, as in ``history``) and ``W`` warmup
    steps: ``t / W`` while ``t <= W`` (so step ``W`` runs at the peak lr), then either constant
    1 or a half cosine from 1 at ``t = W`` to ``min_lr_ratio`` at ``t = steps``.
    """
    t, warmup = step_index + 1, config.warmup_steps
    if t <= warmup:
        return t / warmup
    if config.schedule == "constant" or config.steps <= warmup:
        return 1.0
    progress = min(1.0, (t - warmup) / (config.steps - warmup))
    m = config.min_lr_ratio
    return m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * progress))
