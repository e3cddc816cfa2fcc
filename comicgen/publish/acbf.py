"""ACBF 1.1 (Advanced Comic Book Format): frames and text layers from the page geometry.

One self-contained ``NAME.acbf`` file: the lettered PNG pages embedded as base64
(``<data>``), and for each page its frames (panel boxes as polygons, in reading order)
and one text layer in the story's language with a text area per caption and balloon:
the balloon's outline as a polygon, its kind (``speech``, ``thought``, ``commentary``
for captions, ``audio`` for sound effects) and its text. The pages are lettered
already, so the layer is declared with ``show="false"``: viewers use it for panel
zoom, search, read-aloud and translation, and draw nothing twice.

As in ACBF, the first page is the ``coverpage`` (readers show it as page one) and the
body holds the others. Points are pixels of the embedded images. Validated against the
ACBF 1.1 schema (``libacbf/schema/acbf-1.1.xsd``) in the tests.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from xml.etree import ElementTree as ET

from comicgen.layout import BookLayout, PageLayout, Point, Rect

NS = "http://www.acbf.info/xml/acbf/1.1"
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# comicgen's balloon kinds → ACBF text-area types (textAreaType in the schema)
AREA_TYPES = {
    "speech": "speech",
    "shout": "speech",
    "whisper": "speech",
    "thought": "thought",
    "sfx": "audio",
    "caption": "commentary",
}
MAX_POINTS = 36  # a balloon's outline is thinned to at most this many points


def _x(text: str) -> str:
    return _XML_INVALID.sub("", text)


def _points(points: Sequence[Point], scale: float) -> str:
    step = max(1, -(-len(points) // MAX_POINTS))
    kept = list(points)[::step]
    return " ".join(f"{round(x * scale)},{round(y * scale)}" for x, y in kept)


def _rect(rect: Rect) -> list[Point]:
    return [
        (rect.x, rect.y),
        (rect.right, rect.y),
        (rect.right, rect.bottom),
        (rect.x, rect.bottom),
    ]


def _page(parent: ET.Element, page: PageLayout, href: str, scale: float, lang: str) -> None:
    """Fill ``parent`` (a ``page`` or the ``coverpage``) with the page's image, text, frames."""
    ET.SubElement(parent, "image", {"href": f"#{href}"})
    areas = []
    for panel in page.panels:
        captions = [panel.caption] if panel.caption is not None else []
        for caption in captions + list(panel.narration):  # caption, narrator's and voices'
            areas.append((_rect(caption.box), "caption", caption.text))
        for balloon in panel.balloons:
            areas.append((balloon.outline or _rect(balloon.box), str(balloon.kind), balloon.text))
        for effect in panel.sfx:
            areas.append((_rect(effect.box), "sfx", effect.text))
    if areas:
        layer = ET.SubElement(parent, "text-layer", {"lang": lang})
        for outline, kind, text in areas:
            area = ET.SubElement(
                layer,
                "text-area",
                {"points": _points(outline, scale), "type": AREA_TYPES.get(kind, "speech")},
            )
            ET.SubElement(area, "p").text = _x(" ".join(text.split()))
    for panel in page.panels:
        ET.SubElement(parent, "frame", {"points": _points(_rect(panel.box), scale)})


def acbf_document(
    layout: BookLayout, png_pages: Sequence[Path], today: date | None = None
) -> bytes:
    """The ACBF XML of ``layout``, embedding ``png_pages`` (the lettered pages, in order)."""
    from PIL import Image

    book = layout.book
    lang = book.language
    today = today or date.today()
    root = ET.Element("ACBF", {"xmlns": NS})
    meta = ET.SubElement(root, "meta-data")
    info = ET.SubElement(meta, "book-info")
    if book.author:
        author = ET.SubElement(info, "author", {"activity": "Writer"})
        ET.SubElement(author, "nickname").text = _x(book.author)
    ET.SubElement(info, "book-title", {"lang": lang}).text = _x(book.title or book.name)
    if book.characters:
        people = ET.SubElement(info, "characters")
        for name in book.characters:
            ET.SubElement(people, "name").text = _x(name)
    if book.summary:
        annotation = ET.SubElement(info, "annotation", {"lang": lang})
        ET.SubElement(annotation, "p").text = _x(book.summary)
    cover = ET.SubElement(info, "coverpage")
    languages = ET.SubElement(info, "languages")
    # the pages are lettered in the story's language: the layer is not drawn again
    ET.SubElement(languages, "text-layer", {"lang": lang, "show": "false"})
    publish = ET.SubElement(meta, "publish-info")
    ET.SubElement(publish, "publisher").text = _x(book.author or "comicgen")
    ET.SubElement(publish, "publish-date", {"value": today.isoformat()}).text = today.isoformat()
    document = ET.SubElement(meta, "document-info")
    ET.SubElement(ET.SubElement(document, "author"), "nickname").text = "comicgen"
    ET.SubElement(document, "creation-date", {"value": today.isoformat()}).text = today.isoformat()

    names = [Path(p).name for p in png_pages]
    scales = []
    for page, file in zip(layout.pages, png_pages, strict=True):
        with Image.open(file) as image:
            scales.append(image.width / page.width)
    body = ET.SubElement(root, "body")
    _page(cover, layout.pages[0], names[0], scales[0], lang)
    pages = list(zip(layout.pages, names, scales, strict=True))
    for page, name, scale in pages[1:] or pages:  # a one-page book: its page is the body too
        _page(ET.SubElement(body, "page"), page, name, scale, lang)
    data = ET.SubElement(root, "data")
    for name, file in zip(names, png_pages, strict=True):
        binary = ET.SubElement(data, "binary", {"id": name, "content-type": "image/png"})
        binary.text = base64.b64encode(Path(file).read_bytes()).decode("ascii")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_acbf(layout: BookLayout, png_pages: Sequence[Path], path: Path) -> Path:
    """Write ``path`` (atomically) from the layout and its lettered PNG pages."""
    from comicgen.fsutil import atomic_write_bytes

    atomic_write_bytes(Path(path), acbf_document(layout, png_pages))
    return Path(path)
