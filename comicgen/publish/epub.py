"""EPUB 3 fixed layout with region-based navigation, from the page geometry.

One XHTML page per comic page, shown alone (``rendition:layout`` pre-paginated,
``rendition:spread`` none) in a viewport of the page's own size in CSS px, which are
the geometry's units: every position below is a number of the layout, unconverted.
Each page is the painted art with the balloon and caption shapes but without their
text (:func:`comicgen.publish.png.render_page` with ``with_text=False``), and over it
the text as real XHTML text in the bundled lettering font, broken into the lines the
layout chose: searchable, read aloud, and crisp at any zoom.

Guided reading follows EPUB 3 Region-Based Navigation 1.0: a data navigation document
(``regions.xhtml``, manifest property ``data-nav``) lists each page as a panel group,
its panels in reading order, and inside each panel its caption and balloons as text
areas, each a ``#xywh=`` media fragment of the page in page px. The language and the
page progression (``rtl`` for manga) come from the story.

Layout of the archive::

    mimetype                      (first, stored)
    META-INF/container.xml
    OEBPS/package.opf
    OEBPS/nav.xhtml               table of contents (one entry per page), landmarks
    OEBPS/regions.xhtml           region-based navigation
    OEBPS/page-01.xhtml ...
    OEBPS/images/page-01.png ...  the art of each page
    OEBPS/css/comic.css
    OEBPS/fonts/...               the lettering fonts the text uses
"""

from __future__ import annotations

import io
import math
import os
import re
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from xml.etree import ElementTree as ET

from comicgen import lettering
from comicgen.layout import BookLayout, CaptionBox, PageLayout, PanelLayout, Rect, TextBlock

XHTML = "http://www.w3.org/1999/xhtml"
EPUB_NS = "http://www.idpf.org/2007/ops"
OPF = "http://www.idpf.org/2007/opf"
DC = "http://purl.org/dc/elements/1.1/"
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip entry times: reproducible archives
FONT_TYPES = {
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
}
# What a balloon kind reads as, for the screen-reader prefix ("Alice says: ...").
VERBS = {"speech": "says", "thought": "thinks", "shout": "shouts", "whisper": "whispers"}

CSS = """\
html, body { margin: 0; padding: 0; }
body { position: relative; overflow: hidden; background: %(paper)s; }
.page { position: absolute; left: 0; top: 0; overflow: hidden; }
.art { position: absolute; left: 0; top: 0; width: 100%%; height: 100%%; }
.panel { position: absolute; margin: 0; }
.caption, .balloon {
  position: absolute;
  margin: 0;
  font-family: "comicgen-%(bundled)s", "Kalam", cursive;
  font-weight: 400;
  color: %(ink)s;
}
.balloon { text-align: center; }
.bold { font-weight: 700; }
.line { display: block; white-space: pre; }
.speaker, .alt {
  position: absolute;
  width: 1px;
  height: 1px;
  overflow: hidden;
  clip: rect(0, 0, 0, 0);
  white-space: nowrap;
}
"""


@dataclass
class _Font:
    family: str  # CSS family name
    weight: int
    name: str  # file name under OEBPS/fonts/
    source: Path


def _x(text: str) -> str:
    """Text XML 1.0 can hold."""
    return _XML_INVALID.sub("", text)


def _num(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _fonts(layout: BookLayout) -> list[_Font]:
    """The lettering faces the pages use that an EPUB may carry: open licence, TrueType or
    OpenType (a collection, .ttc, is not an EPUB font type: readers use their own fonts)."""
    fonts = []
    for key in layout.faces():
        face = lettering.face(key)
        if not face.copyable:
            continue
        for weight, path in ((400, face.regular), (700, face.bold)):
            if path is None or Path(path).suffix.lower() not in FONT_TYPES:
                continue
            suffix = Path(path).suffix.lower()
            name = f"{key}{'-Bold' if weight == 700 else ''}{suffix}"
            fonts.append(_Font(f"comicgen-{key}", weight, name, Path(path)))
    return fonts


def _font_css(layout: BookLayout, fonts: Sequence[_Font]) -> str:
    """@font-face rules for the carried fonts, and a class per face (keys are [A-Za-z0-9-])."""
    rules = [
        f'@font-face {{ font-family: "{f.family}"; src: url("../fonts/{f.name}"); '
        f"font-weight: {f.weight}; }}\n"
        for f in fonts
    ]
    for key in layout.faces():
        family = lettering.face(key).family.replace('"', "").replace("\\", "")
        rules.append(f'.f-{key} {{ font-family: "comicgen-{key}", "{family}", sans-serif; }}\n')
        # a run in this face inside a block lettered in another keeps the block's lines
        rules.append(f".line > .f-{key} {{ line-height: 0; }}\n")
    return "".join(rules)


def _identifier(layout: BookLayout) -> str:
    book = layout.book
    seed = "\n".join([book.name, book.title, book.author or "", book.language])
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "comicgen:" + seed))


