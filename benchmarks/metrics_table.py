"""Print (or write into README.md) the metrics table of every bundled checkpoint, read from the cards.

Run: ``python benchmarks/metrics_table.py [--write-readme]``. The numbers on the cards come from
``genzoo eval``; this script only collects them.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from genzoo.hub import bundled_dir, read_card_metadata
from genzoo.registry import get_entry, list_models

README = Path(__file__).resolve().parent.parent / "README.md"
MARK, END = "<!-- metrics-table -->", "<!-- /metrics-table -->"


def table() -> str:
    lines = ["| checkpoint | data | metric | value | protocol |", "|---|---|---|---|---|"]
    for name in list_models("pretrained"):
        meta = read_card_metadata(bundled_dir() / name).get("genzoo", {})
        for m in meta.get("metrics", []):
            v = float(m["value"])
            value = f"{v:.3f}" if abs(v) >= 1 else f"{v:.5f}"  # MSE, usage: keep the significant digits
            lines.append(f"| `{name}` | {get_entry(name).dataset} | {m['name']} | {value} | {m['protocol']} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--write-readme", action="store_true")
    args = p.parse_args()
    text = table()
    if args.write_readme:
        readme = README.read_text()
        pattern = re.compile(re.escape(MARK) + r".*?" + re.escape(END), re.S)
        block = f"{MARK}\n{text}\n{END}"
        readme = pattern.sub(block, readme) if pattern.search(readme) else readme.replace(MARK, block)
        README.write_text(readme)
    print(text)


if __name__ == "__main__":
    main()
