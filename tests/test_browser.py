"""The published pages in a real browser: headless Chromium through Playwright."""

from __future__ import annotations

from pathlib import Path

import pytest

from comicgen.book import Speech
from comicgen.publish import publish
from comicgen.settings import PageSettings
from tests.support.sample import sample_book

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


class Tab:
    """A browser tab that records console errors, page errors and dialogs."""

    def __init__(self, browser, width=1000, height=1400):
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.errors.append(f"failed: {r.url}"))

        def on_dialog(dialog):
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        self.page.on("dialog", on_dialog)

    def open(self, path: Path) -> None:
        self.page.goto(path.as_uri())
        self.settle()

    def settle(self) -> None:
        self.page.wait_for_load_state("load")
        self.page.evaluate("document.fonts.ready.then(() => true)")

    def press(self, key: str) -> str:
        with self.page.expect_navigation():
            self.page.keyboard.press(key)
        self.settle()
        return Path(self.page.url).name

    def close(self) -> None:
        self.page.close()


def all_images_loaded(page) -> bool:
    return page.evaluate(
        "[...document.images].every(i => i.complete && i.naturalWidth > 0)"
        " && document.images.length > 0"
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "sample"
    result = publish(sample_book(out, (4, 3)), out, PageSettings(), dpi=48, cbz=False)
    return out, result


def test_index_and_pages_load_with_arrow_navigation(browser, built):
    out, result = built
    tab = Tab(browser)
    tab.open(out / "index.html")
    assert all_images_loaded(tab.page)
    assert tab.page.title() == "The Lighthouse"
    assert tab.press("ArrowRight") == "page-01.html"
    assert all_images_loaded(tab.page)
    fonts = tab.page.evaluate("[...document.fonts].filter(f => f.status === 'loaded').length")
    assert fonts >= 1  # the bundled font, from assets/
    assert tab.press("ArrowRight") == "page-02.html"
    assert all_images_loaded(tab.page)
    assert tab.press("ArrowLeft") == "page-01.html"
    assert tab.press("ArrowLeft") == "index.html"
    assert tab.errors == []
    tab.close()


def test_page_geometry_in_the_browser_matches_the_layout(browser, built):
    out, result = built
    tab = Tab(browser, width=700, height=900)  # the page scales down to the viewport
    tab.open(out / "page-01.html")
    measured = tab.page.evaluate(
        """() => {
        const page = document.querySelector('.page').getBoundingClientRect();
        const rel = (r) => [(r.x - page.x) / page.width, (r.y - page.y) / page.height,
                            r.width / page.width, r.height / page.height];
        return {
          panels: [...document.querySelectorAll('figure.panel')].map(
            f => rel(f.getBoundingClientRect())),
          texts: [...document.querySelectorAll('p.balloon')].map(
            p => rel(p.getBoundingClientRect())),
          lines: [...document.querySelectorAll('p.balloon')].map(p =>
            [...p.querySelectorAll('.line')].map(s => {
              const r = s.getBoundingClientRect();
              const range = document.createRange(); range.selectNodeContents(s);
              return [r.height, range.getBoundingClientRect().width];
            })),
          scale: page.width / Number(document.querySelector('.page').dataset.size.split(' ')[0]),
        };
    }"""
    )
    laid = result.layout.pages[0]
    w, h = laid.width, laid.height
    for got, panel in zip(measured["panels"], laid.panels, strict=True):
        b = panel.box
        assert got == pytest.approx([b.x / w, b.y / h, b.w / w, b.h / h], abs=0.002)
    balloons = [b for p in laid.panels for b in p.balloons]
    assert len(measured["texts"]) == len(balloons)
    for got, lines, balloon in zip(measured["texts"], measured["lines"], balloons, strict=True):
        t = balloon.text_block.box
        assert got == pytest.approx([t.x / w, t.y / h, t.w / w, t.h / h], abs=0.002)
        # the browser draws the same lines: one line box each, no re-wrapping, same width
        assert len(lines) == len(balloon.text_block.lines)
        line_height = balloon.text_block.line_height * measured["scale"]
        for (height, width), index in zip(lines, range(len(lines)), strict=True):
            assert height == pytest.approx(line_height, abs=1.0)
            want = balloon.text_block.line_width(index) * measured["scale"]
            assert width == pytest.approx(want, rel=0.04, abs=2)
    assert tab.errors == []
    tab.close()


def test_rtl_story_turns_pages_with_the_left_arrow(browser, tmp_path):
    out = tmp_path / "manga"
    publish(sample_book(out, (2, 2), direction="rtl"), out, PageSettings(), dpi=48, cbz=False)
    tab = Tab(browser)
    tab.open(out / "index.html")
    assert tab.page.evaluate("document.documentElement.dir") == "rtl"
    assert tab.press("ArrowLeft") == "page-01.html"
    assert tab.press("ArrowLeft") == "page-02.html"
    assert tab.press("ArrowRight") == "page-01.html"
    assert tab.errors == []
    tab.close()


def test_script_in_dialogue_shows_as_text_and_never_runs(browser, tmp_path):
    out = tmp_path / "hostile"
    attack = "<script>alert(1)</script>"
    book = sample_book(
        out,
        (2,),
        title=attack,
        dialogue=[("Alice", "speech", attack), ('"><img src=x onerror=alert(2)>', "shout", attack)],
    )
    book.pages[0].panels[0].caption = "<img src=x onerror=alert(3)>"
    book.pages[0].panels[0].dialogue.append(Speech("{{ 7*7 }}", "thought", "Bob", None))
    publish(book, out, PageSettings(), dpi=48, cbz=False)
    tab = Tab(browser)
    tab.open(out / "page-01.html")
    balloons = tab.page.locator("p.balloon .line").all_inner_texts()
    assert attack in balloons
    assert "{{ 7*7 }}" in balloons
    assert tab.page.locator("p.caption").inner_text() == "<img src=x onerror=alert(3)>"
    assert tab.page.title().startswith(attack)
    assert tab.page.evaluate("document.querySelectorAll('script').length") == 1
    tab.open(out / "index.html")
    assert tab.page.locator("h1").inner_text() == attack
    assert tab.dialogs == []
    assert tab.errors == []
    tab.close()
