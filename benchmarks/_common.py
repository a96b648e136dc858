"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<name>.py``, so this imports as ``_common``)."""
from __future__ import annotations

import subprocess
from pathlib import Path


def git_rev() -> str:
    """Short commit of the checkout the benchmarks live in, ``+dirty`` when tracked files are modified."""
    try:
        root = Path(__file__).resolve().parent.parent
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return (rev or "?") + ("+dirty" if dirty else "")
    except OSError:
        return "?"


def run_worker(script: str, spec: dict, threads: int = 1) -> dict:
    """Run ``python script --worker JSON`` in a fresh process with ``threads`` OMP threads; the worker prints
    its result as JSON on its last stdout line. Errors come back as ``{**spec, "error": stderr tail}``."""
    import json
    import os
    import sys

    root = str(Path(__file__).resolve().parent.parent)  # the checkout, importable even if genzoo is not installed
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, script, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        return {**spec, "error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def save_results(out: str | Path, results: list[dict], markdown: str) -> None:
    """Write ``out.json`` (the raw results) and ``out.md`` (the table), and print the table."""
    import json

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown)
    print(markdown)
