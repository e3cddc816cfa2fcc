"""Publishing: HTML and PNG drawn from one geometry, CBZ/ComicInfo, PDF, strip, hostile text."""

from __future__ import annotations

import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from comicgen.book import Book, PageContent, PanelContent, Speech
from comicgen.errors import ComicgenError
from comicgen.publish import publish
from comicgen.settings import PageSettings
from tests.support.sample import sample_book

DATA = Path(__file__).parent / "data"
COLOURS = [(200, 30, 30), (30, 160, 60), (40, 60, 200), (220, 180, 20), (150, 40, 160)]
HOSTILE = [
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    "{% raw %}",
    "مرحبا بالعالم",
    "שלום עולם",
    "👋🏽 🎉 emoji",
    "W" * 300,
]


def solid_book(out_dir: Path, counts=(3, 2), direction="ltr", dialogue=None, **book_fields):
    """Panels of one flat colour each, so PNG pixels tell where each panel went."""
    pages, index = [], 0
    for number, count in enumerate(counts, start=1):
        panels = []
        for i in range(1, count + 1):
            path = out_dir / "panels" / f"p{number:02d}-{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            size = (384, 256) if i == 1 else (256, 256)
            Image.new("RGB", size, COLOURS[index % len(COLOURS)]).save(path)
            lines = (
                dialogue
                if dialogue is not None
                else [Speech(f"Line {number}.{i}, said plainly.", "speech", "Alice", (0.3, 0.7))]
            )
            panels.append(
                PanelContent(
                    id=f"{number}.{i}",
                    image=path,
                    image_size=size,
                    alt=f"panel {number}.{i}",
                    shape="wide" if i == 1 else "square",
                    caption="Meanwhile..." if i == 1 else None,
                    dialogue=list(lines),
                    characters=["Alice"],
                )
            )
            index += 1
        pages.append(PageContent(number=number, panels=panels))
    fields = {"title": "Solid", "author": "Tester", "characters": ["Alice"]} | book_fields
    return Book(name="solid", pages=pages, direction=direction, **fields)


class Collect(HTMLParser):
    """Elements with their attributes, and the visible text."""

    def __init__(self):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def having(self, attr):
        return [a for _, a in self.elements if attr in a]


def parse(path: Path) -> Collect:
    parser = Collect()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def box(value: str) -> tuple[float, ...]:
    return tuple(float(v) for v in value.split())


def test_publish_writes_every_page_and_export(tmp_path):
    out = tmp_path / "build" / "sample"
    book = sample_book(out, (4, 3))
    result = publish(book, out, PageSettings(), pdf=True, strip=True, dpi=72)
    names = sorted(p.name for p in out.iterdir() if p.is_file())
    assert names == [
        "index.html",
        "page-01.html",
        "page-01.png",
        "page-02.html",
        "page-02.png",
        "sample-strip.png",
        "sample.cbz",
        "sample.pdf",
    ]
    assert {p.name for p in (out / "assets").iterdir()} == {
        "comic.css",
        "reader.js",
        "Kalam-Regular.ttf",
        "Kalam-Bold.ttf",
        "OFL.txt",
    }
    assert all(p.exists() for p in result.files)
    assert not list(out.rglob("*.tmp"))  # atomic writes left nothing behind
    assert set(result.timings) >= {"layout", "png", "html", "cbz", "pdf", "strip"}
    # every file an HTML page refers to exists
    for html in [out / "index.html", *result.html_pages]:
        for _, attrs in parse(html).elements:
            for key in ("src", "href"):
                ref = attrs.get(key)
                if ref and not ref.startswith("#"):
                    assert (out / ref).exists(), (html.name, ref)
    # PNG size is the geometry at the chosen dpi
    for laid, png in zip(result.layout.pages, result.png_pages, strict=True):
        with Image.open(png) as image:
            assert image.size == (round(laid.width * 72 / 96), round(laid.height * 72 / 96))
    # PDF: one page per page; strip: every page stacked
    pdf = (out / "sample.pdf").read_bytes()
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) == 2
    with Image.open(out / "sample-strip.png") as strip:
        assert strip.height == sum(Image.open(p).height for p in result.png_pages)


