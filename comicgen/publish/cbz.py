"""Comic book archive: the page PNGs in order plus a ComicInfo.xml (schema v2.0).

ComicInfo is the metadata file comic readers (Komga, Kavita, YACReader, ...) read from
a CBZ; the schema is the Anansi Project's ComicInfo v2.0. A right-to-left story is
marked ``Manga=YesAndRightToLeft`` so readers turn its pages the manga way.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

from comicgen.book import Book

# Characters XML 1.0 cannot hold at all (it has no escape for them).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # reproducible archives


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub("", text)


def comic_info(book: Book, pages: Sequence[tuple[int, int, int]]) -> bytes:
    """ComicInfo.xml for ``book``; ``pages`` = (width, height, bytes) of each page image."""
    root = ET.Element("ComicInfo")

    def add(name: str, value: str | int | None) -> None:
        if value is None or value == "":
            return
        ET.SubElement(root, name).text = _xml_text(str(value))

    # The schema is a sequence: these must stay in its order.
    add("Title", book.title)
    add("Summary", book.summary)
    add("Notes", "Made with comicgen")
    add("Writer", book.author)
    add("PageCount", len(pages))
    add("LanguageISO", book.language)
    add("Manga", "YesAndRightToLeft" if book.direction == "rtl" else "No")
    add("Characters", ", ".join(book.characters))
    listing = ET.SubElement(root, "Pages")
    for index, (width, height, size) in enumerate(pages):
        page = ET.SubElement(listing, "Page")
        page.set("Image", str(index))
        if index == 0:
            page.set("Type", "FrontCover")
        page.set("ImageSize", str(size))
        page.set("ImageWidth", str(width))
        page.set("ImageHeight", str(height))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_cbz(book: Book, page_files: Sequence[Path], path: Path) -> Path:
    """Write ``path`` (atomically): ComicInfo.xml, then the pages as page-001.png, ..."""
    from PIL import Image

    from comicgen.fsutil import atomic_open

    sizes = []
    for file in page_files:
        with Image.open(file) as image:
            sizes.append((image.width, image.height, Path(file).stat().st_size))
    width = max(3, len(str(len(page_files))))
    with atomic_open(Path(path), "wb") as handle:
        with zipfile.ZipFile(handle, "w") as archive:
            info = zipfile.ZipInfo("ComicInfo.xml", _FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, comic_info(book, sizes))
            for number, file in enumerate(page_files, start=1):
                entry = zipfile.ZipInfo(f"page-{number:0{width}d}.png", _FIXED_TIME)
                entry.compress_type = zipfile.ZIP_STORED  # PNG is compressed already
                archive.writestr(entry, Path(file).read_bytes())
    return Path(path)
