"""Codebook utilisation after training: plain VQ vs SimVQ (and plain + EMA + dead-code restarts).

The same VQ-VAE (encoder, decoder, seed, data order, steps) is trained with each quantizer and codebook
size on Fashion-MNIST (28x28 -> 7x7 codes) and Twemoji emoji (32x32 -> 8x8 codes); then the whole test
split is encoded and we report codebook usage (fraction of codes used at least once), perplexity and the
reconstruction MSE. SimVQ (arXiv 2411.02038) reports 3% (plain) vs 100% (SimVQ) at 16k codes on
ImageNet-64; this measures what happens here.

    OMP_NUM_THREADS=1 python benchmarks/vq_codebook_usage.py --steps 1000 --jobs 2

Each run is a subprocess with one torch thread (``--jobs`` at a time); results go to
``benchmarks/results/vq_codebook_usage.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import run_worker, save_results

VARIANTS = {
    "plain": {"codebook": "plain"},
    "plain+ema+restarts": {"codebook": "plain", "ema_decay": 0.99, "dead_code_threshold": 0.1},
    "simvq": {"codebook": "simvq"},
}
DATASETS = {
    "fashion-mnist": {"data": {"name": "fashion-mnist"}, "config": {"image_size": 28, "in_channels": 1}},
    "emoji": {"data": {"name": "emoji", "image_size": 32}, "config": {"image_size": 32, "in_channels": 3}},
}


def worker(spec: dict) -> dict:
    import torch

    from genzoo import TrainConfig, Trainer
    from genzoo.data import load_dataset
    from genzoo.metrics import reconstruction_metrics
    from genzoo.models.vq import VQVAE, VQVAEConfig

    torch.set_num_threads(1)
    torch.manual_seed(spec["seed"])
    ds = DATASETS[spec["dataset"]]
    data = dict(ds["data"])
    name = data.pop("name")
    train, test = load_dataset(name, split="train", **data), load_dataset(name, split="test", **data)
    cfg = VQVAEConfig(**ds["config"], hidden_channels=(32, 64, 64), num_res_blocks=2, code_dim=32,
                      num_codes=spec["num_codes"], **VARIANTS[spec["variant"]], prior_hidden_channels=8, prior_layers=1)
    model = VQVAE(cfg).set_stage("autoencoder")
    tc = TrainConfig(steps=spec["steps"], batch_size=64, lr=2e-3, warmup_steps=100, ema_decay=0.0, grad_clip=5.0,
                     eval_every=0, sample_every=0, checkpoint_every=0, seed=spec["seed"], progress=False,
                     log_every=max(1, spec["steps"] // 10))
    t0 = time.time()
    trainer = Trainer(model, train, tc)
    trainer.fit()
    res = reconstruction_metrics(model, test, batch_size=500)
    curve = [{"step": h["step"], "batch_usage": h["usage"], "batch_perplexity": h["perplexity"]} for h in trainer.history]
    return {**spec, "usage": res["usage"], "perplexity": res["perplexity"], "dead_codes": res["dead_codes"],
            "recon_mse": res["mse"], "psnr": res["psnr"], "test_images": len(test), "train_seconds": time.time() - t0,
            "curve": curve}


def run(spec: dict) -> dict:
    return run_worker(__file__, spec)


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    lines = ["# Codebook utilisation after training: plain VQ vs SimVQ", "",
             f"Command: `python benchmarks/vq_codebook_usage.py --steps {args.steps} --jobs {args.jobs}`  ",
             f"Same VQ-VAE (hidden (32, 64, 64), 2 residual blocks, code dim 32), seed {args.seed}, {args.steps} Adam "
             "steps of batch 64, lr 2e-3, no weight EMA, data-dependent codebook init for every variant; one CPU "
             "thread per run. Usage, perplexity and MSE on the whole test split.", "",
             "| dataset | codes | quantizer | usage | perplexity | dead codes | recon MSE | PSNR (dB) | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['dataset']} | {r['num_codes']} | {r['variant']} | error | | | | | |")
            continue
        lines.append(f"| {r['dataset']} | {r['num_codes']} | {r['variant']} | {100 * r['usage']:.1f}% | "
                     f"{r['perplexity']:.1f} | {int(r['dead_codes'])} | {r['recon_mse']:.5f} | {r['psnr']:.2f} | "
                     f"{r['train_seconds']:.0f} |")
    lines += ["", "Test code positions: Fashion-MNIST 10,000 x 7 x 7 = 490,000; emoji 396 x 8 x 8 = 25,344 (so at "
              "most 25,344 codes can be used there).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--codes", type=int, nargs="+", default=[1024, 8192])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "vq_codebook_usage"))
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    specs = [{"dataset": d, "num_codes": k, "variant": v, "steps": args.steps, "seed": args.seed}
             for d in args.datasets for k in args.codes for v in args.variants]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run, specs))
    save_results(args.out, results, markdown(results, args))


if __name__ == "__main__":
    main()