def test_html_and_png_agree_on_panel_and_balloon_boxes(tmp_path):
    out = tmp_path / "solid"
    book = solid_book(out)
    dpi = 96 * 1.5
    result = publish(book, out, PageSettings(), dpi=int(dpi), cbz=False)
    scale = dpi / 96
    for laid, html, png in zip(
        result.layout.pages, result.html_pages, result.png_pages, strict=True
    ):
        doc = parse(html)
        figures = doc.having("data-panel")
        assert [f["data-panel"] for f in figures] == [p.id for p in laid.panels]
        balloons = [a for a in doc.having("data-kind")]
        image = Image.open(png).convert("RGB")
        colour_of = {p.id: p.content.image for p in laid.panels}
        for fig, panel in zip(figures, laid.panels, strict=True):
            x, y, w, h = box(fig["data-box"])
            b = panel.box
            assert (x, y, w, h) == pytest.approx((b.x, b.y, b.w, b.h), abs=1e-3)
            # the HTML's % position is the same box
            style = dict(part.split(":") for part in fig["style"].split(";") if part.strip())
            assert float(style["left"][:-1]) / 100 * laid.width == pytest.approx(x, abs=0.01)
            assert float(style["width"][:-1]) / 100 * laid.width == pytest.approx(w, abs=0.01)
            # in the PNG: the panel's colour just inside its frame, white just outside
            colour = Image.open(colour_of[panel.id]).getpixel((0, 0))
            inside = (round((x + w - 8) * scale), round((y + h - 8) * scale))
            assert image.getpixel(inside) == colour
            outside = (round((x + w + 4) * scale), round((y + h / 2) * scale))
            if outside[0] < image.width and all(
                not p.box.contains_point((x + w + 4, y + h / 2)) for p in laid.panels
            ):
                assert image.getpixel(outside) == (255, 255, 255)
            frame = (round((x + w) * scale), round((y + h / 2) * scale))
            assert max(image.getpixel(frame)) < 80  # the black frame line
        shapes = [b for p in laid.panels for b in p.balloons]
        assert len(balloons) == len(shapes)
        for attrs, balloon in zip(balloons, shapes, strict=True):
            x, y, w, h = box(attrs["data-box"])
            bb = balloon.box
            assert (x, y, w, h) == pytest.approx((bb.x, bb.y, bb.w, bb.h), abs=1e-3)
            tb = balloon.text_block.box
            assert box(attrs["data-text-box"]) == pytest.approx((tb.x, tb.y, tb.w, tb.h), abs=1e-3)
            # in the PNG: paper between the text and the top of the balloon, ink on its edge
            cx = x + w / 2
            paper = (round(cx * scale), round((y + tb.y) / 2 * scale))
            assert image.getpixel(paper) == (255, 255, 255)
            stroke = result.layout.style.stroke  # drawn just outside the outline
            edge = image.crop(
                (
                    round(cx * scale),
                    round((y - stroke) * scale) - 1,
                    round(cx * scale) + 1,
                    round(y * scale) + 1,
                )
            )
            assert edge.convert("L").getextrema()[0] < 80
            # text is drawn inside the text box: dark pixels there
            crop = image.crop(
                (
                    round(tb.x * scale),
                    round(tb.y * scale),
                    round(tb.right * scale),
                    round(tb.bottom * scale),
                )
            )
            assert crop.convert("L").getextrema()[0] < 80
        captions = doc.having("data-box")
        assert any("caption" in a.get("class", "") for a in captions)


