"""Reconstruction metrics of autoencoders with discrete codes (VQ-VAE): MSE, PSNR, codebook use, prior bits.

Images in [0, 1]. ``mse`` is the mean squared error per subpixel over the whole set; ``psnr`` the mean
over images of ``10 log10(1 / MSE_image)`` (dB; an image reconstructed exactly is capped at 100 dB).
Codebook statistics (:func:`codebook_usage`) count every code position of every image; the prior's
negative log-likelihood is reported in bits per code position.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from tqdm.auto import tqdm

from .codebook import codebook_usage
from .likelihood import _eval_mode, _model_device_dtype, as_images, iter_batches


def reconstruction_metrics(model: Any, data: Any, batch_size: int = 500, progress: bool = False) -> dict[str, float]:
    """``mse``, ``psnr`` and, for models with codes, ``usage``, ``perplexity``, ``dead_codes``,
    ``prior_bits_per_code`` (with ``prior_stderr``) of ``model`` (``encode`` -> indices, ``decode``,
    optionally ``prior_nll``) on ``data`` (images ``(N, C, H, W)`` or a dataset with ``.images``)."""
    images = as_images(data)
    device, dtype = _model_device_dtype(model)
    num_codes = int(model.config.num_codes)
    counts = torch.zeros(num_codes, dtype=torch.float64)
    sq_sum, n_sub, psnrs, prior_bits = 0.0, 0, [], []
    with _eval_mode(model):
        batches = iter_batches(images, batch_size, device, dtype)
        for x in tqdm(batches, total=math.ceil(len(images) / batch_size), disable=not progress, desc="recon"):
            codes = model.encode(x)
            err = (model.decode(codes).double() - x.double()).pow(2).flatten(1)
            sq_sum += float(err.sum())
            n_sub += err.numel()
            psnrs.append((10 * torch.log10(1 / err.mean(1).clamp_min(1e-10))).cpu())
            counts += torch.bincount(codes.reshape(-1).cpu(), minlength=num_codes).double()
            if hasattr(model, "prior_nll"):
                prior_bits.append((model.prior_nll(codes).double() / (codes[0].numel() * math.log(2))).cpu())
    out = {"mse": sq_sum / n_sub, "psnr": float(torch.cat(psnrs).mean()), **codebook_usage(counts)}
    if prior_bits:
        bits = torch.cat(prior_bits)
        out["prior_bits_per_code"] = float(bits.mean())
        out["prior_stderr"] = float(bits.std() / math.sqrt(len(bits))) if len(bits) > 1 else 0.0
    return out
