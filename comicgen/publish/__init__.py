"""From a :class:`~comicgen.book.Book` to files: HTML pages, PNG pages, CBZ, PDF, strip.

``publish`` lays the book out once (:func:`comicgen.layout.layout_book`) and every
output is drawn from that geometry::

    out_dir/index.html            contents: cover, thumbnails, ←/→ navigation
    out_dir/page-01.html ...      one HTML page per page
    out_dir/page-01.png ...       the same pages painted by Pillow at ``dpi``
    out_dir/thumbs/page-01.png    small previews for the contents page
    out_dir/assets/               comic.css, reader.js and the bundled font
    out_dir/<name>.cbz            the PNG pages + ComicInfo.xml   (cbz=True)
    out_dir/<name>.pdf            the PNG pages as a PDF          (pdf=True)
    out_dir/<name>-strip.png      one long vertical image         (strip=True)
    out_dir/<name>.epub           EPUB 3 fixed layout, region-based navigation (epub=True)
    out_dir/<name>.acbf           ACBF 1.1: frames and text layers, pages embedded (acbf=True)

Panel images must already be inside ``out_dir`` (render puts them in ``panels/``);
the HTML refers to them by relative path. Every file is written atomically.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from comicgen.book import Book
from comicgen.errors import ComicgenError
from comicgen.layout import BookLayout, layout_book
from comicgen.settings import PageSettings

THUMB_WIDTH = 240
_OUR_PAGES = re.compile(r"^page-\d+\.(html|png)$")


@dataclass
class PublishResult:
    out_dir: Path
    layout: BookLayout
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    index: Path | None = None
    html_pages: list[Path] = field(default_factory=list)
    png_pages: list[Path] = field(default_factory=list)
    cbz: Path | None = None
    pdf: Path | None = None
    strip: Path | None = None
    epub: Path | None = None
    acbf: Path | None = None

    @property
    def extras(self) -> list[Path]:
        """The exports written besides the pages (CBZ, PDF, strip, EPUB, ACBF)."""
        found = (self.cbz, self.pdf, self.strip, self.epub, self.acbf)
        return [path for path in found if path is not None]


def page_file_names(count: int) -> tuple[list[str], list[str]]:
    """(HTML names, PNG names): page-01.html ... (three digits from 100 pages on)."""
    digits = max(2, len(str(count)))
    stems = [f"page-{n:0{digits}d}" for n in range(1, count + 1)]
    return [s + ".html" for s in stems], [s + ".png" for s in stems]


def publish(
    book: Book,
    out_dir: Path,
    page: PageSettings | None = None,
    template_dirs: Sequence[Path] = (),
    *,
    pdf: bool = False,
    strip: bool = False,
    cbz: bool = True,
    epub: bool = False,
    acbf: bool = False,
    dpi: int | None = None,
) -> PublishResult:
    """Lay out ``book`` and write its pages and exports into ``out_dir``."""
    from comicgen import lettering
    from comicgen.fsutil import atomic_save_image, atomic_write_bytes, safe_filename
    from comicgen.publish import html, png

    page = page or PageSettings()
    dpi = dpi or page.dpi
    if not 36 <= dpi <= 1200:
        raise ComicgenError(f"--dpi {dpi} is out of range", hint="use 36 to 1200, e.g. 150")
    out_dir = Path(out_dir)
    if not book.pages:
        raise ComicgenError(f"story '{book.name}' has no pages", hint="add a page with a panel")
    _check_images(book, out_dir)

    timings: dict[str, float] = {}
    start = time.perf_counter()
    layout = layout_book(book, page)
    timings["layout"] = time.perf_counter() - start
    result = PublishResult(out_dir=out_dir, layout=layout, warnings=list(layout.warnings))
    html_names, png_names = page_file_names(len(layout.pages))
    thumb_names = [f"thumbs/{name}" for name in png_names]
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale(out_dir, set(html_names) | set(png_names))

    # PNG pages and their thumbnails
    start = time.perf_counter()
    for laid, name, thumb in zip(layout.pages, png_names, thumb_names, strict=True):
        image = png.render_page(laid, layout.style, dpi)
        atomic_save_image(image, out_dir / name, "PNG", dpi=(dpi, dpi))
        result.png_pages.append(out_dir / name)
        small = image.copy()
        small.thumbnail((THUMB_WIDTH, THUMB_WIDTH * 100))
        atomic_save_image(small, out_dir / thumb, "PNG")
        result.files += [out_dir / name, out_dir / thumb]
    timings["png"] = time.perf_counter() - start

    # assets and HTML
    start = time.perf_counter()
    assets = {}
    for name in html.STATIC_TEMPLATES:
        source = html.static_source(name, template_dirs)
        atomic_write_bytes(out_dir / "assets" / name, source.read_bytes())
        assets[name] = f"assets/{name}"
        result.files.append(out_dir / "assets" / name)
    fonts = {name: lettering.FONT_DIR / name for name in lettering.FONT_FILES.values()}
    fonts[lettering.FONT_LICENSE] = lettering.FONT_DIR / lettering.FONT_LICENSE
    fonts.update(html.face_assets(layout))  # fallbacks for scripts Kalam lacks
    for name, source in fonts.items():
        target = out_dir / "assets" / name
        atomic_write_bytes(target, source.read_bytes())
        result.files.append(target)
    written = html.write_html(
        layout, out_dir, template_dirs, html_names, png_names, thumb_names, assets
    )
    result.html_pages = written[:-1]
    result.index = written[-1]
    result.files += written
    timings["html"] = time.perf_counter() - start

    stem = safe_filename(book.name, default="comic")
    if cbz:
        from comicgen.publish.cbz import write_cbz

        start = time.perf_counter()
        result.cbz = write_cbz(book, result.png_pages, out_dir / f"{stem}.cbz")
        result.files.append(result.cbz)
        timings["cbz"] = time.perf_counter() - start
    if pdf:
        from comicgen.publish.pdf import write_pdf

        start = time.perf_counter()
        result.pdf = write_pdf(book, result.png_pages, out_dir / f"{stem}.pdf", dpi)
        result.files.append(result.pdf)
        timings["pdf"] = time.perf_counter() - start
    if strip:
        from comicgen.publish.strip import write_strip

        start = time.perf_counter()
        result.strip = out_dir / f"{stem}-strip.png"
        write_strip(result.png_pages, result.strip, dpi)
        result.files.append(result.strip)
        timings["strip"] = time.perf_counter() - start
    if epub:
        from comicgen.publish.epub import write_epub

        start = time.perf_counter()
        result.epub = write_epub(layout, out_dir / f"{stem}.epub", dpi)
        result.files.append(result.epub)
        timings["epub"] = time.perf_counter() - start
    if acbf:
        from comicgen.publish.acbf import write_acbf

        start = time.perf_counter()
        result.acbf = write_acbf(layout, result.png_pages, out_dir / f"{stem}.acbf")
        result.files.append(result.acbf)
        timings["acbf"] = time.perf_counter() - start
    result.timings = timings
    return result


def _check_images(book: Book, out_dir: Path) -> None:
    for content in book.pages:
        for panel in content.panels:
            if not Path(panel.image).is_file():
                raise ComicgenError(
                    f"panel {panel.id}: its image {panel.image} is missing",
                    hint="run the render again to repaint it",
                )


def _remove_stale(out_dir: Path, keep: set[str]) -> None:
    """Drop pages of an earlier, longer build (only comicgen's own page files)."""
    for folder in (out_dir, out_dir / "thumbs"):
        if folder.is_dir():
            for path in folder.iterdir():
                if _OUR_PAGES.match(path.name) and path.name not in keep and path.is_file():
                    path.unlink()
