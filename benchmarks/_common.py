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
