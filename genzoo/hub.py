"""Hugging Face Hub I/O (through ``huggingface_hub`` only) and model cards.

Resolution of a checkpoint name follows design.md: the Hub cache, then the Hub, then the copy
bundled in ``model_cards/<name>/``. Every miss says where it looked.
"""
from __future__ import annotations

import logging
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from . import __version__

logger = logging.getLogger(__name__)

CHECKPOINT_FILES = ["config.json", "model.safetensors", "README.md"]


class CheckpointNotFoundError(FileNotFoundError):
    """No checkpoint could be found in any of the places genzoo looks."""


def bundled_dir() -> Path:
    """Folder holding the bundled checkpoints (``$GENZOO_MODEL_CARDS`` or the repo's model_cards/)."""
    env = os.environ.get("GENZOO_MODEL_CARDS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "model_cards"


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def resolve_checkpoint(repo_or_path: str, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                       local_files_only: bool = False, token: str | None = None,
                       bundled_name: str | None = None) -> Path:
    """Return a local folder holding ``config.json`` + ``model.safetensors``.

    ``repo_or_path`` is a folder or a Hub repo id. Order: local folder; Hub cache (no request);
    the Hub (unless offline); ``model_cards/<bundled_name>`` when the Hub could not help and no
    specific revision was asked for.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    path = Path(repo_or_path).expanduser()
    if path.is_dir():
        return path
    if repo_or_path.startswith((".", "/", "~")) or repo_or_path.count("/") > 1:
        raise CheckpointNotFoundError(f"checkpoint folder {repo_or_path} does not exist")
    looked: list[str] = []
    kwargs = dict(repo_id=repo_or_path, revision=revision, cache_dir=cache_dir,
                  allow_patterns=CHECKPOINT_FILES, token=token)
    try:
        folder = Path(snapshot_download(local_files_only=True, **kwargs))
        if (folder / "model.safetensors").is_file():
            return folder
    except (LocalEntryNotFoundError, FileNotFoundError):
        pass
    looked.append(f"the Hub cache ({cache_dir or 'HF_HUB_CACHE'}) for {repo_or_path}@{revision or 'main'}")
    if local_files_only or hub_offline():
        looked.append("not the Hub (offline: HF_HUB_OFFLINE=1 or local_files_only=True)")
    else:
        try:
            return Path(snapshot_download(**kwargs))
        except RevisionNotFoundError as e:
            raise CheckpointNotFoundError(
                f"revision {revision!r} does not exist in Hub repo {repo_or_path}: {e}") from e
        except RepositoryNotFoundError:
            looked.append(f"the Hub: repo {repo_or_path} not found (or private without a token)")
        except Exception as e:  # connection errors, timeouts
            looked.append(f"the Hub: unreachable ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
    if bundled_name is not None:
        local = bundled_dir() / bundled_name
        if revision is None and (local / "model.safetensors").is_file():
            logger.info("loading bundled copy of %s from %s", bundled_name, local)
            return local
        looked.append(f"the bundled copy {local}" + (" (skipped: a revision was pinned)" if revision else ""))
    raise CheckpointNotFoundError(f"checkpoint {repo_or_path!r} not found. Looked in: " + "; ".join(looked))


def upload_folder(folder: str | os.PathLike, repo_id: str, revision: str | None = None,
                  private: bool | None = None, token: str | None = None,
                  commit_message: str = "Upload with genzoo") -> str:
    """Create ``repo_id`` if needed (and branch ``revision``), upload ``folder``; return the commit sha."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision not in (None, "main"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                             revision=revision, commit_message=commit_message)
    return info.oid


# --------------------------------------------------------------------------- model cards
def git_commit() -> str:
    try:
        here = Path(__file__).parent
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        sha = out.stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware_string() -> str:
    import torch

    if torch.cuda.is_available():
        return f"1x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def build_model_card(
    name: str,
    model: Any,
    *,
    description: str,
    dataset: str | None,
    metrics: list[dict[str, Any]] | None = None,
    training: dict[str, Any] | None = None,
    license: str = "mit",
    extra_sections: str = "",
) -> str:
    """A Hub model card: YAML metadata (library_name, license, datasets, tags, model-index) + body.

    ``metrics``: dicts with ``type``, ``name``, ``value``, ``protocol`` (and optional ``split``).
    ``training``: ``command``, ``seed``, ``hardware``, ``wall_time_s``, ``steps``, ``commit``.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    metrics = metrics or []
    training = training or {}
    family = type(model).__name__
    results = [EvalResult(task_type="unconditional-image-generation", dataset_type=dataset or "custom",
                          dataset_name=dataset or "custom", dataset_split=m.get("split", "test"),
                          metric_type=m["type"], metric_name=m["name"], metric_value=float(m["value"]))
               for m in metrics]
    data = ModelCardData(
        library_name="genzoo", license=license, model_name=name,
        datasets=[dataset] if dataset else None,
        tags=getattr(model, "card_tags", None) or ["genzoo", "generative-model", family.lower(),
                                                   "unconditional-image-generation"],
        eval_results=results or None,
        genzoo={"model_class": family, "version": __version__, "metrics": metrics, "training": training},
    )
    c, h, w = model.image_shape
    usage = getattr(model, "card_usage", None)  # models that do not sample describe their own use
    usage = usage.format(name=name, c=c, h=h, w=w).splitlines() if usage else [
        "images = model.sample(64, generator=torch.Generator().manual_seed(0))"
        f"  # (64, {c}, {h}, {w}) in [0, 1]", 'genzoo.save_grid(images, "samples.png")']
    lines = [
        f"# {name}", "", description, "",
        "## Usage", "", "```python", "import genzoo, torch",
        f'model = genzoo.load("{name}")', *usage, "```", "",
        f"Architecture: `{family}`, {model.num_parameters():,} parameters. "
        f"Config in `config.json`.", "",
    ]
    if metrics:
        lines += ["## Metrics", "", "| metric | value | protocol |", "|---|---|---|"]
        lines += [f"| {m['name']} | {m['value']:.4f} | {m.get('protocol', '')} |" for m in metrics]
        lines += ["", f"Reproduce: `genzoo eval {name}`.", ""]
    if usage_is_sampling(model):
        lines += ["## Samples", "", "![samples](samples.png)", ""]
    if training:
        lines += ["## Training", ""]
        if "command" in training:
            lines += ["```bash", training["command"], "```", ""]
        for key in ("dataset", "steps", "batch_size", "prior_steps", "prior_batch_size", "seed", "hardware",
                    "wall_time_s", "genzoo_version", "commit"):
            if key in training:
                lines.append(f"- {key.replace('_', ' ')}: {training[key]}")
        lines.append("")
    if extra_sections:
        lines += [extra_sections.strip(), ""]
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + "\n".join(lines)).content


def usage_is_sampling(model: Any) -> bool:
    """Whether the card shows ``samples.png`` (every model that samples; not feature classifiers)."""
    return getattr(model, "card_usage", None) is None


def default_model_card(model: Any, repo_id: str) -> str:
    return build_model_card(repo_id.split("/")[-1], model, dataset=None,
                            description=f"A `{type(model).__name__}` trained with genzoo {__version__}.")


def read_card_metadata(folder: str | os.PathLike) -> dict[str, Any]:
    """The YAML metadata of ``folder/README.md`` as a dict (empty if there is no card)."""
    from huggingface_hub import ModelCard

    path = Path(folder) / "README.md"
    if not path.is_file():
        return {}
    return ModelCard.load(path).data.to_dict()
