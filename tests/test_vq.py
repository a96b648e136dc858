"""VectorQuantizer (SimVQ / plain, EMA, restarts, estimators), codebook metrics and the VQVAE model."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import genzoo
from genzoo.layers import VectorQuantizer, nearest_code, rotation_trick
from genzoo.metrics import code_counts, codebook_usage, reconstruction_metrics
from genzoo.models.vq import VQVAE, VQVAEConfig


def _z(shape=(4, 8, 5, 5), seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).requires_grad_(requires_grad)


QUANTIZERS = [dict(codebook="simvq"), dict(codebook="plain"), dict(codebook="plain", ema_decay=0.9),
              dict(codebook="simvq", estimator="rotation"), dict(codebook="plain", dead_code_threshold=0.5)]


# ------------------------------------------------------------------ quantizer
@pytest.mark.parametrize("kw", QUANTIZERS)
def test_triple_and_lookup_equals_quantized(kw):
    torch.manual_seed(0)
    vq = VectorQuantizer(37, 8, **kw)
    z = _z()
    vq.train()
    q, idx, losses = vq(z)  # a training step (may update EMA / restart codes)
    assert q.shape == z.shape and idx.shape == (4, 5, 5) and idx.dtype == torch.int64
    assert set(losses) == {"loss", "commitment", "codebook"}
    vq.eval()
    with torch.no_grad():
        q, idx, _ = vq(z)
    assert torch.equal(vq.lookup(idx), q)  # bit-identical in eval mode
    # indices are the nearest codes (naive full-matrix reference)
    flat = z.movedim(1, -1).reshape(-1, 8)
    ref = torch.cdist(flat.double(), vq.codes().detach().double()).argmin(1)
    assert torch.equal(idx.reshape(-1), ref)
    # with autograd recording, the value is still the code (up to rounding of the estimator)
    zg = z.clone().requires_grad_(True)
    q2, idx2, _ = vq(zg)
    assert torch.equal(idx2, idx)
    torch.testing.assert_close(q2, q, atol=1e-5, rtol=1e-5)


def test_losses_hand_values():
    vq = VectorQuantizer(2, 2, codebook="plain", commitment_weight=0.25).eval()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    z = torch.tensor([[0.2, 0.0], [1.0, 0.5]])
    q, idx, losses = vq(z)
    assert idx.tolist() == [0, 1]
    expected = ((0.2 ** 2) + 0 + 0 + 0.5 ** 2) / 4
    assert math.isclose(float(losses["commitment"]), expected, rel_tol=1e-6)
    assert math.isclose(float(losses["codebook"].detach()), expected, rel_tol=1e-6)
    assert math.isclose(float(losses["loss"]), 1.25 * expected, rel_tol=1e-6)


@pytest.mark.parametrize("estimator", ["straight_through", "rotation"])
def test_gradients_reach_encoder_and_codebook(estimator):
    torch.manual_seed(0)
    enc = torch.nn.Conv2d(3, 8, 1)
    vq = VectorQuantizer(16, 8, estimator=estimator)
    x = torch.randn(2, 3, 4, 4)
    q, _, losses = vq(enc(x))
    (q.square().mean() + losses["loss"]).backward()
    assert enc.weight.grad is not None and enc.weight.grad.abs().sum() > 0
    assert vq.transform.weight.grad.abs().sum() > 0  # W learns through the codebook loss


def test_straight_through_gradient_is_identity():
    vq = VectorQuantizer(5, 3, codebook="plain")
    z = torch.randn(7, 3, requires_grad=True)
    q, _, _ = vq(z)
    v = torch.randn(7, 3)
    (q * v).sum().backward()
    assert torch.equal(z.grad, v)


def test_rotation_trick_is_scaled_rotation():
    torch.manual_seed(1)
    z, q = torch.randn(1, 4, dtype=torch.float64), torch.randn(1, 4, dtype=torch.float64)
    out = rotation_trick(z, q)
    torch.testing.assert_close(out, q)
    jac = torch.autograd.functional.jacobian(lambda t: rotation_trick(t, q)[0], z)[:, 0, :]  # d out / d z
    lam = q.norm() / z.norm()
    rot = jac / lam
    torch.testing.assert_close(rot @ rot.T, torch.eye(4, dtype=torch.float64))  # orthogonal
    assert torch.linalg.det(rot) > 0  # a rotation, not a reflection
    torch.testing.assert_close(rot @ (z[0] / z.norm()), q[0] / q.norm())  # maps z's direction onto q's
    # degenerate inputs keep the exact value
    zero = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(rotation_trick(zero, q), q)


def test_simvq_frozen_codebook_never_updated():
    torch.manual_seed(0)
    vq = VectorQuantizer(32, 8).train()
    names = [n for n, _ in vq.named_parameters()]
    assert names == ["transform.weight", "transform.bias"]
    frozen, w0 = vq.frozen_codebook.clone(), vq.transform.weight.detach().clone()
    vq.data_init(_z())
    opt = torch.optim.Adam(vq.parameters(), 1e-2)
    for i in range(5):
        z = _z(seed=i, requires_grad=True)
        q, _, losses = vq(z)
        opt.zero_grad()
        (q.square().mean() + losses["loss"]).backward()
        opt.step()
    assert torch.equal(vq.frozen_codebook, frozen)
    assert not torch.equal(vq.transform.weight, w0)
    assert "frozen_codebook" in vq.state_dict()


def test_ema_update_matches_hand_computation():
    """3 codes in 1-D, decay 0.5, Laplace eps 0: every number below is worked out by hand."""
    vq = VectorQuantizer(3, 1, codebook="plain", ema_decay=0.5, laplace_eps=0.0).train()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0], [10.0], [20.0]]))
        vq.ema_sum.copy_(vq.codebook)  # ema_count starts at 1 per code
    z = torch.tensor([[1.0], [3.0], [9.0]])  # -> codes 0, 0, 1 ; code 2 unused
    _, idx, losses = vq(z)
    assert idx.tolist() == [0, 0, 1]
    # counts: N = 0.5*1 + 0.5*(2, 1, 0) = (1.5, 1.0, 0.5); sums: 0.5*(0, 10, 20) + 0.5*(4, 9, 0) = (2, 9.5, 10)
    torch.testing.assert_close(vq.ema_count, torch.tensor([1.5, 1.0, 0.5]))
    torch.testing.assert_close(vq.ema_sum, torch.tensor([[2.0], [9.5], [10.0]]))
    # with eps = 0 the smoothed count is N itself: codes = (2/1.5, 9.5/1, 10/0.5)
    torch.testing.assert_close(vq.codebook, torch.tensor([[4 / 3], [9.5], [20.0]]))
    assert float(losses["codebook"]) == 0.0 and vq.codebook.requires_grad is False
    # Laplace smoothing with eps > 0: (N + eps) / (n + K eps) * n
    vq2 = VectorQuantizer(3, 1, codebook="plain", ema_decay=0.5, laplace_eps=0.1).train()
    with torch.no_grad():
        vq2.codebook.copy_(torch.tensor([[0.0], [10.0], [20.0]]))
        vq2.ema_sum.copy_(vq2.codebook)
    vq2(z)
    n = 3.0
    smoothed = torch.tensor([1.6, 1.1, 0.6]) / (n + 0.3) * n
    torch.testing.assert_close(vq2.codebook[:, 0], torch.tensor([2.0, 9.5, 10.0]) / smoothed)
    vq2.eval()
    vq2(z)  # eval mode never updates
    torch.testing.assert_close(vq2.codebook[:, 0], torch.tensor([2.0, 9.5, 10.0]) / smoothed)


def test_dead_code_restart_moves_unused_codes_to_data():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2, codebook="plain", dead_code_threshold=0.9, usage_decay=0.5).train()
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [200.0, 0.0], [0.0, 300.0]]))
    z = torch.randn(16, 2) * 0.1  # everything goes to code 0
    vq(z)
    # usage after one step: 0.5 + 0.5 * (16, 0, 0, 0) -> codes 1-3 at 0.5 < 0.9 are restarted to batch vectors
    for k in (1, 2, 3):
        assert any(torch.equal(vq.codebook[k], row) for row in z)
    assert torch.equal(vq.codebook[0], torch.zeros(2))


def test_data_init_fits_batch_moments_once():
    torch.manual_seed(0)
    vq = VectorQuantizer(4096, 3)
    z = (torch.randn(2000, 3) @ torch.tensor([[2.0, 0, 0], [0.5, 1.0, 0], [0, 0, 0.1]]) + torch.tensor([5.0, -1, 0]))
    vq.data_init(z)
    codes = vq.codes().detach()
    torch.testing.assert_close(codes.mean(0), z.mean(0), atol=0.1, rtol=0.05)
    torch.testing.assert_close(torch.cov(codes.T), torch.cov(z.T), atol=0.1, rtol=0.1)
    w = vq.transform.weight.clone()
    vq.data_init(z * 10)  # guarded: never re-initialised
    assert torch.equal(vq.transform.weight, w) and bool(vq.initialized)
    plain = VectorQuantizer(8, 3, codebook="plain")
    plain.data_init(z)
    assert all(any(torch.equal(c, row) for row in z) for c in plain.codebook)


def test_quantizer_errors():
    with pytest.raises(ValueError, match="codebook='plain'"):
        VectorQuantizer(8, 4, codebook="simvq", ema_decay=0.9)
    with pytest.raises(ValueError, match="estimator"):
        VectorQuantizer(8, 4, estimator="gumbel")
    vq = VectorQuantizer(8, 4)
    with pytest.raises(ValueError, match=r"\(B, 4, \.\.\.\)"):
        vq(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        vq.lookup(torch.tensor([0, 8]))


def test_quantizer_search_uses_no_full_matrix_and_agrees_with_naive():
    torch.manual_seed(0)
    vq = VectorQuantizer(3000, 16, chunk_size=256)
    x = torch.randn(500, 16)
    codes = vq.codes().detach()
    assert torch.equal(vq.search(x), nearest_code(x, codes, backend="naive"))


# ------------------------------------------------------------------ metrics
def test_codebook_usage_values():
    counts = code_counts(torch.tensor([[0, 1], [2, 3]]), 4)
    stats = codebook_usage(counts)
    assert stats["usage"] == 1.0 and stats["dead_codes"] == 0
    assert math.isclose(stats["perplexity"], 4.0, rel_tol=1e-12)
    stats = codebook_usage(code_counts(torch.tensor([5, 5, 5]), 8))
    assert stats["usage"] == 1 / 8 and stats["dead_codes"] == 7 and math.isclose(stats["perplexity"], 1.0)
    stats = codebook_usage(torch.tensor([3, 1, 0, 0]))  # p = (3/4, 1/4)
    assert math.isclose(stats["perplexity"], math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        code_counts(torch.tensor([4]), 4)


# ------------------------------------------------------------------ model
TINY = dict(image_size=8, in_channels=3, hidden_channels=(8, 8), num_res_blocks=1, num_codes=16, code_dim=4,
            prior_hidden_channels=8, prior_layers=2)


def _tiny(**kw) -> VQVAE:
    torch.manual_seed(0)
    return VQVAE(VQVAEConfig(**{**TINY, **kw}))


def _x(n=4, c=3, s=8):
    return torch.rand(n, c, s, s, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kw", [{}, {"codebook": "plain", "ema_decay": 0.9, "dead_code_threshold": 0.1},
                                {"estimator": "rotation", "upsample": "nearest"}])
def test_vqvae_stages_train_only_their_parameters(kw):
    m = _tiny(**kw).train()
    x = _x()
    m.data_init(x)
    for stage, trained in [("autoencoder", ("encoder", "decoder", "quantizer")), ("prior", ("prior",)),
                           ("joint", ("encoder", "decoder", "quantizer", "prior"))]:
        m.set_stage(stage)
        m.zero_grad(set_to_none=True)
        out = m.loss(x)
        assert torch.isfinite(out["loss"])
        out["loss"].backward()
        for name, p in m.named_parameters():
            if name.split(".")[0] in trained:
                assert p.grad is not None and p.requires_grad, (stage, name)
            else:
                assert p.grad is None and not p.requires_grad, (stage, name)
    with pytest.raises(ValueError, match="stage"):
        m.set_stage("decoder")


def test_vqvae_encode_decode_sample_and_round_trip(tmp_path):
    m = _tiny().eval()
    x = _x()
    idx = m.encode(x)
    assert idx.shape == (4, 4, 4) and idx.dtype == torch.int64
    y = m.decode(idx)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.equal(m.reconstruct(x), y)
    s1 = m.sample(3, generator=torch.Generator().manual_seed(0), temperature=0.8, top_k=5)
    s2 = m.sample(3, generator=torch.Generator().manual_seed(0), temperature=0.8, top_k=5)
    assert s1.shape == (3, 3, 8, 8) and torch.equal(s1, s2)
    greedy = m.sample_codes(2, top_k=1)
    assert torch.equal(greedy[0], greedy[1])  # top_k = 1 is deterministic
    m.save_pretrained(tmp_path)
    loaded = genzoo.VQVAE.from_pretrained(tmp_path)
    assert torch.equal(loaded.encode(x), idx) and torch.equal(loaded.decode(idx), y)
    torch.testing.assert_close(loaded.prior_nll(idx), m.prior_nll(idx), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\(B, 4, 4\)"):
        m.decode(idx[:, :2])
    with pytest.raises(ValueError, match="expects"):
        m.encode(torch.rand(2, 1, 8, 8))


def test_vqvae_reconstruction_metrics_match_manual():
    m = _tiny().eval()
    x = _x(n=6)
    res = reconstruction_metrics(m, x, batch_size=4)
    err = (m.reconstruct(x).double() - x.double()).pow(2)
    assert math.isclose(res["mse"], float(err.mean()), rel_tol=1e-9)
    assert math.isclose(res["psnr"], float((10 * torch.log10(1 / err.flatten(1).mean(1))).mean()), rel_tol=1e-9)
    bits = m.prior_nll(m.encode(x)).double() / (16 * math.log(2))
    assert math.isclose(res["prior_bits_per_code"], float(bits.mean()), rel_tol=1e-9)
    stats = codebook_usage(code_counts(m.encode(x), 16))
    assert res["usage"] == stats["usage"] and math.isclose(res["perplexity"], stats["perplexity"])


def test_vqvae_config_errors():
    with pytest.raises(ValueError, match="divisible"):
        VQVAEConfig(image_size=10, hidden_channels=(8, 8, 8))
    with pytest.raises(ValueError, match="upsample"):
        VQVAEConfig(upsample="pixelshuffle")


def test_vqvae_short_training_reduces_loss():
    torch.manual_seed(0)
    m = _tiny()
    x = torch.rand(16, 3, 1, 1, generator=torch.Generator().manual_seed(0)).expand(16, 3, 8, 8).contiguous()
    cfg = genzoo.TrainConfig(steps=200, batch_size=16, lr=3e-3, warmup_steps=0, ema_decay=0.0, progress=False,
                             eval_every=0, sample_every=0, checkpoint_every=0, log_every=20)
    trainer = genzoo.Trainer(m.set_stage("autoencoder"), x, cfg)
    trainer.fit()
    assert bool(m.quantizer.initialized)  # the trainer's data_init hook ran
    assert trainer.history[-1]["recon_mse"] < 0.5 * trainer.history[0]["recon_mse"]
