"""Recipes: train a registered checkpoint, evaluate it, and write its model card.

A registry entry's ``recipe`` is a dict::

    {"data": {"name": "fashion-mnist", "image_size": None},    # genzoo.data.load_dataset args
     "train": {...TrainConfig fields...},
     "prior_train": {...TrainConfig fields...},                 # optional second stage (VQ-VAE prior)
     "eval": {"num_samples": 1000, "limit": None, "seed": 0}}   # evaluation protocol

With ``prior_train``, the model must have ``set_stage``: the first stage trains ``"autoencoder"``,
the second ``"prior"`` on the frozen autoencoder's codes (its trainer state in ``run_dir/prior_train``).

``genzoo train <name>`` runs it and ``genzoo eval <name>`` recomputes the card's metrics, so every
number on a card is reproducible from the committed weights.
"""
from __future__ import annotations

import logging
import math
import platform
import shlex
import time
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .hub import build_model_card, git_commit, hardware_string, read_card_metadata
from .modeling import CONFIG_NAME, GenerativeModel, atomic_write_bytes, config_json
from .registry import Entry, get_entry
from .utils import save_grid, seed_everything

logger = logging.getLogger(__name__)

SAMPLE_SEED = 0


def load_split(entry: Entry, split: str):
    from .data import load_dataset

    if not entry.recipe:
        raise ValueError(f"{entry.name} has no training recipe")
    data = dict(entry.recipe["data"])
    return load_dataset(data.pop("name"), split=split, **data)


