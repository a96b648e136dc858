"""genzoo VectorQuantizer (SimVQ codebook) vs vector-quantize-pytorch's SimVQ, side by side in one run.

Protocol
- Module: genzoo ``VectorQuantizer(num_codes=K, dim=D, codebook="simvq", estimator="rotation")``
  (also ``estimator="straight_through"`` as a third column) vs vector-quantize-pytorch
  ``SimVQ(dim=D, codebook_size=K, rotation_trick=True)``. Both: a frozen random ``(K, D)`` matrix
  ``C`` mapped by a learned ``D x D`` linear layer, nearest code by Euclidean distance, commitment
  loss ``||sg[q] - z||^2 * 0.25 + ||q - sg[z]||^2``, rotation-trick gradient to the input. The
  modules are each library's defaults otherwise (initialisation differs: genzoo ``W = I, b = 0``
  with unit-norm rows of ``C``; the peer's ``nn.Linear`` default init without bias and Gaussian
  ``C / sqrt(D)``); the cost of a step does not depend on the values. A check below copies the
  peer's ``C`` and ``W`` into genzoo and compares indices, outputs, losses and gradients.
- Data: ``x = randn(N, D)`` from a seeded generator, identical for every library (``(N, D)`` for
  genzoo, ``x[None]`` of shape ``(1, N, D)`` for the peer), ``requires_grad=True``.
- One step: forward, ``loss = quantized.square().mean() + vq_loss``, backward (gradients reach
  ``x`` and the linear map; checked after the warm-up step). Modules in training mode.
- Throughput: 1 warm-up step, then ``--iters`` timed steps (``time.perf_counter``; CUDA
  synchronised); only 1 timed step when the warm-up took longer than ``--slow-s`` seconds (the
  number used is recorded). vectors/s = N / median step time.
- Peak memory: every (library, N, K) runs in a fresh subprocess (``--worker``) so peaks do not mix.
  CPU: peak RSS during the first (warm-up) step of the fresh process minus RSS just before it (``VmHWM``
  reset through ``/proc/self/clear_refs``, ``malloc_trim`` first; default glibc allocator, whose retained
  memory would hide later steps' peaks; an earlier version lowered ``MALLOC_MMAP_THRESHOLD_`` instead,
  which made every large allocation page-fault and distorted the timings).
  CUDA: ``max_memory_allocated`` during the step minus ``memory_allocated`` before it.
  Gradients of the previous step are dropped (``set_to_none``) before each step, outside the timer.
- The peer computes ``torch.cdist`` between all inputs and all codes, an ``N x K`` float32 matrix:
  a peer worker is not started when ``N*K*4`` bytes exceed ``--max-peer-bytes`` (recorded as
  skipped). Workers have a ``--timeout``; timeouts and kills (negative return codes, e.g. the OOM
  killer's SIGKILL) are recorded, not raised.
- Nearest-code search only: ``genzoo.layers.nearest_code(x, codes, backend="torch")`` (chunked) vs
  the naive ``torch.cdist(x, codes).argmin(1)`` (skipped above ``--max-peer-bytes`` too), and on
  CUDA also ``backend="triton"``, with nominal GFLOP/s ``2 N K D / t`` and, for Triton, an
  effective bandwidth ``(N D + K D) * 4 bytes / t``.

Run: ``python benchmarks/vq_vs_vector_quantize_pytorch.py [--threads 2] [--n 4096 65536]
[--codes 512 8192 65536 262144]``; ``--quick`` for a smoke test (tiny sizes, writes to /tmp).
Writes ``benchmarks/results/vq_vs_vector_quantize_pytorch.{json,md}`` (``--out`` for another prefix).
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import torch

from _common import git_rev  # benchmarks/_common.py (scripts run from this folder)

RESULTS = Path(__file__).parent / "results"
NAME = "vq_vs_vector_quantize_pytorch"
LIBS = ("genzoo", "genzoo-st", "peer")  # genzoo rotation, genzoo straight-through, vector-quantize-pytorch
LIB_TITLES = {"genzoo": "genzoo (rotation)", "genzoo-st": "genzoo (straight-through)",
              "peer": "vector-quantize-pytorch SimVQ (rotation)"}
GIB, MIB = 2 ** 30, 2 ** 20


# ---- measurement helpers (used inside the workers) ---------------------------------------------
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakProbe:
    """Peak memory of a region above the memory just before it (RSS on CPU, allocator on CUDA)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.base = 0
        self.reset_ok = True
        if device.type == "cuda":
            self.method = "cuda max_memory_allocated during the step - memory_allocated before it"
        else:
            self.method = "peak RSS (VmHWM, reset via /proc/self/clear_refs) during the step - VmRSS before it"
        try:
            self._libc = ctypes.CDLL("libc.so.6")
        except OSError:
            self._libc = None

    def rss_mib(self) -> float:
        return _status_kib("VmRSS") / 1024 if self.device.type == "cpu" else \
            torch.cuda.memory_allocated(self.device) / MIB

    def start(self) -> None:
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        if self._libc is not None:
            self._libc.malloc_trim(0)
        self.base = _status_kib("VmRSS") * 1024
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
        except OSError:
            if self.reset_ok:
                self.method = ("peak RSS (VmHWM, NOT reset: clear_refs not writable, may include earlier peaks) "
                               "- VmRSS before the step")
            self.reset_ok = False

    def stop(self) -> float:
        """MiB above the memory at :meth:`start`."""
        if self.device.type == "cuda":
            sync(self.device)
            return (torch.cuda.max_memory_allocated(self.device) - self.base) / MIB
        return (_status_kib("VmHWM") * 1024 - self.base) / MIB


