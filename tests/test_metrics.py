"""Likelihood metrics: bits/dim conventions and the chunked importance-sampled NLL."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from genzoo.metrics import bits_per_dim, elbo_bpd, importance_sampled_nll


def test_bits_per_dim_known_values():
    d = 3 * 32 * 32
    assert bits_per_dim(d * math.log(256), d) == pytest.approx(8.0, abs=1e-12)  # uniform over 256 bins
    assert bits_per_dim(0.0, d, num_bits=8) == pytest.approx(8.0, abs=1e-12)     # uniform density on [0, 1]
    assert bits_per_dim(d * math.log(2), d) == pytest.approx(1.0)
    # a continuous density NLL converts to the same number as the discrete NLL of its bins
    assert bits_per_dim(-d * math.log(4.0), d, num_bits=8) == pytest.approx(6.0)  # density 4 on [0, 1/4]
    t = bits_per_dim(torch.tensor([0.0, d * math.log(2)]), d)
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError):
        bits_per_dim(1.0, 0)


class TableModel(torch.nn.Module):
    """log w[j, i] = table[j, i] for image i (stored as pixel value i / 255), served in chunks of samples."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table, self.next_sample, self.calls = table, {}, []
        self.w = torch.nn.Parameter(torch.zeros(()))

    def importance_log_weights(self, x, num_samples, generator=None):
        assert not torch.is_grad_enabled() and not self.training
        idx = torch.round(x[:, 0, 0, 0] * 255).long()
        start = self.next_sample.get(int(idx[0]), 0)
        self.next_sample[int(idx[0])] = start + num_samples
        self.calls.append((num_samples, x.shape[0]))
        return self.table[start:start + num_samples, idx].float() + 0 * self.w


def test_importance_sampled_nll_matches_direct_logsumexp_in_chunks():
    g = torch.Generator().manual_seed(0)
    k, n = 23, 7
    table = torch.randn(k, n, generator=g, dtype=torch.float64) * 3 - 50
    x_uint8 = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    expected = math.log(k) - torch.logsumexp(table, 0)
    for data in (x_uint8, x_uint8.float() / 255, SimpleNamespace(images=x_uint8)):
        model = TableModel(table).train()
        res = importance_sampled_nll(model, data, num_samples=k, batch_size=3, chunk_size=5)
        assert res["nll"] == pytest.approx(float(expected.mean()), abs=1e-4)
        assert res["stderr"] == pytest.approx(float(expected.std() / math.sqrt(n)), abs=1e-4)
        assert res["elbo"] == pytest.approx(float(table.mean()), abs=1e-4)
        assert res["bpd"] == pytest.approx(res["nll"] / (4 * math.log(2)))
        assert res["nll"] <= -res["elbo"]
        assert (res["num_images"], res["num_samples"]) == (n, k)
        assert max(m for m, _ in model.calls) <= 5 and max(b for _, b in model.calls) <= 3
        assert model.training  # mode restored


def test_importance_sampled_nll_rejects_bad_data():
    model = TableModel(torch.zeros(1, 1))
    with pytest.raises(TypeError):
        importance_sampled_nll(model, [[0.0]])
    with pytest.raises(ValueError, match="shape"):
        importance_sampled_nll(model, torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="dtype"):
        importance_sampled_nll(model, torch.zeros(1, 1, 2, 2, dtype=torch.int32))


def test_elbo_bpd_is_seeded_and_uses_the_discrete_convention():
    class Noisy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def elbo(self, x):
            return -x[:, 0, 0, 0] * 0 - 10.0 + torch.randn(x.shape[0])

    x = torch.zeros(5, 1, 2, 2)
    a, b = elbo_bpd(Noisy(), x, batch_size=2, seed=3), elbo_bpd(Noisy(), x, batch_size=2, seed=3)
    assert a == b
    torch.manual_seed(3)
    manual = float(10.0 - torch.cat([torch.randn(2), torch.randn(2), torch.randn(1)]).mean()) / (4 * math.log(2))
    assert a == pytest.approx(manual, rel=1e-6)
