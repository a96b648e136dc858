"""Tests of genzoo.train: optimisation, EMA, exact resume, atomic checkpoints, divergence, hooks."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from genzoo.train import checkpoint as ckpt_mod  # (genzoo.train is also the function)
from genzoo.modeling import GenerativeModel, load_safetensors
from genzoo.train import EMA, TrainConfig, Trainer, TrainingDivergedError, lr_factor, train


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add overhead (and contention on a busy 2-core box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@dataclass(frozen=True)
class TinyConfig:
    in_channels: int = 1       # image channels
    image_size: int = 4        # image height = width
    dropout: float = 0.1       # dropout on the conv features
    noise: float = 0.05        # input noise std (torch.randn: makes the loss stochastic)


class TinyGaussian(GenerativeModel):
    """Per-pixel Gaussian whose mean is corrected by a tiny conv of the noised input."""

    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        shape = (config.in_channels, config.image_size, config.image_size)
        self.mu = nn.Parameter(torch.zeros(shape))
        self.log_sigma = nn.Parameter(torch.zeros(shape))
        self.conv = nn.Conv2d(config.in_channels, config.in_channels, 3, padding=1)
        self.drop = nn.Dropout(config.dropout)
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("initialized", torch.tensor(False))
        self.poison_loss = self.poison_grad = False
        self.step_calls: list[tuple[int, int]] = []
        self.init_calls: list[torch.Tensor] = []
        self.sample_seeds: list[int] = []
        self.batches: list[torch.Tensor] = []

    def on_train_step(self, step: int, total_steps: int) -> None:
        self.step_calls.append((step, total_steps))

    def data_init(self, batch: torch.Tensor) -> None:
        self.init_calls.append(batch.clone())
        self.mu.copy_(batch.mean(0))
        self.initialized.fill_(True)

    def loss(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training:
            self.batches.append(batch)
            self.running_mean.mul_(0.9).add_(0.1 * batch.mean())
        noisy = batch + self.config.noise * torch.randn_like(batch)
        mean = self.mu + self.drop(self.conv(noisy)) * 0.1
        nll = ((batch - mean) ** 2 / (2 * torch.exp(2 * self.log_sigma)) + self.log_sigma).mean()
        if self.poison_loss:
            nll = nll * float("nan")
        if self.poison_grad:  # finite value, NaN gradient
            nll = nll + torch.sqrt(self.mu.flatten()[0] * 0).sum()
        return {"loss": nll, "mse": ((batch - mean) ** 2).mean()}

    def sample(self, n, generator=None, temperature=1.0):
        self.sample_seeds.append(generator.initial_seed())
        eps = torch.randn((n, *self.mu.shape), generator=generator)
        return (self.mu + temperature * torch.exp(self.log_sigma) * eps).clamp(0, 1)


def make_data(n=64, size=4, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.linspace(0.2, 0.8, size * size).reshape(1, 1, size, size)
    return ((base + 0.1 * torch.randn(n, 1, size, size, generator=g)).clamp(0, 1) * 255).round().to(torch.uint8)


def cfg(**kw) -> TrainConfig:
    base = dict(steps=20, batch_size=8, lr=1e-2, warmup_steps=3, ema_decay=0.9, eval_every=0, sample_every=0,
                checkpoint_every=0, log_every=5, progress=False)
    return TrainConfig(**{**base, **kw})


def new_model(seed=0, **kw) -> TinyGaussian:
    torch.manual_seed(seed)
    return TinyGaussian(TinyConfig(**kw))


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------- optimisation
def test_loss_decreases_and_returns_eval_model():
    data = make_data()
    trainer = Trainer(new_model(), data, cfg(steps=150, lr=3e-2, log_every=10, ema_decay=0.0))
    model = trainer.fit()
    first, last = trainer.history[0]["loss"], trainer.history[-1]["loss"]
    assert last < first - 0.5, (first, last)
    assert not model.training
    assert [h["step"] for h in trainer.history] == list(range(10, 151, 10))
    assert {"step", "lr", "loss", "mse", "grad_norm"} <= set(trainer.history[-1])
    # every batch handed to the model is float32 in [0, 1] with the dataset's shape
    b = model.batches[0]
    assert b.dtype == torch.float32 and b.shape == (8, 1, 4, 4) and 0 <= b.min() and b.max() <= 1
    assert torch.equal(b * 255, (b * 255).round())  # came from uint8 / 255


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_lr_schedule(schedule):
    c = cfg(steps=30, warmup_steps=10, lr=0.1, min_lr_ratio=0.1, schedule=schedule, log_every=1, ema_decay=0)
    trainer = Trainer(new_model(), make_data(), c)
    trainer.fit()
    lrs = {h["step"]: h["lr"] for h in trainer.history}
    assert lrs[1] == pytest.approx(0.01)                       # warmup: lr * t / W
    assert lrs[5] == pytest.approx(0.05)
    assert lrs[10] == pytest.approx(0.1)                       # peak at t = W
    if schedule == "cosine":
        assert lrs[20] == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))  # half-way down the cosine
        assert lrs[30] == pytest.approx(0.01)                  # lr * min_lr_ratio at the last step
        assert all(lrs[t] > lrs[t + 1] for t in range(10, 30))
    else:
        assert all(lrs[t] == pytest.approx(0.1) for t in range(10, 31))
    assert lr_factor(c, 0) == pytest.approx(0.1)


def test_grad_clipping_bounds_norm():
    big = lambda: TinyGaussian(TinyConfig(dropout=0.0))  # noqa: E731
    for clip in (0.05, 0.0):
        torch.manual_seed(0)
        trainer = Trainer(big(), make_data(), cfg(steps=3, grad_clip=clip, log_every=1, ema_decay=0, lr=1e-4))
        trainer.fit()
        total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.params])).item()
        logged = trainer.history[-1]["grad_norm"]  # the norm before clipping
        assert logged > 0.1
        if clip:
            assert total <= clip * (1 + 1e-4), total
        else:
            assert total == pytest.approx(logged, rel=1e-5)


def test_grad_accum_matches_larger_batch():
    runs = []
    for accum, bs in ((2, 8), (1, 16)):
        model = new_model(dropout=0.0, noise=0.0)
        model.data_init = None  # its batch would differ with the batch size; None opts out of the hook
        trainer = Trainer(model, make_data(), cfg(steps=6, grad_accum=accum, batch_size=bs, ema_decay=0,
                                                  log_every=1))
        trainer.fit()
        runs.append(trainer)
    a, b = runs
    for (k, pa), pb in zip(a.model.named_parameters(), b.model.parameters()):  # buffers see micro-batches
        assert torch.allclose(pa, pb, atol=1e-6, rtol=1e-5), k
    assert not torch.equal(a.model.mu, new_model().mu)
    sbs = b.optimizer.state_dict()["state"]
    for i, sa in a.optimizer.state_dict()["state"].items():  # moments scale with the gradient: catch a missing /accum
        sb = sbs[i]
        assert torch.allclose(sa["exp_avg"], sb["exp_avg"], atol=1e-7, rtol=1e-5)
    assert [h["grad_norm"] for h in a.history] == pytest.approx([h["grad_norm"] for h in b.history], rel=1e-5)
    assert [h["loss"] for h in a.history] == pytest.approx([h["loss"] for h in b.history], rel=1e-5)


# ---------------------------------------------------------------------------- EMA
def test_ema_class_hand_computation():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = EMA(model, decay=0.9)
    w0 = model[0].weight.detach().clone()
    rm0 = model[1].running_mean.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.add_(2.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)                      # d = min(0.9, 1/10) = 0.1
    w1 = model[0].weight.detach().clone()
    assert torch.allclose(ema.shadow["0.weight"], 0.1 * w0 + 0.9 * w1)
    assert torch.allclose(ema.shadow["1.running_mean"], 0.1 * rm0 + 0.9 * (rm0 + 2))
    assert ema.shadow["1.num_batches_tracked"].item() == 7  # integers are copied
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    ema.update(model)                      # d = min(0.9, 2/11)
    d = 2 / 11
    expected = d * (0.1 * w0 + 0.9 * w1) + (1 - d) * model[0].weight.detach()
    assert torch.allclose(ema.shadow["0.weight"], expected)
    raw = model[0].weight.detach().clone()
    with ema.applied(model):
        assert torch.allclose(model[0].weight, expected)
    assert torch.equal(model[0].weight, raw)
    other = EMA(model, 0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 2 and torch.equal(other.shadow["0.weight"], ema.shadow["0.weight"])


def test_trainer_ema_two_steps_and_returned_model(tmp_path):
    snaps = []
    model = new_model()
    orig = model.on_train_step
    model.on_train_step = lambda s, t: (snaps.append(params(model)), orig(s, t))
    trainer = Trainer(model, make_data(), cfg(steps=2, ema_decay=0.95), out_dir=tmp_path)
    out = trainer.fit()
    raw = load_safetensors(tmp_path / "trainer_checkpoint" / "state.safetensors")
    p0, p1 = snaps[0]["mu"], snaps[1]["mu"]                 # after data_init, after step 1
    p2 = raw["model.mu"]                                    # raw weights after step 2
    assert torch.equal(trainer.raw_state_dict()["mu"], p2)
    d0, d1 = min(0.95, 1 / 10), min(0.95, 2 / 11)
    expected = d1 * (d0 * p0 + (1 - d0) * p1) + (1 - d1) * p2
    assert torch.allclose(out.mu, expected, atol=1e-7)
    assert torch.allclose(raw["ema.mu"], expected, atol=1e-7)
    assert not torch.allclose(out.mu, p2)                   # the returned model holds the EMA, not raw
    assert not out.training
    # float buffers are averaged too
    assert torch.allclose(out.running_mean, raw["ema.running_mean"])
    assert not torch.equal(raw["ema.running_mean"], raw["model.running_mean"])


# ---------------------------------------------------------------------------- resume
def _all_tensors(out_dir: Path) -> dict[str, torch.Tensor]:
    return load_safetensors(out_dir / "trainer_checkpoint" / "state.safetensors")


def test_resume_is_bit_identical(tmp_path):
    data, evals = make_data(), make_data(16, seed=1)
    c = cfg(steps=20, eval_every=5, sample_every=10, num_samples=4, log_every=3, grad_accum=2)
    a = Trainer(new_model(), data, c, eval_data=evals, out_dir=tmp_path / "a")
    model_a = a.fit()

    b1 = Trainer(new_model(), data, c, eval_data=evals, out_dir=tmp_path / "b")
    b1.fit(stop_after=10)
    assert b1.step == 10 and len(b1.model.init_calls) == 1
    assert b1.scheduler.get_last_lr()[0] != a.scheduler.get_last_lr()[0]
    fresh = new_model(seed=123)  # different init: everything must come from the checkpoint
    torch.manual_seed(999)       # and a disturbed global RNG
    b2 = Trainer(fresh, data, c, eval_data=evals, out_dir=tmp_path / "b")
    model_b = b2.fit(resume=True)
    assert fresh.init_calls == []                              # no data_init on resume
    assert [s for s, _ in fresh.step_calls] == list(range(10, 20))

    ta, tb = _all_tensors(tmp_path / "a"), _all_tensors(tmp_path / "b")
    assert ta.keys() == tb.keys()
    assert any(k.startswith("optim.") for k in ta) and any(k.startswith("ema.") for k in ta)
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    for k, v in model_a.state_dict().items():
        assert torch.equal(v, model_b.state_dict()[k]), k
    sbs = b2.optimizer.state_dict()["state"]
    for i, sa in a.optimizer.state_dict()["state"].items():
        for key, v in sa.items():
            assert torch.equal(v, sbs[i][key]), (i, key)
    assert a.history == b2.history and a.eval_history == b2.eval_history
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (tmp_path / "b" / "metrics.jsonl").read_text()
    # the checkpoint is JSON + safetensors only (no pickle)
    assert sorted(p.name for p in (tmp_path / "b" / "trainer_checkpoint").iterdir()) == ["state.json",
                                                                                        "state.safetensors"]
    state = json.loads((tmp_path / "b" / "trainer_checkpoint" / "state.json").read_text())
    assert state["step"] == 20 and TrainConfig.from_dict(state["config"]) == c


def test_resume_from_explicit_path_and_missing(tmp_path):
    t = Trainer(new_model(), make_data(), cfg(steps=4), out_dir=tmp_path / "run")
    t.fit(stop_after=2)
    t2 = Trainer(new_model(), make_data(), cfg(steps=4))
    t2.fit(resume=tmp_path / "run" / "trainer_checkpoint")
    assert t2.step == 4 and [s for s, _ in t2.model.step_calls] == [2, 3]
    with pytest.raises(FileNotFoundError):
        Trainer(new_model(), make_data(), cfg(steps=4)).fit(resume=tmp_path / "nope")


def test_checkpoint_is_atomic(tmp_path, monkeypatch):
    trainer = Trainer(new_model(), make_data(), cfg(steps=10, checkpoint_every=5), out_dir=tmp_path)
    real_save = ckpt_mod.save_safetensors
    calls = []

    def crashing_save(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # the step-10 checkpoint: half a file, then the process "dies"
            Path(path).write_bytes(b"partial")
            raise KeyboardInterrupt("simulated crash")
        real_save(tensors, path, metadata)

    monkeypatch.setattr(ckpt_mod, "save_safetensors", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp dir left
    state = json.loads((tmp_path / "trainer_checkpoint" / "state.json").read_text())
    assert state["step"] == 5
    assert _all_tensors(tmp_path)["model.mu"].shape == (1, 4, 4)

    # a crash between the two renames: the next load puts the previous checkpoint back
    real_rename = ckpt_mod.os.rename
    monkeypatch.setattr(ckpt_mod, "save_safetensors", real_save)

    def rename(src, dst):
        if ".tmp-" in str(src):
            raise KeyboardInterrupt("crash between renames")
        real_rename(src, dst)

    monkeypatch.setattr(ckpt_mod.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint()
    monkeypatch.setattr(ckpt_mod.os, "rename", real_rename)
    tensors, state = ckpt_mod.load_checkpoint_dir(tmp_path / "trainer_checkpoint")
    assert state["step"] == 5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # simulate a kill exactly between the renames (no cleanup ran): recovery on load
    real_rename(tmp_path / "trainer_checkpoint", tmp_path / ".trainer_checkpoint.old")
    resumed = Trainer(new_model(), make_data(), cfg(steps=10, checkpoint_every=5), out_dir=tmp_path)
    resumed.fit(resume=True, stop_after=6)
    assert resumed.step == 6 and [s for s, _ in resumed.model.step_calls] == [5]


# ---------------------------------------------------------------------------- divergence
@pytest.mark.parametrize("kind", ["poison_loss", "poison_grad"])
def test_nan_raises_without_checkpointing(tmp_path, kind):
    model = new_model()
    orig = model.on_train_step

    def hook(step, total):
        orig(step, total)
        setattr(model, kind, step == 3)  # the 4th step goes bad

    model.on_train_step = hook
    trainer = Trainer(model, make_data(), cfg(steps=10, checkpoint_every=1), out_dir=tmp_path)
    what = "loss" if kind == "poison_loss" else "gradient norm"
    with pytest.raises(TrainingDivergedError, match=f"non-finite {what} at step 4 ") as info:
        trainer.fit()
    assert isinstance(info.value, FloatingPointError)
    assert "lr" in str(info.value) and "grad_clip" in str(info.value)
    state = json.loads((tmp_path / "trainer_checkpoint" / "state.json").read_text())
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for k, v in _all_tensors(tmp_path).items() if v.is_floating_point())
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad update was never applied


# ---------------------------------------------------------------------------- hooks, outputs
def test_hooks_called(tmp_path):
    data = make_data()
    trainer = Trainer(new_model(), data, cfg(steps=5, batch_size=8))
    model = trainer.fit()
    assert model.step_calls == [(i, 5) for i in range(5)]
    assert len(model.init_calls) == 1 and model.init_calls[0].shape == (8, 1, 4, 4)
    assert torch.equal(model.init_calls[0], model.batches[0])  # data_init sees the first training batch
    assert bool(model.initialized)


def test_samples_and_metrics_written(tmp_path):
    calls = []

    def eval_fn(m):
        calls.append(m.training)
        return {"custom": 1.5}

    c = cfg(steps=10, eval_every=5, sample_every=5, num_samples=9, seed=7)
    trainer = Trainer(new_model(), make_data(), c, eval_data=make_data(24, seed=3), out_dir=tmp_path,
                      eval_fn=eval_fn)
    model = trainer.fit()
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_000005.png", "step_000010.png"]
    assert model.sample_seeds == [7, 7]
    assert calls == [False, False]  # eval_fn runs in eval mode
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [5, 10]
    assert all({"loss", "mse", "custom"} <= set(r) for r in evals)
    assert trainer.eval_history == [{k: v for k, v in r.items() if k != "split"} for r in evals]
    assert [r["step"] for r in records if r["split"] == "train"] == [5, 10]
    assert model.training is False


def test_eval_uses_ema_weights_and_restores_raw():
    seen = []
    trainer = Trainer(new_model(), make_data(), cfg(steps=4, eval_every=2, ema_decay=0.9),
                      eval_fn=lambda m: seen.append(m.mu.detach().clone()) or {})
    trainer.fit(stop_after=2)
    # after stop_after the model holds the EMA; the raw weights are kept aside
    assert torch.equal(seen[-1], trainer.model.mu)
    assert not torch.equal(seen[-1], trainer.raw_state_dict()["mu"])


def test_eval_and_samples_do_not_perturb_training(tmp_path):
    runs = []
    for every in (0, 2):
        t = Trainer(new_model(), make_data(), cfg(steps=6, eval_every=every, sample_every=every, num_samples=4),
                    eval_data=make_data(16, seed=2), out_dir=tmp_path / str(every))
        t.fit()
        runs.append(t.raw_state_dict())
    assert all(torch.equal(v, runs[1][k]) for k, v in runs[0].items())


# ---------------------------------------------------------------------------- inputs
def test_data_types_accepted():
    u8 = make_data(16)

    class WithImages:
        images = u8

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 16

        def __getitem__(self, i):
            return u8[i].float() / 255, 0

    for data in (u8, u8.float() / 255, WithImages(), Pairs()):
        trainer = Trainer(new_model(), data, cfg(steps=2, batch_size=100))  # batch > len is capped
        model = trainer.fit()
        assert model.batches[0].shape == (16, 1, 4, 4) and model.batches[0].dtype == torch.float32
        assert torch.allclose(model.batches[0].sum(), u8.float().sum() / 255)


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match=r"expects \(B, 1, 4, 4\)"):
        Trainer(new_model(), torch.zeros(8, 3, 4, 4, dtype=torch.uint8), cfg())
    with pytest.raises(ValueError, match=r"expects \(B, 1, 4, 4\)"):
        Trainer(new_model(), make_data(), cfg(), eval_data=torch.zeros(8, 1, 8, 8))
    with pytest.raises(ValueError, match="empty"):
        Trainer(new_model(), torch.zeros(0, 1, 4, 4), cfg())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Trainer(new_model(), torch.full((8, 1, 4, 4), 255.0), cfg())
    with pytest.raises(ValueError, match="steps"):
        cfg(steps=0)
    with pytest.raises(ValueError, match="schedule"):
        cfg(schedule="linear")
    with pytest.raises(TypeError, match="unknown TrainConfig"):
        train(new_model(), make_data(), steps=2, learning_rate=1.0)


def test_train_wrapper(tmp_path):
    model = train(new_model(), make_data(), steps=3, out_dir=tmp_path, progress=False, batch_size=4)
    assert not model.training
    state = json.loads((tmp_path / "trainer_checkpoint" / "state.json").read_text())
    assert state["step"] == 3 and state["config"]["warmup_steps"] == 0 and state["config"]["ema_decay"] == 0.999
    assert TrainConfig.from_dict(state["config"]).betas == (0.9, 0.999)
    assert not math.isnan(state["history"][-1]["loss"])
