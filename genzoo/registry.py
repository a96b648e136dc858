"""Registry of architectures (untrained, ``create``) and checkpoints (pretrained, ``load``).

Each model file ends with its presets, e.g.
``register("vae-fashion-mnist", VAE, VAEConfig(...), hub_id="genzoo/vae-fashion-mnist",
dataset="fashion-mnist", recipe={...})``. Architecture names have no ``hub_id``.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .hub import CheckpointNotFoundError, resolve_checkpoint
from .modeling import GenerativeModel, load_from_folder, replace_config


@dataclass(frozen=True)
class Entry:
    name: str
    model_class: type[GenerativeModel]
    config: Any
    hub_id: str | None = None            # Hub repo of the pretrained weights (None: architecture only)
    dataset: str | None = None           # dataset the weights were trained on
    recipe: dict[str, Any] | None = None  # training recipe run by `genzoo train <name>`
    description: str = ""
    published: bool = True               # False: a paper preset whose weights are not released yet
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def pretrained(self) -> bool:
        return self.hub_id is not None


_REGISTRY: dict[str, Entry] = {}


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def register(name: str, model_class: type[GenerativeModel], config: Any, *, hub_id: str | None = None,
             dataset: str | None = None, recipe: dict[str, Any] | None = None, description: str = "",
             published: bool = True, **metadata: Any) -> Entry:
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is already registered")
    if not isinstance(config, model_class.config_class):
        raise TypeError(f"{name}: config must be a {model_class.config_class.__name__}")
    entry = Entry(name, model_class, config, hub_id, dataset, recipe, description, published, metadata)
    _REGISTRY[name] = entry
    return entry


def _ensure_models_imported() -> None:
    from . import models  # noqa: F401  (registration happens on import)


def get_entry(name: str) -> Entry:
    _ensure_models_imported()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}.{hint} `genzoo.list_models()` (or `genzoo list`) shows all names."
        )
    return _REGISTRY[name]


def list_models(kind: str | None = None) -> list[str]:
    """Registered names; ``kind`` = ``"pretrained"`` or ``"architecture"`` to filter."""
    _ensure_models_imported()
    if kind not in (None, "pretrained", "architecture"):
        raise ValueError("kind must be None, 'pretrained' or 'architecture'")
    return sorted(n for n, e in _REGISTRY.items()
                  if kind is None or (kind == "pretrained") == e.pretrained)


def create(name: str, **overrides: Any) -> GenerativeModel:
    """An untrained model of a registered architecture or checkpoint, with config overrides."""
    entry = get_entry(name)
    return entry.model_class(replace_config(entry.config, **overrides))


def resolve(name: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
            local_files_only: bool = False, token: str | None = None) -> Path:
    """The local folder holding the checkpoint ``name`` (registry name, Hub repo id or folder)."""
    if os.path.isdir(os.path.expanduser(name)):
        return Path(os.path.expanduser(name))
    _ensure_models_imported()
    if name not in _REGISTRY and "/" in name:  # a Hub repo id that is not in the registry
        return resolve_checkpoint(name, revision=revision, cache_dir=cache_dir,
                                  local_files_only=local_files_only, token=token)
    entry = get_entry(name)
    train_cmd = f"genzoo train {name} --out model_cards/{name}"
    if not entry.pretrained:
        raise CheckpointNotFoundError(
            f"{name!r} is an architecture without weights: use genzoo.create({name!r}) for an untrained "
            f"model, or one of the pretrained names: {list_models('pretrained')}")
    if not entry.published:
        raise CheckpointNotFoundError(
            f"weights for {name!r} are not published yet. Train them with `{train_cmd}` "
            f"(needs the {entry.dataset} dataset), then genzoo.load('model_cards/{name}').")
    try:
        return resolve_checkpoint(entry.hub_id, revision=revision, cache_dir=cache_dir,
                                  local_files_only=local_files_only, token=token, bundled_name=name)
    except CheckpointNotFoundError as e:
        raise CheckpointNotFoundError(f"{e}. To train it yourself: `{train_cmd}`.") from e


def load(name: str, revision: str | None = None, device: str | torch.device | None = None,
         dtype: torch.dtype | None = None, cache_dir: str | os.PathLike | None = None,
         local_files_only: bool = False, token: str | None = None) -> GenerativeModel:
    """Load pretrained weights by registry name, Hub repo id or local folder, in eval mode."""
    folder = resolve(name, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    expected = _REGISTRY[name].model_class if name in _REGISTRY else None
    return load_from_folder(folder, expected=expected, device=device, dtype=dtype)
