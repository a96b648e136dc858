"""Print (or write into README.md) the metrics tables of every bundled checkpoint, read from the cards.

Two tables: sample quality across families (one row per sampling checkpoint: Fréchet distance in the
feature space of its image type, KID, precision, recall, plus the family's own headline number), and
every card metric with its protocol.

Run: ``python benchmarks/metrics_table.py [--write-readme]``. The numbers on the cards come from
``genzoo eval``; this script only collects them.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, even without `pip install -e .`
from genzoo.hub import bundled_dir, read_card_metadata  # noqa: E402
from genzoo.registry import get_entry, list_models  # noqa: E402

README = Path(__file__).resolve().parent.parent / "README.md"
MARK, END = "<!-- metrics-table -->", "<!-- /metrics-table -->"
SQ_MARK, SQ_END = "<!-- sample-quality-table -->", "<!-- /sample-quality-table -->"
# the family's own headline metric for the comparison table, first one present wins
HEADLINE = [("test_bpd", "{:.3f} bits/dim"), ("iwae_bpd", "{:.3f} bits/dim (IWAE)"), ("recon_psnr", "PSNR {:.2f} dB"),
            ("recon_mse", "recon MSE {:.4f}"), ("test_accuracy", "accuracy {:.4f}")]


def _metrics(name: str) -> dict[str, dict]:
    meta = read_card_metadata(bundled_dir() / name).get("genzoo", {})
    return {m["key"]: m for m in meta.get("metrics", [])}


def sample_quality_table() -> str:
    lines = ["| checkpoint | family | data | Fréchet distance | feature space | KID | precision | recall | "
             "family metric |", "|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for name in list_models("pretrained"):
        m = _metrics(name)
        fd = m.get("fid") or m.get("fd_fmnist")
        if fd is None:
            continue
        space = "InceptionV3 (FID)" if "fid" in m else "genzoo F-MNIST classifier"
        head = next((fmt.format(float(m[k]["value"])) for k, fmt in HEADLINE if k in m), "—")
        size = get_entry(name).config.image_size
        rows.append((space, float(fd["value"]), f"| `{name}` | {get_entry(name).model_class.__name__} | "
                     f"{get_entry(name).dataset} {size}×{size} | {float(fd['value']):.2f} | {space} | {float(m['kid']['value']):.4f} | "
                     f"{float(m['precision']['value']):.3f} | {float(m['recall']['value']):.3f} | {head} |"))
    lines += [r[2] for r in sorted(rows, key=lambda r: (r[0], r[1]))]
    return "\n".join(lines)


def table() -> str:
    lines = ["| checkpoint | data | metric | value | protocol |", "|---|---|---|---|---|"]
    for name in list_models("pretrained"):
        meta = read_card_metadata(bundled_dir() / name).get("genzoo", {})
        for m in meta.get("metrics", []):
            v = float(m["value"])
            value = f"{v:.3f}" if abs(v) >= 1 else f"{v:.5f}"  # MSE, usage: keep the significant digits
            lines.append(f"| `{name}` | {get_entry(name).dataset} | {m['name']} | {value} | {m['protocol']} |")
    return "\n".join(lines)


def _replace_block(readme: str, mark: str, end: str, text: str) -> str:
    pattern = re.compile(re.escape(mark) + r".*?" + re.escape(end), re.S)
    block = f"{mark}\n{text}\n{end}"
    if not pattern.search(readme) and mark not in readme:
        raise SystemExit(f"README.md has no {mark} marker")
    return pattern.sub(lambda _: block, readme) if pattern.search(readme) else readme.replace(mark, block)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--write-readme", action="store_true")
    args = p.parse_args()
    sq, text = sample_quality_table(), table()
    if args.write_readme:
        readme = _replace_block(README.read_text(), SQ_MARK, SQ_END, sq)
        README.write_text(_replace_block(readme, MARK, END, text))
    print(sq + "\n\n" + text)


if __name__ == "__main__":
    main()
