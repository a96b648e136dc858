"""Trainer checkpoints: one folder, ``state.safetensors`` + ``state.json``, swapped in atomically.

Layout of ``<out_dir>/trainer_checkpoint/``:

* ``state.safetensors`` — every tensor: ``model.*`` (raw, non-averaged weights), ``ema.*``,
  ``optim.{param_idx}.{key}`` (AdamW moments and step counters; a GAN's discriminator optimizer
  under ``d_optim.``), ``scaler.*`` (fp16 GradScaler),
  ``rng.data`` / ``rng.torch`` / ``rng.cuda.{i}`` (RNG states as uint8) and ``data.perm`` (the
  current epoch's permutation).
* ``state.json`` — everything else: step, epoch and position in the permutation, each LR
  scheduler's state and each optimizer's param-group hyper-parameters and non-tensor state (keyed by
  the optimizer's prefix), the
  :class:`TrainConfig`, the history, Python's and numpy's RNG states.

No pickle is involved anywhere. :func:`save_checkpoint_dir` writes the new checkpoint into a
temporary sibling folder, then swaps it in with two renames (old → ``.old``, new → final);
:func:`recover_checkpoint_dir` undoes an interrupted swap, so a crash never leaves a
half-written checkpoint in place.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import __version__
from ..modeling import CheckpointError, atomic_write_bytes, load_safetensors, save_safetensors

logger = logging.getLogger(__name__)

CHECKPOINT_DIRNAME = "trainer_checkpoint"
TENSORS_NAME = "state.safetensors"
STATE_NAME = "state.json"
FORMAT = "genzoo-trainer-checkpoint"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------- folder I/O
def _old_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def recover_checkpoint_dir(path: str | os.PathLike) -> None:
    """Finish or undo an interrupted swap and delete leftover temporary folders next to ``path``."""
    path = Path(path)
    old = _old_path(path)
    if old.exists():
        if path.exists():  # the new checkpoint made it in; the old one is garbage
            shutil.rmtree(old, ignore_errors=True)
        else:  # crash between the two renames: put the previous checkpoint back
            os.rename(old, path)
            logger.warning("restored the previous trainer checkpoint %s after an interrupted save", path)
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{path.name}.tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint_dir(path: str | os.PathLike, tensors: dict[str, Tensor], state: dict[str, Any]) -> Path:
    """Atomically replace the checkpoint folder ``path`` with ``tensors`` and ``state``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_checkpoint_dir(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    old = _old_path(path)
    try:
        save_safetensors(tensors, tmp / TENSORS_NAME, metadata={"format": FORMAT})
        payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "genzoo_version": __version__, **state}
        atomic_write_bytes(tmp / STATE_NAME, (json.dumps(payload, indent=1, allow_nan=True) + "\n").encode())
        _fsync_dir(tmp)
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return path


def load_checkpoint_dir(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read ``(tensors, state)`` from a checkpoint folder, recovering an interrupted save first."""
    path = Path(path)
    recover_checkpoint_dir(path)
    state_file = path / STATE_NAME
    if not state_file.is_file():
        raise CheckpointError(f"{path} is not a trainer checkpoint (no {STATE_NAME})")
    try:
        state = json.loads(state_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{state_file} is not valid JSON: {e}") from e
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{state_file} is not a genzoo trainer checkpoint")
    return load_safetensors(path / TENSORS_NAME), state


# --------------------------------------------------------------------------- optimizer
def flatten_optimizer(optimizer: torch.optim.Optimizer, prefix: str = "optim") -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``{prefix}.{param_idx}.{key}`` tensors, plus the param groups and non-tensor state for JSON."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"{prefix}.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any],
                        prefix: str = "optim") -> None:
    """Inverse of :func:`flatten_optimizer`, loaded into ``optimizer``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, entry in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# --------------------------------------------------------------------------- RNG
def capture_rng(data_generator: torch.Generator) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """All RNG states: torch ones as uint8 tensors, Python's and numpy's as JSON."""
    tensors = {"rng.data": data_generator.get_state(), "rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    meta = {"python": [version, list(internal), gauss],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    return tensors, meta


def restore_rng(data_generator: torch.Generator, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    data_generator.set_state(tensors["rng.data"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")),
                                       key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            logger.warning("checkpoint has %d CUDA RNG states but %d devices are visible; restoring what fits",
                           len(cuda), torch.cuda.device_count())
        for i, s in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)
    if meta.get("python"):
        version, internal, gauss = meta["python"]
        random.setstate((version, tuple(internal), gauss))
    if meta.get("numpy"):
        kind, keys, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def prefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of ``tensors`` under ``prefix.`` with the prefix removed."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
