"""A PDF of the page PNGs (one page per page, at the PNGs' resolution), by Pillow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from comicgen.book import Book


def write_pdf(book: Book, page_files: Sequence[Path], path: Path, dpi: int) -> Path:
    """Write ``path`` (atomically); each page keeps its size in inches (px / dpi)."""
    from PIL import Image

    from comicgen.fsutil import atomic_open

    images = []
    try:
        for file in page_files:
            with Image.open(file) as image:
                images.append(image.convert("RGB"))
        first, *rest = images
        with atomic_open(Path(path), "wb") as handle:
            first.save(
                handle,
                "PDF",
                save_all=True,
                append_images=rest,
                resolution=float(dpi),
                title=book.title,
                author=book.author or "",
                subject=book.summary or "",
                creator="comicgen",
            )
    finally:
        for image in images:
            image.close()
    return Path(path)
