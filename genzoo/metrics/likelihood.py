"""Likelihood metrics: bits/dim conversion and the importance-sampled NLL (IWAE bound).

Burda, Grosse & Salakhutdinov, arXiv:1509.00519: for ``w_i = p(x, z_i) / q(z_i|x)``, ``z_i ~ q``,
``log (1/k) sum_i w_i`` is a lower bound on ``log p(x)`` that tightens as ``k`` grows (k = 1 is the
ELBO). Pure functions; they work with any model exposing ``importance_log_weights`` / ``elbo``.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, TypeVar

import torch
from torch import Tensor

T = TypeVar("T", float, Tensor)


def bits_per_dim(nll_nats: T, num_dims: int, num_bits: int | None = None) -> T:
    """Convert a negative log-likelihood per image (nats) to bits per dimension.

    * Discrete likelihood over the ``2^num_bits`` bins of each subpixel (genzoo's VAEs; leave
      ``num_bits=None``): ``bpd = NLL / (D ln 2)``. Uniform over 256 bins gives exactly 8.
    * Continuous density on data scaled to [0, 1] and uniformly dequantised (``x + u`` with
      ``u ~ U(0, 2^-num_bits)`` per dim, e.g. flows): the density NLL is converted to the discrete
      convention by adding the log-volume of a bin, ``D log(2^num_bits)``:
      ``bpd = (NLL + D num_bits ln 2) / (D ln 2)``. The uniform density on [0, 1] gives ``num_bits``.

    ``D = num_dims = C * H * W``. Works on Python floats and on tensors (elementwise).
    """
    if num_dims <= 0:
        raise ValueError(f"num_dims must be positive, got {num_dims}")
    ln2 = math.log(2.0)
    offset = 0.0 if num_bits is None else num_dims * num_bits * ln2
    return (nll_nats + offset) / (num_dims * ln2)


def as_images(data: Any) -> Tensor:
    """``data`` as a ``(N, C, H, W)`` tensor: float in [0, 1], uint8, or an object with ``.images`` (uint8).

    uint8 images stay uint8 here (converted per batch by :func:`iter_batches` to save memory).
    """
    images = getattr(data, "images", data)
    if not isinstance(images, Tensor):
        raise TypeError(f"data must be a (N, C, H, W) tensor or a dataset with .images, got {type(data).__name__}")
    if images.dim() != 4:
        raise ValueError(f"data has shape {tuple(images.shape)}; expected images (N, C, H, W)")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"data has dtype {images.dtype}; expected uint8 or float images in [0, 1]")
    if images.shape[0] == 0:
        raise ValueError("data holds no images")
    return images


def iter_batches(images: Tensor, batch_size: int, device: torch.device, dtype: torch.dtype) -> Iterator[Tensor]:
    """Batches of ``images`` as float ``(b, C, H, W)`` in [0, 1] on ``device``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i in range(0, images.shape[0], batch_size):
        x = images[i:i + batch_size].to(device)
        yield x.to(dtype) / 255 if x.dtype == torch.uint8 else x.to(dtype)


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


def _model_device_dtype(model: Any) -> tuple[torch.device, torch.dtype]:
    try:
        p = next(model.parameters())
        return p.device, p.dtype
    except (AttributeError, StopIteration):
        return torch.device("cpu"), torch.float32


