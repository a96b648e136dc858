"""Codebook metrics of a vector quantiser: usage, perplexity and dead codes over a dataset.

For assignment counts ``n_k`` over all encoded vectors, ``p_k = n_k / Σ n``:
``usage = #{k: n_k > 0} / K``, ``perplexity = exp(−Σ p_k ln p_k)`` (K when all codes are used
equally, 1 when one code takes everything), ``dead_codes = #{k: n_k = 0}``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def code_counts(indices: Tensor, num_codes: int) -> Tensor:
    """Assignment counts ``(K,)`` int64 of integer ``indices`` (any shape)."""
    flat = indices.reshape(-1).long()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= num_codes):
        raise ValueError(f"indices must lie in [0, {num_codes}), got [{int(flat.min())}, {int(flat.max())}]")
    return torch.bincount(flat, minlength=num_codes)


def codebook_usage(counts: Tensor) -> dict[str, float]:
    """``usage`` (fraction of codes used), ``perplexity`` and ``dead_codes`` from counts ``(K,)``."""
    counts = counts.double()
    total = float(counts.sum())
    if total <= 0:
        raise ValueError("no assignments: counts sum to zero")
    p = counts / total
    nz = p[p > 0]
    entropy = float(-(nz * nz.log()).sum())
    used = int((counts > 0).sum())
    return {"usage": used / counts.numel(), "perplexity": math.exp(entropy),
            "dead_codes": float(counts.numel() - used), "entropy_bits": entropy / math.log(2)}
