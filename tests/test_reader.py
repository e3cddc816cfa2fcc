"""The HTML reader's panel-by-panel mode in headless Chromium (Playwright).

Keys, taps and swipes step through the frames in reading order, zoomed onto each,
across page turns, for left-to-right and right-to-left stories, under the pages' own
Content-Security-Policy (a blocked script or style would show as a console error).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from comicgen.publish import publish
from comicgen.settings import PageSettings
from tests.support.sample import sample_book
from tests.test_browser import ARGS, CHROMIUM

pytestmark = pytest.mark.browser
VIEW = {"width": 900, "height": 700}


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


class Reader:
    def __init__(self, browser, **options):
        self.page = browser.new_page(
            viewport=VIEW, reduced_motion="reduce", has_touch=True, **options
        )
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, path: Path) -> None:
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")

    def key(self, key: str, turns: bool = False) -> None:
        if turns:
            with self.page.expect_navigation():
                self.page.keyboard.press(key)
            self.page.wait_for_load_state("load")
        else:
            self.page.keyboard.press(key)

    @property
    def current(self) -> str | None:
        return self.page.evaluate("document.body.dataset.panel || null")

    @property
    def file(self) -> str:
        return Path(self.page.url.split("#")[0]).name

    def zoomed(self) -> dict:
        """The current frame's box on screen, and the viewing area's."""
        return self.page.evaluate(
            """() => {
              const f = document.querySelector('figure.panel[aria-current="true"]');
              const r = f.getBoundingClientRect();
              const m = document.querySelector('main').getBoundingClientRect();
              const only = [...document.querySelectorAll('figure.panel')]
                .filter(p => p.getAttribute('aria-current') === 'true').length;
              return {x: r.x, y: r.y, w: r.width, h: r.height,
                      mx: m.x, my: m.y, mw: m.width, mh: m.height, only};
            }"""
        )

    def swipe(self, dx: float) -> None:
        self.page.evaluate(
            """(dx) => {
              const make = (x) => new Touch({identifier: 1, target: document.body,
                                            clientX: x, clientY: 300});
              const fire = (type, t) => document.body.dispatchEvent(new TouchEvent(type, {
                touches: type === 'touchend' ? [] : [t], changedTouches: [t],
                bubbles: true, cancelable: true}));
              fire('touchstart', make(450));
              fire('touchend', make(450 + dx));
            }""",
            dx,
        )


def build(tmp_path: Path, direction: str):
    out = tmp_path / direction
    book = sample_book(out, (4, 3), direction=direction)
    result = publish(book, out, PageSettings(), dpi=48, cbz=False)
    return out, result.layout


def assert_fills_the_view(reader: Reader) -> None:
    z = reader.zoomed()
    assert z["only"] == 1
    # centred in the viewing area, and as large as it fits (a 4% margin around the frame)
    assert abs(z["x"] + z["w"] / 2 - (z["mx"] + z["mw"] / 2)) < 2
    assert abs(z["y"] + z["h"] / 2 - (z["my"] + z["mh"] / 2)) < 2
    assert z["w"] >= 0.85 * z["mw"] or z["h"] >= 0.85 * z["mh"]
    assert z["w"] <= z["mw"] + 1 and z["h"] <= z["mh"] + 1


@pytest.mark.parametrize("direction", ["ltr", "rtl"])
def test_panel_by_panel_steps_through_the_frames_in_reading_order(browser, tmp_path, direction):
    out, layout = build(tmp_path, direction)
    order = [(f"page-{page.number:02d}.html", p.id) for page in layout.pages for p in page.panels]
    first_page = layout.pages[0]
    if direction == "rtl":  # the first frame read is the top right one
        right = max(p.box.right for p in first_page.panels)
        assert first_page.panels[0].box.right == pytest.approx(right)
    reader = Reader(browser)
    reader.open(out / "page-01.html")
    assert reader.current is None
    reader.page.click("button.panel-mode")
    seen = [(reader.file, reader.current)]
    assert_fills_the_view(reader)
    forward = "ArrowLeft" if direction == "rtl" else "ArrowRight"
    keys = ["Space", "PageDown", forward]
    for step in range(1, len(order)):
        turns = order[step][0] != order[step - 1][0]
        reader.key(keys[step % len(keys)], turns=turns)
        seen.append((reader.file, reader.current))
        assert_fills_the_view(reader)
    assert seen == order
    # back across the page turn: to the previous page's last frame
    reader.key("Home")
    assert reader.current == "2.1"
    reader.key("PageUp", turns=True)
    assert (reader.file, reader.current) == ("page-01.html", order[3][1])
    reader.key("Home")
    assert reader.current == "1.1"
    reader.key("End")
    assert reader.current == "1.4"
    reader.key("Shift+Space")
    assert reader.current == "1.3"
    # a tap steps on; a tap near the edge the story starts from steps back
    start_x, end_x = (VIEW["width"] * 0.9, VIEW["width"] * 0.1)
    if direction == "ltr":
        start_x, end_x = end_x, start_x
    reader.page.mouse.click(end_x, 400)
    assert reader.current == "1.4"
    reader.page.mouse.click(start_x, 400)
    assert reader.current == "1.3"
    # a swipe towards the start of the line steps on
    reader.swipe(-200 if direction == "ltr" else 200)
    assert reader.current == "1.4"
    reader.swipe(200 if direction == "ltr" else -200)
    assert reader.current == "1.3"
    # Escape shows whole pages again; Space then turns the page
    reader.key("Escape")
    assert reader.current is None
    assert reader.page.evaluate("document.querySelector('.page').style.transform") == ""
    reader.key("Space", turns=True)
    assert reader.file == "page-02.html" and reader.current is None
    assert reader.errors == []


def test_page_keys_and_swipes_turn_pages(browser, tmp_path):
    out, _ = build(tmp_path, "ltr")
    reader = Reader(browser)
    reader.open(out / "page-01.html")
    reader.key("End", turns=True)
    assert reader.file == "page-02.html"
    reader.key("PageUp", turns=True)
    assert reader.file == "page-01.html"
    with reader.page.expect_navigation():
        reader.swipe(-200)
    assert Path(reader.page.url).name == "page-02.html"
    # the mode travels in the address: a link to page-02.html#panels opens zoomed
    reader.open(out / "page-02.html")
    reader.page.goto((out / "page-02.html").as_uri() + "#panels-last")
    reader.page.reload()
    assert reader.current == "2.3"
    reader.key("p")
    assert reader.current is None
    assert reader.errors == []
