"""The :class:`GANTrainer`: two optimizers (TTUR), ``n_critic`` D steps per G step, EMA of the generator.

A model qualifies if it has ``generator`` and ``discriminator`` modules and the objectives
``discriminator_objective(real)``, ``generator_objective(batch_size)`` (and
``single_step_objective(real)`` when ``model.config.single_step``), each returning a dict whose
``"loss"`` is minimised (class-conditional models, ``config.num_classes > 0``, get the real batch's labels
as a second argument, from labelled data; the generator step draws random labels); optional ``after_discriminator_step()`` (WGAN weight clipping). Settings taken
from ``model.config``: ``n_critic``, ``d_lr_ratio`` (D's lr = ``TrainConfig.lr`` × ratio, both on the
same warmup/cosine schedule), ``single_step``.

Each optimizer step of the run is: ``n_critic`` discriminator updates, each on a fresh real batch of
``grad_accum`` micro-batches, then one generator update (``grad_accum`` micro-batches of fakes), then the
EMA update of the generator. With ``single_step`` one backward pass per micro-batch produces both
networks' gradients (the stop-gradient formulation of the model's ``single_step_objective``) and both
optimizers step. ``grad_clip`` applies to each network separately. The EMA covers the generator only:
after :meth:`fit` the model holds the EMA generator and the raw discriminator, which is what a GAN
checkpoint saves. Sample grids during training use the same seeded noise every time.
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from .trainer import Trainer


@contextlib.contextmanager
def _frozen(module: nn.Module):
    """No parameter gradients for ``module`` inside the block (saves D's weight gradients in G steps)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def is_adversarial(model: nn.Module) -> bool:
    """Whether ``model`` is trained by :class:`GANTrainer` (has both networks and their objectives)."""
    return all(hasattr(model, a) for a in ("generator", "discriminator", "discriminator_objective",
                                           "generator_objective"))


class GANTrainer(Trainer):
    """:class:`Trainer` for GANs; see the module docstring."""

    def __init__(self, model, data, config, **kwargs) -> None:
        if not is_adversarial(model):
            raise TypeError(f"{type(model).__name__} is not a GAN: GANTrainer needs generator, discriminator, "
                            "discriminator_objective and generator_objective")
        super().__init__(model, data, config, **kwargs)
        self.conditional = int(getattr(model.config, "num_classes", 0)) > 0
        if self.conditional and not self.source.has_labels():
            raise ValueError(f"{type(model).__name__} is class-conditional (num_classes="
                             f"{model.config.num_classes}): train it on labelled data (an ImageDataset with labels "
                             "or a Dataset of (image, label) pairs)")

    def _real(self):
        """The next real batch and its labels (None for unconditional models)."""
        if self.conditional:
            return self.sampler.next_labelled()
        return self.sampler.next(), None

    # ------------------------------------------------------------------ setup
    def _params(self, module: nn.Module) -> list[nn.Parameter]:
        return [p for p in module.parameters() if p.requires_grad]

    def _build_optimizers(self) -> None:
        cfg, gan = self.config, self.model.config
        self.g_params, self.d_params = self._params(self.model.generator), self._params(self.model.discriminator)
        self.optimizer = torch.optim.AdamW(self.g_params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.d_optimizer = torch.optim.AdamW(self.d_params, lr=cfg.lr * gan.d_lr_ratio, betas=cfg.betas,
                                             weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_lambda())
        self.d_scheduler = torch.optim.lr_scheduler.LambdaLR(self.d_optimizer, self._lr_lambda())

    def _optimizers(self):
        return {"optim": (self.optimizer, self.scheduler), "d_optim": (self.d_optimizer, self.d_scheduler)}

    def _ema_module(self) -> nn.Module:
        return self.model.generator

    # ------------------------------------------------------------------ one step
    def _run(self, objective, sums: dict[str, float], weight: float) -> None:
        """Forward ``objective()``, check it, accumulate its logs and backpropagate ``loss / grad_accum``."""
        with self._autocast():
            out = objective()
        values = {k: float(v.detach().float().mean()) for k, v in out.items()}
        if not all(math.isfinite(v) for v in values.values()):
            self._diverged("loss", values)
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v * weight
        loss = out["loss"] / self.config.grad_accum
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def _apply(self, optimizer: torch.optim.Optimizer, params: list[nn.Parameter], what: str,
               sums: dict[str, float]) -> float:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if self.config.grad_clip > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip))
        else:
            norm = float(torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
        if not math.isfinite(norm) and self.scaler is None:
            self._diverged(f"{what} gradient norm", {**sums, f"{what}_grad_norm": norm})
        if self.scaler is not None:
            self.scaler.step(optimizer)
        else:
            optimizer.step()
        return norm

    def _train_step(self) -> tuple[dict[str, float], float, float]:
        cfg, model = self.config, self.model
        gan = model.config
        accum = cfg.grad_accum
        sums: dict[str, float] = {}
        if callable(getattr(model, "on_train_step", None)):
            model.on_train_step(self.step, cfg.steps)
        if gan.single_step:
            self.optimizer.zero_grad(set_to_none=True)
            self.d_optimizer.zero_grad(set_to_none=True)
            for _ in range(accum):
                real, labels = self._real()
                self._run(lambda: model.single_step_objective(real, labels), sums, 1.0 / accum)
            d_norm = self._apply(self.d_optimizer, self.d_params, "discriminator", sums)
            g_norm = self._apply(self.optimizer, self.g_params, "generator", sums)
        else:
            d_sums: dict[str, float] = {}
            d_norm = 0.0
            for _ in range(gan.n_critic):
                self.d_optimizer.zero_grad(set_to_none=True)
                for _ in range(accum):
                    real, labels = self._real()
                    self._run(lambda: model.discriminator_objective(real, labels), d_sums,
                              1.0 / (accum * gan.n_critic))
                d_norm += self._apply(self.d_optimizer, self.d_params, "discriminator", d_sums) / gan.n_critic
                if callable(getattr(model, "after_discriminator_step", None)):
                    model.after_discriminator_step()
            self.optimizer.zero_grad(set_to_none=True)
            g_sums: dict[str, float] = {}
            batch = self.sampler.batch_size
            with _frozen(model.discriminator):
                for _ in range(accum):
                    self._run(lambda: model.generator_objective(batch), g_sums, 1.0 / accum)
            g_norm = self._apply(self.optimizer, self.g_params, "generator", g_sums)
            sums = {**{("d_loss" if k == "loss" else k): v for k, v in d_sums.items()},
                    **{("g_loss" if k == "loss" else k): v for k, v in g_sums.items()}}
            sums["loss"] = sums["d_loss"] + sums["g_loss"]
        if self.scaler is not None:
            self.scaler.update()
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.scheduler.step()
        self.d_scheduler.step()
        self.step += 1
        if self.ema is not None:
            self.ema.update(self._ema_module())
        sums["d_grad_norm"] = d_norm
        return sums, g_norm, lr
