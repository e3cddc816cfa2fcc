"""`comicgen serve` in a real browser (headless Chromium through Playwright): a saved
edit shows in the open page without a reload, only the changed panel repaints, a
broken story shows the overlay, and a take picked in the page lands in the YAML."""

from __future__ import annotations

import difflib
import queue
import re
import threading

import pytest

from tests.helpers import comicgen_process, tiny_workspace
from tests.test_browser import ARGS, CHROMIUM

pytestmark = pytest.mark.browser

STORY = """\
# Served in the browser. This comment must survive the pick.
title: Live
pages:
  - panels:
      - prompt: "{pip} on the left, grass, day sky"   # keep me
        characters: [{name: pip, position: left}]
        caption: First caption.
      - prompt: a house, night sky
        caption: Second panel.
      - prompt: a tree, sand
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    ws = tiny_workspace(tmp_path_factory.mktemp("live") / "ws", steps=3)
    story = ws.stories_dir / "live.yaml"
    story.write_text(STORY, encoding="utf-8")
    process = comicgen_process(ws, "serve", "live", "--port", "0")
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    ).start()
    url = None
    seen = []
    try:
        while url is None:
            line = lines.get(timeout=120)
            seen.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+/\S+)", line)
            url = found.group(1) if found else None
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 700, "height": 420})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(url.replace("index.html", "page-01.html"))
            wait_painted(page)
            yield page, story, errors
            browser.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except Exception:  # noqa: BLE001
            process.kill()


def wait_painted(page, timeout: float = 180_000) -> None:
    page.wait_for_function(
        "() => { const f = [...document.querySelectorAll('figure.panel')];"
        " return f.length > 0 && f.every(e => e.getAttribute('data-studio') === 'done'"
        " && !e.querySelector('img').src.includes('queued') && e.querySelector('img').complete"
        " && e.querySelector('img').naturalWidth > 0); }",
        timeout=timeout,
    )


def edit(story, old: str, new: str) -> None:
    text = story.read_text(encoding="utf-8")
    assert old in text
    story.write_text(text.replace(old, new), encoding="utf-8")


def test_a_caption_edit_shows_without_a_reload_and_keeps_the_scroll(server):
    page, story, errors = server
    page.evaluate("window.__kept = 42; window.scrollTo(0, 120)")
    scroll = page.evaluate("window.scrollY")
    assert scroll > 0  # the page is taller than the window
    edit(story, "First caption.", "A new caption, live.")
    page.wait_for_function(
        "() => document.querySelector('article.page').innerText.includes('A new caption, live.')",
        timeout=30_000,
    )
    assert page.evaluate("window.__kept") == 42  # the same document: no reload
    assert page.evaluate("window.scrollY") == scroll
    assert not errors, errors


def test_a_prompt_edit_repaints_only_that_panel(server):
    page, story, errors = server
    before = page.evaluate(
        "() => { const s = window.comicgenStudio; s.mark = s.events.length;"
        " document.querySelectorAll('figure.panel').forEach(f => f.__kept = true);"
        " return [...document.querySelectorAll('figure.panel img')].map(i => i.src); }"
    )
    edit(story, "a house, night sky", "a house, day sky")
    page.wait_for_function(
        "(old) => { const i = document.querySelector('figure.panel[data-panel=\"1.2\"] img');"
        " return i.src !== old && !i.src.includes('queued'); }",
        arg=before[1],
        timeout=120_000,
    )
    wait_painted(page)
    painted = page.evaluate(
        "() => window.comicgenStudio.events.slice(window.comicgenStudio.mark)"
        ".filter(e => e.type === 'painting').map(e => e.id)"
    )
    assert painted == ["1.2"]
    after = page.evaluate("[...document.querySelectorAll('figure.panel img')].map(i => i.src)")
    assert after[0] == before[0] and after[2] == before[2] and after[1] != before[1]
    kept = page.evaluate("[...document.querySelectorAll('figure.panel')].map(f => !!f.__kept)")
    assert kept == [True, False, True]  # only the repainted panel's element was replaced
    assert not errors, errors


def test_a_broken_story_shows_the_overlay_until_fixed(server):
    page, story, errors = server
    edit(story, "title: Live", "title: [Live")
    overlay = page.locator("#studio-overlay")
    overlay.wait_for(state="visible", timeout=30_000)
    assert re.match(r"stories/live\.yaml:\d+:\d+: ", overlay.inner_text()), overlay.inner_text()
    assert page.locator("figure.panel").count() == 3  # the last good page stays beneath
    edit(story, "title: [Live", "title: Live")
    overlay.wait_for(state="hidden", timeout=30_000)
    assert not errors, errors


def test_pick_a_take_in_the_page(server):
    page, story, errors = server
    before = story.read_text(encoding="utf-8")
    panel = page.locator('figure.panel[data-panel="1.3"]')
    panel.hover()
    panel.locator(".studio-takes-button").click()
    dialog = page.locator("#studio-takes")
    dialog.wait_for(state="visible")
    dialog.locator("select").select_option("3")
    dialog.locator("button.paint").click()
    page.locator('#studio-takes li[data-take="3"].ready img').wait_for(timeout=120_000)
    seed = page.locator('#studio-takes li[data-take="3"]').get_attribute("data-seed")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#studio-takes li img')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=60_000,
    )
    page.locator('#studio-takes li[data-take="3"]').click()
    dialog.wait_for(state="hidden", timeout=30_000)
    after = story.read_text(encoding="utf-8")
    diff = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert diff == [f"+        seed: {seed}"]
    assert "# keep me" in after and after.startswith("# Served in the browser.")
    # the page follows: panel 1.3 shows the picked take, painted already
    page.wait_for_function(
        "() => document.querySelector('figure.panel[data-panel=\"1.3\"]')"
        ".getAttribute('data-studio') === 'done' && window.comicgenStudio.events.some("
        "e => e.type === 'state' && e.version > 0)",
        timeout=30_000,
    )
    wait_painted(page)
    assert not errors, errors
