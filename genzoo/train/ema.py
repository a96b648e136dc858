"""Exponential moving average of a model's parameters and buffers."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import Tensor, nn


class EMA:
    """Shadow copy of ``model.state_dict()`` (parameters and persistent buffers).

    Each :meth:`update` with ``n`` previous updates uses the warmed-up decay
    ``d = min(decay, (1 + n) / (10 + n))`` and sets ``shadow = d * shadow + (1 - d) * value`` for
    floating-point tensors; integer and bool tensors (counters, "initialised" flags) are copied.
    The shadow starts as a copy of the model at construction time.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow: dict[str, Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        """The decay the next :meth:`update` will use."""
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        state = model.state_dict()
        if state.keys() != self.shadow.keys():
            raise KeyError("EMA.update: the model's state_dict keys differ from the EMA's")
        for name, value in state.items():
            avg = self.shadow[name]
            if avg.is_floating_point() or avg.is_complex():
                avg.mul_(d).add_(value.detach().to(avg.dtype), alpha=1.0 - d)
            else:
                avg.copy_(value)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (strict)."""
        model.load_state_dict(self.shadow, strict=True)

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily put the EMA weights into ``model``; the raw weights are restored on exit."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                model.load_state_dict(backup, strict=True)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates,
                "shadow": {k: v.clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        shadow = state["shadow"]
        missing, extra = sorted(set(self.shadow) - set(shadow)), sorted(set(shadow) - set(self.shadow))
        if missing or extra:
            raise KeyError(f"EMA state does not match the model: missing {missing[:5]}, unexpected {extra[:5]}")
        for k, v in shadow.items():
            if v.shape != self.shadow[k].shape:
                raise ValueError(f"EMA tensor {k}: shape {tuple(v.shape)} vs model {tuple(self.shadow[k].shape)}")
            self.shadow[k].copy_(v)
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
