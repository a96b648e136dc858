"""Memory-saving backprop in genzoo's Glow: activation memory and step time vs depth, and gradients.

For Glow with L levels and K = 8, 16, 32 steps per level (1x32x32 images, batch 32, 128 hidden
channels), each in a fresh subprocess: one training step (dequantise, forward, backward) after one
warm-up step, with ``memory_saving`` off and on. Reported per configuration:

- ``saved_mib``: bytes of the distinct tensors autograd keeps for the backward pass (exact, via
  ``torch.autograd.graph.saved_tensors_hooks``): the activation memory that depth multiplies;
- ``peak_step_mib``: peak RSS during the step minus RSS before it (``VmHWM`` reset through
  ``/proc/self/clear_refs``, glibc ``MALLOC_MMAP_THRESHOLD_=65536`` so freed tensors leave RSS);
  on CUDA ``max_memory_allocated`` minus ``memory_allocated`` before the step;
- ``step_s``: median wall time of 3 steps.

Gradients of the two modes are compared on the same weights and batch (max relative error).
Run: ``python benchmarks/glow_memory_saving.py [--threads 2]``; writes
``benchmarks/results/glow_memory_saving.{md,json}``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import genzoo

RESULTS = Path(__file__).parent / "results"


def build(depth: int, levels: int, memory_saving: bool, device: str) -> genzoo.Glow:
    torch.manual_seed(0)
    return genzoo.create("glow", in_channels=1, image_size=32, num_levels=levels, num_steps=depth,
                         hidden_channels=128, memory_saving=memory_saving).to(device).train()


def batch(device: str, n: int = 32) -> torch.Tensor:
    return torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def probe(depth: int, levels: int, memory_saving: bool, device: str) -> dict:
    model, x = build(depth, levels, memory_saving, device), batch(device)
    model.data_init(x)
    model.loss(x)["loss"].backward()  # warm-up
    model.zero_grad(set_to_none=True)
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model.loss(x)["loss"]
    del loss
    model.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        model.loss(x)["loss"].backward()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    else:
        base = rss_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")
        model.loss(x)["loss"].backward()
        peak = (rss_kib("VmHWM") - base) / 1024
    times = []
    for _ in range(3):
        model.zero_grad(set_to_none=True)
        t = time.perf_counter()
        model.loss(x)["loss"].backward()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return {"depth": depth, "levels": levels, "memory_saving": memory_saving, "saved_mib": sum(seen.values()) / 2 ** 20,
            "peak_step_mib": peak, "step_s": statistics.median(times)}


def gradient_error(depth: int, levels: int, device: str) -> float:
    grads = []
    for saving in (False, True):
        model, x = build(depth, levels, saving, device), batch(device, 8)
        model.data_init(x)
        torch.manual_seed(2)  # same dequantisation noise
        model.loss(x)["loss"].backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    return float((grads[0] - grads[1]).abs().max() / grads[0].abs().max())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--depths", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=str(RESULTS / "glow_memory_saving"))
    p.add_argument("--_probe", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args._probe:
        print("PROBE " + json.dumps(probe(int(args._probe[0]), args.levels, args._probe[1] == "1", args.device)))
        return
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    for depth in args.depths:
        for saving in (False, True):
            out = subprocess.run([sys.executable, __file__, "--_probe", str(depth), str(int(saving)), "--levels",
                                  str(args.levels), "--threads", str(args.threads), "--device", args.device],
                                 capture_output=True, text=True, env=env, check=True).stdout
            rows.append(json.loads(next(line[6:] for line in out.splitlines() if line.startswith("PROBE "))))
            print(rows[-1], flush=True)
    err = gradient_error(max(args.depths), args.levels, args.device)
    lines = [f"# Glow memory-saving backprop ({args.device}, {args.threads} threads, torch {torch.__version__})", "",
             f"L={args.levels}, 128 hidden, 1x32x32, batch 32. Max relative gradient difference (K={max(args.depths)}, "
             f"float32): {err:.2e}.", "",
             "| K | saved activations MiB (std / saving, ratio) | peak step MiB (std / saving, ratio) | step s (std / saving) |",
             "|---|---|---|---|"]
    for depth in args.depths:
        a, b = [r for r in rows if r["depth"] == depth]
        lines.append(f"| {depth} | {a['saved_mib']:.1f} / {b['saved_mib']:.1f} ({a['saved_mib'] / b['saved_mib']:.1f}x) | "
                     f"{a['peak_step_mib']:.1f} / {b['peak_step_mib']:.1f} ({a['peak_step_mib'] / b['peak_step_mib']:.1f}x) | "
                     f"{a['step_s']:.3f} / {b['step_s']:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out + ".md").write_text(text)
    Path(args.out + ".json").write_text(json.dumps({"rows": rows, "max_rel_grad_diff": err, "threads": args.threads,
                                                    "device": args.device, "torch": torch.__version__}, indent=1))


if __name__ == "__main__":
    main()