def test_comicinfo_validates_against_the_official_schema(tmp_path):
    xmlschema = pytest.importorskip("xmlschema")
    schema = xmlschema.XMLSchema(str(DATA / "ComicInfo-v2.0.xsd"))
    for direction, manga in (("ltr", "No"), ("rtl", "YesAndRightToLeft")):
        out = tmp_path / direction
        book = solid_book(
            out,
            (2, 1, 2),
            direction=direction,
            title='Title <&> \x01 "quoted"',
            summary="{{ 7*7 }} <b>",
            language="ja" if direction == "rtl" else "en",
            characters=["Alice", "Bob <b>"],
        )
        result = publish(book, out, PageSettings(), dpi=48)
        with zipfile.ZipFile(result.cbz) as archive:
            names = archive.namelist()
            assert names == ["ComicInfo.xml", "page-001.png", "page-002.png", "page-003.png"]
            xml = archive.read("ComicInfo.xml").decode("utf-8")
            for name, png in zip(names[1:], result.png_pages, strict=True):
                assert archive.read(name) == png.read_bytes()
        schema.validate(xml)
        info = schema.to_dict(xml)
        assert info["Title"] == 'Title <&>  "quoted"'
        assert info["Writer"] == "Tester"
        assert info["PageCount"] == 3
        assert info["Manga"] == manga
        assert info["LanguageISO"] == book.language
        assert info["Characters"] == "Alice, Bob <b>"
        pages = info["Pages"]["Page"]
        assert [p["@Image"] for p in pages] == [0, 1, 2]
        assert pages[0]["@Type"] == ["FrontCover"]
        for page, png in zip(pages, result.png_pages, strict=True):
            with Image.open(png) as image:
                assert (page["@ImageWidth"], page["@ImageHeight"]) == image.size
            assert page["@ImageSize"] == png.stat().st_size


def test_hostile_text_is_escaped_in_html_and_wrapped_in_png(tmp_path):
    out = tmp_path / "hostile"
    lines = [
        Speech(text, kind, speaker, (0.5, 0.7))
        for text, kind, speaker in zip(
            HOSTILE,
            ["speech", "thought", "shout"] * 3,
            ['"><img src=x onerror=alert(1)>', "{{ 7*7 }}", "Bob"] * 3,
            strict=False,
        )
    ]
    book = solid_book(
        out,
        (1, 1, 1, 1, 1, 1, 1),
        dialogue=[],
        title="<script>alert(1)</script> {{ 7*7 }}",
        author="{% raw %}",
        summary="<img src=x onerror=alert(1)>",
        characters=["<b>Alice</b>"],
        language='en" onload="alert(1)',
    )
    for page, line in zip(book.pages, lines, strict=True):
        page.panels[0].dialogue = [line]
        page.panels[0].caption = line.text
        page.panels[0].alt = line.text + ' " onerror="alert(1)'
    result = publish(book, out, PageSettings(), dpi=48)
    for html in [result.index, *result.html_pages]:
        text = html.read_text(encoding="utf-8")
        assert "<script>alert" not in text
        assert "<img src=x" not in text
        assert 'onerror="alert' not in text and 'onload="alert' not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        doc = parse(html)
        scripts = [a for tag, a in doc.elements if tag == "script"]
        assert all(a.get("src") == "assets/reader.js" for a in scripts)
        assert not any(k.startswith("on") for _, a in doc.elements for k in a)
    page_text = [" ".join(parse(p).text) for p in result.html_pages]
    assert "<script>alert(1)</script>" in page_text[0]
    assert "{{ 7*7 }}" in page_text[1] and "{% raw %}" in page_text[2]
    assert "مرحبا بالعالم" in page_text[3] and "שלום עולם" in page_text[4]
    assert "👋🏽" in page_text[5]
    # the long word is broken over several lines, each inside its balloon, in both outputs
    balloon = result.layout.pages[6].panels[0].balloons[0]
    assert len(balloon.text_block.lines) > 1
    assert "".join(balloon.text_block.lines) == "W" * 300
    html_lines = re.findall(
        r'<span class="line" dir="auto">(W+)</span>', result.html_pages[6].read_text("utf-8")
    )
    assert len(html_lines) >= 4 and all(len(line) < 300 for line in html_lines)  # and caption
    assert "".join(balloon.text_block.lines) in "".join(html_lines)
    for png in result.png_pages:
        with Image.open(png) as image:
            image.load()


