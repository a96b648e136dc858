"""genzoo Glow vs normflows Glow, side by side in one run: same architecture, initial weights, data,
dequantisation noise, optimiser and steps.

Protocol
- Data: Fashion-MNIST (60k train / 10k test), zero-padded 28 -> 32 (the background is 0), 8-bit.
  Uniform dequantisation ``x = (k + u) / 256`` on [0, 1]; per training step both libraries draw
  ``u`` from torch's global RNG re-seeded to the same value (genzoo inside ``model.loss``,
  normflows through the same ``genzoo.layers.dequantize`` call), so both see identical noise.
  This is also normflows' own convention: its Glow example feeds ``Scale(255/256)`` +
  ``Jitter(1/256)`` data, i.e. ``(k + u) / 256`` in [0, 1), and reports
  ``nll / (D ln 2) + 8`` bits/dim, so no change of variables is needed (the data-space scale
  Jacobian is 1): ``bpd = (nll_nats + D ln 256) / (D ln 2)`` for both libraries.
- Model: multiscale Glow, L levels of [squeeze, K x (ActNorm -> LU 1x1 conv -> affine coupling
  with sigmoid scale)], half of the channels factored out after every level but the last.
  genzoo: ``genzoo.create("glow", ...)``. normflows: ``nf.MultiscaleFlow`` of ``GlowBlock``s
  (``scale_map="sigmoid"``, ``use_lu=True``, ``net_actnorm=True`` so the coupling net is Glow's
  conv3x3+ActNorm, ReLU, conv1x1+ActNorm, ReLU, zero conv3x3 like genzoo's) with ``GlowBase``
  priors (class-conditioning off), built as in normflows' Glow example. genzoo's initial weights
  (LU factors of the 1x1 convs, coupling-net convs) are copied into the normflows model, so the
  two flows compute the same function at initialisation (checked below: the bpd of the first batch
  and of uniform noise agree after ActNorm's data-dependent init). Remaining differences, which
  are each library's design and cannot be removed without changing a library:
  * split priors: genzoo's learned prior of a factored-out half is Glow's conditional one
    (mean/log-scale from a zero-initialised 3x3 conv of the kept half); normflows' ``GlowBase``
    is a per-channel Gaussian, unconditional. ``--genzoo-split-prior per-channel`` freezes the
    conv weights of genzoo's split priors at zero (bias only), which makes them the same
    per-channel parametrisation as ``GlowBase`` (ablation; the compute cost is unchanged).
  * genzoo's last coupling conv has Glow's learned output scale ``exp(3 logs)``; normflows' is a
    plain zero-initialised conv. ``GlowBase`` parametrises ``loc * exp(3 loc_logs)`` where genzoo's
    top prior learns mean and log-scale directly.
  * normflows computes ``(x_b - t) * s`` and interleaves shift/scale channels; genzoo computes
    ``(x_b + t) * s`` with the halves in order: equivalent under Adam (sign- and
    permutation-equivariant) from the zero-initialised output layer.
  * normflows' coupling-net ActNorm is ``h * exp(s) + t`` (shift after the scale), genzoo's
    ``(h + loc) * exp(s)``: the same function, a different parametrisation for Adam.
  * genzoo subtracts 0.5 before the flow (volume preserving); the first ActNorm's data init
    makes this immaterial. normflows' ActNorm init uses the unbiased std (genzoo the biased one).
  With these, the first training loss agrees to ~1e-4 bits/dim; with ``--genzoo-split-prior
  per-channel`` the second one does too (after one Adam step), later steps drift apart slowly.
- Optimiser: ``torch.optim.Adam(lr)`` for both, linear warmup over ``--lr-warmup`` steps then
  constant; the loss is the mean bits/dim of the batch for both (normflows: ``forward_kld`` in
  nats converted to bits/dim). No clipping by default, no EMA: raw weights are evaluated.
- The libraries train in lockstep on the same batches (their order rotates every step), so slow
  drifts of the machine's load hit both alike; every step is timed on its own.

Metrics
1. training throughput: batch / median step time (zero_grad, dequantise, forward, backward,
   Adam step, ``loss.item()``), excluding the first ``--timing-warmup`` steps; also genzoo with
   ``memory_saving=True`` (trained in lockstep for ``--ms-steps`` steps from the same weights).
2. sampling throughput: ``model.sample(batch)`` in eval mode under ``no_grad`` at temperature 1
   (normflows' ``sample`` also returns log q, as it always does), median over ``--sample-repeats``.
3. peak memory of one training step, in a fresh subprocess per model after 2 warm-up steps
   (ActNorm init and Adam state excluded): CUDA: ``max_memory_allocated`` during the step minus
   ``memory_allocated`` before it; CPU: peak RSS (``VmHWM`` after resetting it through
   ``/proc/self/clear_refs``) during the step minus RSS just before it, with glibc's
   ``MALLOC_MMAP_THRESHOLD_=65536`` so freed tensors go back to the OS and RSS tracks live memory.
4. test bits/dim after ``--steps`` steps on the first ``--eval-images`` test images, with the
   same dequantisation noise for both (a seeded generator per eval batch).

Run: ``python benchmarks/flows_vs_normflows.py [--steps 300] [--threads 2]``.
Writes ``benchmarks/results/flows_vs_normflows.{json,md}`` (``--out`` for another folder).
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

import genzoo
from genzoo.data import load_dataset
from genzoo.layers import dequantize

from _common import git_rev  # benchmarks/_common.py (scripts run from this folder)

RESULTS = Path(__file__).parent / "results"
NAME = "flows_vs_normflows"
LN2 = math.log(2)
warnings.filterwarnings("ignore", message="torch.lu is deprecated")  # raised inside normflows' Invertible1x1Conv
TARGETS = {"train_ratio": 1.3, "sample_ratio": 2.0}


# ---- data --------------------------------------------------------------------------------------
def padded(split: str, n: int | None = None) -> torch.Tensor:
    """Fashion-MNIST ``(N, 1, 32, 32)`` float in [0, 1] (k/255 values), zero-padded 28 -> 32."""
    x = load_dataset("fashion-mnist", split=split).to_tensor()
    if n is not None:
        x = x[:n]
    return F.pad(x, (2, 2, 2, 2), value=0.0)


def bpd_from_nll(nll_nats: torch.Tensor, num_dims: int) -> torch.Tensor:
    """Bits/dim of 8-bit data from the NLL (nats) of its dequantised version on [0, 1]^D."""
    return nll_nats / (num_dims * LN2) + 8.0


# ---- models ------------------------------------------------------------------------------------
def build_genzoo(args, memory_saving: bool = False) -> genzoo.GenerativeModel:
    model = genzoo.create("glow", in_channels=1, image_size=32, num_levels=args.levels,
                          num_steps=args.steps_per_level, hidden_channels=args.hidden, coupling="affine",
                          lu_decomposed=True, split_prior="learned", learn_top=True, num_classes=0,
                          memory_saving=memory_saving)
    if args.genzoo_split_prior == "per-channel":  # ablation: bias-only split priors, like GlowBase
        for prior in model.flow.split_priors:
            prior.conv.conv.weight.requires_grad_(False)
    return model


def build_normflows(args):
    """normflows' multiscale Glow, as in its Glow example (examples/glow.ipynb), unconditional."""
    import normflows as nf

    c, size, L, K = 1, 32, args.levels, args.steps_per_level
    q0, merges, flows = [], [], []
    for i in range(L):  # normflows' level 0 is the coarsest (latent side)
        level = [nf.flows.GlowBlock(c * 2 ** (L + 1 - i), args.hidden, scale=True, scale_map="sigmoid",
                                    split_mode="channel", leaky=0.0, init_zeros=True, use_lu=True,
                                    net_actnorm=True) for _ in range(K)]
        flows.append(level + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            shape = (c * 2 ** (L - i), size // 2 ** (L - i), size // 2 ** (L - i))
        else:
            shape = (c * 2 ** (L + 1), size // 2 ** L, size // 2 ** L)
        q0.append(nf.distributions.GlowBase(shape, num_classes=None))
    return nf.MultiscaleFlow(q0, flows, merges, class_cond=False)


@torch.no_grad()
def copy_weights(gz, nfm, L: int, K: int) -> None:
    """genzoo's initial weights into normflows: 1x1-conv LU factors and coupling-net convs.

    genzoo level ``l`` (data side first), step ``k`` (in data -> latent order) is normflows level
    ``L-1-l``, GlowBlock ``K-1-k`` (normflows evaluates its blocks in reverse for the density).
    ActNorms are data-initialised in both, priors and last coupling convs start at zero in both.
    """
    from genzoo.layers import ActNormInvConv, Coupling

    for l, level in enumerate(gz.flow.levels):
        steps = [b for b in level.bijectors if isinstance(b, (ActNormInvConv, Coupling))]
        anics, coups = steps[0::2], steps[1::2]
        assert len(anics) == len(coups) == K
        for k in range(K):
            block = nfm.flows[L - 1 - l][K - 1 - k]
            coupling_block, invconv, _actnorm = block.flows
            src = anics[k].invconv
            invconv.P.copy_(src.perm)
            invconv.L.copy_(src.lower)
            invconv.U.copy_(src.upper)
            invconv.log_S.copy_(src.log_s)
            invconv.sign_S.copy_(src.sign_s)
            net = coupling_block.flows[1].param_map.net
            net[0].weight.copy_(coups[k].net.conv1.weight)
            net[3].weight.copy_(coups[k].net.conv2.weight)


def make_loss(kind: str, model, num_dims: int):
    if kind.startswith("genzoo"):
        return lambda x: model.loss(x)["loss"]  # dequantises with torch's global RNG

    def nf_loss(x):
        xd = dequantize(x, 8)  # the same global-RNG draw genzoo's loss makes
        return bpd_from_nll(model.forward_kld(xd), num_dims)
    return nf_loss


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """One model with its optimiser, stepped and timed one batch at a time."""

    def __init__(self, kind: str, model, args, device: torch.device, num_dims: int, steps: int):
        self.kind, self.model, self.device, self.steps = kind, model, device, steps
        self.opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
        warm = max(1, args.lr_warmup)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(1.0, (s + 1) / warm))
        self.loss_fn = make_loss(kind, model, num_dims)
        self.clip = args.grad_clip
        self.times: list[float] = []
        self.losses: list[float] = []
        self.skipped = 0

    def step(self, x: torch.Tensor, noise_seed: int) -> None:
        self.model.train()
        torch.manual_seed(noise_seed)
        sync(self.device)
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(x)
        value = loss.item()
        if math.isfinite(value):  # normflows' example skips non-finite losses; so do both here
            loss.backward()
            if self.clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.opt.step()
        else:
            self.skipped += 1
        self.sched.step()
        sync(self.device)
        self.times.append(time.perf_counter() - t0)
        self.losses.append(value)


@torch.no_grad()
def eval_bpd(kind: str, model, test: torch.Tensor, batch: int, device: torch.device, seed: int,
             num_dims: int) -> dict:
    model.eval()
    out = []
    for i in range(0, len(test), batch):
        x = test[i:i + batch].to(device)
        g = torch.Generator(device=device).manual_seed(seed + i)
        if kind.startswith("genzoo"):
            b = model.bits_per_dim(x, generator=g)
        else:
            b = bpd_from_nll(model(dequantize(x, 8, generator=g)), num_dims)
        out.append(b.double().cpu())
    model.train()
    v = torch.cat(out)
    fin = v[torch.isfinite(v)]
    return {"bpd": float(fin.mean()) if len(fin) else float("nan"),
            "stderr": float(fin.std() / math.sqrt(len(fin))) if len(fin) > 1 else float("nan"),
            "nonfinite": int(len(v) - len(fin)), "images": len(v)}


def median_rate(times: list[float], n: int) -> float:
    return n / statistics.median(times) if times else float("nan")


# ---- memory probe (subprocess) -----------------------------------------------------------------
def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def probe(args) -> None:
    """Run in a fresh process: 2 warm-up training steps, then the peak memory of one more step."""
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    batches = torch.load(args._batches)
    torch.manual_seed(args.seed)
    kind = args._probe
    model = build_normflows(args) if kind == "normflows" else build_genzoo(args, kind == "genzoo-ms")
    model.to(device)
    r = Runner(kind, model, args, device, 32 * 32, steps=3)
    for i in range(2):
        r.step(batches[i].to(device), noise_seed=i)
    x = batches[2].to(device)
    res: dict = {"kind": kind}
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        r.step(x, noise_seed=2)
        peak = torch.cuda.max_memory_allocated(device)
        res.update(method="cuda max_memory_allocated during the step - memory_allocated before it",
                   step_peak_mib=(peak - base) / 2 ** 20, abs_peak_mib=peak / 2 ** 20, base_mib=base / 2 ** 20)
    else:
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        base = _rss_kib("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS (VmHWM) counter
            how = "VmHWM reset via /proc/self/clear_refs"
        except OSError:
            how = "VmHWM NOT reset (clear_refs not writable): may include earlier peaks"
        r.step(x, noise_seed=2)
        peak = _rss_kib("VmHWM")
        res.update(method=f"peak RSS during the step - RSS before it ({how}; MALLOC_MMAP_THRESHOLD_="
                          f"{os.environ.get('MALLOC_MMAP_THRESHOLD_', 'unset')})",
                   step_peak_mib=(peak - base) / 1024, abs_peak_mib=peak / 1024, base_mib=base / 1024)
    res["loss"] = r.losses[-1]
    print("PROBE " + json.dumps(res))


def run_probe(kind: str, args, batches_path: str) -> dict:
    cmd = [sys.executable, __file__, "--_probe", kind, "--_batches", batches_path, "--levels", str(args.levels),
           "--steps-per-level", str(args.steps_per_level), "--hidden", str(args.hidden), "--threads",
           str(args.threads), "--device", args.device, "--lr", str(args.lr), "--seed", str(args.seed),
           "--genzoo-split-prior", args.genzoo_split_prior, "--lr-warmup", str(args.lr_warmup),
           "--grad-clip", str(args.grad_clip)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": str(args.threads)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in p.stdout.splitlines():
        if line.startswith("PROBE "):
            return json.loads(line[6:])
    raise RuntimeError(f"memory probe {kind} failed:\n{p.stdout}\n{p.stderr}")


# ---- main --------------------------------------------------------------------------------------
def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=300, help="training steps for each library")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--levels", type=int, default=3, help="L")
    p.add_argument("--steps-per-level", type=int, default=8, help="K")
    p.add_argument("--hidden", type=int, default=128, help="coupling-net width")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-warmup", type=int, help="linear lr warmup steps (default min(100, steps // 10))")
    p.add_argument("--grad-clip", type=float, default=0.0, help="grad-norm clip for both (0 = off)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--eval-images", type=int, default=1000, help="first N test images for bits/dim")
    p.add_argument("--eval-batch", type=int, default=250)
    p.add_argument("--timing-warmup", type=int, default=10, help="first steps left out of the step-time median")
    p.add_argument("--ms-steps", type=int, help="steps of the genzoo memory_saving=True run (default --steps)")
    p.add_argument("--sample-repeats", type=int, default=20)
    p.add_argument("--genzoo-split-prior", choices=["learned", "per-channel"], default="learned",
                   help="per-channel: freeze genzoo's split-prior conv weights at 0 (normflows' GlowBase form)")
    p.add_argument("--bpd-tol", type=float, default=0.01, help="'equal bpd' tolerance for the targets")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--out", default=str(RESULTS / NAME), help="output path prefix (.md and .json are added)")
    p.add_argument("--_probe", help=argparse.SUPPRESS)
    p.add_argument("--_batches", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.lr_warmup is None:
        args.lr_warmup = min(100, args.steps // 10)
    if args.ms_steps is None:
        args.ms_steps = args.steps
    return args


def sanity_checks(gz, nfm, x0: torch.Tensor, device: torch.device, num_dims: int) -> dict:
    """On copies of the untrained models: ActNorm-initialise both on the first batch, then compare
    bits/dim on that batch and on uniform noise; check genzoo's loss draws the same noise."""
    gz, nfm = copy.deepcopy(gz), copy.deepcopy(nfm)
    gz.train()
    with torch.no_grad():
        xd = dequantize(x0, 8, generator=torch.Generator(device=device).manual_seed(1))
        gz_b = bpd_from_nll(-gz.log_prob(xd), num_dims)  # training mode: data-dependent init here
        nf_b = bpd_from_nll(nfm(xd), num_dims)  # normflows initialises on first use
        u = torch.rand(x0.shape, generator=torch.Generator(device=device).manual_seed(2), device=device)
        gz_u, nf_u = bpd_from_nll(-gz.log_prob(u), num_dims), bpd_from_nll(nfm(u), num_dims)
        torch.manual_seed(3)
        via_loss = float(gz.loss(x0)["bpd"])
        torch.manual_seed(3)
        via_explicit = float(bpd_from_nll(-gz.log_prob(dequantize(x0, 8)), num_dims).mean())
    return {"init_batch_bpd": {"genzoo": float(gz_b.mean()), "normflows": float(nf_b.mean()),
                               "max_abs_diff_per_image": float((gz_b - nf_b).abs().max())},
            "init_uniform_noise_bpd": {"genzoo": float(gz_u.mean()), "normflows": float(nf_u.mean()),
                                       "max_abs_diff_per_image": float((gz_u - nf_u).abs().max())},
            "genzoo_loss_noise_matches_explicit_dequantize": abs(via_loss - via_explicit) < 1e-5,
            "genzoo_loss_vs_explicit": [via_loss, via_explicit]}


def main() -> None:
    args = parse_args()
    if args._probe:
        probe(args)
        return
    import normflows as nf

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    B, D = args.batch_size, 32 * 32
    train_x, test_x = padded("train"), padded("test", args.eval_images)

    torch.manual_seed(args.seed)
    gz = build_genzoo(args).to(device)
    gz_ms = build_genzoo(args, memory_saving=True).to(device)
    gz_ms.load_state_dict(gz.state_dict())
    nfm = build_normflows(args)
    copy_weights(gz, nfm, args.levels, args.steps_per_level)
    nfm.to(device)
    params = {"genzoo": sum(p.numel() for p in gz.parameters()),
              "normflows": sum(p.numel() for p in nfm.parameters())}

    g = torch.Generator().manual_seed(args.seed)
    epochs = math.ceil(args.steps * B / len(train_x))
    order = torch.cat([torch.randperm(len(train_x), generator=g) for _ in range(epochs)])

    def batch(t: int) -> torch.Tensor:
        return train_x[order[t * B:(t + 1) * B]].to(device)

    checks = sanity_checks(gz, nfm, batch(0), device, D)
    print("sanity:", json.dumps(checks))

    runners = {"genzoo": Runner("genzoo", gz, args, device, D, args.steps),
               "genzoo-ms": Runner("genzoo-ms", gz_ms, args, device, D, min(args.ms_steps, args.steps)),
               "normflows": Runner("normflows", nfm, args, device, D, args.steps)}
    t_start = time.perf_counter()
    for t in range(args.steps):
        x = batch(t)
        active = [r for r in runners.values() if t < r.steps]
        k = t % len(active)
        for r in active[k:] + active[:k]:  # rotate the order every step
            r.step(x, noise_seed=args.seed * 1_000_003 + t)
        if (t + 1) % 25 == 0 or t == args.steps - 1:
            print(f"step {t + 1}/{args.steps} " + " ".join(f"{n}={r.losses[-1]:.3f}" for n, r in runners.items()
                                                          if r.losses) + f" ({time.perf_counter() - t_start:.0f}s)",
                  flush=True)
    train_wall = time.perf_counter() - t_start

    # test bits/dim (raw weights)
    evals = {"genzoo": eval_bpd("genzoo", gz, test_x, args.eval_batch, device, 10_000 + args.seed, D),
             "normflows": eval_bpd("normflows", nfm, test_x, args.eval_batch, device, 10_000 + args.seed, D)}
    if runners["genzoo-ms"].steps == args.steps:
        evals["genzoo-ms"] = eval_bpd("genzoo", gz_ms, test_x, args.eval_batch, device, 10_000 + args.seed, D)

    # sampling throughput (eval mode, no_grad, temperature 1), libraries interleaved
    samplers = {"genzoo": lambda: gz.sample(B, temperature=1.0), "normflows": lambda: nfm.sample(B)}
    gz.eval(), nfm.eval()
    sample_times: dict[str, list[float]] = {k: [] for k in samplers}
    with torch.no_grad():
        for i in range(2 + args.sample_repeats):
            names = list(samplers) if i % 2 == 0 else list(samplers)[::-1]
            for n in names:
                sync(device)
                t0 = time.perf_counter()
                samplers[n]()
                sync(device)
                if i >= 2:
                    sample_times[n].append(time.perf_counter() - t0)
    gz.train(), nfm.train()

    # peak memory of a training step, one fresh subprocess per model
    memory: dict = {}
    if not args.no_memory:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "batches.pt")
            torch.save([batch(t).cpu() for t in range(3)], path)
            for kind in ("genzoo", "genzoo-ms", "normflows"):
                memory[kind] = run_probe(kind, args, path)

    # ---- results
    w = args.timing_warmup
    lib: dict = {}
    for n, r in runners.items():
        timed = r.times[w:] if len(r.times) > w else r.times[-1:]
        lib[n] = {"train_images_per_s": median_rate(timed, B), "timed_steps": len(timed),
                  "median_step_s": statistics.median(timed), "steps": r.steps, "skipped_nonfinite": r.skipped,
                  "final_train_loss_bpd": r.losses[-1], "first_losses": r.losses[:5],
                  "losses_every_10_steps": r.losses[::10],
                  "memory": memory.get(n)}
        if n in evals:
            lib[n]["test"] = evals[n]
        if n in sample_times:
            lib[n]["sample_images_per_s"] = median_rate(sample_times[n], B)
            lib[n]["median_sample_s"] = statistics.median(sample_times[n])
    lib["genzoo"]["params"], lib["normflows"]["params"] = params["genzoo"], params["normflows"]
    ms_shared = min(len(runners["genzoo-ms"].losses), len(runners["genzoo"].losses))
    checks["memory_saving_vs_standard_max_abs_loss_diff"] = max(
        (abs(a - b) for a, b in zip(runners["genzoo-ms"].losses[:ms_shared], runners["genzoo"].losses[:ms_shared])),
        default=float("nan"))

    G, N, M = lib["genzoo"], lib["normflows"], lib["genzoo-ms"]

    def mem(d):
        return d["memory"]["step_peak_mib"] if d.get("memory") else float("nan")

    ratios = {"train_images_per_s": G["train_images_per_s"] / N["train_images_per_s"],
              "train_images_per_s_memory_saving": M["train_images_per_s"] / N["train_images_per_s"],
              "sample_images_per_s": G["sample_images_per_s"] / N["sample_images_per_s"],
              "step_peak_memory": mem(G) / mem(N), "step_peak_memory_memory_saving": mem(M) / mem(N),
              "test_bpd_diff_genzoo_minus_normflows": G["test"]["bpd"] - N["test"]["bpd"]}
    bpd_ok = G["test"]["bpd"] <= N["test"]["bpd"] + args.bpd_tol
    targets = {"train_throughput_ge_1.3x": ratios["train_images_per_s"] >= TARGETS["train_ratio"],
               "sample_throughput_ge_2x": ratios["sample_images_per_s"] >= TARGETS["sample_ratio"],
               "bpd_equal_or_better": bpd_ok, "bpd_tolerance": args.bpd_tol}
    env = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "python": platform.python_version(), "torch": torch.__version__, "normflows": nf.__version__,
           "genzoo": getattr(genzoo, "__version__", "?"), "device": str(device),
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
           else (platform.processor() or platform.machine()),
           "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "git": git_rev(),
           "train_wall_s": train_wall}
    results = {"protocol": {k: v for k, v in vars(args).items() if not k.startswith("_")},
               "environment": env, "libraries": lib, "ratios_genzoo_over_normflows": ratios,
               "targets": targets, "checks": checks}

    out = Path(args.out)
    if out.is_dir():
        out = out / NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(results, indent=2) + "\n")
    md = render_md(args, results)
    Path(f"{out}.md").write_text(md)
    print(md)


def render_md(args, res: dict) -> str:
    L, e, r = res["libraries"], res["environment"], res["ratios_genzoo_over_normflows"]
    t, c = res["targets"], res["checks"]
    G, M, N = L["genzoo"], L["genzoo-ms"], L["normflows"]

    def f(v, spec):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    def mem(d):
        return d["memory"]["step_peak_mib"] if d.get("memory") else None

    def bpd(d):
        return f"{d['test']['bpd']:.3f} ± {d['test']['stderr']:.3f}" if "test" in d else f"n/a ({d['steps']} steps)"

    yes = {True: "met", False: "NOT met"}
    mem_method = G["memory"]["method"] if G.get("memory") else "not measured"
    lines = [
        "# genzoo Glow vs normflows Glow (same architecture, initial weights, data, noise, optimiser, steps)", "",
        f"Multiscale Glow L={args.levels}, K={args.steps_per_level}, hidden {args.hidden}, affine coupling, "
        f"LU 1x1 convs, learned priors; Fashion-MNIST zero-padded to 1x32x32, batch {args.batch_size}, "
        f"{args.steps} steps of Adam (lr {args.lr}, linear warmup {args.lr_warmup} steps, "
        f"clip {args.grad_clip or 'off'}), raw weights. genzoo split priors: {args.genzoo_split_prior}. "
        f"Device {e['device']} ({e['device_name']}), {e['threads']} threads, torch {e['torch']}, "
        f"normflows {e['normflows']}, genzoo {e['genzoo']} ({e['git']}), {e['date']}.", "",
        "| | genzoo | genzoo memory_saving | normflows | genzoo / normflows |",
        "|---|---|---|---|---|",
        f"| train images/s (median step) | {f(G['train_images_per_s'], '.1f')} | {f(M['train_images_per_s'], '.1f')} | "
        f"{f(N['train_images_per_s'], '.1f')} | {f(r['train_images_per_s'], '.2f')}x "
        f"(memory_saving {f(r['train_images_per_s_memory_saving'], '.2f')}x) |",
        f"| sample images/s (batch {args.batch_size}, T=1) | {f(G['sample_images_per_s'], '.1f')} | (same model) | "
        f"{f(N['sample_images_per_s'], '.1f')} | {f(r['sample_images_per_s'], '.2f')}x |",
        f"| training-step peak memory above pre-step (MiB) | {f(mem(G), '.1f')} | {f(mem(M), '.1f')} | "
        f"{f(mem(N), '.1f')} | "
        f"{f(r['step_peak_memory'], '.2f')}x (memory_saving {f(r['step_peak_memory_memory_saving'], '.2f')}x) |",
        f"| test bits/dim (first {args.eval_images}) | {bpd(G)} | {bpd(M)} | {bpd(N)} | "
        f"{f(r['test_bpd_diff_genzoo_minus_normflows'], '+.3f')} |",
        f"| parameters | {G['params']:,} | (same) | {N['params']:,} | |", "",
        "Targets (genzoo vs normflows):", "",
        f"- training throughput >= {TARGETS['train_ratio']}x: {f(r['train_images_per_s'], '.2f')}x, "
        f"{yes[t['train_throughput_ge_1.3x']]}",
        f"- sampling throughput >= {TARGETS['sample_ratio']}x: {f(r['sample_images_per_s'], '.2f')}x, "
        f"{yes[t['sample_throughput_ge_2x']]}",
        f"- at equal or better bits/dim (genzoo <= normflows + {t['bpd_tolerance']}): "
        f"{f(r['test_bpd_diff_genzoo_minus_normflows'], '+.3f')}, {yes[t['bpd_equal_or_better']]}", "",
        "Checks: at initialisation (genzoo's weights copied into normflows, ActNorm data-initialised on the "
        f"first batch) bits/dim of that batch: genzoo {c['init_batch_bpd']['genzoo']:.4f}, normflows "
        f"{c['init_batch_bpd']['normflows']:.4f} (max per-image diff "
        f"{c['init_batch_bpd']['max_abs_diff_per_image']:.1e}); of uniform noise: "
        f"{c['init_uniform_noise_bpd']['genzoo']:.4f} vs {c['init_uniform_noise_bpd']['normflows']:.4f}. "
        f"genzoo's training loss draws the same dequantisation noise as normflows' input: "
        f"{c['genzoo_loss_noise_matches_explicit_dequantize']}. memory_saving vs standard genzoo training loss, "
        f"max abs diff over shared steps: {c['memory_saving_vs_standard_max_abs_loss_diff']:.1e} bits/dim.", "",
        f"Method: both libraries train in lockstep on the same batches (order rotated each step); train images/s = "
        f"batch / median step time (zero_grad, dequantise, forward, backward, Adam step, loss.item()) after "
        f"{args.timing_warmup} warm-up steps ({G['timed_steps']} timed steps); sampling = median of "
        f"{args.sample_repeats} calls in eval mode under "
        f"no_grad (normflows' sample also returns log q); memory: one fresh subprocess per model, one step after "
        f"2 warm-up steps, {mem_method}. bits/dim = (NLL_nats + D ln 256) / (D ln 2) on (k+u)/256 in [0,1] for "
        f"both (normflows' own convention). Not matched (library design): "
        + ("genzoo's split priors are Glow's conditional ones (normflows: per-channel GlowBase; "
           "`--genzoo-split-prior per-channel` ablates this), " if args.genzoo_split_prior == "learned" else
           "genzoo's split priors are made per-channel for this run (conv weights frozen at 0, as GlowBase), ")
        + "genzoo's last coupling conv has Glow's learned exp(3 logs) output scale, GlowBase parametrises "
          "loc*exp(3 loc_logs), normflows' coupling-net ActNorm shifts after scaling (genzoo's before).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
