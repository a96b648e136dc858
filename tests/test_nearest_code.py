"""nearest_code: backends agree with the naive reference, ties go to the lowest index, no N x K tile."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from genzoo.layers.nearest_code import nearest_code, triton_available

REPO = Path(__file__).parents[1]


def _int_data(n: int, k: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer-valued floats in {-2..2} (exact float32 arithmetic) with every code duplicated at least once."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-2, 3, (n, d), generator=g).float()
    base = torch.randint(-2, 3, ((k + 1) // 2, d), generator=g).float()
    codes = torch.cat([base, base])[torch.randperm(2 * base.shape[0], generator=g)][:k]
    return x, codes


def _lowest_index_brute(x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Pure-Python argmin of exact squared distances, first index wins (only for exact integer data)."""
    out = []
    for row in x.tolist():
        dists = [sum((a - b) ** 2 for a, b in zip(row, c)) for c in codes.tolist()]
        out.append(dists.index(min(dists)))
    return torch.tensor(out, dtype=torch.int64)


@pytest.mark.parametrize("n,k,d,chunk_size,row_chunk", [
    (1, 1, 1, 2048, 8192), (37, 129, 5, 16, 10), (70, 300, 24, 7, 13), (257, 1000, 3, 100, 64),
    (33, 50, 64, 2048, 8192), (5, 17, 130, 4, 2),
])
def test_torch_matches_naive_random(n, k, d, chunk_size, row_chunk):
    g = torch.Generator().manual_seed(n * 1000 + k)
    x, codes = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    ref = nearest_code(x, codes, backend="naive")
    got = nearest_code(x, codes, backend="torch", chunk_size=chunk_size, row_chunk=row_chunk)
    assert got.dtype == torch.int64 and got.shape == (n,)
    assert torch.equal(got, ref)
    # the reference is the true nearest neighbour (up to float rounding on random data)
    assert torch.equal(ref, torch.cdist(x.double(), codes.double()).argmin(dim=1))


@pytest.mark.parametrize("n,k,d,chunk_size,row_chunk", [(200, 60, 3, 7, 33), (64, 301, 2, 16, 5), (50, 40, 1, 3, 7)])
def test_torch_matches_naive_with_exact_ties(n, k, d, chunk_size, row_chunk):
    x, codes = _int_data(n, k, d, seed=k)
    ref = nearest_code(x, codes, backend="naive")
    assert torch.equal(ref[:20], _lowest_index_brute(x[:20], codes))
    assert torch.equal(nearest_code(x, codes, backend="torch", chunk_size=chunk_size, row_chunk=row_chunk), ref)
    assert torch.equal(nearest_code(x, codes, backend="torch"), ref)
    assert torch.equal(nearest_code(x, codes), ref)  # auto on CPU


def test_ties_lowest_index_by_hand():
    codes = torch.tensor([[5.0, 5.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [9.0, 9.0], [0.0, 1.0], [-1.0, 0.0]])
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [9.0, 9.0], [-3.0, 0.0], [0.5, 0.5]])
    # [0,0]: codes 1, 2, 3, 5, 6 all at distance 1 -> 1; [0.5,0.5]: codes 1, 2, 3, 5 tie -> 1
    expected = torch.tensor([1, 2, 1, 4, 6, 1])
    for backend in ("naive", "torch"):
        assert torch.equal(nearest_code(x, codes, backend=backend), expected), backend
    for chunk_size in (1, 2, 3, 4):  # ties that straddle chunk boundaries
        assert torch.equal(nearest_code(x, codes, backend="torch", chunk_size=chunk_size, row_chunk=2), expected)
    # all codes identical: index 0 everywhere
    same = torch.ones(10, 3)
    assert torch.equal(nearest_code(torch.randn(4, 3), same, backend="torch", chunk_size=3), torch.zeros(4).long())


def test_dtypes_layouts_and_no_grad():
    g = torch.Generator().manual_seed(0)
    x, codes = _int_data(40, 30, 6, seed=1)
    ref = nearest_code(x, codes, backend="naive")
    for dt in (torch.float16, torch.bfloat16, torch.float64):  # small integers are exact in all of them
        assert torch.equal(nearest_code(x.to(dt), codes.to(dt), backend="torch", chunk_size=7), ref)
    xt = torch.randn(6, 40, generator=g).T  # non-contiguous
    ct = torch.randn(6, 25, generator=g).T
    ref = nearest_code(xt.contiguous(), ct, backend="naive")
    assert torch.equal(nearest_code(xt, ct, backend="torch", chunk_size=4), ref)
    xg = torch.randn(5, 6, requires_grad=True)
    out = nearest_code(xg, codes.requires_grad_())
    assert not out.requires_grad and out.dtype == torch.int64
    empty = nearest_code(torch.empty(0, 6), codes, backend="torch")
    assert empty.shape == (0,) and empty.dtype == torch.int64


