"""The model contract: config dataclasses and :class:`GenerativeModel`.

Every model class takes exactly one argument, a frozen config dataclass whose fields are
JSON-compatible. A checkpoint is a folder (or Hub repo) with ``config.json``
(``{"model_class", "genzoo_version", "config"}``) and ``model.safetensors``; loading is strict and
pickle is never used.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import typing
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from . import __version__

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

_MODEL_CLASSES: dict[str, type["GenerativeModel"]] = {}


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used: corrupt, truncated or mismatched with its config."""


# --------------------------------------------------------------------------- configs
def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"expected a config dataclass, got {type(config).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _coerce(value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        return tuple(value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(hint):
            if typing.get_origin(arg) is tuple and isinstance(value, list):
                return _coerce(value, arg)
    return value


def config_from_dict(config_class: type, data: dict[str, Any]) -> Any:
    """Build ``config_class`` from a dict, rejecting unknown fields by name."""
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise CheckpointError(
            f"config has fields {unknown} that {config_class.__name__} does not define "
            f"(known: {sorted(names)}); the checkpoint was made by another genzoo version or model"
        )
    hints = typing.get_type_hints(config_class)
    try:
        return config_class(**{k: _coerce(v, hints.get(k)) for k, v in data.items()})
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"config does not fit {config_class.__name__}: {e}") from e


def config_json(model_class: str, config: Any) -> bytes:
    """The ``config.json`` of a checkpoint: ``{"model_class", "genzoo_version", "config"}``."""
    meta = {"model_class": model_class, "genzoo_version": __version__, "config": config_to_dict(config)}
    return (json.dumps(meta, indent=2) + "\n").encode()


def replace_config(config: Any, **overrides: Any) -> Any:
    """``dataclasses.replace`` with a clear error for unknown fields."""
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        name = type(config).__name__
        raise TypeError(f"unknown {name} field(s): {name} has no field(s) {unknown}; fields are {sorted(names)}")
    return dataclasses.replace(config, **overrides)


