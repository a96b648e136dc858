"""GAN losses compared with the same architecture, data, seed and budget.

Every run trains the ``dcgan-fashion-mnist`` architecture (28x28 grey, DCGAN G/D, latent 64) on Fashion-MNIST
for the same number of steps (one D and one G update of batch 64 per step, no n_critic, so the budget is
the same number of updates for every loss), Adam lr 2e-4 (betas (0.5, 0.999); (0.5, 0.9) for the
Wasserstein losses), generator EMA 0.999, seed 0, then scores the EMA generator's samples with genzoo's
sample-quality protocol for grey images: Fréchet distance in genzoo's Fashion-MNIST classifier features
(NOT FID), KID and k=3 precision/recall, 5,000 samples vs the 10,000 test images.

    python benchmarks/gan_losses.py --steps 600 --jobs 2

Each run is a subprocess with one torch thread (``--jobs`` at a time); results go to
``benchmarks/results/gan_losses.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import git_rev, run_worker, save_results

VARIANTS = {
    "non-saturating (original)": {"loss": "non_saturating"},
    "LSGAN": {"loss": "lsgan"},
    "WGAN (weight clipping 0.01)": {"loss": "wasserstein", "weight_clip": 0.01},
    "WGAN-GP (λ=10)": {"loss": "wasserstein", "gradient_penalty": 10.0},
    "hinge": {"loss": "hinge"},
    "hinge + spectral norm": {"loss": "hinge", "spectral_norm": True},
    "f-GAN KL": {"loss": "f_kl"},
    "f-GAN reverse KL": {"loss": "f_reverse_kl"},
    "f-GAN JS": {"loss": "f_js"},
    "f-GAN Pearson χ²": {"loss": "f_pearson"},
}


def worker(spec: dict) -> dict:
    import dataclasses

    import torch

    from genzoo.data import load_dataset
    from genzoo.recipes import sample_quality_metrics
    from genzoo.registry import get_entry
    from genzoo.models.gan import GAN
    from genzoo.train import GANTrainer, TrainConfig

    torch.set_num_threads(1)
    torch.manual_seed(spec["seed"])
    entry = get_entry("dcgan-fashion-mnist")
    model = GAN(dataclasses.replace(entry.config, **VARIANTS[spec["variant"]]))
    train = load_dataset("fashion-mnist", split="train")
    betas = (0.5, 0.9) if model.config.loss == "wasserstein" else (0.5, 0.999)
    tc = TrainConfig(steps=spec["steps"], batch_size=64, lr=2e-4, betas=betas, warmup_steps=0, schedule="constant",
                     grad_clip=0.0, ema_decay=0.999, eval_every=0, sample_every=0, checkpoint_every=0,
                     seed=spec["seed"], progress=False, log_every=max(1, spec["steps"] // 10))
    t0 = time.time()
    trainer = GANTrainer(model, train, tc)
    trainer.fit()
    seconds = time.time() - t0
    if spec.get("grid_dir"):
        from genzoo.recipes import write_samples

        slug = "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in spec["variant"].lower()).strip("-")
        write_samples(model, Path(spec["grid_dir"]) / f"{slug}.png", n=64)
    metrics = {m["key"]: m["value"] for m in sample_quality_metrics(model, "dcgan-fashion-mnist")}
    last = trainer.history[-1]
    return {**spec, **metrics, "train_seconds": seconds, "seconds_per_step": seconds / spec["steps"],
            "final_d_loss": last["d_loss"], "final_g_loss": last["g_loss"]}


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    lines = ["# GAN losses: same architecture, data, seed and budget", "",
             f"Command: `python benchmarks/gan_losses.py --steps {args.steps} --jobs {args.jobs}"
             f"{' --grids' if args.grids else ''}` (genzoo {git_rev()})  ",
             f"Architecture of `dcgan-fashion-mnist` (DCGAN, latent 64, G (128, 64, 32), D (32, 64, 128)), Fashion-MNIST "
             f"60k train, {args.steps} steps of one D + one G update, batch 64, Adam lr 2e-4, generator EMA 0.999, seed "
             f"{args.seed}, one CPU thread per run. Scores of the EMA generator: 5,000 samples (temperature 1, seed 0) "
             "vs the 10,000 test images in genzoo's Fashion-MNIST classifier features (128-d; **not** FID); KID over "
             "100 subsets of 1,000; precision/recall with k=3 on 5,000 vs 5,000.", "",
             "| loss | Fréchet distance (genzoo F-MNIST features) ↓ | KID ↓ | precision ↑ | recall ↑ | s/step |",
             "|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['variant']} | error: {r['error'].strip().splitlines()[-1][:80]} | | | | |")
            continue
        lines.append(f"| {r['variant']} | {r['fd_fmnist']:.2f} | {r['kid']:.4f} | {r['precision']:.3f} | "
                     f"{r['recall']:.3f} | {r['seconds_per_step']:.3f} |")
    lines += ["", "f-GAN JS is the original GAN loss up to additive constants (D: −2 log 2, G: −log 2, Nowozin et al.), "
              "so with the same seed it trains identically: equal rows for the two are expected.  ",
              "One seed per loss and a short budget: differences of a few units of Fréchet distance are within "
              "run-to-run noise; the table ranks the losses at this budget, it is not a converged comparison.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grids", action="store_true", help="also write a 64-sample grid per loss next to the results")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "gan_losses"))
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    out = Path(args.out)
    grid_dir = str(out.parent / "gan_losses_samples") if args.grids else None
    specs = [{"variant": v, "steps": args.steps, "seed": args.seed, "grid_dir": grid_dir} for v in args.variants]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda s: run_worker(__file__, s), specs))
    save_results(args.out, results, markdown(results, args))


if __name__ == "__main__":
    main()
