"""Lettering in a real browser: captions where asked, narrator and off-panel voices,
whispers, sound effects and every script drawn as the layout (and the PNG) drew them."""

from __future__ import annotations

import pytest

from comicgen.book import Book, PageContent, PanelContent, SoundEffect, Speech
from comicgen.publish import publish
from comicgen.settings import PageSettings
from tests import test_browser
from tests.support.sample import draw_panel
from tests.test_browser import Tab

pytestmark = pytest.mark.browser
browser = test_browser.browser  # the shared fixture: headless Chromium


def lettering_book(out, direction="ltr") -> Book:
    def panel(pid, shape, index, cast, **fields):
        path = out / "panels" / f"{pid}.png"
        size = draw_panel(path, shape, index, cast)
        return PanelContent(
            id=pid, image=path, image_size=size, alt=pid, shape=shape,
            characters=[n for n, _ in cast], **fields,
        )  # fmt: skip

    a, b = (0.3, 0.55), (0.72, 0.55)
    first = [
        panel(
            "1.1", "wide", 0, [("Alice", 0.3), ("Bob", 0.72)],
            caption="That night, by the sea.", caption_at="bottom",
            dialogue=[
                Speech("Did you hear that?", "speech", "Alice", a),
                Speech("psst... over here", "whisper", "Bob", b),
            ],
        ),
        panel(
            "1.2", "square", 1, [("Bob", 0.5)], caption="Meanwhile",
            dialogue=[
                Speech("Far away, a storm was brewing.", caption=True),
                Speech("BOB! Come home!", "shout", "Mum", None, offpanel=True),
            ],
            sfx=[SoundEffect("BOOM!", (0.6, 0.35), -14, "#e33", 0.15)],
        ),
        panel(
            "1.3", "square", 2, [("Alice", 0.3), ("Bob", 0.72)],
            dialogue=[
                Speech("你好，世界！", "speech", "Alice", a),
                Speech("こんにちは、世界。", "speech", "Bob", b),
                Speech("مرحبا بالعالم", "speech", "Alice", a),
                Speech("שלום עולם", "thought", "Bob", b),
            ],
            sfx=[SoundEffect("ドン BANG", (0.5, 0.85), 8, "orange", 0.1)],
        ),
    ]  # fmt: skip
    second = [panel("2.1", "wide", 3, [("Alice", 0.3)], caption="The end.")]
    return Book(
        name="lettering",
        title="Lettering",
        pages=[PageContent(1, first), PageContent(2, second)],
        direction=direction,
        characters=["Alice", "Bob"],
    )


