"""The ``genzoo`` command line: list | sample | train | eval | push | card."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch


def _load(name: str, revision: str | None, device: str | None):
    from .registry import load

    return load(name, revision=revision, device=device)


def cmd_list(args: argparse.Namespace) -> int:
    from .registry import get_entry, list_models

    rows = []
    for name in list_models():
        e = get_entry(name)
        kind = "pretrained" if e.pretrained and e.published else ("preset" if e.pretrained else "architecture")
        rows.append((name, kind, e.model_class.__name__, e.dataset or "-", e.description.split(". ")[0]))
    widths = [max(len(r[i]) for r in rows + [("name", "kind", "class", "dataset", "")]) for i in range(4)]
    print("  ".join(h.ljust(w) for h, w in zip(("name", "kind", "class", "dataset"), widths)) + "  description")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from .utils import save_grid

    model = _load(args.name, args.revision, args.device)
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    with torch.no_grad():
        images = model.sample(args.num, generator=gen, temperature=args.temperature)
    path = save_grid(images, args.output, scale=args.scale)
    print(f"wrote {len(images)} samples of {args.name} to {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .recipes import train_recipe

    out = train_recipe(args.name, args.out, steps=args.steps, seed=args.seed, device=args.device,
                       resume=args.resume, progress=not args.no_progress, evaluate_after=not args.no_eval,
                       run_dir=args.run_dir)
    print(f"trained {args.name}: checkpoint, samples.png and model card in {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .hub import read_card_metadata
    from .recipes import GROUPS, compare_with_card, evaluate, merge_metrics, write_card
    from .registry import get_entry

    from .modeling import load_from_folder
    from .registry import resolve

    get_entry(args.name)  # validates the name (its recipe defines the protocol)
    folder = Path(args.path) if args.path else resolve(args.name, revision=args.revision)
    model = load_from_folder(folder, device=args.device)
    groups = tuple(g.replace("-", "_") for g in args.only) if args.only else GROUPS
    metrics = evaluate(model, args.name, num_samples=args.num_samples, limit=args.limit, progress=True,
                       groups=groups)
    print(json.dumps({m["key"]: m["value"] for m in metrics}, indent=2))
    if (folder / "README.md").is_file() and read_card_metadata(folder):
        for line in compare_with_card(folder, metrics, tol=args.tolerance):
            print(line)
    if args.write_card:
        if "snapshots" in folder.parts:
            raise ValueError(f"{folder} is inside the Hub cache; pass --path to the model card folder to rewrite")
        if groups != GROUPS:  # keep the card's other metrics
            metrics = merge_metrics(read_card_metadata(folder).get("genzoo", {}).get("metrics", []), metrics)
        write_card(folder, args.name, model, metrics)
        print(f"rewrote {folder / 'README.md'}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from .hub import upload_folder
    from .modeling import load_from_folder

    load_from_folder(args.folder)  # refuse to upload a checkpoint that does not load
    sha = upload_folder(args.folder, args.repo_id, revision=args.revision, private=args.private or None,
                        commit_message=args.message)
    print(f"pushed {args.folder} to {args.repo_id} at commit {sha}")
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from .hub import read_card_metadata, usage_is_sampling
    from .modeling import load_from_folder
    from .recipes import (can_reconstruct, write_card, write_entry_samples, write_reconstructions, write_samples,
                          write_unpublished_card)
    from .registry import UnknownModelError, get_entry

    folder = Path(args.folder)
    name = args.name or folder.name
    if not (folder / "model.safetensors").exists() and not get_entry(name).published:
        print(f"wrote {write_unpublished_card(name, folder)}")
        return 0
    model = load_from_folder(folder)
    metrics = read_card_metadata(folder).get("genzoo", {}).get("metrics", [])
    if usage_is_sampling(model) and (args.samples or not (folder / "samples.png").exists()):
        try:
            write_entry_samples(model, name, folder / "samples.png")
            if can_reconstruct(model):  # needs the registry entry's test split
                write_reconstructions(model, name, folder / "reconstructions.png")
        except UnknownModelError:
            write_samples(model, folder / "samples.png")
    path = write_card(folder, name, model, metrics)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="genzoo", description="Generative model zoo with pretrained checkpoints.")
    p.add_argument("--version", action="version", version=f"genzoo {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list registered models")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("sample", help="write a grid of samples from a pretrained model")
    s.add_argument("name", help="registry name, Hub repo id or checkpoint folder")
    s.add_argument("-n", "--num", type=int, default=64)
    s.add_argument("-o", "--output", default="samples.png")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--scale", type=int, default=2, help="pixel enlargement of the PNG")
    s.add_argument("--revision")
    s.add_argument("--device")
    s.set_defaults(func=cmd_sample)

    s = sub.add_parser("train", help="train a registered checkpoint by its recipe")
    s.add_argument("name")
    s.add_argument("--out", required=True, help="output folder (becomes a complete Hub repo)")
    s.add_argument("--steps", type=int, help="override the recipe's number of steps")
    s.add_argument("--seed", type=int)
    s.add_argument("--device")
    s.add_argument("--run-dir", help="trainer state, logs and progress grids (default runs/NAME)")
    s.add_argument("--resume", action="store_true", help="resume from RUN_DIR/trainer_checkpoint")
    s.add_argument("--no-eval", action="store_true", help="skip the (slow) final evaluation")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("eval", help="recompute a checkpoint's metrics (and optionally rewrite its card)")
    s.add_argument("name", help="registry name (defines dataset and protocol)")
    s.add_argument("--path", help="checkpoint folder to evaluate instead of loading NAME")
    s.add_argument("--num-samples", type=int, help="importance samples k (default: the recipe's)")
    s.add_argument("--limit", type=int, help="evaluate on the first N test images only")
    s.add_argument("--tolerance", type=float, default=0.01, help="relative tolerance for the card check")
    s.add_argument("--only", nargs="+", choices=["family", "sample-quality"],
                   help="compute only these metric groups (with --write-card, the card's other metrics are kept)")
    s.add_argument("--write-card", action="store_true")
    s.add_argument("--revision")
    s.add_argument("--device")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("push", help="upload a checkpoint folder to the Hub")
    s.add_argument("folder")
    s.add_argument("repo_id")
    s.add_argument("--revision", help="branch to push to (created if needed)")
    s.add_argument("--private", action="store_true")
    s.add_argument("--message", default="Upload with genzoo")
    s.set_defaults(func=cmd_push)

    s = sub.add_parser("card", help="(re)generate a folder's model card from its metadata")
    s.add_argument("folder")
    s.add_argument("--name", help="registry name (default: the folder name)")
    s.add_argument("--samples", action="store_true", help="also regenerate samples.png")
    s.set_defaults(func=cmd_card)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from .hub import CheckpointNotFoundError
    from .modeling import CheckpointError
    from .registry import UnknownModelError

    try:
        return args.func(args)
    except (UnknownModelError, CheckpointNotFoundError, CheckpointError, ValueError, NotImplementedError) as e:
        print(f"genzoo {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