def _xywh(rect: Rect, page: PageLayout) -> str:
    """A media fragment for ``rect`` in whole page px, grown to cover it, inside the page."""
    x0 = max(0, math.floor(rect.x))
    y0 = max(0, math.floor(rect.y))
    x1 = min(math.ceil(page.width), math.ceil(rect.right))
    y1 = min(math.ceil(page.height), math.ceil(rect.bottom))
    return f"xywh={x0},{y0},{max(1, x1 - x0)},{max(1, y1 - y0)}"


def _text(parent: ET.Element, block: TextBlock, origin: Rect, kind: str, ident: str):
    """A ``<p>`` holding ``block``'s lines at its place, relative to ``origin``; each line
    is a span, and each run of it in another face than the block's a span in that face."""
    b = block.box
    style = (
        f"left:{_num(b.x - origin.x)}px;top:{_num(b.y - origin.y)}px;"
        f"width:{_num(b.w)}px;height:{_num(b.h)}px;"
        f"font-size:{_num(block.size)}px;line-height:{_num(block.line_height)}px;"
        f"text-align:{block.align}"
    )
    classes = [kind, f"f-{block.face}"] + (["bold"] if block.bold else [])
    return ET.SubElement(parent, "p", {"class": " ".join(classes), "id": ident, "style": style})


def _lines(p: ET.Element, block: TextBlock) -> None:
    for index, line in enumerate(block.lines):
        span = ET.SubElement(p, "span", {"class": "line", "dir": "auto"})
        span.text = "" if line else "\u00a0"
        span.tail = "\n"  # between lines: a word break for text extraction, no space shown
        last = None
        for text, key in block.runs(index):
            if key == block.face:
                if last is None:
                    span.text += _x(text)
                else:
                    last.tail = (last.tail or "") + _x(text)
            else:
                last = ET.SubElement(span, "span", {"class": f"f-{key}"})
                last.text = _x(text)


def _html(lang: str, direction: str, title: str, head_extra=()) -> tuple[ET.Element, ET.Element]:
    html = ET.Element(
        "html",
        {"xmlns": XHTML, "xmlns:epub": EPUB_NS, "lang": lang, "xml:lang": lang, "dir": direction},
    )
    head = ET.SubElement(html, "head")
    ET.SubElement(head, "meta", {"charset": "utf-8"})
    ET.SubElement(head, "title").text = _x(title)
    for tag, attrs in head_extra:
        ET.SubElement(head, tag, attrs)
    body = ET.SubElement(html, "body")
    return html, body


def _indent(element: ET.Element, level: int = 0) -> None:
    """Indent like ``ET.indent``, but never inside a paragraph: its lines are ``pre``."""
    if element.tag == "p" or not len(element):
        return
    pad = "\n" + "  " * (level + 1)
    if not (element.text or "").strip():
        element.text = pad
    for child in element:
        _indent(child, level + 1)
        if not (child.tail or "").strip():
            child.tail = pad
    child.tail = "\n" + "  " * level


def _serialize(root: ET.Element) -> bytes:
    _indent(root)
    text = ET.tostring(root, encoding="unicode", short_empty_elements=True)
    doctype = "<!DOCTYPE html>\n" if root.tag == "html" else ""
    return _XML_DECLARATION + (doctype + text + "\n").encode("utf-8")


def _captions(panel: PanelLayout) -> list[CaptionBox]:
    """The panel's caption boxes: its caption, then the narrator's and voices' lines."""
    return ([panel.caption] if panel.caption is not None else []) + list(panel.narration)