class _LargestOutput(TorchDispatchMode):
    """Records the largest tensor produced by any aten op run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_torch_backend_never_materialises_n_by_k():
    g = torch.Generator().manual_seed(0)
    n, k, d, row_chunk, chunk_size = 3000, 20000, 8, 1024, 2048  # N x K = 60M floats = 240 MB
    x, codes = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    with _LargestOutput() as probe:
        got = nearest_code(x, codes, backend="torch", chunk_size=chunk_size, row_chunk=row_chunk)
    assert probe.largest <= row_chunk * chunk_size < n * k
    assert torch.equal(got[:150], nearest_code(x[:150], codes, backend="naive"))
    with _LargestOutput() as probe:  # the probe does see a full score matrix when there is one
        nearest_code(x[:100], codes[:300], backend="naive")
    assert probe.largest >= 100 * 300


def test_errors():
    x, codes = torch.randn(4, 3), torch.randn(5, 3)
    with pytest.raises(ValueError, match="feature dimension mismatch.*D=3.*D=2"):
        nearest_code(x, torch.randn(5, 2))
    with pytest.raises(ValueError, match="x must be 2-D"):
        nearest_code(torch.randn(2, 4, 3), codes)
    with pytest.raises(ValueError, match="codes must be 2-D"):
        nearest_code(x, torch.randn(3))
    with pytest.raises(ValueError, match="same device.*cpu.*meta"):
        nearest_code(x, codes.to("meta"))
    with pytest.raises(ValueError, match="backend must be one of"):
        nearest_code(x, codes, backend="cuda")
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        nearest_code(x, codes, chunk_size=0)
    with pytest.raises(ValueError, match="row_chunk must be a positive int"):
        nearest_code(x, codes, row_chunk=1.5)
    with pytest.raises(ValueError, match="K=0"):
        nearest_code(x, torch.empty(0, 3))
    with pytest.raises(ValueError, match="floating-point"):
        nearest_code(x.long(), codes)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="interpreter on: CPU triton is allowed")
def test_triton_on_cpu_without_interpreter_fails_clearly():
    x, codes = torch.randn(4, 3), torch.randn(5, 3)
    match = "TRITON_INTERPRET=1" if triton_available() else "not installed"
    with pytest.raises(RuntimeError, match=match):
        nearest_code(x, codes, backend="triton")


_INTERPRETER_SCRIPT = textwrap.dedent("""
    import torch
    from genzoo.layers.nearest_code import nearest_code
    g = torch.Generator().manual_seed(0)
    cases = [(70, 300, 24), (33, 50, 64), (20, 45, 100), (65, 17, 1)]
    for n, k, d in cases:  # D=100 exercises the chunked-D loop; N, K, D off the block sizes
        x, codes = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
        ref = nearest_code(x, codes, backend="naive")
        assert torch.equal(nearest_code(x, codes, backend="triton"), ref), (n, k, d)
        assert torch.equal(nearest_code(x, codes, backend="torch", chunk_size=37, row_chunk=16), ref), (n, k, d)
        base = torch.randint(-2, 3, ((k + 1) // 2, d), generator=g).float()
        ci = torch.cat([base, base])[torch.randperm(2 * base.shape[0], generator=g)][:k]
        xi = torch.randint(-2, 3, (n, d), generator=g).float()
        ref = nearest_code(xi, ci, backend="naive")
        assert torch.equal(nearest_code(xi, ci, backend="triton"), ref), ("ties", n, k, d)
        assert torch.equal(nearest_code(xi, ci, backend="torch", chunk_size=5), ref), ("ties", n, k, d)
    # by hand: duplicated codes, lowest index wins (also across the 64-code tile boundary)
    codes = torch.full((130, 2), 50.0)
    codes[[3, 5, 64, 129]] = torch.tensor([1.0, 0.0])
    codes[[70, 100]] = torch.tensor([0.0, 1.0])
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 3.0], [50.0, 50.0]])
    assert nearest_code(x, codes, backend="triton").tolist() == [3, 70, 70, 0]
    xt = torch.randn(9, 40, generator=g).T  # strided inputs, half precision
    assert torch.equal(nearest_code(xt.half(), codes[:, :1].repeat(1, 9).half(), backend="triton"),
                       nearest_code(xt.half(), codes[:, :1].repeat(1, 9).half(), backend="naive"))
    assert nearest_code(torch.empty(0, 2), codes, backend="triton").shape == (0,)
""")


def test_triton_interpreter_matches_naive_and_torch():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    r = subprocess.run([sys.executable, "-c", _INTERPRETER_SCRIPT], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
