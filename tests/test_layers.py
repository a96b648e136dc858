"""Invertible layers: round trips, log-dets against the brute-force Jacobian, caches, memory saving."""
from __future__ import annotations

import math

import pytest
import torch

from genzoo.layers import (ActNorm, ActNormInvConv, AffineTransform, BatchNormFlow, Chain, Coupling,
                           DiagonalScale, GlowNet, InvConv1x1, LogitTransform, MLPNet, ResNetNet, Squeeze,
                           dequantize, squeeze2d, unsqueeze2d)


def _perturb(module: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> None:
    """Move every parameter off its (often zero / identity) initialisation, so no term is trivially 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


# name -> (factory, example shape without batch, input range)
BIJECTORS = {
    "actnorm-4d": (lambda: ActNorm(3), (3, 4, 4), "real"),
    "actnorm-2d": (lambda: ActNorm(5), (5,), "real"),
    "invconv-lu": (lambda: InvConv1x1(4, lu=True), (4, 3, 3), "real"),
    "invconv-plain": (lambda: InvConv1x1(4, lu=False), (4, 3, 3), "real"),
    "actnorm-invconv": (lambda: ActNormInvConv(4), (4, 3, 3), "real"),
    "coupling-glow-affine": (lambda: Coupling(4, GlowNet(2, 8, 4), "affine", "half", 0, "sigmoid"), (4, 3, 3), "real"),
    "coupling-glow-additive": (lambda: Coupling(4, GlowNet(2, 8, 2), "additive", "half", 0), (4, 3, 3), "real"),
    "coupling-checkerboard-tanh": (lambda: Coupling(3, ResNetNet(3, 8, 6, 1), "affine", "checkerboard", 1, "tanh"),
                                   (3, 4, 4), "real"),
    "coupling-half-odd-parity1": (lambda: Coupling(5, ResNetNet(2, 8, 6, 1), "affine", "half", 1, "tanh"),
                                  (5, 2, 2), "real"),
    "coupling-exp": (lambda: Coupling(4, GlowNet(2, 8, 4), "affine", "half", 0, "exp"), (4, 2, 2), "real"),
    "coupling-alternate-mlp": (lambda: Coupling(7, MLPNet(4, 8, 3, 2), "additive", "alternate", 0), (7,), "real"),
    "diagonal-scale": (lambda: DiagonalScale(6), (6,), "real"),
    "batchnorm-flow": (lambda: BatchNormFlow(3), (3, 3, 3), "real"),
    "logit": (lambda: LogitTransform(0.05), (2, 3, 3), "unit"),
    "affine-transform": (lambda: AffineTransform(2.0, -0.5), (2, 2, 2), "real"),
    "squeeze": (lambda: Squeeze(), (2, 4, 4), "real"),
    "chain": (lambda: Chain([ActNorm(4), InvConv1x1(4), Coupling(4, GlowNet(2, 8, 4))]), (4, 2, 2), "real"),
}


def _make(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    factory, shape, kind = BIJECTORS[name]
    torch.manual_seed(0)
    b = factory().double()
    x = torch.rand(5, *shape, dtype=torch.float64) if kind == "unit" else torch.randn(5, *shape, dtype=torch.float64)
    b.train()
    b(x)  # data-dependent init (ActNorm) and batch-norm statistics
    _perturb(b)
    return b.eval(), x


@pytest.mark.parametrize("name", sorted(BIJECTORS))
def test_round_trip_and_inverse_log_det(name):
    b, x = _make(name)
    z, ld = b(x)
    assert ld.shape == (x.shape[0],) and ld.dtype == torch.float64
    x2, ld_inv = b.inverse(z)
    torch.testing.assert_close(x2, x, atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(ld_inv, -ld, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("name", sorted(BIJECTORS))
def test_log_det_equals_slogdet_of_autograd_jacobian(name):
    b, x = _make(name)
    _, ld = b(x)
    for i in range(2):
        xi = x[i:i + 1]
        jac = torch.autograd.functional.jacobian(lambda v: b(v.reshape(xi.shape))[0].reshape(-1), xi.reshape(-1))
        sign, ref = torch.linalg.slogdet(jac)
        assert sign != 0
        assert float(ld[i]) == pytest.approx(float(ref), abs=1e-8), name
    if name not in ("squeeze", "coupling-glow-additive", "coupling-alternate-mlp"):
        assert ld.abs().max() > 1e-3, "the example should exercise a non-zero log-det"


def test_actnorm_initialises_once_and_survives_save_load():
    torch.manual_seed(0)
    a = ActNorm(3)
    x = torch.randn(64, 3, 5, 5) * torch.tensor([2.0, 0.5, 3.0]).view(1, 3, 1, 1) + 4
    z, _ = a(x)
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    assert bool(a.initialized)
    loc = a.loc.detach().clone()
    a(torch.randn(8, 3, 5, 5) * 10)  # a second batch with other statistics: no re-initialisation
    assert torch.equal(a.loc, loc)
    b = ActNorm(3)
    b.load_state_dict(a.state_dict())
    assert bool(b.initialized)
    b.train()(torch.randn(8, 3, 5, 5) * 10)
    assert torch.equal(b.loc, loc), "loaded ActNorm must not re-initialise"
    c = ActNorm(3).eval()
    c(x)
    assert not bool(c.initialized), "eval mode never initialises"


def test_lu_and_plain_invconv_agree():
    torch.manual_seed(0)
    lu = InvConv1x1(6, lu=True).double()
    _perturb(lu)
    plain = InvConv1x1(6, lu=False).double()
    with torch.no_grad():
        plain.weight.copy_(lu.weight_and_logdet()[0])
    x = torch.randn(3, 6, 4, 4, dtype=torch.float64)
    (za, la), (zb, lb) = lu(x), plain(x)
    torch.testing.assert_close(za, zb)
    torch.testing.assert_close(la, lb)
    torch.testing.assert_close(lu.inverse(za)[0], plain.inverse(zb)[0])


def test_eval_cache_reuses_inverse_and_tracks_updates():
    torch.manual_seed(0)
    m = ActNormInvConv(4)
    m(torch.randn(16, 4, 3, 3))  # init
    m.eval()
    z = torch.randn(2, 4, 3, 3)
    with torch.no_grad():
        a = m.inverse(z)[0]
        misses = m.cache.misses
        b = m.inverse(z)[0]
        m(z)
        assert m.cache.misses == misses == 1, "no recomputation between calls"
        assert torch.equal(a, b)
        m.invconv.log_s.add_(0.1)  # a parameter update invalidates the cache
        c = m.inverse(z)[0]
    assert m.cache.misses == 2 and not torch.allclose(a, c)
    m.train()
    torch.testing.assert_close(m.inverse(z)[0].detach(), c, atol=1e-5, rtol=1e-5)


def test_squeeze_inverse_and_layout():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    y = squeeze2d(x)
    assert y.shape == (2, 12, 2, 3)
    assert torch.equal(y[0, :4, 0, 0], torch.tensor([x[0, 0, 0, 0], x[0, 0, 0, 1], x[0, 0, 1, 0], x[0, 0, 1, 1]]))
    assert torch.equal(unsqueeze2d(y), x)
    with pytest.raises(ValueError, match="divisible"):
        squeeze2d(torch.zeros(1, 1, 3, 4))


def test_dequantize_bins():
    k = torch.arange(256, dtype=torch.float32).view(1, 1, 16, 16)
    x = k / 255
    d = dequantize(x, 8, generator=torch.Generator().manual_seed(0))
    assert torch.all(d >= k / 256) and torch.all(d < (k + 1) / 256)
    c = dequantize(x, 8, noise=False)
    torch.testing.assert_close(c, (k + 0.5) / 256)
    five = dequantize(x, 5, noise=False)
    torch.testing.assert_close(five, (torch.floor(k / 8) + 0.5) / 32)


def _saved_bytes(fn) -> int:
    """Bytes of distinct tensors autograd keeps for the backward pass of ``fn()``."""
    seen: dict[tuple, int] = {}

    def pack(t):
        if t.device.type != "meta":
            seen[(t.untyped_storage().data_ptr(), t.dtype)] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def _glow_chain(depth: int, memory_saving: bool, seed: int = 0) -> Chain:
    torch.manual_seed(seed)
    layers = []
    for _ in range(depth):
        layers += [ActNormInvConv(4), Coupling(4, GlowNet(2, 16, 4), "affine", "half", 0, "sigmoid")]
    chain = Chain(layers, memory_saving=memory_saving).double()
    chain(torch.randn(32, 4, 8, 8, dtype=torch.float64))  # ActNorm init
    _perturb(chain, 0.02)
    return chain


def test_memory_saving_gradients_equal_standard_backprop():
    x = torch.randn(6, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    grads = []
    for saving in (False, True):
        chain = _glow_chain(4, saving).train()
        xi = x.detach().clone().requires_grad_(True)
        z, ld = chain(xi)
        ((z ** 2).sum() * 0.3 - ld.sum()).backward()
        grads.append([xi.grad] + [p.grad for p in chain.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_memory_saving_float32_gradients_and_buffers():
    """float32 gradients within 1e-5 (relative) and running statistics updated exactly once."""
    torch.manual_seed(0)
    results = []
    for saving in (False, True):
        torch.manual_seed(1)
        chain = Chain([Coupling(4, ResNetNet(2, 8, 4, 1), "affine", "half", 0, "tanh"), ActNorm(4),
                       Coupling(4, ResNetNet(2, 8, 4, 1), "affine", "half", 1, "tanh")], memory_saving=saving)
        x = torch.randn(8, 4, 4, 4, requires_grad=True)
        _perturb(chain, 0.05, seed=2)
        z, ld = chain(x)
        (z.square().mean() - ld.mean()).backward()
        bufs = [b.clone() for b in chain.buffers()]
        results.append(([x.grad] + [p.grad for p in chain.parameters()], bufs))
    for a, b in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)


def test_memory_saving_activation_memory_does_not_grow_with_depth():
    x = torch.randn(16, 4, 8, 8, dtype=torch.float64)
    saved = {}
    for depth in (2, 8):
        for saving in (False, True):
            chain = _glow_chain(depth, saving).train()
            saved[depth, saving], _ = _saved_bytes(lambda: chain(x.clone().requires_grad_(True)))
    assert saved[8, False] > 3 * saved[2, False]          # standard backprop: linear in depth
    assert saved[8, True] == saved[2, True]               # memory saving: only the chain's output
    assert saved[8, True] * 20 < saved[8, False]


def test_log_dets_accumulate_in_float32_under_bf16_autocast():
    chain = _glow_chain(2, False).float().train()
    x = torch.randn(4, 4, 8, 8)
    with torch.no_grad():
        _, ref = chain(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z, ld = chain(x)
    assert z.dtype == torch.bfloat16 and ld.dtype == torch.float32
    torch.testing.assert_close(ld, ref, rtol=0.02, atol=0.5)


def test_logit_transform_maps_unit_interval():
    t = LogitTransform(1e-6)
    x = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    z, ld = t(x)
    assert torch.isfinite(z).all() and torch.isfinite(ld).all() and z[0, 1] == 0
    assert float(ld[0]) == pytest.approx(math.log(1 - 2e-6) * 3 - sum(
        math.log(y) + math.log(1 - y) for y in (1e-6, 0.5, 1 - 1e-6)), rel=1e-9)


def test_coupling_rejects_bad_options():
    with pytest.raises(ValueError, match="coupling options"):
        Coupling(4, GlowNet(2, 8, 4), kind="multiplicative")  # type: ignore[arg-type]