def page_xhtml(layout: BookLayout, page: PageLayout, art: str, title: str) -> bytes:
    """The XHTML of one fixed-layout page: the art, and the text over it."""
    book = layout.book
    w, h = math.ceil(page.width), math.ceil(page.height)
    html, body = _html(
        book.language,
        book.direction,
        f"{title} — page {page.number}",
        [
            ("meta", {"name": "viewport", "content": f"width={w}, height={h}"}),
            ("link", {"rel": "stylesheet", "type": "text/css", "href": "css/comic.css"}),
        ],
    )
    body.set("style", f"width:{w}px;height:{h}px")
    body.set("epub:type", "bodymatter")
    frame = ET.SubElement(
        body,
        "div",
        {"class": "page", "id": f"page-{page.number}", "style": f"width:{w}px;height:{h}px"},
    )
    ET.SubElement(frame, "img", {"class": "art", "src": art, "alt": ""})

    for panel in page.panels:
        b = panel.box
        anchor = "panel-" + panel.id.replace(".", "-")
        div = ET.SubElement(
            frame,
            "div",
            {
                "class": "panel",
                "id": anchor,
                "style": f"left:{_num(b.x)}px;top:{_num(b.y)}px;"
                f"width:{_num(b.w)}px;height:{_num(b.h)}px",
            },
        )
        alt = ET.SubElement(div, "p", {"class": "alt"})
        alt.text = _x(f"Panel {panel.id}: {panel.content.alt}")
        for index, caption in enumerate(_captions(panel), start=1):
            block = caption.text_block
            p = _text(div, block, b, "caption", f"{anchor}-c{index}")
            if caption.speaker:
                ET.SubElement(p, "span", {"class": "speaker"}).text = _x(f"{caption.speaker}: ")
            _lines(p, block)
        for index, balloon in enumerate(panel.balloons, start=1):
            kind = str(balloon.kind)
            p = _text(div, balloon.text_block, b, f"balloon {kind}", f"{anchor}-b{index}")
            if balloon.speaker:
                speaker = ET.SubElement(p, "span", {"class": "speaker"})
                speaker.text = _x(f"{balloon.speaker} {VERBS.get(kind, 'says')}: ")
            _lines(p, balloon.text_block)
        for index, effect in enumerate(panel.sfx, start=1):
            # painted on the art (turned, in colour); here as text for search and speech
            sound = ET.SubElement(div, "p", {"class": "alt", "id": f"{anchor}-s{index}"})
            sound.text = _x(f"Sound: {effect.text}")
    return _serialize(html)


def regions_xhtml(layout: BookLayout, files: Sequence[str], title: str) -> bytes:
    """The data navigation document: pages → panels → captions and balloons."""
    book = layout.book
    html, body = _html(book.language, book.direction, f"{title} — regions")
    nav = ET.SubElement(body, "nav", {"epub:type": "region-based", "id": "regions"})
    pages = ET.SubElement(nav, "ol")
    for page, file in zip(layout.pages, files, strict=True):
        whole = Rect(0, 0, page.width, page.height)
        group = ET.SubElement(pages, "li", {"epub:type": "panel-group"})
        ET.SubElement(group, "a", {"href": f"{file}#{_xywh(whole, page)}"})
        panels = ET.SubElement(group, "ol")
        for panel in page.panels:
            item = ET.SubElement(panels, "li", {"epub:type": "panel"})
            ET.SubElement(item, "a", {"href": f"{file}#{_xywh(panel.box, page)}"})
            areas = [("text-area", caption.box) for caption in _captions(panel)]
            areas += [("balloon", balloon.box) for balloon in panel.balloons]
            areas += [("sound-area", effect.box) for effect in panel.sfx]
            if areas:
                texts = ET.SubElement(item, "ol")
                for kind, rect in areas:
                    text = ET.SubElement(texts, "li", {"epub:type": kind})
                    ET.SubElement(text, "a", {"href": f"{file}#{_xywh(rect, page)}"})
    return _serialize(html)


def nav_xhtml(layout: BookLayout, files: Sequence[str], title: str) -> bytes:
    """The EPUB navigation document: one entry per page, and landmarks."""
    book = layout.book
    html, body = _html(book.language, book.direction, title)
    toc = ET.SubElement(body, "nav", {"epub:type": "toc", "id": "toc"})
    ET.SubElement(toc, "h1").text = _x(title)
    listing = ET.SubElement(toc, "ol")
    for page, file in zip(layout.pages, files, strict=True):
        link = ET.SubElement(ET.SubElement(listing, "li"), "a", {"href": file})
        link.text = f"Page {page.number}"
    marks = ET.SubElement(
        body, "nav", {"epub:type": "landmarks", "id": "landmarks", "hidden": "hidden"}
    )
    ET.SubElement(marks, "h2").text = "Landmarks"
    listing = ET.SubElement(marks, "ol")
    link = ET.SubElement(
        ET.SubElement(listing, "li"), "a", {"epub:type": "bodymatter", "href": files[0]}
    )
    link.text = "Start of the comic"
    return _serialize(html)