def measure(fn, prepare, iters: int, slow_s: float, device: torch.device, probe: PeakProbe) -> dict:
    """1 warm-up call of ``fn``, then ``iters`` timed calls (1 when the warm-up took > slow_s)."""
    prepare()
    probe.start()
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    warm_s = time.perf_counter() - t0
    warm_peak = probe.stop()
    n_iters = iters if warm_s <= slow_s else 1
    times, peaks = [], []
    for _ in range(n_iters):
        prepare()
        probe.start()
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        peaks.append(probe.stop())
    # memory: the first step of a fresh process, before the allocator holds memory freed by earlier steps
    # (later steps reuse retained memory, so their RSS peak above the pre-step RSS under-reports)
    return {"warmup_s": warm_s, "iters": n_iters, "times_s": times, "median_s": statistics.median(times),
            "min_s": min(times), "step_peak_mib": warm_peak, "later_steps_peak_mib": max(peaks), "_out": out}


def build_vq(lib: str, k: int, dim: int):
    """The module and its learned linear map (whose gradient is checked)."""
    if lib == "peer":
        from vector_quantize_pytorch import SimVQ
        vq = SimVQ(dim=dim, codebook_size=k, rotation_trick=True)
        return vq, vq.code_transform.weight
    from genzoo.layers import VectorQuantizer
    vq = VectorQuantizer(num_codes=k, dim=dim, codebook="simvq",
                         estimator="rotation" if lib == "genzoo" else "straight_through")
    return vq, vq.transform.weight


def vq_forward(lib: str, vq, x: torch.Tensor):
    """``(quantized (N, D), vq_loss)`` for either library."""
    if lib == "peer":
        q, _, loss = vq(x.unsqueeze(0))
        return q.squeeze(0), loss
    q, _, losses = vq(x)
    return q, losses["loss"]


def worker_vq(spec: dict, device: torch.device) -> dict:
    lib, n, k, dim = spec["lib"], spec["n"], spec["k"], spec["dim"]
    probe = PeakProbe(device)
    rss_start = probe.rss_mib()
    g = torch.Generator().manual_seed(spec["seed"])
    x = torch.randn(n, dim, generator=g).to(device).requires_grad_(True)
    torch.manual_seed(spec["seed"])
    vq, weight = build_vq(lib, k, dim)
    vq.to(device).train()
    rss_built = probe.rss_mib()

    def prepare():
        x.grad = None
        vq.zero_grad(set_to_none=True)

    def step():
        q, vq_loss = vq_forward(lib, vq, x)
        loss = q.square().mean() + vq_loss
        loss.backward()

    m = measure(step, prepare, spec["iters"], spec["slow_s"], device, probe)
    m.pop("_out")
    grads_ok = (x.grad is not None and bool(torch.isfinite(x.grad).all()) and weight.grad is not None
                and bool(torch.isfinite(weight.grad).all()) and float(weight.grad.abs().sum()) > 0)
    return {**m, "vectors_per_s": n / m["median_s"], "grads_reach_x_and_W": grads_ok,
            "rss_before_build_mib": rss_start, "rss_after_build_mib": rss_built, "memory_method": probe.method,
            "nk_matrix_mib": n * k * 4 / MIB}


