"""One long vertical image of all the pages, for webtoon readers (``--strip``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def write_strip(page_files: Sequence[Path], path: Path, dpi: int) -> tuple[int, int]:
    """Stack the page PNGs top to bottom into ``path`` (atomically); returns its size."""
    from PIL import Image

    from comicgen.fsutil import atomic_save_image

    sizes = []
    for file in page_files:
        with Image.open(file) as image:
            sizes.append(image.size)
    width = max(w for w, _ in sizes)
    height = sum(h for _, h in sizes)
    strip = Image.new("RGB", (width, height), "white")
    y = 0
    for file, (w, h) in zip(page_files, sizes, strict=True):
        with Image.open(file) as image:
            strip.paste(image.convert("RGB"), ((width - w) // 2, y))
        y += h
    atomic_save_image(strip, Path(path), "PNG", dpi=(dpi, dpi))
    return width, height