# --------------------------------------------------------------------------- atomic I/O
def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; published files should be readable
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_safetensors(tensors: dict[str, Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Atomically save tensors (cloned to break storage sharing) as safetensors."""
    from safetensors.torch import save

    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write_bytes(path, save(flat, metadata=metadata))


def load_safetensors(path: str | os.PathLike) -> dict[str, Tensor]:
    """Load a safetensors file, turning any parse failure into :class:`CheckpointError`."""
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        return load(path.read_bytes())
    except Exception as e:  # safetensors raises SafetensorError / ValueError on bad headers
        raise CheckpointError(
            f"{path} is not a valid safetensors file (corrupt or truncated, {path.stat().st_size} bytes): {e}"
        ) from e


# --------------------------------------------------------------------------- model
class GenerativeModel(nn.Module):
    """Base class of every genzoo model.

    Subclasses set ``config_class`` and implement ``loss`` and ``sample``; ``log_prob``,
    ``encode`` and ``decode`` where the family defines them. Images passed to public methods
    are float tensors ``(B, C, H, W)`` in [0, 1]; :meth:`sample` always returns that range.
    """

    config_class: ClassVar[type]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _MODEL_CLASSES[cls.__name__] = cls

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config

    # ---- contract --------------------------------------------------------------
    def loss(self, batch: Tensor) -> dict[str, Tensor]:
        """Training losses for a batch of images; ``"loss"`` is what is backpropagated."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """``n`` images ``(n, C, H, W)`` in [0, 1]."""
        raise NotImplementedError

    def log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no tractable log_prob")

    def encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no encoder")

    def decode(self, z: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no decoder")

    # ---- helpers ---------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images this model works on."""
        c = self.config
        return (int(c.in_channels), int(c.image_size), int(c.image_size))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def check_images(self, x: Any, name: str = "x") -> Tensor:
        """Validate a batch of images in [0, 1]; returns it unchanged or raises ``ValueError``."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of images, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(
                f"{name} has dtype {x.dtype}; pass float images in [0, 1] (e.g. uint8 images / 255)"
            )
        shape = self.image_shape
        if x.dim() != 4 or tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}; {type(self).__name__} expects (B, {shape[0]}, {shape[1]}, {shape[2]})"
            )
        lo, hi = float(x.detach().min()), float(x.detach().max())
        if not (lo >= -1e-4 and hi <= 1 + 1e-4):
            raise ValueError(f"{name} has values in [{lo:.3g}, {hi:.3g}]; images must be in [0, 1]")
        return x

    # ---- persistence -----------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, model_card: str | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (and ``README.md`` if given), atomically."""
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        save_safetensors(self.state_dict(), out / WEIGHTS_NAME,
                         metadata={"format": "pt", "model_class": type(self).__name__})
        atomic_write_bytes(out / CONFIG_NAME, config_json(type(self).__name__, self.config))
        if model_card is not None:
            atomic_write_bytes(out / "README.md", model_card.encode())
        return out

    @classmethod
    def from_pretrained(
        cls,
        repo_or_path: str | os.PathLike,
        revision: str | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | None = None,
    ) -> "GenerativeModel":
        """Load from a local folder or a Hub repo id (``revision`` = branch, tag or sha)."""
        from .hub import resolve_checkpoint

        folder = resolve_checkpoint(str(repo_or_path), revision=revision, cache_dir=cache_dir,
                                    local_files_only=local_files_only, token=token)
        return load_from_folder(folder, expected=cls, device=device, dtype=dtype)

    def push_to_hub(self, repo_id: str, revision: str | None = None, commit_message: str | None = None,
                    private: bool | None = None, token: str | None = None,
                    model_card: str | None = None) -> str:
        """Upload config, weights and a model card to ``repo_id``; returns the commit sha."""
        from .hub import default_model_card, upload_folder

        with tempfile.TemporaryDirectory() as tmp:
            card = model_card if model_card is not None else default_model_card(self, repo_id)
            self.save_pretrained(tmp, model_card=card)
            return upload_folder(tmp, repo_id, revision=revision, private=private, token=token,
                                 commit_message=commit_message or f"Upload {type(self).__name__}")


def model_class_by_name(name: str) -> type[GenerativeModel]:
    if name not in _MODEL_CLASSES:
        # model classes register on import of their family modules
        from . import models  # noqa: F401
    if name not in _MODEL_CLASSES:
        raise CheckpointError(f"unknown model_class {name!r}; known: {sorted(_MODEL_CLASSES)}")
    return _MODEL_CLASSES[name]


def load_from_folder(folder: str | os.PathLike, expected: type[GenerativeModel] | None = None,
                     device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> GenerativeModel:
    """Build the model a checkpoint folder describes and load its weights strictly."""
    folder = Path(folder)
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        raise CheckpointError(f"{folder} has no {CONFIG_NAME}; it is not a genzoo checkpoint")
    try:
        meta = json.loads(cfg_path.read_text())
        class_name, config_data = meta["model_class"], meta["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{cfg_path} is not a valid genzoo config ({e!r})") from e
    model_cls = model_class_by_name(class_name)
    if expected is not None and expected is not GenerativeModel and not issubclass(model_cls, expected):
        raise CheckpointError(f"{folder} holds a {class_name}, not a {expected.__name__}")
    model = model_cls(config_from_dict(model_cls.config_class, config_data))
    state = load_safetensors(folder / WEIGHTS_NAME)
    load_state_strict(model, state, source=str(folder / WEIGHTS_NAME))
    model.to(device=device, dtype=dtype)
    return model.eval()


def load_state_strict(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with a readable report of missing/extra/mis-shaped tensors."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[:5]})")
        if extra:
            parts.append(f"unexpected {len(extra)} tensors (e.g. {extra[:5]})")
        if shapes:
            parts.append("shape mismatch: " + "; ".join(shapes[:5]))
        raise CheckpointError(
            f"weights in {source} do not match {type(model).__name__}'s config: " + ", ".join(parts)
        )
    model.load_state_dict(state, strict=True)