def worker_search(spec: dict, device: torch.device) -> dict:
    from genzoo.layers import nearest_code
    n, k, dim = spec["n"], spec["k"], spec["dim"]
    probe = PeakProbe(device)
    g = torch.Generator().manual_seed(spec["seed"])
    x = torch.randn(n, dim, generator=g).to(device)
    codes = torch.randn(k, dim, generator=g).to(device)
    flops = 2.0 * n * k * dim
    methods = {"torch": lambda: nearest_code(x, codes, backend="torch")}
    if spec["naive"]:
        methods["naive"] = lambda: torch.cdist(x, codes).argmin(1)
    if device.type == "cuda":
        from genzoo.layers.nearest_code import triton_available
        if triton_available():
            methods["triton"] = lambda: nearest_code(x, codes, backend="triton")
    res: dict = {"memory_method": probe.method}
    indices = {}
    with torch.no_grad():
        for name, fn in methods.items():
            try:
                m = measure(fn, lambda: None, spec["iters"], spec["slow_s"], device, probe)
            except Exception as e:  # e.g. the allocator refusing the naive N x K matrix
                res[name] = {"status": "error", "error": f"{type(e).__name__}: {str(e)[:300]}"}
                continue
            indices[name] = m.pop("_out")
            m.update(status="ok", ms=1e3 * m["median_s"], gflops=flops / m["median_s"] / 1e9)
            if name == "triton":
                m["bandwidth_gb_s"] = (n * dim + k * dim) * 4 / m["median_s"] / 1e9
            res[name] = m
    for name in ("naive", "triton"):
        if name in indices and "torch" in indices:
            res[name]["indices_agree_with_torch"] = float((indices[name] == indices["torch"]).float().mean())
    return res


def worker(spec: dict, threads: int) -> None:
    torch.set_num_threads(threads)
    device = torch.device(spec["device"])
    try:
        res = worker_vq(spec, device) if spec["mode"] == "vq" else worker_search(spec, device)
        res["status"] = "ok"
    except Exception as e:  # reported, not raised: the parent records it
        res = {"status": "error", "error": f"{type(e).__name__}: {str(e)[:300]}"}
    res["threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(res), flush=True)


# ---- parent ------------------------------------------------------------------------------------
def run_worker(spec: dict, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec), "--threads", str(args.threads)]
    # the default glibc allocator: a low MALLOC_MMAP_THRESHOLD_ would make every tile allocation page-fault
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "error": f"timed out after {args.timeout:g} s (killed)",
                "wall_s": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return {**json.loads(line[7:]), "wall_s": wall}
    tail = (p.stderr.strip().splitlines() or [""])[-1][:300]
    if p.returncode < 0:
        sig = -p.returncode
        why = " (SIGKILL: likely the OOM killer)" if sig == 9 else ""
        return {"status": "killed", "error": f"killed by signal {sig}{why}", "returncode": p.returncode,
                "stderr_tail": tail, "wall_s": wall}
    return {"status": "failed", "error": f"exit code {p.returncode}: {tail}", "returncode": p.returncode,
            "wall_s": wall}


def skipped(n: int, k: int) -> dict:
    size = n * k * 4
    human = f"{size / GIB:.1f} GiB" if size >= GIB / 10 else f"{size / MIB:.1f} MiB"
    return {"status": "skipped", "error": f"skipped (N×K distance matrix = {human})",
            "nk_matrix_gib": n * k * 4 / GIB}


