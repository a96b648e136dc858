"""Tests of the gated PixelCNN prior over VQ code grids (genzoo/models/vq/prior.py)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genzoo.models.vq.prior import GatedPixelCNN

H, W, K = 5, 6, 7


def _randomize(model: GatedPixelCNN, seed: int = 0, std: float = 0.5) -> GatedPixelCNN:
    """Overwrite every parameter (biases included) with non-trivial random values, in float64."""
    g = torch.Generator().manual_seed(seed)
    model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return model


def _labels(model: GatedPixelCNN, batch: int, label: int = 1) -> torch.Tensor | None:
    return torch.full((batch,), label, dtype=torch.long) if model.num_classes else None


def _check_perturbation_causality(model: GatedPixelCNN) -> None:
    """Row p of the batch = base grid with every position >= p (raster order) changed.

    The logits at positions <= p must not move: position p may not see its own code either.
    """
    n = H * W
    g = torch.Generator().manual_seed(1)
    base = torch.randint(0, K, (1, H, W), generator=g)
    flat = base.reshape(1, n).repeat(n, 1)
    for p in range(n):
        flat[p, p:] = (flat[p, p:] + torch.randint(1, K, (n - p,), generator=g)) % K
    ref = model(base, _labels(model, 1)).reshape(K, n)
    out = model(flat.reshape(n, H, W), _labels(model, n)).reshape(n, K, n)
    for p in range(n):
        diff = (out[p] - ref).abs().amax(dim=0)  # (n,) over positions
        assert torch.all(diff[: p + 1] <= 1e-12), f"changing positions >= {p} changed logits at <= {p}"
        if p < n - 1:  # sanity: the perturbation is visible at later positions
            assert diff[p + 1:].max() > 1e-6
    # the logits at p do depend on the left neighbour and on the position directly above
    for p in range(1, n):
        i, j = divmod(p, W)
        for q in ([p - 1] if j > 0 else []) + ([p - W] if i > 0 else []):
            changed = base.reshape(n).clone()
            changed[q] = (changed[q] + 1) % K
            new = model(changed.reshape(1, H, W), _labels(model, 1)).reshape(K, n)
            assert (new[:, p] - ref[:, p]).abs().max() > 1e-6, f"logits at {p} ignore position {q}"


def _input_gradients(model: GatedPixelCNN) -> torch.Tensor:
    """(n, n) matrix: [p, q] = |d (w . logits[p]) / d embedding[q]|, one batch element per p."""
    n = H * W
    captured = {}

    def hook(module, inputs, output):
        output.retain_grad()
        captured["emb"] = output

    handle = model.embedding.register_forward_hook(hook)
    try:
        g = torch.Generator().manual_seed(2)
        idx = torch.randint(0, K, (1, H, W), generator=g).repeat(n, 1, 1)
        logits = model(idx, _labels(model, n)).reshape(n, K, n)
        w = torch.randn(K, generator=g, dtype=logits.dtype)
        picked = logits[torch.arange(n), :, torch.arange(n)]  # (n, K): sample p, position p
        (picked @ w).sum().backward()  # batch elements are independent, so row p only sees sample p
    finally:
        handle.remove()
    return captured["emb"].grad.reshape(n, n, -1).abs().amax(dim=-1)


@pytest.mark.parametrize("kernel_size,num_layers", [(3, 8), (5, 3), (1, 2)])
def test_causality_perturbation(kernel_size, num_layers):
    model = _randomize(GatedPixelCNN(K, hidden_channels=12, num_layers=num_layers, kernel_size=kernel_size))
    _check_perturbation_causality(model)


@pytest.mark.parametrize("kernel_size,num_layers", [(3, 8), (5, 3), (1, 2)])
def test_causality_gradients(kernel_size, num_layers):
    model = _randomize(GatedPixelCNN(K, hidden_channels=12, num_layers=num_layers, kernel_size=kernel_size))
    grad = _input_gradients(model)
    n = H * W
    for p in range(n):
        assert torch.all(grad[p, p:] == 0), f"logits at {p} get gradient from positions >= {p}"
        i, j = divmod(p, W)
        if j > 0:
            assert grad[p, p - 1] > 0, f"logits at {p} ignore the left neighbour"
        if i > 0:
            assert grad[p, p - W] > 0, f"logits at {p} ignore the position above"


def test_no_blind_spot():
    """With 8 layers of 3x3 the receptive field covers every earlier position of a 5x6 grid."""
    model = _randomize(GatedPixelCNN(K, hidden_channels=12, num_layers=8))
    grad = _input_gradients(model)
    n = H * W
    for p in range(1, n):
        assert torch.all(grad[p, :p] > 0), f"blind spot before position {p}: {grad[p, :p]}"
    # including the up-right neighbour that a single masked stack misses
    i, j = 2, 2
    assert grad[i * W + j, (i - 1) * W + j + 2] > 0


def test_nll_matches_cross_entropy():
    model = _randomize(GatedPixelCNN(K, hidden_channels=8, num_layers=3))
    idx = torch.randint(0, K, (3, H, W), generator=torch.Generator().manual_seed(0))
    logits = model(idx)
    assert logits.shape == (3, K, H, W)
    logp = torch.log_softmax(logits, dim=1).gather(1, idx[:, None]).squeeze(1)
    manual = -logp.sum(dim=(1, 2))
    nll = model.nll(idx)
    assert nll.shape == (3,)
    torch.testing.assert_close(nll, manual)
    torch.testing.assert_close(nll.sum(), F.cross_entropy(logits, idx, reduction="sum"))


def test_nll_uniform_model():
    model = GatedPixelCNN(K, hidden_channels=8, num_layers=2)
    with torch.no_grad():
        model.head[-1].weight.zero_()
        model.head[-1].bias.zero_()
    idx = torch.randint(0, K, (2, H, W), generator=torch.Generator().manual_seed(0))
    expected = torch.full((2,), H * W * math.log(K))
    torch.testing.assert_close(model.nll(idx), expected)


def test_sample_shape_determinism_and_range():
    model = GatedPixelCNN(K, hidden_channels=8, num_layers=3)
    a = model.sample(4, 3, 4, generator=torch.Generator().manual_seed(5))
    b = model.sample(4, 3, 4, generator=torch.Generator().manual_seed(5))
    c = model.sample(4, 3, 4, generator=torch.Generator().manual_seed(6))
    assert a.shape == (4, 3, 4) and a.dtype == torch.long
    assert a.min() >= 0 and a.max() < K
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_sample_greedy_and_top_k():
    model = _randomize(GatedPixelCNN(K, hidden_channels=8, num_layers=3), std=0.3).float()
    n, h, w = 3, 3, 4
    greedy = torch.zeros(n, h, w, dtype=torch.long)
    with torch.no_grad():
        for i in range(h):
            for j in range(w):
                greedy[:, i, j] = model(greedy)[:, :, i, j].argmax(dim=1)
    out = model.sample(n, h, w, generator=torch.Generator().manual_seed(0), top_k=1)
    assert torch.equal(out, greedy)
    # top_k=2: every sampled code is one of the two most likely codes given its (sampled) prefix
    out2 = model.sample(8, h, w, generator=torch.Generator().manual_seed(1), top_k=2, temperature=2.0)
    with torch.no_grad():
        top2 = model(out2).topk(2, dim=1).indices  # (8, 2, h, w)
    assert torch.all((top2 == out2[:, None]).any(dim=1))


def test_sample_validation():
    model = GatedPixelCNN(K, hidden_channels=8, num_layers=2)
    for t in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            model.sample(1, 2, 2, temperature=t)
    for k in (0, K + 1, 1.5):
        with pytest.raises(ValueError, match="top_k"):
            model.sample(1, 2, 2, top_k=k)
    with pytest.raises(ValueError):
        model.sample(0, 2, 2)


def test_input_validation():
    model = GatedPixelCNN(K, hidden_channels=8, num_layers=2)
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(H, W, dtype=torch.long))
    with pytest.raises(ValueError, match="int64"):
        model(torch.zeros(1, H, W))
    for bad in (-1, K):
        idx = torch.zeros(1, H, W, dtype=torch.long)
        idx[0, 1, 2] = bad
        with pytest.raises(ValueError, match=r"\[0, 7\)"):
            model.nll(idx)
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.zeros(1, H, W, dtype=torch.long), labels=torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="kernel_size"):
        GatedPixelCNN(K, kernel_size=4)


def test_training_reduces_nll():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    first_rows = torch.randint(0, K, (2, 1, 4), generator=g)
    data = first_rows.expand(2, 4, 4).contiguous()  # every row is a copy of the row above
    model = GatedPixelCNN(K, hidden_channels=32, num_layers=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    uniform = 16 * math.log(K)
    for _ in range(100):
        loss = model.nll(data).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = model.nll(data).mean().item()
    assert final < 0.2 * uniform, (final, uniform)


def test_class_conditioning():
    model = _randomize(GatedPixelCNN(K, hidden_channels=12, num_layers=8, num_classes=3))
    idx = torch.randint(0, K, (2, H, W), generator=torch.Generator().manual_seed(0))
    out0 = model(idx, torch.tensor([0, 0]))
    out1 = model(idx, torch.tensor([1, 1]))
    assert (out0 - out1).abs().amax() > 1e-3
    assert (out0[:, :, 0, 0] - out1[:, :, 0, 0]).abs().amax() > 1e-3  # even the first position
    _check_perturbation_causality(model)
    grad = _input_gradients(model)
    for p in range(H * W):
        assert torch.all(grad[p, p:] == 0)
    with pytest.raises(ValueError, match="labels are required"):
        model(idx)
    with pytest.raises(ValueError, match="labels"):
        model(idx, torch.tensor([0, 3]))
    model.float()
    s = model.sample(2, 2, 3, generator=torch.Generator().manual_seed(0), labels=torch.tensor([0, 2]))
    assert s.shape == (2, 2, 3) and s.dtype == torch.long
    with pytest.raises(ValueError, match="labels"):
        model.sample(2, 2, 3)
