"""The GAN model and its trainer: objectives, which parameters each step moves, single-step gradients,
O-GAN, cascading rejection, EMA of the generator, resume, sampling utilities, save/load."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import genzoo
from genzoo.models.gan import GAN, GANConfig, cascade_scores, correlation
from genzoo.train import GANTrainer, TrainConfig, make_trainer

SMALL = dict(image_size=16, in_channels=1, latent_dim=8, g_channels=(16, 8, 4), d_channels=(4, 8, 16))


def small(**kw) -> GAN:
    torch.manual_seed(0)
    return GAN(GANConfig(**{**SMALL, **kw}))


def data(n=64, c=1, s=16):
    return torch.rand(n, c, s, s, generator=torch.Generator().manual_seed(1))


def quiet(**kw) -> TrainConfig:
    base = dict(steps=2, batch_size=8, progress=False, eval_every=0, sample_every=0, checkpoint_every=0,
                warmup_steps=0, schedule="constant", grad_clip=0.0, lr=1e-3, betas=(0.5, 0.999))
    return TrainConfig(**{**base, **kw})


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


def test_one_d_step_moves_only_d_and_one_g_step_only_g():
    model = small()
    tr = GANTrainer(model, data(), quiet(ema_decay=0.0))
    g0, d0 = snapshot(model.generator), snapshot(model.discriminator)
    # a discriminator update alone
    tr.d_optimizer.zero_grad(set_to_none=True)
    model.discriminator_objective(data(8))["loss"].backward()
    assert all(p.grad is None for p in model.generator.parameters())
    tr.d_optimizer.step()
    g_params = {k for k, _ in model.generator.named_parameters()}
    assert not (changed(g0, model.generator) & g_params)  # BN running stats may move, weights may not
    assert {k for k, _ in model.discriminator.named_parameters()} <= changed(d0, model.discriminator)
    # a generator update alone (as GANTrainer runs it: D frozen)
    g1, d1 = snapshot(model.generator), snapshot(model.discriminator)
    tr.optimizer.zero_grad(set_to_none=True)
    tr.d_optimizer.zero_grad(set_to_none=True)
    from genzoo.train.adversarial import _frozen
    with _frozen(model.discriminator):
        model.generator_objective(8)["loss"].backward()
    assert all(p.grad is None for p in model.discriminator.parameters())
    tr.optimizer.step()
    assert not changed(d1, model.discriminator)
    assert g_params <= changed(g1, model.generator)


@pytest.mark.parametrize("kw", [dict(), dict(ogan_weight=0.5), dict(loss="hinge", spectral_norm=True, cascade=3)])
def test_single_step_gradients_equal_separate_d_and_g_gradients(kw):
    model = small(single_step=True, **kw).double()
    real = data(8).double()
    model.train()
    state = snapshot(model)

    def grads(module):
        return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in module.named_parameters()}

    torch.manual_seed(5)
    model.zero_grad(set_to_none=True)
    model.single_step_objective(real)["loss"].backward()
    one_d, one_g = grads(model.discriminator), grads(model.generator)

    # the same draws (labels none, z from the global RNG) through the two separate objectives
    model.load_state_dict(state)
    torch.manual_seed(5)
    z = model.sample_latents(8)
    fake = model.generator(z)
    model.zero_grad(set_to_none=True)
    model._d_terms(model._to_signed(real), fake.detach(), z, None, model.discriminator)["loss"].backward()
    two_d = grads(model.discriminator)
    model.zero_grad(set_to_none=True)  # no reload: spectral norm's power iterations continue as in one step
    fake = model.generator(z)
    from genzoo.train.adversarial import _frozen
    with _frozen(model.discriminator):
        model._g_terms(fake, z, None, model.discriminator)["loss"].backward()
    two_g = grads(model.generator)
    for name in one_d:
        torch.testing.assert_close(one_d[name], two_d[name], msg=name)
    for name in one_g:
        torch.testing.assert_close(one_g[name], two_g[name], msg=name)
    assert any(g.abs().sum() > 0 for g in one_g.values()) and any(g.abs().sum() > 0 for g in one_d.values())


def test_trainer_n_critic_ttur_clipping_and_generator_ema():
    model = small(loss="wasserstein", weight_clip=0.02, n_critic=3, d_lr_ratio=4.0)
    tr = GANTrainer(model, data(), quiet(steps=3, ema_decay=0.9))
    assert tr.d_optimizer.param_groups[0]["lr"] == pytest.approx(4 * tr.optimizer.param_groups[0]["lr"])
    out = tr.fit()
    assert set(tr.ema.shadow) == set(model.generator.state_dict())  # the EMA covers G only
    # n_critic real batches per step: 3 steps x 3 batches of 8 = 72 images = one epoch of 64 + one batch
    assert (tr.sampler.epoch, tr.sampler.position) == (1, 8)
    assert all(float(p.detach().abs().max()) <= 0.02 + 1e-7 for p in model.discriminator.parameters())
    raw = tr.raw_state_dict()
    g_keys = [k for k in model.generator.state_dict() if model.generator.state_dict()[k].is_floating_point()]
    # the returned model holds the EMA generator and the raw discriminator
    assert any(not torch.equal(raw[f"generator.{k}"], model.generator.state_dict()[k]) for k in g_keys)
    for k, v in model.discriminator.state_dict().items():
        torch.testing.assert_close(raw[f"discriminator.{k}"], v)
    for k, v in tr.ema.shadow.items():
        torch.testing.assert_close(model.generator.state_dict()[k], v)
    assert out is model and not model.training
    hist = tr.history[-1]
    assert {"d_loss", "g_loss", "d_grad_norm", "grad_norm"} <= set(hist)


def test_gradient_accumulation_uses_grad_accum_batches():
    model = small()
    tr = GANTrainer(model, data(), quiet(steps=1, grad_accum=2))
    tr.fit()
    assert tr.sampler.position == 2 * 8  # D: 2 micro-batches of real images; G draws fakes only


def test_gan_resume_is_exact(tmp_path):
    cfg = quiet(steps=4, checkpoint_every=2, ema_decay=0.9)
    a = small(gradient_penalty=1.0, loss="wasserstein", n_critic=2)
    GANTrainer(a, data(), cfg, out_dir=tmp_path / "a").fit()
    b = small(gradient_penalty=1.0, loss="wasserstein", n_critic=2)
    GANTrainer(b, data(), cfg, out_dir=tmp_path / "b").fit(stop_after=2)
    c = small(gradient_penalty=1.0, loss="wasserstein", n_critic=2)
    GANTrainer(c, data(), cfg, out_dir=tmp_path / "b").fit(resume=True)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(c.state_dict()[k], v, rtol=0, atol=0, msg=k)


def test_train_api_picks_the_gan_trainer_and_gan_defaults(tmp_path):
    model = small()
    assert isinstance(make_trainer(model, data(), quiet()), GANTrainer)
    out = genzoo.train(model, data(), steps=2, batch_size=8, progress=False, out_dir=tmp_path, sample_every=1,
                       checkpoint_every=0, eval_every=0)
    assert (tmp_path / "samples" / "step_000002.png").exists()  # fixed-noise grids during training
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert lines and '"lr": 0.0002' in lines[-1]  # GAN.train_defaults: lr 2e-4, constant
    assert out.sample(3).shape == (3, 1, 16, 16)


def test_sampling_shapes_range_seed_truncation_and_interpolation():
    model = small().eval()
    a = model.sample(5, generator=torch.Generator().manual_seed(3))
    b = model.sample(5, generator=torch.Generator().manual_seed(3))
    assert a.shape == (5, 1, 16, 16) and torch.equal(a, b) and 0 <= float(a.min()) and float(a.max()) <= 1
    z = model.sample_latents(200, torch.Generator().manual_seed(0), truncation=0.5)
    assert float(z.abs().max()) <= 0.5
    grid = model.interpolate(2, 5, generator=torch.Generator().manual_seed(0))
    assert grid.shape == (10, 1, 16, 16)
    sphere = small(latent_distribution="sphere").eval()
    zs = sphere.sample_latents(4)
    torch.testing.assert_close(zs.norm(dim=1), torch.full((4,), 8 ** 0.5))
    with pytest.raises(ValueError, match="expected"):
        model.generate(torch.randn(2, 3))
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, labels=torch.tensor([0, 1]))


def test_conditional_gan_samples_by_label():
    model = small(g_norm="conditional", num_classes=3).eval()
    with torch.no_grad():
        for m in model.generator.modules():
            if hasattr(m, "embed"):
                m.embed.weight.normal_()
    z = model.sample_latents(2, torch.Generator().manual_seed(0))
    a = model.generate(z, torch.tensor([0, 0]))
    b = model.generate(z, torch.tensor([1, 1]))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="labels"):
        model.generate(z, torch.tensor([0, 5]))
    assert model.discriminate(a, torch.tensor([0, 2])).shape == (2,)


def test_ogan_score_is_feature_mean_and_encoder_standardises():
    model = small(ogan_weight=0.5).eval()
    x = data(6)
    score, feats = model.discriminator(x * 2 - 1)
    assert feats.shape == (6, 8)
    torch.testing.assert_close(score, feats.mean(1))
    z = model.encode(x)
    assert z.shape == (6, 8)
    torch.testing.assert_close(z.mean(1), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.pow(2).mean(1), torch.ones(6), atol=1e-3, rtol=0)
    assert model.reconstruct(x).shape == x.shape
    with pytest.raises(NotImplementedError, match="O-GAN"):
        small().encode(x)


def test_correlation_values():
    a = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(correlation(a, 3 * a + 2), torch.ones(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(correlation(a, -a), -torch.ones(4), atol=1e-5, rtol=0)
    b = torch.tensor([[1.0, 0.0, -1.0]])
    c = torch.tensor([[0.0, 1.0, 0.0]])
    torch.testing.assert_close(correlation(b, c), torch.zeros(1))


def test_cascade_scores_project_out_earlier_directions():
    g = torch.Generator().manual_seed(0)
    v, w, bias = torch.randn(5, 6, generator=g), torch.randn(3, 6, generator=g), torch.randn(3, generator=g)
    s = cascade_scores(v, w, bias)
    torch.testing.assert_close(s[:, 0], v @ w[0] + bias[0])
    # the second score sees v with its w_1 component removed: moving v along w_1 changes only score 1
    s2 = cascade_scores(v + 2.5 * w[0], w, bias)
    assert not torch.allclose(s2[:, 0], s[:, 0])
    torch.testing.assert_close(s2[:, 1:], s[:, 1:], atol=1e-5, rtol=1e-5)
    v2 = v - (v @ w[0] / w[0].dot(w[0]))[:, None] * w[0]
    torch.testing.assert_close(s[:, 1], v2 @ w[1] + bias[1])
    model = small(cascade=3, d_features=6, loss="hinge")
    assert model.discriminate(data(4)).shape == (4, 3)
    out = model.discriminator_objective(data(4))
    assert out["loss"].dim() == 0


def test_resnet_architecture_and_config_errors():
    model = small(architecture="resnet", g_channels=(8, 8, 8), d_channels=(4, 8, 8), g_norm="self_modulated")
    assert model.sample(2).shape == (2, 1, 16, 16)
    assert model.discriminate(data(2)).shape == (2,)
    with pytest.raises(ValueError, match="same number of levels"):
        GANConfig(**{**SMALL, "d_channels": (4, 8)})
    with pytest.raises(ValueError, match="unknown GAN loss"):
        GANConfig(**SMALL, loss="nope")
    with pytest.raises(ValueError, match="single_step"):
        GANConfig(**SMALL, single_step=True, n_critic=2)
    with pytest.raises(ValueError, match="cascading"):
        GANConfig(**SMALL, ogan_weight=0.5, cascade=2)
    with pytest.raises(ValueError, match="divisible"):
        GANConfig(**{**SMALL, "image_size": 18})
    with pytest.raises(TypeError, match="not a GAN"):
        GANTrainer(genzoo.create("vae", image_size=16, in_channels=1), data(), quiet())


def test_every_gan_variant_is_registered_and_builds():
    names = ["dcgan", "wgan", "wgan-gp", "lsgan", "sngan", "sngan-resnet", "selfmod-gan", "ogan", "cascade-gan",
             "fgan", "sngan-projection"]
    for name in names:
        model = genzoo.create(name, image_size=16, g_channels=(16, 8, 4),
                              d_channels=(4, 8, 16) if "resnet" not in name else (4, 8, 8))
        assert isinstance(model, GAN)
        labels = torch.tensor([0, 1]) if model.config.num_classes else None
        assert model.sample(2, labels=labels).shape == (2, 3, 16, 16)
        out = model.discriminator_objective(torch.rand(2, 3, 16, 16))
        assert torch.isfinite(out["loss"])


def test_save_load_round_trip_keeps_samples_and_spectral_state(tmp_path):
    model = small(spectral_norm=True, loss="hinge", g_norm="self_modulated").eval()
    model.discriminator.train()
    model.discriminate(data(2))  # one power iteration moves u, v
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = genzoo.load(str(tmp_path))
    assert dataclasses.asdict(loaded.config) == dataclasses.asdict(model.config)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    torch.testing.assert_close(loaded.sample(4, generator=gen()), model.sample(4, generator=gen()))
    x = data(3)
    torch.testing.assert_close(loaded.discriminate(x), model.discriminate(x))


def test_conditional_gan_trains_on_labelled_data_and_refuses_unlabelled():
    from genzoo.data.base import ImageDataset

    images = (data(32) * 255).to(torch.uint8)
    labelled = ImageDataset(images, torch.arange(32) % 3, "toy", "train", "", "test")
    model = small(g_norm="conditional", num_classes=3, loss="hinge", spectral_norm=True)
    seen = []
    original = model.discriminator_objective

    def spy(real, labels=None, generator=None):
        seen.append(labels.clone())
        return original(real, labels, generator)

    model.discriminator_objective = spy
    tr = GANTrainer(model, labelled, quiet(steps=2))
    tr.fit()
    assert len(seen) == 2 and all(s.shape == (8,) and int(s.max()) < 3 for s in seen)
    # the labels are those of the images in the batch
    first = tr.sampler.perm[:8] if tr.sampler.epoch == 0 else None
    assert first is not None and torch.equal(seen[0], (first % 3))
    with pytest.raises(ValueError, match="labelled data"):
        GANTrainer(small(g_norm="conditional", num_classes=3), data(), quiet())