def package_opf(
    layout: BookLayout,
    files: Sequence[str],
    images: Sequence[str],
    fonts: Sequence[_Font],
    title: str,
    modified: datetime,
) -> bytes:
    book = layout.book
    package = ET.Element(
        "package",
        {
            "xmlns": OPF,
            "xmlns:dc": DC,
            "version": "3.0",
            "unique-identifier": "book-id",
            "prefix": "rendition: http://www.idpf.org/vocab/rendition/#",
            "xml:lang": book.language,
            "dir": book.direction,
        },
    )
    meta = ET.SubElement(package, "metadata")

    def dc(name: str, text: str, **attrs: str) -> None:
        ET.SubElement(meta, f"dc:{name}", attrs).text = _x(text)

    def prop(name: str, text: str) -> None:
        ET.SubElement(meta, "meta", {"property": name}).text = text

    dc("identifier", _identifier(layout), id="book-id")
    dc("title", title)
    dc("language", book.language)
    if book.author:
        dc("creator", book.author)
    if book.summary:
        dc("description", book.summary)
    prop("dcterms:modified", modified.strftime("%Y-%m-%dT%H:%M:%SZ"))
    prop("rendition:layout", "pre-paginated")
    prop("rendition:orientation", "auto")
    prop("rendition:spread", "none")
    manifest = ET.SubElement(package, "manifest")

    def item(ident: str, href: str, media: str, properties: str | None = None) -> None:
        attrs = {"id": ident, "href": href, "media-type": media}
        if properties:
            attrs["properties"] = properties
        ET.SubElement(manifest, "item", attrs)

    item("nav", "nav.xhtml", "application/xhtml+xml", "nav")
    item("regions", "regions.xhtml", "application/xhtml+xml", "data-nav")
    item("css", "css/comic.css", "text/css")
    for index, font in enumerate(fonts):
        item(f"font-{index}", f"fonts/{font.name}", FONT_TYPES[Path(font.name).suffix])
    for index, (file, image) in enumerate(zip(files, images, strict=True)):
        item(f"p{index + 1}", file, "application/xhtml+xml")
        item(f"img{index + 1}", image, "image/png", "cover-image" if index == 0 else None)
    spine = ET.SubElement(package, "spine", {"page-progression-direction": book.direction})
    for index in range(len(files)):
        ET.SubElement(spine, "itemref", {"idref": f"p{index + 1}"})
    ET.indent(package)
    return _XML_DECLARATION + ET.tostring(package, encoding="unicode").encode("utf-8") + b"\n"


CONTAINER = b"""<?xml version="1.0" encoding="UTF-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles>
    <rootfile full-path="OEBPS/package.opf" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>
"""


def write_epub(layout: BookLayout, path: Path, dpi: int, modified: datetime | None = None) -> Path:
    """Write the EPUB of ``layout`` to ``path`` (atomically); the art is painted at ``dpi``."""
    from comicgen.fsutil import atomic_open
    from comicgen.publish import page_file_names
    from comicgen.publish.png import render_page

    book = layout.book
    title = book.title or book.name
    if modified is None:  # SOURCE_DATE_EPOCH: the reproducible-builds convention
        epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
        modified = (
            datetime.fromtimestamp(int(epoch), timezone.utc)
            if epoch.isdigit()
            else datetime.now(timezone.utc)
        )
    html_names, png_names = page_file_names(len(layout.pages))
    files = [name.replace(".html", ".xhtml") for name in html_names]
    images = [f"images/{name}" for name in png_names]
    fonts = _fonts(layout)
    css = CSS % {
        "paper": layout.style.paper,
        "ink": layout.style.ink,
        "bundled": lettering.BUNDLED,
    } + _font_css(layout, fonts)  # after the base rules: a block's own face wins
    entries: list[tuple[str, bytes, int]] = []
    for page, file, image in zip(layout.pages, files, images, strict=True):
        art = render_page(page, layout.style, dpi, with_text=False)
        buffer = io.BytesIO()
        art.save(buffer, "PNG", dpi=(dpi, dpi))
        entries.append((f"OEBPS/{image}", buffer.getvalue(), zipfile.ZIP_STORED))
        entries.append(
            (f"OEBPS/{file}", page_xhtml(layout, page, image, title), zipfile.ZIP_DEFLATED)
        )
    entries.append(("OEBPS/nav.xhtml", nav_xhtml(layout, files, title), zipfile.ZIP_DEFLATED))
    regions = regions_xhtml(layout, files, title)
    entries.append(("OEBPS/regions.xhtml", regions, zipfile.ZIP_DEFLATED))
    entries.append(("OEBPS/css/comic.css", css.encode("utf-8"), zipfile.ZIP_DEFLATED))
    for font in fonts:
        entries.append((f"OEBPS/fonts/{font.name}", font.source.read_bytes(), zipfile.ZIP_DEFLATED))
    opf = package_opf(layout, files, images, fonts, title, modified)
    with atomic_open(Path(path), "wb") as handle:
        with zipfile.ZipFile(handle, "w") as archive:
            first = zipfile.ZipInfo("mimetype", _FIXED_TIME)
            first.compress_type = zipfile.ZIP_STORED
            archive.writestr(first, b"application/epub+zip")
            for name, data, compression in [
                ("META-INF/container.xml", CONTAINER, zipfile.ZIP_DEFLATED),
                ("OEBPS/package.opf", opf, zipfile.ZIP_DEFLATED),
                *entries,
            ]:
                info = zipfile.ZipInfo(name, _FIXED_TIME)
                info.compress_type = compression
                archive.writestr(info, data)
    return Path(path)