@pytest.fixture(scope="module", params=["ltr", "rtl"])
def built(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("lettering") / request.param
    result = publish(lettering_book(out, request.param), out, PageSettings(), dpi=48)
    return out, result


def rects(tab, selector: str):
    """Bounding boxes of ``selector`` in page px (the layout's units)."""
    return tab.page.evaluate(
        """(selector) => {
        const page = document.querySelector('.page');
        const box = page.getBoundingClientRect();
        const scale = box.width / Number(page.dataset.size.split(' ')[0]);
        return [...document.querySelectorAll(selector)].map(e => {
          const r = e.getBoundingClientRect();
          return [(r.x - box.x) / scale, (r.y - box.y) / scale, r.width / scale,
                  r.height / scale];
        });
    }""",
        selector,
    )


def test_caption_top_and_bottom_where_the_story_asks(browser, built):
    out, result = built
    tab = Tab(browser)
    tab.open(out / "page-01.html")
    panels = result.layout.pages[0].panels
    for panel in panels[:2]:
        sel = f'figure[data-panel="{panel.id}"] p.caption:not(.narration)'
        assert tab.page.locator(sel).get_attribute("class").split()[-1] == (
            panel.content.caption_at
        )
        (x, y, w, h), frame = rects(tab, sel)[0], panel.box
        if panel.content.caption_at == "bottom":
            assert frame.bottom - (y + h) < 0.06 * frame.h and y > frame.center[1]
        else:
            assert y - frame.y < 0.06 * frame.h
        t = panel.caption.text_block.box
        assert [x, y, w, h] == pytest.approx([t.x, t.y, t.w, t.h], abs=1.5)
    assert tab.errors == []
    tab.close()


def test_narrator_and_off_panel_voices(browser, built):
    out, result = built
    tab = Tab(browser)
    tab.open(out / "page-01.html")
    panel = result.layout.pages[0].panels[1]
    narration = tab.page.locator('figure[data-panel="1.2"] p.caption.narration')
    assert narration.inner_text() == "Far away, a storm was brewing."
    (x, y, w, h) = rects(tab, 'figure[data-panel="1.2"] p.caption.narration')[0]
    cap = rects(tab, 'figure[data-panel="1.2"] p.caption:not(.narration)')[0]
    assert y >= cap[1] + cap[3]  # below the panel's own caption
    box = panel.narration[0].box
    assert box.x <= x and x + w <= box.right + 1 and box.y <= y and y + h <= box.bottom + 1
    mum = tab.page.locator('p.balloon[data-speaker="Mum"]')
    assert "BOB!" in mum.inner_text() and "Mum shouts" in mum.inner_text()
    tip = [float(v) for v in mum.get_attribute("data-tip").split()]
    frame = panel.box
    assert min(abs(tip[0] - frame.x), abs(tip[0] - frame.right), abs(tip[1] - frame.y)) < 0.01
    # the tail is drawn: two paths (body, tail) in the shout's shape
    assert tab.page.locator("g.balloon-shape.shout path").count() >= 2
    whisper = tab.page.locator("g.balloon-shape.whisper g[stroke-dasharray]")
    assert whisper.count() == 1
    dash = tab.page.evaluate(
        "getComputedStyle(document.querySelector("
        "'g.balloon-shape.whisper g[stroke-dasharray]')).strokeDasharray"
    )
    assert dash not in ("", "none")
    sfx = tab.page.locator("svg text.sfx")
    assert sfx.count() == 2 and sfx.first.text_content() == "BOOM!"
    (sx, sy, sw, sh) = rects(tab, "svg text.sfx")[0]
    effect = panel.sfx[0]
    cx, cy = effect.center
    assert sx < cx < sx + sw and sy < cy < sy + sh  # turned about its centre
    assert tab.errors == []
    tab.close()


def test_every_script_is_lettered_in_a_face_that_has_it(browser, built):
    out, result = built
    panel = result.layout.pages[0].panels[2]
    if all(b.text_block.face == "kalam" for b in panel.balloons):
        pytest.skip("no CJK/Arabic/Hebrew fonts on this machine (CI installs them)")
    tab = Tab(browser)
    tab.open(out / "page-01.html")
    got = tab.page.evaluate(
        """() => [...document.querySelectorAll('figure[data-panel="1.3"] p.balloon')].map(p =>
          [...p.querySelectorAll('.line')].map(s => {
            const range = document.createRange(); range.selectNodeContents(s);
            const family = getComputedStyle(s).fontFamily.split(',')[0].replace(/"/g, '');
            return [range.getBoundingClientRect().width, family,
                    document.fonts.check('16px "' + family + '"', s.textContent)];
          }))"""
    )
    scale = tab.page.evaluate(
        "document.querySelector('.page').getBoundingClientRect().width"
        " / Number(document.querySelector('.page').dataset.size.split(' ')[0])"
    )
    for lines, balloon in zip(got, panel.balloons, strict=True):
        block = balloon.text_block
        for index, (width, family, loaded) in enumerate(lines):
            assert family == ("Kalam" if block.face == "kalam" else block.face)
            assert loaded
            # the browser's glyphs have the layout's widths: the same faces, no boxes
            want = block.line_width(index) * scale
            assert width == pytest.approx(want, rel=0.05, abs=2)
    assert tab.errors == []
    tab.close()


def test_the_page_counter_reads_in_order(browser, built):
    out, _ = built
    tab = Tab(browser)
    tab.open(out / "page-01.html")
    assert tab.page.locator(".count").inner_text() == "1 / 2"
    first, last = tab.page.evaluate(
        """() => {
        const node = document.querySelector('.count').firstChild;
        const at = (i) => { const r = document.createRange(); r.setStart(node, i);
                            r.setEnd(node, i + 1); return r.getBoundingClientRect().x; };
        return [at(0), at(node.textContent.length - 1)];
    }"""
    )
    assert first < last  # "1 / 2" left to right, in rtl books too (it read "2 / 1")
    tab.close()


def test_a_sound_effect_in_two_faces_stays_inside_the_svg(browser, built):
    out, result = built
    panel = result.layout.pages[0].panels[2]
    runs = panel.sfx[0].text_block.runs(0)
    tab = Tab(browser)
    tab.open(out / "page-01.html")
    got = tab.page.evaluate(
        """() => ({
        shapes: document.querySelectorAll('svg.ink g.balloon-shape').length,
        text: document.querySelectorAll('svg.ink text.sfx')[1].textContent,
        tspans: document.querySelectorAll('svg.ink text.sfx tspan').length,
        stray: document.querySelectorAll('article > span, main > span').length,
    })"""
    )
    balloons = sum(len(p.balloons) for p in result.layout.pages[0].panels)
    assert got["shapes"] == balloons  # the SVG was not cut short by the sound effect
    assert got["text"] == "ドン BANG" and got["stray"] == 0
    assert got["tspans"] == sum(1 for _t, key in runs if key != panel.sfx[0].text_block.face)
    assert tab.errors == []
    tab.close()