def write_samples(model: GenerativeModel, path: str | Path, n: int = 64, seed: int = SAMPLE_SEED,
                  temperature: float = 1.0, temperatures: tuple[float, ...] | None = None) -> Path:
    """A seeded grid of ``n`` samples; with ``temperatures``, ``n`` samples at each temperature, one
    block of rows per temperature (same seed, so the blocks show the same latents rescaled)."""
    blocks = []
    for t in temperatures or (temperature,):
        gen = torch.Generator(device=model.device).manual_seed(seed)
        with torch.no_grad():
            blocks.append(model.sample(n, generator=gen, temperature=t))
    nrow = int(math.ceil(math.sqrt(n))) if temperatures is None else 8
    return save_grid(torch.cat(blocks), path, nrow=nrow, scale=max(1, 96 // model.image_shape[1]))


def write_entry_samples(model: GenerativeModel, name: str, path: str | Path) -> Path:
    """The card's ``samples.png`` as the registry entry asks: metadata ``sample_temperatures`` (a
    block of 16 per temperature) or ``sample_temperature`` (64 samples, default 1.0)."""
    meta = get_entry(name).metadata
    if meta.get("sample_temperatures"):
        return write_samples(model, path, n=16, temperatures=tuple(meta["sample_temperatures"]))
    return write_samples(model, path, temperature=meta.get("sample_temperature", 1.0))


def can_reconstruct(model: GenerativeModel) -> bool:
    """Whether ``model`` maps images to images through a code (VQ-VAE, O-GAN; not a plain GAN)."""
    return callable(getattr(model, "reconstruct", None)) and getattr(model, "has_encoder", True)


def write_reconstructions(model: GenerativeModel, name: str, path: str | Path, n: int = 32) -> Path:
    """The first ``n`` test images (odd rows) above their reconstructions (even rows), 8 per row."""
    images = torch.as_tensor(load_split(get_entry(name), "test").images[:n]).float().div(255).to(model.device)
    with torch.no_grad():
        recon = model.reconstruct(images)
    rows = [t for i in range(0, n, 8) for t in (images[i:i + 8], recon[i:i + 8])]
    return save_grid(torch.cat(rows), path, nrow=8, scale=max(1, 96 // model.image_shape[1]))


def train_recipe(name: str, out_dir: str | Path, steps: int | None = None, seed: int | None = None,
                 device: str | None = None, resume: bool = False, progress: bool = True,
                 evaluate_after: bool = True, run_dir: str | Path | None = None) -> Path:
    """Train ``name`` by its registry recipe into ``out_dir`` (a complete Hub repo folder).

    Trainer state (resumable checkpoint, metrics.jsonl, sample grids during training) goes to
    ``run_dir`` (default ``runs/<name>``), so ``out_dir`` holds only what is published.
    """
    from .train import TrainConfig, make_trainer

    entry = get_entry(name)
    if not entry.recipe:
        raise ValueError(f"{name} has no recipe; pretrained names with recipes: "
                         f"{_recipe_names()}")
    if "classifier_train" in entry.recipe:
        return _train_classifier(entry, Path(out_dir), steps, seed, progress, evaluate_after)
    two_stage = "prior_train" in entry.recipe
    stages = [("autoencoder", "train"), ("prior", "prior_train")] if two_stage else [(None, "train")]
    configs = []
    for _, key in stages:
        cfg = dict(entry.recipe[key])
        if steps is not None:
            cfg["steps"] = steps
        if seed is not None:
            cfg["seed"] = seed
        cfg["progress"] = progress
        configs.append(TrainConfig(**cfg))
    train_cfg = configs[0]
    out = Path(out_dir)
    seed_everything(train_cfg.seed)
    model = entry.model_class(entry.config)
    train_data, test_data = load_split(entry, "train"), load_split(entry, "test")
    run_dir = Path(run_dir or Path("runs") / name)
    t0 = time.time()
    for (stage, key), cfg in zip(stages, configs):
        if stage is not None:
            model.set_stage(stage)
        trainer = make_trainer(model, train_data, cfg, eval_data=test_data, device=device,
                          out_dir=run_dir if key == "train" else run_dir / key)
        model = trainer.fit(resume=resume)
    if len(stages) > 1:
        model.set_stage("joint")
    wall = time.time() - t0
    model.save_pretrained(out)
    write_entry_samples(model, name, out / "samples.png")
    if can_reconstruct(model):
        write_reconstructions(model, name, out / "reconstructions.png")
    argv = ["genzoo", "train", name, "--out", str(out)]
    if steps is not None:
        argv += ["--steps", str(steps)]
    if seed is not None:
        argv += ["--seed", str(seed)]
    training = {"command": shlex.join(argv), "dataset": f"{entry.dataset} ({train_data.source})",
                "steps": train_cfg.steps, "batch_size": train_cfg.batch_size, "seed": train_cfg.seed,
                **({"prior_steps": configs[1].steps, "prior_batch_size": configs[1].batch_size}
                   if len(configs) > 1 else {}),
                "hardware": hardware_string(), "wall_time_s": round(wall, 1),
                "genzoo_version": __version__, "commit": git_commit(),
                "python": platform.python_version(), "torch": str(torch.__version__)}
    metrics = evaluate(model, name) if evaluate_after else []
    write_card(out, name, model, metrics, training)
    return out


def _train_classifier(entry: Entry, out: Path, steps: int | None, seed: int | None, progress: bool,
                      evaluate_after: bool) -> Path:
    """A feature classifier's recipe: supervised ``fit`` on the labelled training split."""
    cfg = dict(entry.recipe["classifier_train"])
    if steps is not None:
        cfg["steps"] = steps
    if seed is not None:
        cfg["seed"] = seed
    train_data = load_split(entry, "train")
    if getattr(train_data, "labels", None) is None:
        raise ValueError(f"{entry.name} needs a labelled dataset; {entry.dataset} has no labels")
    seed_everything(cfg["seed"])
    model = entry.model_class(entry.config)
    t0 = time.time()
    model.fit(train_data.images, train_data.labels, progress=progress, **cfg)
    wall = time.time() - t0
    model.save_pretrained(out)
    argv = ["genzoo", "train", entry.name, "--out", str(out)] + (["--steps", str(steps)] if steps else []) + \
        (["--seed", str(seed)] if seed is not None else [])
    training = {"command": shlex.join(argv), "dataset": f"{entry.dataset} ({train_data.source})",
                "steps": cfg["steps"], "batch_size": cfg["batch_size"], "seed": cfg["seed"],
                "hardware": hardware_string(), "wall_time_s": round(wall, 1), "genzoo_version": __version__,
                "commit": git_commit(), "python": platform.python_version(), "torch": str(torch.__version__)}
    write_card(out, entry.name, model, evaluate(model, entry.name) if evaluate_after else [], training)
    return out


def _recipe_names() -> list[str]:
    from .registry import _REGISTRY

    return sorted(n for n, e in _REGISTRY.items() if e.recipe)


GROUPS = ("family", "sample_quality")


def evaluate(model: GenerativeModel, name: str, split: str = "test", num_samples: int | None = None,
             limit: int | None = None, progress: bool = False,
             groups: tuple[str, ...] = GROUPS) -> list[dict[str, Any]]:
    """The checkpoint's metrics under the entry's protocol; a list of card metric dicts.

    ``groups``: ``"family"`` (likelihood, reconstruction, accuracy: whatever the family defines) and
    ``"sample_quality"`` (Fréchet distance, KID, precision/recall of samples; see
    :func:`sample_quality_metrics`), for every model that samples.
    """
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown metric group(s) {unknown}; choose from {list(GROUPS)}")
    metrics = family_metrics(model, name, split, num_samples, limit, progress) if "family" in groups else []
    if "sample_quality" in groups and not hasattr(model, "accuracy"):
        metrics += sample_quality_metrics(model, name)
    return metrics


def family_metrics(model: GenerativeModel, name: str, split: str = "test", num_samples: int | None = None,
                   limit: int | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """The family's own metrics on ``split`` (likelihood, reconstruction, codebook, accuracy)."""
    from .metrics import importance_sampled_nll

    entry = get_entry(name)
    protocol = dict(entry.recipe.get("eval", {})) if entry.recipe else {}
    k = int(num_samples or protocol.get("num_samples", 1000))
    limit = limit if limit is not None else protocol.get("limit")
    seed = int(protocol.get("seed", 0))
    data = load_split(entry, split)
    images = data.images if limit is None else data.images[:limit]
    n = len(images)
    subset = "" if limit is None else f" (first {n})"
    metrics: list[dict[str, Any]] = []
    if hasattr(model, "accuracy"):  # a feature classifier
        acc = model.accuracy(torch.as_tensor(images), torch.as_tensor(data.labels[:n]))
        return [{"key": "test_accuracy", "type": "accuracy", "name": "test accuracy", "value": acc, "split": split,
                 "protocol": f"top-1, {entry.dataset} {split} split{subset}, {n} images"}]
    if hasattr(model, "importance_log_weights"):
        gen = torch.Generator(device=model.device).manual_seed(seed)
        res = importance_sampled_nll(model, images, num_samples=k, generator=gen, progress=progress)
        where = f"{entry.dataset} {split} split{subset}, {n} images, 8-bit discrete likelihood"
        metrics += [
            {"key": "iwae_nll", "type": "nll", "name": f"NLL (nats, IWAE k={k})", "value": res["nll"],
             "protocol": f"importance-sampled, k={k}, seed {seed}, {where}; ±{res['stderr']:.2f} s.e.",
             "split": split},
            {"key": "iwae_bpd", "type": "bits_per_dim", "name": f"bits/dim (IWAE k={k})", "value": res["bpd"],
             "protocol": f"NLL / (D ln 2), D={math.prod(model.image_shape)}, {where}", "split": split},
        ]
    if hasattr(model, "elbo"):
        full = f"{entry.dataset} {split} split, {len(data)} images, 8-bit discrete likelihood"
        metrics.append(
            {"key": "elbo_bpd", "type": "bits_per_dim", "name": "negative ELBO bits/dim",
             "value": evaluate_elbo_bpd(model, name, split), "split": split,
             "protocol": f"single-sample ELBO, torch seed {seed}, batches of 500, {full}"})
    elif hasattr(model, "bits_per_dim"):  # flows: exact density, uniform dequantisation
        from .metrics import dequantized_bpd

        res = dequantized_bpd(model, images, batch_size=500, seed=seed, progress=progress)
        bits = model.config.num_bits
        metrics.append(
            {"key": "test_bpd", "type": "bits_per_dim", "name": "bits/dim (dequantised)", "value": res["bpd"],
             "split": split,
             "protocol": f"exact log-density of x + u, u ~ U(0, 1/{2 ** bits}) per subpixel (one draw, generator "
                         f"seed {seed}, batches of 500), + D ln {2 ** bits}, / (D ln 2); {entry.dataset} {split} "
                         f"split{subset}, {n} images, {bits}-bit data; ±{res['stderr']:.4f} s.e."})
    elif hasattr(model, "discriminator"):  # GANs: sample quality only; O-GAN also reconstructs
        if can_reconstruct(model):
            mse = _reconstruction_mse(model, images)
            metrics.append(
                {"key": "recon_mse", "type": "mse", "name": "reconstruction MSE (O-GAN encoder)", "value": mse,
                 "split": split, "protocol": f"mean squared error per subpixel of G(encode(x)) vs x, images in "
                                             f"[0, 1], batches of 500; {entry.dataset} {split} split{subset}, {n} images"})
    elif hasattr(model, "reconstruct"):  # VQ-VAE: reconstruction, codebook use and the prior on codes
        from .metrics import reconstruction_metrics

        res = reconstruction_metrics(model, images, batch_size=500, progress=progress)
        where = f"{entry.dataset} {split} split{subset}, {n} images"
        k, grid = model.config.num_codes, model.config.grid_size
        metrics += [
            {"key": "recon_mse", "type": "mse", "name": "reconstruction MSE", "value": res["mse"], "split": split,
             "protocol": f"mean squared error per subpixel, images in [0, 1], decode(encode(x)); {where}"},
            {"key": "recon_psnr", "type": "psnr", "name": "reconstruction PSNR (dB)", "value": res["psnr"],
             "split": split, "protocol": f"mean over images of 10 log10(1 / MSE_image); {where}"},
            {"key": "codebook_usage", "type": "codebook_usage", "name": "codebook usage", "value": res["usage"],
             "split": split, "protocol": f"fraction of the {k} codes assigned at least once over the {n}x{grid}x{grid} "
                                         f"code positions of the {where}"},
            {"key": "codebook_perplexity", "type": "perplexity", "name": "codebook perplexity",
             "value": res["perplexity"], "split": split,
             "protocol": f"exp(entropy) of the code frequencies over the same positions (max {k})"},
            {"key": "prior_bits_per_code", "type": "bits_per_dim", "name": "prior bits/dim on codes",
             "value": res["prior_bits_per_code"], "split": split,
             "protocol": f"PixelCNN prior NLL of the encoded {grid}x{grid} code grids, bits per code position "
                         f"(log2 {k} = {math.log2(k):.2f} is uniform); {where}; ±{res['prior_stderr']:.4f} s.e."},
        ]
    else:
        raise NotImplementedError(f"no evaluation protocol for {type(model).__name__} yet")
    return metrics


@torch.no_grad()
def _reconstruction_mse(model: GenerativeModel, images: Any, batch_size: int = 500) -> float:
    total, count = 0.0, 0
    for i in range(0, len(images), batch_size):
        x = torch.as_tensor(images[i:i + batch_size]).float().div(255).to(model.device)
        total += float((model.reconstruct(x).float() - x).pow(2).sum())
        count += x.numel()
    return total / count


# Sample-quality protocols per feature space: samples drawn, and the real images they are compared with.
SAMPLE_QUALITY_PROTOCOL = {
    "fmnist": {"num_samples": 5000, "reference_split": "test", "reference_limit": None, "kid_subset_size": 1000},
    "inception": {"num_samples": 1000, "reference_split": "train", "reference_limit": 1000, "kid_subset_size": 500},
}


def sample_quality_metrics(model: GenerativeModel, name: str) -> list[dict[str, Any]]:
    """Fréchet distance, KID, precision and recall of the model's samples (card metric dicts).

    Feature space by image shape (:func:`genzoo.metrics.features.feature_space_for`): genzoo's
    Fashion-MNIST classifier for 28x28 grey, InceptionV3 (FID) for colour. Protocol: the space's
    :data:`SAMPLE_QUALITY_PROTOCOL`, overridable by the recipe's ``eval.sample_quality`` dict; samples at
    temperature 1 from one generator seeded with the recipe's eval seed, batches of 250.
    """
    from .metrics.features import feature_space_for, reference_features, sample_quality

    entry = get_entry(name)
    space = feature_space_for(model.image_shape)
    eval_cfg = dict(entry.recipe.get("eval", {})) if entry.recipe else {}
    proto = {**SAMPLE_QUALITY_PROTOCOL[space.key], **eval_cfg.get("sample_quality", {})}
    seed = int(eval_cfg.get("seed", 0))
    ref_split, ref_limit = proto["reference_split"], proto["reference_limit"]
    ref = load_split(entry, ref_split).images
    ref = ref if ref_limit is None else ref[:ref_limit]
    real = reference_features(ref, space)
    res = sample_quality(model, real, space, num_samples=int(proto["num_samples"]), seed=seed,
                         kid_subset_size=int(proto["kid_subset_size"]))
    n, m = res["num_samples"], res["num_real"]
    which = "" if ref_limit is None else f"the first {m} images of "
    base = (f"{n} samples (temperature 1, generator seed {seed}, batches of 250) vs {which}the {entry.dataset} "
            f"{ref_split} split ({m} images); {space.description}")
    kid_m = min(int(proto["kid_subset_size"]), n, m)
    return [
        {"key": space.fd_key, "type": "frechet_distance", "name": space.fd_name, "value": res["fd"],
         "split": ref_split, "protocol": base},
        {"key": "kid", "type": "kid", "name": f"KID ({'Inception' if space.key == 'inception' else 'genzoo F-MNIST'} "
                                              f"features)", "value": res["kid"], "split": ref_split,
         "protocol": f"unbiased cubic-kernel MMD², mean over 100 subsets of {kid_m} (seed {seed}), "
                     f"±{res['kid_std']:.5f} std; {base}"},
        {"key": "precision", "type": "precision", "name": "precision (k=3)", "value": res["precision"],
         "split": ref_split, "protocol": f"k-NN manifold precision (arXiv 1904.06991), k=3, {res['pr_count']} real "
                                         f"vs {res['pr_count']} generated; {base}"},
        {"key": "recall", "type": "recall", "name": "recall (k=3)", "value": res["recall"], "split": ref_split,
         "protocol": f"k-NN manifold recall, k=3, same sets; {base}"},
    ]


def evaluate_elbo_bpd(model: GenerativeModel, name: str, split: str = "test") -> float:
    """Mean negative ELBO in bits/dim over the whole split, with the protocol's torch seed."""
    from .metrics import elbo_bpd

    entry = get_entry(name)
    seed = int((entry.recipe or {}).get("eval", {}).get("seed", 0))
    return elbo_bpd(model, load_split(entry, split), batch_size=500, seed=seed)


def write_card(folder: str | Path, name: str, model: GenerativeModel, metrics: list[dict[str, Any]],
               training: dict[str, Any] | None = None) -> Path:
    """(Re)write ``folder/README.md``; training info defaults to what the existing card holds."""
    entry = get_entry(name)
    folder = Path(folder)
    old = read_card_metadata(folder).get("genzoo", {})
    training = training if training is not None else old.get("training", {})
    extra = entry.metadata.get("card_notes", "")
    card = build_model_card(name, model, description=entry.description, dataset=entry.dataset,
                            metrics=metrics, training=training, extra_sections=extra)
    (folder / "README.md").write_text(card)
    return folder / "README.md"


def merge_metrics(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with entries of the same ``key`` replaced by ``new`` ones, the other new ones appended."""
    fresh = {m["key"]: m for m in new}
    merged = [fresh.pop(m.get("key"), m) for m in old]
    return merged + [m for m in new if m["key"] in fresh]


def compare_with_card(folder: str | Path, metrics: list[dict[str, Any]], tol: float) -> list[str]:
    """Lines describing each recomputed metric against the card's value; mismatches flagged."""
    card = {m.get("key"): m for m in read_card_metadata(folder).get("genzoo", {}).get("metrics", [])}
    lines = []
    for m in metrics:
        old = card.get(m["key"])
        if old is None:
            lines.append(f"{m['name']}: {m['value']:.4f} (not on card)")
            continue
        diff = m["value"] - float(old["value"])
        flag = "ok" if abs(diff) <= tol * max(1.0, abs(float(old["value"]))) else "MISMATCH"
        lines.append(f"{m['name']}: {m['value']:.4f} card {float(old['value']):.4f} diff {diff:+.4f} {flag}")
    return lines


def write_unpublished_card(name: str, folder: str | Path) -> Path:
    """``README.md`` and ``config.json`` (no weights) for a paper preset whose weights are not published."""
    from huggingface_hub import ModelCard, ModelCardData

    entry = get_entry(name)
    if entry.published or not entry.pretrained:
        raise ValueError(f"{name} is not an unpublished checkpoint preset")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    family = entry.model_class.__name__
    data = ModelCardData(library_name="genzoo", license="mit", model_name=name, datasets=[entry.dataset],
                         tags=["genzoo", "generative-model", family.lower(), "weights-not-published"])
    train = entry.recipe["train"] if entry.recipe else {}
    body = "\n".join([
        f"# {name}", "", entry.description, "",
        "**Weights not published yet.** No copy of this dataset can be reached where genzoo's checkpoints are "
        "trained, so this card holds the architecture (`config.json`) and the recipe only; "
        f"`genzoo.load(\"{name}\")` raises an error that says so.", "",
        "## Train it yourself", "", "```bash",
        f"genzoo train {name} --out model_cards/{name}    # needs the {entry.dataset} dataset, see genzoo.data",
        "```", "",
        f"Recipe: {train.get('steps')} steps, batch {train.get('batch_size')}, lr {train.get('lr')}, "
        f"seed {train.get('seed')}. Architecture: `{family}`, config in `config.json`.", "",
    ])
    card = ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + body).content
    atomic_write_bytes(folder / CONFIG_NAME, config_json(family, entry.config))
    atomic_write_bytes(folder / "README.md", card.encode())
    return folder / "README.md"