def equivalence_check(dim: int, device: torch.device, n: int = 1000, k: int = 300) -> dict:
    """The peer's C and W copied into genzoo (bias 0): same indices, outputs, losses, gradients?"""
    from vector_quantize_pytorch import SimVQ

    from genzoo.layers import VectorQuantizer
    torch.manual_seed(1)
    peer = SimVQ(dim=dim, codebook_size=k, rotation_trick=True).to(device).train()
    gz = VectorQuantizer(num_codes=k, dim=dim, codebook="simvq", estimator="rotation").to(device).train()
    with torch.no_grad():
        gz.frozen_codebook.copy_(peer.frozen_codebook)
        gz.transform.weight.copy_(peer.code_transform.weight)
        gz.transform.bias.zero_()
    g = torch.Generator().manual_seed(2)
    x0 = (torch.randn(n, dim, generator=g) * 0.3).to(device)
    out = {}
    for name, mod, lib in (("genzoo", gz, "genzoo"), ("peer", peer, "peer")):
        x = x0.clone().requires_grad_(True)
        if lib == "peer":
            q, idx, vq_loss = mod(x.unsqueeze(0))
            q, idx = q.squeeze(0), idx.squeeze(0)
        else:
            q, idx, losses = mod(x)
            vq_loss = losses["loss"]
        (q.square().mean() + vq_loss).backward()
        w = mod.code_transform.weight if lib == "peer" else mod.transform.weight
        out[name] = (idx.detach(), q.detach(), float(vq_loss.detach()), x.grad, w.grad)
    (i1, q1, l1, gx1, gw1), (i2, q2, l2, gx2, gw2) = out["genzoo"], out["peer"]

    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
    return {"n": n, "k": k, "indices_equal_fraction": float((i1 == i2).float().mean()),
            "quantized_max_abs_diff": float((q1 - q2).abs().max()), "vq_loss": [l1, l2],
            "grad_x_max_rel_diff": rel(gx1, gx2), "grad_W_max_rel_diff": rel(gw1, gw2)}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, nargs="+", help="numbers of vectors N (default 4096 65536)")
    p.add_argument("--codes", type=int, nargs="+", help="codebook sizes K (default 512 8192 65536 262144)")
    p.add_argument("--dim", type=int, default=64, help="code dimension D")
    p.add_argument("--iters", type=int, help="timed iterations after 1 warm-up (default 3)")
    p.add_argument("--slow-s", type=float, default=20.0,
                   help="time only 1 iteration when the warm-up iteration took longer than this")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (and OMP_NUM_THREADS of workers)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--max-peer-bytes", type=float, default=6 * GIB,
                   help="skip the peer (and the naive search) when N*K*4 bytes exceed this")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per worker subprocess")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-search", action="store_true", help="skip the nearest-code-search section")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: N=512, K in {512, 2048}, 2 iterations; writes to /tmp unless --out is given")
    p.add_argument("--out", help=f"output path prefix, .json and .md are added (default "
                                 f"benchmarks/results/{NAME}; /tmp/{NAME} with --quick)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.n is None:
        args.n = [512] if args.quick else [4096, 65536]
    if args.codes is None:
        args.codes = [512, 2048] if args.quick else [512, 8192, 65536, 262144]
    if args.iters is None:
        args.iters = 2 if args.quick else 3
    if args.out is None:
        args.out = str(Path("/tmp") / NAME) if args.quick else str(RESULTS / NAME)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker), args.threads)
        return
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    t_start = time.perf_counter()
    checks = equivalence_check(args.dim, device)
    print("check:", json.dumps(checks), flush=True)

    base = {"dim": args.dim, "iters": args.iters, "slow_s": args.slow_s, "seed": args.seed, "device": args.device}
    vq_rows, search_rows = [], []
    for n in args.n:
        for k in args.codes:
            too_big = n * k * 4 > args.max_peer_bytes
            row = {"n": n, "k": k}
            for lib in LIBS:
                if lib == "peer" and too_big:
                    row[lib] = skipped(n, k)
                else:
                    row[lib] = run_worker({**base, "mode": "vq", "lib": lib, "n": n, "k": k}, args)
                r = row[lib]
                msg = (f"{r['vectors_per_s']:.0f} vectors/s, step peak {r['step_peak_mib']:.1f} MiB, "
                       f"{r['iters']} iters" if r["status"] == "ok" else r["error"])
                print(f"vq N={n} K={k} {lib}: {msg}", flush=True)
            vq_rows.append(row)
            if not args.no_search:
                s = run_worker({**base, "mode": "search", "n": n, "k": k, "naive": not too_big}, args)
                if too_big and s.get("status") == "ok":
                    s["naive"] = skipped(n, k)
                search_rows.append({"n": n, "k": k, **s})
                print(f"search N={n} K={k}: " + (", ".join(
                    f"{m} {s[m]['ms']:.1f} ms" if s[m].get("status") == "ok" else f"{m} {s[m]['error']}"
                    for m in ("torch", "naive", "triton") if m in s) if s["status"] == "ok" else s["error"]),
                    flush=True)

    for row in vq_rows:
        g, p = row["genzoo"], row["peer"]
        ok = g["status"] == "ok" and p["status"] == "ok"
        row["ratios_genzoo_over_peer"] = {
            "throughput": g["vectors_per_s"] / p["vectors_per_s"] if ok else None,
            "step_peak_memory": g["step_peak_mib"] / p["step_peak_mib"] if ok and p["step_peak_mib"] > 0 else None}
        if p["status"] == "ok":
            p["step_peak_over_nk_matrix"] = p["step_peak_mib"] / p["nk_matrix_mib"]

    env = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "python": platform.python_version(), "torch": torch.__version__,
           "vector_quantize_pytorch": _version("vector-quantize-pytorch"), "genzoo": _version("genzoo"),
           "git": git_rev(), "device": str(device),
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
           else (platform.processor() or platform.machine()),
           "threads": args.threads, "cpu_count": os.cpu_count(), "cuda_available": torch.cuda.is_available(),
           "triton": _version("triton"), "wall_s": time.perf_counter() - t_start}
    results = {"protocol": {k: v for k, v in vars(args).items() if k != "worker"}, "environment": env,
               "checks": checks, "vq": vq_rows, "nearest_code_search": search_rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(results, indent=2) + "\n")
    md = render_md(args, results)
    Path(f"{out}.md").write_text(md)
    print(md)
    print(f"wrote {out}.json and {out}.md")


