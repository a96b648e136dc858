"""Small shared utilities: image grids and seeding."""
from __future__ import annotations

import math
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def make_grid(images: Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0) -> Tensor:
    """Tile ``(N, C, H, W)`` images in [0, 1] into one ``(C, H', W')`` image."""
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    grid = torch.full((c, ncol * (h + padding) + padding, nrow * (w + padding) + padding), pad_value,
                      dtype=torch.float32)
    for i, img in enumerate(images.detach().float().cpu()):
        r, k = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, top:top + h, left:left + w] = img
    return grid


def save_grid(images: Tensor, path: str | os.PathLike, nrow: int | None = None, padding: int = 2,
              scale: int = 1) -> Path:
    """Save images ``(N, C, H, W)`` in [0, 1] as one PNG grid; ``scale`` enlarges pixels."""
    from PIL import Image

    grid = make_grid(images.clamp(0, 1), nrow=nrow, padding=padding)
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