def importance_sampled_nll(model: Any, data: Any, num_samples: int = 1000, batch_size: int = 100,
                           chunk_size: int = 100, generator: torch.Generator | None = None,
                           progress: bool = False) -> dict[str, float | int]:
    """Importance-sampled negative log-likelihood ``-log (1/k) sum_i w_i`` (IWAE bound, nats).

    ``model.importance_log_weights(x, m, generator)`` -> ``(m, B)`` is called for chunks of
    ``m <= chunk_size`` samples and combined with a running logsumexp (float64), so memory is bounded
    by ``batch_size * chunk_size`` decoder evaluations whatever ``num_samples`` is. Runs under
    ``torch.no_grad()`` in eval mode (the model's mode is restored afterwards).

    Returns ``nll`` (mean over images, nats/image), ``bpd`` (``nll / (D ln 2)``, discrete
    convention), ``stderr`` (standard error of the mean over images, nats), ``elbo`` (mean over
    images and samples of ``log w``: a k-sample estimate of the ELBO, nats; always ``<= -nll``),
    ``num_images`` and ``num_samples``.
    """
    if num_samples < 1 or chunk_size < 1:
        raise ValueError(f"num_samples and chunk_size must be >= 1, got {num_samples} and {chunk_size}")
    images = as_images(data)
    device, dtype = _model_device_dtype(model)
    nll_parts, elbo_parts = [], []
    batches = iter_batches(images, batch_size, device, dtype)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=math.ceil(images.shape[0] / batch_size), desc=f"IWAE k={num_samples}")
    with _eval_mode(model):
        for x in batches:
            running = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=device)
            sum_log_w = torch.zeros(x.shape[0], dtype=torch.float64, device=device)
            for start in range(0, num_samples, chunk_size):
                m = min(chunk_size, num_samples - start)
                log_w = model.importance_log_weights(x, m, generator=generator).double()
                if log_w.shape != (m, x.shape[0]):
                    raise ValueError(f"importance_log_weights returned shape {tuple(log_w.shape)}, "
                                     f"expected ({m}, {x.shape[0]})")
                running = torch.logaddexp(running, torch.logsumexp(log_w, dim=0))
                sum_log_w += log_w.sum(0)
            nll_parts.append((math.log(num_samples) - running).cpu())
            elbo_parts.append((sum_log_w / num_samples).cpu())
    nll = torch.cat(nll_parts)
    n = nll.numel()
    mean_nll = float(nll.mean())
    stderr = float(nll.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0
    return {"nll": mean_nll, "bpd": float(bits_per_dim(mean_nll, math.prod(images.shape[1:]))),
            "stderr": stderr, "elbo": float(torch.cat(elbo_parts).mean()), "num_images": n,
            "num_samples": num_samples}


def elbo_bpd(model: Any, data: Any, batch_size: int = 500, seed: int | None = 0) -> float:
    """Mean negative single-sample ELBO in bits/dim (discrete convention) of ``model.elbo`` over ``data``.

    ``model.elbo`` draws from torch's global RNG; with ``seed`` set it is seeded inside
    ``torch.random.fork_rng`` so the result is reproducible and the caller's RNG state untouched.
    """
    images = as_images(data)
    device, dtype = _model_device_dtype(model)
    total = 0.0
    fork = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
    with fork, _eval_mode(model):
        if seed is not None:
            torch.manual_seed(seed)
        for x in iter_batches(images, batch_size, device, dtype):
            total += float(model.elbo(x).double().sum())
    return float(bits_per_dim(-total / images.shape[0], math.prod(images.shape[1:])))


def dequantized_bpd(model: Any, data: Any, batch_size: int = 500, seed: int = 0,
                    progress: bool = False) -> dict[str, float | int]:
    """Bits/dim of a continuous-density model (a flow) on 8-bit images, uniformly dequantised.

    Each image gets one noise draw ``u ~ U(0, 1)^D`` from a generator seeded with ``seed`` (drawn
    batch by batch in order, so the number depends on ``batch_size`` too) and
    ``model.bits_per_dim(x, generator)`` gives ``(-log p(x + u) + D num_bits ln 2) / (D ln 2)``: an
    upper bound on the discrete NLL in bits/dim (Theis et al. 2016). Returns ``bpd`` (mean over
    images), ``stderr`` (its standard error) and ``num_images``.
    """
    images = as_images(data)
    device, dtype = _model_device_dtype(model)
    gen = torch.Generator(device=device).manual_seed(seed)
    parts = []
    batches = iter_batches(images, batch_size, device, dtype)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=math.ceil(images.shape[0] / batch_size), desc="bits/dim")
    with _eval_mode(model):
        for x in batches:
            parts.append(model.bits_per_dim(x, generator=gen).double().cpu())
    bpd = torch.cat(parts)
    n = bpd.numel()
    return {"bpd": float(bpd.mean()), "stderr": float(bpd.std() / math.sqrt(n)) if n > 1 else 0.0, "num_images": n}
