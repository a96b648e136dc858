"""The :class:`Trainer`: AdamW + warmup/cosine LR, clipping, accumulation, AMP, EMA, exact resume.

What you get back from :meth:`Trainer.fit` is the model holding the **EMA weights**, in eval
mode: that is what should be saved with ``save_pretrained`` and published. The raw (non-averaged)
weights, optimizer and RNG states live in ``<out_dir>/trainer_checkpoint/`` (see
:mod:`genzoo.train.checkpoint`) and are what ``fit(resume=True)`` continues from; a resumed run
on CPU is bit-identical to an uninterrupted one.

Step numbers are 1-based counts of optimizer steps taken (``history[i]["step"]``, file names,
error messages); hooks get the 0-based index of the step about to run.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from ..modeling import GenerativeModel, load_state_strict
from ..utils import save_grid
from . import checkpoint as ckpt
from .batches import BatchSampler, ImageSource, eval_batches
from .config import TrainConfig, lr_factor
from .ema import EMA

logger = logging.getLogger(__name__)

EvalFn = Callable[[GenerativeModel], "dict[str, float]"]


class TrainingDivergedError(FloatingPointError):
    """A loss or the gradient norm became NaN or infinite; nothing was applied or checkpointed."""


class Trainer:
    """Train a :class:`GenerativeModel` on images; see the module docstring.

    Args:
        model: the model; its ``loss(batch)`` returns a dict of scalar tensors, ``"loss"`` is
            backpropagated. Optional hooks: ``on_train_step(step, total_steps)`` before every
            step (must depend only on ``step`` so resuming stays exact) and ``data_init(batch)``
            once, under ``no_grad``, before the first step of a fresh run (never on resume).
        data, eval_data: image tensor (uint8, or float in [0, 1]) ``(N, C, H, W)``, an
            ``ImageDataset`` (uses ``.images``) or a map-style Dataset of images / (image, label).
        config: a :class:`TrainConfig`.
        out_dir: where ``metrics.jsonl``, ``samples/`` and ``trainer_checkpoint/`` go (None: nowhere).
        eval_fn: called as ``eval_fn(model) -> dict`` at each evaluation, with EMA weights in place.
        device: defaults to the model's device.
    """

    def __init__(self, model: GenerativeModel, data: Any, config: TrainConfig, eval_data: Any = None,
                 out_dir: str | os.PathLike | None = None, eval_fn: EvalFn | None = None,
                 device: str | torch.device | None = None) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device)
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.eval_fn = eval_fn
        self.source = ImageSource(data, "data")
        self.eval_source = ImageSource(eval_data, "eval_data") if eval_data is not None else None
        for src in filter(None, (self.source, self.eval_source)):  # fail now, not at step 500
            model.check_images(src.get(torch.arange(min(2, len(src))), self.device), name=src.name)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError(f"{type(model).__name__} has no parameters that require grad")
        self.amp_dtype, use_scaler = self._amp_setup()
        self.data_generator = torch.Generator()
        self.sampler = BatchSampler(self.source, config.batch_size, self.data_generator, self.device)
        self._build_optimizers()
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.ema: EMA | None = None
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.eval_history: list[dict[str, float]] = []
        self._accum: dict[str, float] = {}   # sums of logged values since the last history entry
        self._accum_steps = 0
        self._raw_state: dict[str, Tensor] | None = None
        self._sampling_ok = True
        self._last_saved = -1                # step of the last checkpoint written by this trainer

    # ------------------------------------------------------------------ setup
    def _lr_lambda(self) -> Callable[[int], float]:
        config = self.config

        def factor(step_index: int) -> float:  # a plain function: LambdaLR's state stays JSON-able
            return lr_factor(config, step_index)
        return factor

    def _build_optimizers(self) -> None:
        """``self.optimizer`` (AdamW over ``self.params``) and its ``self.scheduler``; subclasses add more."""
        cfg = self.config
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_lambda())

    def _optimizers(self) -> dict[str, tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]]:
        """Checkpoint prefix -> (optimizer, scheduler) for every optimizer of the run."""
        return {"optim": (self.optimizer, self.scheduler)}

    def _ema_module(self) -> torch.nn.Module:
        """The module whose weights the EMA averages (the whole model here; a GAN's generator)."""
        return self.model

    def _amp_setup(self) -> tuple[torch.dtype | None, bool]:
        mode = self.config.amp
        if mode == "off":
            return None, False
        if self.device.type != "cuda":
            if mode != "auto":
                logger.warning("amp=%r needs a CUDA device; training in float32 on %s", mode, self.device)
            return None, False
        if mode == "auto":
            mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return (torch.bfloat16, False) if mode == "bf16" else (torch.float16, True)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _forked_rng(self) -> contextlib.AbstractContextManager:
        """Evaluation and sampling must not consume the training RNG streams."""
        devices = [self.device] if self.device.type == "cuda" else []
        return torch.random.fork_rng(devices=devices)

    @property
    def checkpoint_dir(self) -> Path | None:
        return self.out_dir / ckpt.CHECKPOINT_DIRNAME if self.out_dir is not None else None

    # ------------------------------------------------------------------ fit
    def fit(self, resume: bool | str | os.PathLike = False, stop_after: int | None = None) -> GenerativeModel:
        """Train to ``config.steps`` (or to step ``stop_after``, to simulate an interruption).

        ``resume=True`` continues from ``out_dir/trainer_checkpoint`` if it exists (else starts
        fresh); a path continues from that checkpoint folder. A fresh run seeds torch's global
        RNG and the data order with ``config.seed``. Returns the model with the EMA weights
        copied in (if ``ema_decay > 0``), in eval mode; :meth:`raw_state_dict` has the raw ones.
        """
        cfg = self.config
        resumed = False
        if resume is True and self.out_dir is None:
            raise ValueError("fit(resume=True) needs the Trainer's out_dir (or pass the checkpoint folder)")
        if resume:
            path = self.checkpoint_dir if resume is True else Path(resume)
            if path.exists() or ckpt._old_path(path).exists():
                self.load_checkpoint(path)
                resumed = True
            elif resume is not True:
                raise FileNotFoundError(f"no trainer checkpoint at {path}")
            else:
                logger.info("no checkpoint in %s; starting a fresh run", path)
        if not resumed:
            self._start_fresh()
        end = cfg.steps if stop_after is None else min(int(stop_after), cfg.steps)
        self.model.train()
        bar = _progress_bar(cfg, self.step, end)
        try:
            while self.step < end:
                losses, grad_norm, lr = self._train_step()
                self._record(losses, grad_norm, lr, bar)
                self._periodic()
        finally:
            bar.close()
        if self.checkpoint_dir is not None and self._last_saved != self.step:
            self.save_checkpoint()
        self._raw_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            self.ema.copy_to(self._ema_module())
        return self.model.eval()

    def _start_fresh(self) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.data_generator.manual_seed(cfg.seed)
        self.sampler = BatchSampler(self.source, cfg.batch_size, self.data_generator, self.device)
        self.step, self.history, self.eval_history = 0, [], []
        self._accum, self._accum_steps = {}, 0
        if callable(getattr(self.model, "data_init", None)):
            self.model.train()
            with torch.no_grad():
                self.model.data_init(self.sampler.peek())
        self._build_optimizers()
        self.ema = EMA(self._ema_module(), cfg.ema_decay) if cfg.ema_decay > 0 else None
        self._last_saved = -1
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "metrics.jsonl").write_text("")

    def _train_step(self) -> tuple[dict[str, float], float, float]:
        cfg, model = self.config, self.model
        if callable(getattr(model, "on_train_step", None)):
            model.on_train_step(self.step, cfg.steps)
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for _ in range(cfg.grad_accum):
            batch = self.sampler.next()
            with self._autocast():
                out = model.loss(batch)
            if not isinstance(out, dict) or "loss" not in out:
                raise TypeError(f"{type(model).__name__}.loss must return a dict with a 'loss' entry")
            values = {k: float(v.detach().float().mean()) for k, v in out.items()}
            if not all(math.isfinite(v) for v in values.values()):
                self._diverged("loss", values)
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v / cfg.grad_accum
            loss = out["loss"] / cfg.grad_accum
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        grad_norm = float(norm)
        # with fp16 the GradScaler expects occasional overflow: it skips the step and lowers its scale
        if not math.isfinite(grad_norm) and self.scaler is None:
            self._diverged("gradient norm", {**sums, "grad_norm": grad_norm})
        lr = float(self.optimizer.param_groups[0]["lr"])
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        if self.ema is not None:
            self.ema.update(self._ema_module())
        return sums, grad_norm, lr

    def _diverged(self, what: str, values: dict[str, float]) -> None:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        raise TrainingDivergedError(
            f"non-finite {what} at step {self.step + 1} of {self.config.steps} ({shown}); nothing was "
            f"applied or checkpointed. Try a lower lr (now {self.config.lr:g}), more warmup_steps, or "
            f"grad_clip > 0 (now {self.config.grad_clip:g}); check the data is in [0, 1].")

    def _record(self, losses: dict[str, float], grad_norm: float, lr: float, bar: Any) -> None:
        for k, v in {**losses, "grad_norm": grad_norm}.items():
            self._accum[k] = self._accum.get(k, 0.0) + v
        self._accum_steps += 1
        bar.update(1)
        bar.set_postfix(loss=f"{losses['loss']:.4g}", lr=f"{lr:.3g}", refresh=False)
        if self.step % self.config.log_every == 0 or self.step == self.config.steps:
            entry = {"step": self.step, "lr": lr, **{k: v / self._accum_steps for k, v in self._accum.items()}}
            self.history.append(entry)
            self._accum, self._accum_steps = {}, 0
            logger.info("step %d: %s", self.step, ", ".join(f"{k}={v:.4g}" for k, v in entry.items() if k != "step"))
            self._write_metrics({"split": "train", **entry})

    def _periodic(self) -> None:
        cfg, s = self.config, self.step
        has_eval = self.eval_source is not None or self.eval_fn is not None
        if cfg.eval_every and has_eval and (s % cfg.eval_every == 0 or s == cfg.steps):
            self.evaluate()
        if cfg.sample_every and self.out_dir is not None and (s % cfg.sample_every == 0 or s == cfg.steps):
            self.write_samples()
        if cfg.checkpoint_every and self.checkpoint_dir is not None and s % cfg.checkpoint_every == 0:
            self.save_checkpoint()

    def _write_metrics(self, record: dict[str, Any]) -> None:
        if self.out_dir is not None:
            with open(self.out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    @contextlib.contextmanager
    def _eval_weights(self):
        """EMA weights (if any), eval mode, no grad, private RNG; everything restored afterwards."""
        ema = self.ema.applied(self._ema_module()) if self.ema is not None else contextlib.nullcontext()
        was_training = self.model.training
        with ema, torch.no_grad(), self._forked_rng():
            torch.manual_seed(self.config.seed)
            self.model.eval()
            try:
                yield self.model
            finally:
                self.model.train(was_training)

    # ------------------------------------------------------------------ eval / samples
    def evaluate(self) -> dict[str, float]:
        """Mean of each ``loss()`` entry over ``eval_batches`` of eval_data, plus ``eval_fn``."""
        record: dict[str, float] = {}
        with self._eval_weights() as model:
            if self.eval_source is not None:
                sums: dict[str, float] = {}
                n = 0
                for batch in eval_batches(self.eval_source, self.config.batch_size, self.config.eval_batches,
                                          self.device):
                    with self._autocast():
                        out = model.loss(batch)
                    for k, v in out.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach().float().mean())
                    n += 1
                record.update({k: v / n for k, v in sums.items()})
            if self.eval_fn is not None:
                record.update({k: float(v) for k, v in self.eval_fn(model).items()})
        entry = {"step": self.step, **record}
        self.eval_history.append(entry)
        logger.info("eval step %d: %s", self.step, ", ".join(f"{k}={v:.4g}" for k, v in record.items()))
        self._write_metrics({"split": "eval", **entry})
        return record

    def write_samples(self) -> Path | None:
        """``out_dir/samples/step_{step:06d}.png`` from a generator seeded with ``config.seed``."""
        if not self._sampling_ok or self.out_dir is None:
            return None
        with self._eval_weights() as model:
            gen = torch.Generator(device=self.device).manual_seed(self.config.seed)
            try:
                images = model.sample(self.config.num_samples, generator=gen)
            except NotImplementedError:
                logger.warning("%s cannot sample; no sample grids will be written", type(model).__name__)
                self._sampling_ok = False
                return None
        scale = max(1, 96 // model.image_shape[1])
        return save_grid(images.float(), self.out_dir / "samples" / f"step_{self.step:06d}.png", scale=scale)

    # ------------------------------------------------------------------ checkpoints
    def raw_state_dict(self) -> dict[str, Tensor]:
        """The raw (non-EMA) model weights: live during training, a copy after :meth:`fit`."""
        return self._raw_state if self._raw_state is not None else self.model.state_dict()

    def save_checkpoint(self, path: str | os.PathLike | None = None) -> Path:
        """Write the full training state (see :mod:`genzoo.train.checkpoint`) atomically."""
        path = Path(path) if path is not None else self.checkpoint_dir
        if path is None:
            raise ValueError("no out_dir was given, so there is nowhere to save a checkpoint")
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.shadow.items()})
        opt_tensors, opt_meta, sched_meta = {}, {}, {}
        for prefix, (optimizer, scheduler) in self._optimizers().items():
            tensors_i, opt_meta[prefix] = ckpt.flatten_optimizer(optimizer, prefix)
            opt_tensors.update(tensors_i)
            sched_meta[prefix] = scheduler.state_dict()
        rng_tensors, rng_meta = ckpt.capture_rng(self.data_generator)
        data_tensors, data_meta = self.sampler.state()
        tensors.update({**opt_tensors, **rng_tensors, **data_tensors})
        scaler_meta = None
        if self.scaler is not None:
            scaler_meta = self.scaler.state_dict()
            tensors["scaler.scale"] = torch.tensor(float(scaler_meta.pop("scale")), dtype=torch.float64)
            tensors["scaler.growth_tracker"] = torch.tensor(int(scaler_meta.pop("_growth_tracker")))
        state = {
            "step": self.step, "model_class": type(self.model).__name__, "data": data_meta,
            "scheduler": sched_meta, "optimizer": opt_meta, "scaler": scaler_meta,
            "ema": {"decay": self.ema.decay, "num_updates": self.ema.num_updates} if self.ema else None,
            "rng": rng_meta, "config": self.config.to_dict(), "history": self.history,
            "eval_history": self.eval_history, "log_accum": {"sums": self._accum, "steps": self._accum_steps},
        }
        ckpt.save_checkpoint_dir(path, tensors, state)
        self._last_saved = self.step
        logger.info("saved trainer checkpoint at step %d to %s", self.step, path)
        return path

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore everything :meth:`save_checkpoint` wrote (does not call ``data_init``)."""
        tensors, state = ckpt.load_checkpoint_dir(path)
        saved_cfg = state["config"]
        diff = [k for k, v in self.config.to_dict().items() if saved_cfg.get(k) != v and k != "progress"]
        if diff:
            logger.warning("resuming with a TrainConfig that differs from the checkpoint's in %s", diff)
        if state["model_class"] != type(self.model).__name__:
            raise ckpt.CheckpointError(f"{path} was written for a {state['model_class']}, "
                                       f"not a {type(self.model).__name__}")
        load_state_strict(self.model, ckpt.prefixed(tensors, "model"), source=str(path))
        self.ema = None
        if state["ema"] is not None:
            self.ema = EMA(self._ema_module(), state["ema"]["decay"])
            self.ema.load_state_dict({**state["ema"], "shadow": ckpt.prefixed(tensors, "ema")})
        # the schedulers first: constructing one overwrites the param groups' lr, loading restores it
        self._build_optimizers()
        if "param_groups" in state["optimizer"]:  # written before trainers had several optimizers
            state["optimizer"], state["scheduler"] = {"optim": state["optimizer"]}, {"optim": state["scheduler"]}
        for prefix, (optimizer, scheduler) in self._optimizers().items():
            if prefix not in state["optimizer"]:
                raise ckpt.CheckpointError(f"{path} has no state for optimizer {prefix!r}")
            ckpt.unflatten_optimizer(optimizer, tensors, state["optimizer"][prefix], prefix)
            scheduler.load_state_dict(state["scheduler"][prefix])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict({**state["scaler"], "scale": float(tensors["scaler.scale"]),
                                         "_growth_tracker": int(tensors["scaler.growth_tracker"])})
        self.sampler = BatchSampler(self.source, self.config.batch_size, self.data_generator, self.device)
        self.sampler.load_state(tensors, state["data"])
        ckpt.restore_rng(self.data_generator, tensors, state["rng"])
        self.step = int(state["step"])
        self.history, self.eval_history = state["history"], state["eval_history"]
        self._accum, self._accum_steps = dict(state["log_accum"]["sums"]), int(state["log_accum"]["steps"])
        self._last_saved = self.step
        if self.out_dir is not None:  # drop records written after the checkpoint by the interrupted run
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._truncate_metrics()
        logger.info("resumed from %s at step %d", path, self.step)

    def _truncate_metrics(self) -> None:
        path = self.out_dir / "metrics.jsonl"
        if path.exists():
            keep = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= self.step]
            path.write_text("".join(line + "\n" for line in keep))


def _progress_bar(config: TrainConfig, start: int, end: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=end, initial=start, disable=not config.progress, desc="train", unit="step",
                dynamic_ncols=True)
