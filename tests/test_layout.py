"""Page geometry: layouts fill the page without overlap, rtl mirrors, crops, lettering."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from comicgen import lettering, typefaces
from comicgen.book import Book, PageContent, PanelContent, Speech
from comicgen.errors import ComicgenError
from comicgen.layout import (
    Rect,
    check_layout,
    cover_crop,
    known_layouts,
    layout_book,
    page_size,
    parse_layout,
)
from comicgen.settings import PageSettings

SIZES = {"square": (256, 256), "wide": (384, 256), "tall": (256, 384)}


def panel(pid: str, shape: str = "square", dialogue=(), caption=None, focus=(0.5, 0.5)):
    return PanelContent(
        id=pid,
        image=Path("panels") / f"{pid}.png",  # layout does no I/O: the file need not exist
        image_size=SIZES[shape],
        alt="a scene",
        shape=shape,
        caption=caption,
        dialogue=list(dialogue),
        focus=focus,
    )


def book(pages, direction="ltr") -> Book:
    contents = []
    for number, page in enumerate(pages, start=1):
        shapes, name = page if isinstance(page, tuple) else (page, None)
        panels = [panel(f"{number}.{i}", s) for i, s in enumerate(shapes, start=1)]
        contents.append(PageContent(number=number, panels=panels, layout=name))
    return Book(name="t", title="T", pages=contents, direction=direction)


def check_page_geometry(page, settings: PageSettings) -> None:
    margin, gutter = settings.margin, settings.gutter
    content = Rect(margin, margin, page.width - 2 * margin, page.height - 2 * margin)
    boxes = [p.box for p in page.panels]
    for box in boxes:
        assert content.contains(box, tol=1e-6), (page.layout, box)
        assert box.w > 0 and box.h > 0
    for a, b in itertools.combinations(boxes, 2):
        assert a.overlap(b) == 0, (page.layout, a, b)
        # boxes side by side keep a gutter between them; so do boxes one above the other
        if min(a.bottom, b.bottom) - max(a.y, b.y) > 1e-6:
            gap = max(b.x - a.right, a.x - b.right)
        else:
            gap = max(b.y - a.bottom, a.y - b.bottom)
        assert gap >= gutter - 1e-6, (page.layout, a, b, gap)
    # the panels reach every edge of the content area
    bound = Rect.bounding([(b.x, b.y) for b in boxes] + [(b.right, b.bottom) for b in boxes])
    for got, want in zip(
        (bound.x, bound.y, bound.right, bound.bottom),
        (content.x, content.y, content.right, content.bottom),
        strict=True,
    ):
        assert got == pytest.approx(want, abs=1e-6)
    # and, with the gutters, cover it: nothing is left empty but gutters
    covered = sum(b.area for b in boxes)
    assert covered <= content.area
    assert covered >= content.area - gutter * (content.w + content.h) * len(boxes)


@pytest.mark.parametrize("preset", ["comic", "square"])
@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 6])
def test_every_layout_fits_the_page_without_overlap(count, preset):
    settings = PageSettings(preset=preset)
    names = [n for n, c in known_layouts().items() if c == count]
    names += ["-".join(["1"] * count), f"{count}x1"]
    shapes_options = [["square"] * count, (["wide", "tall", "square"] * 2)[:count]]
    pages = [(shapes, name) for name in names for shapes in shapes_options]
    pages += [(shapes, None) for shapes in shapes_options]  # chosen automatically
    laid = layout_book(book(pages), settings)
    assert len(laid.pages) == len(pages)
    for page in laid.pages:
        assert len(page.panels) == count
        check_page_geometry(page, settings)


def test_layouts_exist_for_one_to_six_panels_in_several_arrangements():
    counts = list(known_layouts().values())
    assert known_layouts()["splash"] == 1
    for count in range(2, 7):
        assert counts.count(count) >= 2, count
    assert {"2x2", "wide-top-3", "tall-left-3"} <= set(known_layouts())


def test_named_grids_and_rows():
    assert parse_layout("2x2")[0] == "2x2"
    assert parse_layout("3x2")[0] == "3x2"
    assert parse_layout([1, 2, 1])[0] == "1-2-1"
    assert parse_layout("1-2-1")[0] == "1-2-1"
    laid = layout_book(book([(["square"] * 6, "3x2")]))
    tops = sorted({round(p.box.y, 3) for p in laid.pages[0].panels})
    assert len(tops) == 2  # two rows of three


def test_unknown_layout_lists_the_known_ones():
    with pytest.raises(ComicgenError) as info:
        parse_layout("2x2x2")
    line = info.value.line()
    assert "unknown layout '2x2x2'" in line
    for name in ("splash", "2x2", "tall-left-3"):
        assert name in line
    with pytest.raises(ComicgenError, match="did you mean 'splash'"):
        parse_layout("splsh")
    with pytest.raises(ComicgenError, match="out of range"):
        parse_layout([1, 0, 2])
    with pytest.raises(ComicgenError):
        parse_layout([True, 2])


def test_layout_holding_another_number_of_panels_is_refused():
    with pytest.raises(ComicgenError, match="holds 4 panels but the page has 3"):
        check_layout("2x2", 3)
    check_layout("2x2", 4)
    check_layout(None, 3)
    with pytest.raises(ComicgenError, match="page 1: layout '2x2' holds 4"):
        layout_book(book([(["square"] * 3, "2x2")]))


def test_automatic_layout_puts_a_wide_first_panel_on_top():
    laid = layout_book(book([["wide", "square", "square"]]))
    page = laid.pages[0]
    first = page.panels[0].box
    assert first.w == pytest.approx(page.width - 2 * 36)
    assert all(p.box.y > first.bottom for p in page.panels[1:])
    assert layout_book(book([["square"] * 4])).pages[0].layout == "2x2"
    assert layout_book(book([["square"]])).pages[0].layout == "splash"


def test_rtl_mirrors_the_panel_order_within_rows():
    shapes = ["wide", "square", "square", "tall", "square"]
    ltr = layout_book(book([shapes]), PageSettings())
    rtl = layout_book(book([shapes], direction="rtl"), PageSettings())
    width = ltr.pages[0].width
    for a, b in zip(ltr.pages[0].panels, rtl.pages[0].panels, strict=True):
        assert b.box == a.box.mirrored(width)
    # in a row, reading order runs right to left
    row = [p for p in rtl.pages[0].panels if p.box.y == rtl.pages[0].panels[1].box.y]
    assert len(row) >= 2
    assert row[0].box.x > row[1].box.x


@pytest.mark.parametrize(
    "image, box, focus",
    [
        ((384, 256), (100, 100), (0.5, 0.5)),
        ((384, 256), (100, 100), (0.0, 0.5)),
        ((384, 256), (100, 100), (1.0, 0.5)),
        ((256, 384), (300, 100), (0.5, 0.9)),
        ((512, 512), (200, 200), (0.3, 0.3)),
    ],
)
def test_cover_crop_keeps_the_aspect_and_stays_inside_the_image(image, box, focus):
    crop = cover_crop(image, box, focus)
    assert crop.w / crop.h == pytest.approx(box[0] / box[1])
    assert 0 <= crop.x and crop.x + crop.w <= image[0] + 1e-9
    assert 0 <= crop.y and crop.y + crop.h <= image[1] + 1e-9
    assert crop.w == pytest.approx(image[0]) or crop.h == pytest.approx(image[1])
    # the focus is centred unless that would leave the image
    fx = focus[0] * image[0]
    if crop.w / 2 <= fx <= image[0] - crop.w / 2:
        assert crop.x + crop.w / 2 == pytest.approx(fx)
    # object-position (CSS) encodes the same crop
    px, py = crop.position
    if image[0] - crop.w > 1e-6:
        assert px * (image[0] - crop.w) == pytest.approx(crop.x)
    assert 0 <= px <= 1 and 0 <= py <= 1


def test_webtoon_pages_grow_so_panels_keep_their_aspect():
    settings = PageSettings(preset="webtoon")
    laid = layout_book(book([["wide", "tall", "square"]]), settings)
    page = laid.pages[0]
    assert page.width == page_size(settings)[0]
    assert page.height > page.width
    for p in page.panels:
        want = SIZES[p.content.shape][0] / SIZES[p.content.shape][1]
        assert p.box.w / p.box.h == pytest.approx(want, rel=1e-3)
        assert p.box.w == pytest.approx(page.width - 2 * settings.margin)
    check_page_geometry(page, settings)


# -- lettering ------------------------------------------------------------------------------


def lettered(dialogue, caption=None, shape="square", pages_layout=None, direction="ltr"):
    content = PageContent(
        number=1,
        panels=[panel("1.1", shape, dialogue=dialogue, caption=caption)],
        layout=pages_layout,
    )
    return layout_book(Book(name="t", title="T", pages=[content], direction=direction))


def check_text_inside(block, frame: Rect) -> None:
    assert frame.contains(block.box, tol=0.5)
    for index, line in enumerate(block.lines):
        assert block.line_width(index) <= block.box.w + 1e-6, line


def inside_polygon(point, polygon) -> bool:
    x, y = point
    inside = False
    for (x1, y1), (x2, y2) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def check_text_in_outline(balloon) -> None:
    b = balloon.text_block.box
    for corner in ((b.x, b.y), (b.right, b.y), (b.x, b.bottom), (b.right, b.bottom)):
        assert inside_polygon(corner, balloon.outline), (balloon.kind, corner)


def test_balloons_hold_their_text_inside_the_panel():
    dialogue = [
        Speech("Did you see that? The lighthouse blinked twice!", "speech", "Alice", (0.3, 0.6)),
        Speech("Not again...", "thought", "Bob", (0.75, 0.6)),
        Speech("WAKE UP!", "shout", "Alice", (0.3, 0.6)),
    ]
    laid = lettered(dialogue, caption="Meanwhile, at the old lighthouse...")
    p = laid.pages[0].panels[0]
    assert laid.warnings == []
    assert [b.kind for b in p.balloons] == ["speech", "thought", "shout"]
    assert p.balloons[2].text_block.bold
    assert p.caption is not None and p.caption.position == "top"
    check_text_inside(p.caption.text_block, p.caption.box)
    for balloon in p.balloons:
        assert p.box.contains(balloon.box, tol=1e-6)
        assert not balloon.box.overlap(p.caption.box)
        check_text_inside(balloon.text_block, balloon.box)
        check_text_in_outline(balloon)
        assert balloon.tip is not None
    for a, b in itertools.combinations(p.balloons, 2):
        assert a.box.overlap(b.box) == 0
    # thought balloons trail bubbles, the others a tail
    assert p.balloons[1].bubbles and not p.balloons[1].tail
    assert p.balloons[0].tail and p.balloons[2].tail


def test_tail_points_at_the_speaker():
    laid = lettered([Speech("Over here!", "speech", "Bob", (0.8, 0.7))])
    p = laid.pages[0].panels[0]
    balloon = p.balloons[0]
    anchor = (p.box.x + 0.8 * p.box.w, p.box.y + 0.7 * p.box.h)
    tip = balloon.tip
    assert math.dist(tip, anchor) < math.dist(balloon.center, anchor)
    assert tip[1] > balloon.box.bottom - 1  # the speaker stands below the balloon


def test_balloons_keep_off_the_speakers_body_where_there_is_room():
    laid = lettered([Speech("Hello there.", "speech", "Alice", (0.5, 0.65))])
    p = laid.pages[0].panels[0]
    body_top = p.box.y + (0.65 - 0.25) * p.box.h
    assert p.balloons[0].box.bottom <= body_top


def test_balloons_follow_reading_order():
    dialogue = [
        Speech("First.", "speech", "Alice", (0.3, 0.7)),
        Speech("Second, a little longer.", "speech", "Bob", (0.7, 0.7)),
        Speech("Third!", "speech", "Alice", (0.3, 0.7)),
    ]
    for direction in ("ltr", "rtl"):
        p = lettered(dialogue, direction=direction).pages[0].panels[0]
        for a, b in zip(p.balloons, p.balloons[1:], strict=False):
            below = b.box.y >= a.box.y + 0.5 * a.box.h
            if direction == "ltr":
                beside = b.box.x >= a.box.right - 0.15 * b.box.w
            else:
                beside = b.box.right <= a.box.x + 0.15 * b.box.w
            assert below or beside, (direction, a.box, b.box)


def six_panels(words: int) -> Book:
    text = " ".join(["words"] * words)
    panels = [
        panel(f"1.{i}", dialogue=[Speech(text, "speech", "A", (0.3, 0.6))]) for i in range(1, 7)
    ]
    return Book(name="t", title="T", pages=[PageContent(number=1, panels=panels, layout="2x3")])


def test_long_text_shrinks_the_font_then_warns_naming_the_panel():
    laid = layout_book(six_panels(100))
    assert laid.warnings == []
    for p in laid.pages[0].panels:
        balloon = p.balloons[0]
        assert laid.style.min_font_size <= balloon.text_block.size < laid.style.font_size
        assert p.box.contains(balloon.box, tol=1e-6)
        check_text_inside(balloon.text_block, balloon.box)

    tiny = layout_book(six_panels(250))
    assert any(w.startswith("panel 1.1:") and "does not fit" in w for w in tiny.warnings)
    page = tiny.pages[0]
    for p in page.panels:
        b = p.balloons[0]
        assert b.text_block.size == tiny.style.min_font_size
        check_text_inside(b.text_block, b.box)  # never cut off: the balloon grows
        assert Rect(0, 0, page.width, page.height).contains(b.box, 1e-6)


def test_hostile_text_is_wrapped_not_crashed():
    word = "A" * 300
    dialogue = [
        Speech(word, "speech", "Alice", (0.3, 0.6)),
        Speech("مرحبا بالعالم שלום עולם 👋🏽🎉", "thought", "Bob", (0.7, 0.6)),
        Speech("<script>alert(1)</script> {{ 7*7 }} {% raw %}\x00\x07", "shout", None, None),
    ]
    laid = lettered(dialogue, caption="{% raw %}", shape="wide")
    p = laid.pages[0].panels[0]
    first = p.balloons[0].text_block
    assert len(first.lines) > 1 and "".join(first.lines) == word
    for balloon in p.balloons:
        check_text_inside(balloon.text_block, balloon.box)
    assert "\x00" not in p.balloons[2].text and "{{ 7*7 }}" in p.balloons[2].text
    # no speaker: a voice from out of frame, its tail runs to the frame's edge
    voice, frame = p.balloons[2], p.box
    assert voice.offpanel and voice.tail and voice.tip is not None
    assert (
        min(abs(voice.tip[0] - frame.x), abs(voice.tip[0] - frame.right)) < 1e-6
        or abs(voice.tip[1] - frame.y) < 1e-6
    )


def test_wrap_keeps_lines_within_width_and_clusters_whole():
    size = 16
    for text in ["x" * 300, "e\u0301" * 80, "👩\u200d👩\u200d👧" * 30, "one two\nthree"]:
        lines = lettering.wrap(text, size, 100)
        for line in lines:
            assert lettering.text_width(line, size) <= 100 or len(line) <= 8
            assert not line.startswith(("\u0301", "\u200d"))
        assert "".join(lines).replace(" ", "") == text.replace(" ", "").replace("\n", "")
    assert lettering.wrap("one two\nthree", size, 1000) == ["one two", "three"]
    assert lettering.clean_text("a\x00b\tc  d\r\ne\ud800") == "ab c d\ne"


def test_every_page_gets_a_page_number_in_its_margin():
    laid = layout_book(book([["square"] * 2, ["wide"]]))
    for page in laid.pages:
        assert page.page_number is not None
        assert page.page_number.lines == [str(page.number)]
        assert page.page_number.box.y > page.height - 36
    no_margin = layout_book(book([["square"]]), PageSettings(margin=0))
    assert no_margin.pages[0].page_number is None


def test_too_many_rows_for_the_page_is_a_clear_error():
    with pytest.raises(ComicgenError, match="page 1: layout '1-1-1-1-1-1-1-1-1-1-1-1' leaves"):
        layout_book(book([(["wide"] * 12, [1] * 12)]), PageSettings(height=300, gutter=12))


def test_scripts_the_bundled_font_lacks_get_a_fallback_face_when_one_is_installed():
    kalam = lettering.coverage(lettering.bundled_face().regular)
    assert ord("A") in kalam and ord("é") in kalam and ord("م") not in kalam
    assert lettering.main_face("Hello, world!") == lettering.BUNDLED
    laid = lettered([Speech("שלום עולם", "speech", "Bob", (0.5, 0.6))], caption="Привет")
    if len(laid.chain) == 1:
        pytest.skip("no fallback font (DejaVu, Noto, ...) on this machine")
    p = laid.pages[0].panels[0]
    key = p.balloons[0].text_block.face
    assert key != lettering.BUNDLED
    assert {ord(c) for c in "שלום"} <= typefaces.charset(key)
    assert p.caption.text_block.face != lettering.BUNDLED
    assert laid.faces()[0] == lettering.BUNDLED and len(laid.faces()) == 2
