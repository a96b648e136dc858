"""genzoo VAE vs pythae VAE, side by side in one run: same network, data, batch size and steps.

Protocol
- Data: Fashion-MNIST (60k train / 10k test), statically binarised once with a seeded
  Bernoulli draw of the pixel intensities, identical for both libraries.
- Model: the same conv encoder/decoder (genzoo's ``VAE`` blocks, identical initial weights),
  Gaussian latent of 32 dims, Bernoulli likelihood. pythae gets them wrapped as its
  ``BaseEncoder``/``BaseDecoder`` and trains with ``reconstruction_loss="bce"`` (the same ELBO).
- Budget: the same number of optimiser steps at the same batch size; each library uses its own
  trainer (pythae: ``BaseTrainer``, Adam at a constant lr; genzoo: ``Trainer``, AdamW with warmup +
  cosine, gradient clipping at ``--grad-clip`` (the vae-fashion-mnist recipe's 5.0), EMA of weights
  with decay ``--ema``).
- Metrics: train-step throughput (images/s over the whole training call) and test NLL with the
  same importance-sampling estimator (IWAE, k samples) on the same test images for both.

Run: ``python benchmarks/vae_vs_pythae.py [--epochs 2] [--k 1000] [--test-images 500]``.
Writes ``benchmarks/results/vae_vs_pythae.{json,md}``.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import genzoo
from genzoo.data import load_dataset
from genzoo.metrics import importance_sampled_nll

RESULTS = Path(__file__).parent / "results"


def binarised(split: str, seed: int) -> torch.Tensor:
    x = load_dataset("fashion-mnist", split=split).to_tensor()
    return torch.bernoulli(x, generator=torch.Generator().manual_seed(seed))


class PythaeAdapter:
    """Exposes a trained pythae VAE through ``importance_log_weights`` (genzoo's IWAE protocol)."""

    def __init__(self, model, logits_decoder):
        self.model, self.logits_decoder = model, logits_decoder

    def eval(self):
        self.model.eval()
        return self

    def train(self, mode: bool = True):
        self.model.train(mode)
        return self

    @property
    def training(self) -> bool:
        return self.model.training

    def parameters(self):
        return self.model.parameters()

    def importance_log_weights(self, x, num_samples, generator=None):
        out = self.model.encoder(x)
        mu, logvar = out.embedding, out.log_covariance
        eps = torch.randn((num_samples, *mu.shape), generator=generator, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        log_q = -0.5 * (eps.pow(2) + logvar + math.log(2 * math.pi)).sum(-1)
        log_p = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
        logits = self.logits_decoder(z.reshape(-1, mu.shape[-1]))
        target = x.expand(num_samples, *x.shape).reshape(logits.shape)
        log_px = -F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(-1)
        return log_px.view(num_samples, -1) + log_p - log_q


def build_pythae(gz_model: genzoo.VAE):
    from pythae.models import VAE as PVAE, VAEConfig as PVAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    enc, dec = copy.deepcopy(gz_model.encoder), copy.deepcopy(gz_model.decoder)

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = enc

        def forward(self, x):
            mu, logvar = self.net(x).chunk(2, dim=-1)
            return ModelOutput(embedding=mu, log_covariance=logvar.clamp(-30, 20))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = dec

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    cfg = PVAEConfig(input_dim=(1, 28, 28), latent_dim=gz_model.config.latent_dim, reconstruction_loss="bce")
    model = PVAE(cfg, encoder=Encoder(), decoder=Decoder())
    return model, lambda z: model.decoder.net(z)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--k", type=int, default=1000, help="importance samples for the NLL")
    p.add_argument("--test-images", type=int, default=500, help="first N test images for the NLL")
    p.add_argument("--train-images", type=int, help="use only the first N training images (smoke tests)")
    p.add_argument("--out", default=str(RESULTS), help="folder for the result files")
    p.add_argument("--ema", type=float, default=0.995, help="genzoo's EMA decay (0 = off)")
    p.add_argument("--grad-clip", type=float, default=5.0,
                   help="genzoo's grad-norm clip (5.0 as in the vae-fashion-mnist recipe; 0 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    train_x, test_x = binarised("train", args.seed)[: args.train_images], binarised("test", args.seed + 1)[: args.test_images]
    steps_per_epoch = math.ceil(len(train_x) / args.batch_size)
    steps = args.epochs * steps_per_epoch
    torch.manual_seed(args.seed)
    # the vae-fashion-mnist architecture with a Bernoulli decoder
    arch = genzoo.registry.get_entry("vae-fashion-mnist").config
    gz = genzoo.VAE(genzoo.modeling.replace_config(arch, likelihood="bernoulli"))
    py, py_logits = build_pythae(gz)  # same initial weights
    results: dict = {"protocol": {**vars(args), "steps": steps, "train_images": len(train_x),
                                  "data": "Fashion-MNIST, statically binarised (seeded Bernoulli)",
                                  "params": gz.num_parameters()},
                     "machine": {"python": platform.python_version(), "torch": torch.__version__,
                                 "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}}

    # --- pythae
    from pythae.data.datasets import BaseDataset
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    with tempfile.TemporaryDirectory() as tmp:
        tc = BaseTrainerConfig(output_dir=tmp, num_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
                               learning_rate=args.lr, seed=args.seed, steps_saving=None, no_cuda=True)
        trainer = BaseTrainer(py, train_dataset=BaseDataset(train_x, torch.zeros(len(train_x))), training_config=tc)
        t0 = time.perf_counter()
        trainer.train()
        py_time = time.perf_counter() - t0
    py_nll = importance_sampled_nll(PythaeAdapter(py, py_logits), test_x, num_samples=args.k,
                                    generator=torch.Generator().manual_seed(123))
    # cross-check the adapter against pythae's own estimator on a few images
    torch.manual_seed(7)
    py_own = -float(py.get_nll(test_x[:20], n_samples=args.k, batch_size=100))  # it returns log p(x)
    adapter_20 = importance_sampled_nll(PythaeAdapter(py, py_logits), test_x[:20], num_samples=args.k,
                                        generator=torch.Generator().manual_seed(7))["nll"]

    # --- genzoo
    t0 = time.perf_counter()
    genzoo.train(gz, train_x, steps=steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                 ema_decay=args.ema, grad_clip=args.grad_clip, progress=True)
    gz_time = time.perf_counter() - t0
    gz_nll = importance_sampled_nll(gz, test_x, num_samples=args.k, generator=torch.Generator().manual_seed(123))

    n_img = steps * args.batch_size
    results["pythae"] = {"train_s": py_time, "train_images_per_s": n_img / py_time, "nll_nats": py_nll["nll"],
                         "nll_stderr": py_nll["stderr"], "neg_elbo_nats": -py_nll["elbo"],
                         "own_get_nll_first20": py_own, "adapter_nll_first20": adapter_20}
    results["genzoo"] = {"train_s": gz_time, "train_images_per_s": n_img / gz_time, "nll_nats": gz_nll["nll"],
                         "nll_stderr": gz_nll["stderr"], "neg_elbo_nats": -gz_nll["elbo"]}
    results["ratios"] = {"throughput_genzoo_over_pythae": results["genzoo"]["train_images_per_s"]
                         / results["pythae"]["train_images_per_s"],
                         "nll_genzoo_minus_pythae_nats": gz_nll["nll"] - py_nll["nll"]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vae_vs_pythae.json").write_text(json.dumps(results, indent=2) + "\n")
    g, q = results["genzoo"], results["pythae"]
    md = [
        "# genzoo VAE vs pythae VAE (same network, data, batch size and steps)", "",
        f"Fashion-MNIST statically binarised, {steps} steps x batch {args.batch_size} ({args.epochs} epochs), "
        f"{gz.num_parameters():,} parameters, {torch.get_num_threads()} CPU threads, torch {torch.__version__}; "
        f"peak lr {args.lr} for both, genzoo grad clip {args.grad_clip}, EMA {args.ema}. "
        f"Test NLL: IWAE k={args.k} on the first {len(test_x)} test images, same estimator for both.", "",
        "| library | train images/s | test NLL (nats) | -ELBO (nats) | wall (s) |", "|---|---|---|---|---|",
        f"| genzoo | {g['train_images_per_s']:.0f} | {g['nll_nats']:.2f} ± {g['nll_stderr']:.2f} | "
        f"{g['neg_elbo_nats']:.2f} | {g['train_s']:.0f} |",
        f"| pythae 0.1.2 | {q['train_images_per_s']:.0f} | {q['nll_nats']:.2f} ± {q['nll_stderr']:.2f} | "
        f"{q['neg_elbo_nats']:.2f} | {q['train_s']:.0f} |", "",
        f"Throughput ratio genzoo/pythae: {results['ratios']['throughput_genzoo_over_pythae']:.2f}x. "
        f"NLL difference genzoo - pythae: {results['ratios']['nll_genzoo_minus_pythae_nats']:+.2f} nats.", "",
        f"Estimator cross-check on 20 images: pythae's own `get_nll` {py_own:.2f} vs the adapter {adapter_20:.2f}.",
    ]
    (out / "vae_vs_pythae.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