def test_fallback_face_travels_with_the_pages(tmp_path):
    from comicgen import lettering

    out = tmp_path / "out"
    book = solid_book(out, (1,), dialogue=[Speech("مرحبا بالعالم", "speech", "A", (0.5, 0.7))])
    result = publish(book, out, PageSettings(), dpi=48)
    key = result.layout.pages[0].panels[0].balloons[0].text_block.face
    if key == lettering.BUNDLED:
        pytest.skip("no fallback font for Arabic (DejaVu, Noto, ...) on this machine")
    assert list((out / "assets").glob(key + ".*"))
    html = result.html_pages[0].read_text(encoding="utf-8")
    family = lettering.face(key).family
    assert f'@font-face {{ font-family: "{key}"; src: local("{family}"), url("assets/{key}.' in html
    assert f"font-family:{key},sans-serif" in html


def test_workspace_templates_override_file_by_file(tmp_path):
    out = tmp_path / "out"
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "index.html").write_text(
        '{% extends "base.html" %}{% block body %}<h1 class="mine">{{ book.title }}</h1>'
        "{% endblock %}",
        encoding="utf-8",
    )
    (templates / "comic.css").write_text("body { background: pink; }", encoding="utf-8")
    missing = tmp_path / "no-such-folder"  # a workspace without templates/ is fine
    result = publish(solid_book(out, (1,)), out, PageSettings(), [missing, templates], dpi=48)
    assert 'class="mine"' in result.index.read_text(encoding="utf-8")
    assert "<figure" in result.html_pages[0].read_text(encoding="utf-8")  # shipped page.html
    assert (out / "assets" / "comic.css").read_text() == "body { background: pink; }"

    (templates / "page.html").write_text("{% block body %}\n{% if %}\n", encoding="utf-8")
    with pytest.raises(ComicgenError, match=r"page\.html:2: template syntax error"):
        publish(solid_book(out, (1,)), out, PageSettings(), [templates], dpi=48)


def test_a_shorter_rebuild_drops_the_old_extra_pages(tmp_path):
    out = tmp_path / "out"
    publish(solid_book(out, (1, 1, 1)), out, PageSettings(), dpi=48)
    assert (out / "page-03.html").exists()
    publish(solid_book(out, (1,)), out, PageSettings(), dpi=48)
    assert not (out / "page-02.html").exists() and not (out / "page-03.png").exists()
    assert not (out / "thumbs" / "page-02.png").exists()
    assert (out / "page-01.html").exists()


def test_missing_panel_image_is_one_clear_error(tmp_path):
    out = tmp_path / "out"
    book = solid_book(out, (2,))
    book.pages[0].panels[1].image.unlink()
    with pytest.raises(ComicgenError, match=r"panel 1\.2: its image .* is missing"):
        publish(book, out, PageSettings(), dpi=48)


def test_webtoon_and_square_presets(tmp_path):
    out = tmp_path / "web"
    result = publish(solid_book(out, (3,)), out, PageSettings(preset="webtoon"), dpi=48, strip=True)
    page = result.layout.pages[0]
    assert page.height > 2 * page.width
    assert 'class="reader webtoon"' in result.html_pages[0].read_text(encoding="utf-8")
    square = publish(solid_book(out, (2,)), out, PageSettings(preset="square"), dpi=48)
    assert square.layout.pages[0].width == square.layout.pages[0].height


def test_unknown_layout_on_a_page_is_a_comicgen_error(tmp_path):
    out = tmp_path / "out"
    book = solid_book(out, (2,))
    book.pages[0].layout = "3x3"
    with pytest.raises(ComicgenError, match="page 1: layout '3x3' holds 9 panels"):
        publish(book, out, PageSettings(), dpi=48)


def test_importing_layout_and_publish_loads_no_heavy_modules():
    import subprocess
    import sys

    import comicgen

    root = Path(comicgen.__file__).resolve().parent.parent
    code = (
        "import sys, comicgen.layout, comicgen.publish, comicgen.lettering; "
        "print(sorted(m for m in ('torch', 'PIL', 'jinja2', 'diffusers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