# ---- markdown ----------------------------------------------------------------------------------
def _f(v, spec: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _x(v, spec: str) -> str:
    """A ratio: ``1.23x`` or ``n/a``."""
    s = _f(v, spec)
    return s if s == "n/a" else s + "x"


def _cell(r: dict, key: str, spec: str, short: bool = False) -> str:
    """The formatted value, or why it is missing (the full reason, or only the status when ``short``)."""
    if r.get("status", "ok") == "ok":
        return _f(r.get(key), spec)
    return r["status"] if short else r["error"]


def render_md(args, res: dict) -> str:
    e, c = res["environment"], res["checks"]
    dev = f"{e['device']} ({e['device_name']})"
    lines = [
        "# genzoo VectorQuantizer (SimVQ) vs vector-quantize-pytorch SimVQ", "",
        f"D = {args.dim}, N in {args.n}, K in {args.codes}. Device {dev}, torch.set_num_threads({e['threads']}) "
        f"({e['cpu_count']} CPUs), torch {e['torch']}, vector-quantize-pytorch {e['vector_quantize_pytorch']}, "
        f"genzoo {e['genzoo']} ({e['git']}), {e['date']}.", "",
        "## Training step (forward + backward)", "",
        "Throughput in vectors/s (N / median step time), peak memory in MiB above the memory just before the step. "
        "Ratios are genzoo (rotation) / vector-quantize-pytorch: throughput > 1 and memory < 1 favour genzoo.", "",
        "| N | K | genzoo rotation vec/s | genzoo straight-through vec/s | vqp SimVQ vec/s | throughput genzoo/vqp "
        "| genzoo peak MiB | genzoo ST peak MiB | vqp peak MiB | memory genzoo/vqp | timed iters (gz / st / vqp) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in res["vq"]:
        g, s, p, r = row["genzoo"], row["genzoo-st"], row["peer"], row["ratios_genzoo_over_peer"]
        its = " / ".join(str(x["iters"]) if x["status"] == "ok" else "-" for x in (g, s, p))
        lines.append(
            f"| {row['n']} | {row['k']} | {_cell(g, 'vectors_per_s', ',.0f')} | "
            f"{_cell(s, 'vectors_per_s', ',.0f', short=True)} | "
            f"{_cell(p, 'vectors_per_s', ',.0f')} | {_x(r['throughput'], '.2f')} | "
            f"{_cell(g, 'step_peak_mib', '.1f', short=True)} | {_cell(s, 'step_peak_mib', '.1f', short=True)} | "
            f"{_cell(p, 'step_peak_mib', '.1f', short=True)} | {_x(r['step_peak_memory'], '.3f')} | {its} |")
    peer_ok = [row for row in res["vq"] if row["peer"]["status"] == "ok"]
    if peer_ok:
        lines += ["", "vector-quantize-pytorch's step peak / size of its N×K float32 distance matrix: " + ", ".join(
            f"N={row['n']} K={row['k']}: {row['peer']['step_peak_over_nk_matrix']:.2f}" for row in peer_ok) + "."]
    lines += ["", "## Nearest-code search only", "",
              "`genzoo.layers.nearest_code(x, codes, backend=\"torch\")` (chunked, no N×K matrix) vs naive "
              "`torch.cdist(x, codes).argmin(1)`, x = randn(N, D), codes = randn(K, D), under no_grad. "
              "GFLOP/s is nominal 2·N·K·D / time for both; speedup = naive time / genzoo time "
              "(> 1: genzoo faster).", "",
              "| N | K | genzoo torch ms | GFLOP/s | peak MiB | naive ms | GFLOP/s | peak MiB | speedup vs naive "
              "| indices agree |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in res["nearest_code_search"]:
        if row["status"] != "ok":
            lines.append(f"| {row['n']} | {row['k']} | {row['error']} | | | | | | | |")
            continue
        t, nv = row["torch"], row.get("naive", {"status": "skipped", "error": "not run"})
        sp = nv["median_s"] / t["median_s"] if t["status"] == "ok" and nv["status"] == "ok" else None
        lines.append(f"| {row['n']} | {row['k']} | {_cell(t, 'ms', '.1f')} | {_cell(t, 'gflops', '.1f')} | "
                     f"{_cell(t, 'step_peak_mib', '.1f')} | {_cell(nv, 'ms', '.1f')} | "
                     f"{_cell(nv, 'gflops', '.1f', short=True)} | "
                     f"{_cell(nv, 'step_peak_mib', '.1f', short=True)} | {_x(sp, '.2f')} | "
                     f"{_f(nv.get('indices_agree_with_torch'), '.4f') if nv['status'] == 'ok' else 'n/a'} |")
    lines.append("")
    tri = [row for row in res["nearest_code_search"] if row["status"] == "ok" and "triton" in row]
    if tri:
        lines += ["Triton backend (fused kernel; bandwidth = (N·D + K·D)·4 bytes / time, a lower bound on the "
                  "traffic since every block of 64 rows re-reads the codebook):", "",
                  "| N | K | triton ms | GFLOP/s | GB/s | peak MiB | speedup vs genzoo torch | indices agree |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in tri:
            tr, t = row["triton"], row["torch"]
            sp = t["median_s"] / tr["median_s"] if tr["status"] == "ok" and t["status"] == "ok" else None
            lines.append(f"| {row['n']} | {row['k']} | {_cell(tr, 'ms', '.2f')} | {_cell(tr, 'gflops', '.1f')} | "
                         f"{_cell(tr, 'bandwidth_gb_s', '.1f')} | {_cell(tr, 'step_peak_mib', '.1f')} | "
                         f"{_x(sp, '.2f')} | {_f(tr.get('indices_agree_with_torch'), '.4f')} |")
    else:
        lines.append("Triton backend: no CUDA device here." if not e["cuda_available"] else
                     "Triton backend: not measured (triton unavailable or the device is not CUDA).")
    grads = [r[lib]["grads_reach_x_and_W"] for r in res["vq"] for lib in LIBS if r[lib]["status"] == "ok"]
    method = next((r[lib]["memory_method"] for r in res["vq"] for lib in LIBS if r[lib]["status"] == "ok"),
                  "not measured")
    lines += [
        "", "## Checks", "",
        f"The peer's frozen codebook and linear map copied into genzoo (bias 0), N={c['n']}, K={c['k']}: indices "
        f"equal {c['indices_equal_fraction']:.4f}, quantized max abs diff {c['quantized_max_abs_diff']:.1e}, VQ loss "
        f"{c['vq_loss'][0]:.6f} vs {c['vq_loss'][1]:.6f}, gradient max relative diff: "
        f"x {c['grad_x_max_rel_diff']:.1e}, "
        f"W {c['grad_W_max_rel_diff']:.1e}. Gradients reached x and W in every measured step: "
        f"{all(grads) if grads else 'not measured'}.", "",
        "## How measured", "",
        f"Each (library, N, K) runs in a fresh subprocess with torch.set_num_threads({e['threads']}): "
        f"x = randn(N, {args.dim}) from "
        f"seed {args.seed} (the same for every library) with requires_grad, the module in training mode; one step = "
        "forward, `loss = quantized.square().mean() + vq_loss`, backward. 1 warm-up step, then "
        f"{args.iters} timed steps (time.perf_counter; only 1 when the warm-up took more than {args.slow_s:g} s, see "
        "the iters column), throughput = N / median step time. Memory: " + method + " of the first (warm-up) step "
        "of the fresh process, before the allocator retains memory freed by earlier steps (malloc_trim before it; "
        "default glibc allocator). vector-quantize-pytorch computes a full N×K torch.cdist matrix; it (and the naive search) is "
        f"skipped when N·K·4 bytes exceed {args.max_peer_bytes / GIB:g} GiB. Workers time out after "
        f"{args.timeout:g} s. Libraries' defaults otherwise (initialisation differs; the cost of a step does not "
        "depend on the values). The runs of different libraries are sequential, not interleaved, so a change in "
        "machine load between workers shows up in the ratios.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
