"""Seconds from saving the story to an updated page: `comicgen serve` beside `render`.

On a copy of this repository's workspace (the example story, the bundled model), the
benchmark

1. renders the story once (so every panel is cached) and starts ``comicgen serve``,
   opening page 1 in headless Chromium (Playwright, ``/usr/bin/chromium``);
2. lettering-only edit: changes the first panel's caption, and measures the time from
   writing the file until the open page shows the new caption (no reload);
3. one-panel prompt edit: changes the first panel's prompt, and measures the time until
   the page shows the repainted panel (its new image loaded), with the server's own
   paint time of that panel;
4. does the same two kinds of edit (other texts, so nothing is cached) followed by
   ``comicgen render stories/example.yaml``, timed as a command.

Run from the repository root (about 3 minutes on 2 CPU cores)::

    python benchmarks/serve.py             # 3 repeats of each edit
    python benchmarks/serve.py --repeats 5

The last line is ``serve lettering=Xs prompt=Ys (paint Zs) render lettering=Xs prompt=Ys``
(medians). Targets: lettering ≤ 1 s; one panel ≤ its paint time + 1 s.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
CAPTION = "One sunny morning, Pip went for a walk."
PROMPT = "{pip} looking happy on the left, wide shot, grass, day sky, a tree"
# prompt variants the toy world knows (sky and prop words), each a new panel; the last
# one is the story's own prompt, never used as an edit
VARIANTS = [
    (sky, prop)
    for sky in ("night sky", "sunset sky", "day sky")
    for prop in ("a house", "a rock", "no props", "a tree")
]


def workspace(folder: Path) -> Path:
    root = folder / "ws"
    root.mkdir()
    shutil.copy(ROOT / "comicgen.toml", root)
    shutil.copytree(ROOT / "characters", root / "characters")
    (root / "stories").mkdir()
    shutil.copy(ROOT / "stories" / "example.yaml", root / "stories")
    return root


def comicgen(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "comicgen", *args, "--workspace", str(root)],
        cwd=root,
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    )


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200", PYTHONUNBUFFERED="1")
    return env


def replace(story: Path, old: str, new: str) -> None:
    text = story.read_text(encoding="utf-8")
    assert old in text, old
    story.write_text(text.replace(old, new, 1), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve-only", action="store_true", help="skip the render timings")
    parser.add_argument("--screenshot", type=Path, help="also save the studio with takes here")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root = workspace(Path(tmp))
        story = root / "stories" / "example.yaml"
        original = story.read_text(encoding="utf-8")
        start = time.perf_counter()
        comicgen(root, "render", "example")
        print(
            f"first render (model load, 9 panels): {time.perf_counter() - start:.1f} s", flush=True
        )

        server = subprocess.Popen(
            [sys.executable, "-m", "comicgen", "serve", "example", "--port", "0"],
            cwd=root,
            env=_env() | {"COMICGEN_WORKSPACE": str(root)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in server.stdout], daemon=True).start()
        url = None
        while url is None:
            found = re.search(r"(http://127\.0\.0\.1:\d+/\S+)", lines.get(timeout=120))
            url = found.group(1) if found else None
        caption, prompt = CAPTION, PROMPT
        lettering, repaint, paint = [], [], []
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(viewport={"width": 1000, "height": 1400})
                page.goto(url.replace("index.html", "page-01.html"))
                page.wait_for_function(
                    "() => [...document.querySelectorAll('figure.panel')]"
                    ".every(f => f.getAttribute('data-studio') === 'done')",
                    timeout=1_200_000,
                )
                for i in range(args.repeats):
                    new = f"Serve edit {i}: Pip went for a walk."
                    start = time.perf_counter()
                    replace(story, caption, new)
                    page.wait_for_function(
                        "(t) => document.querySelector('article.page').innerText.includes(t)",
                        arg=new,
                        polling=10,
                        timeout=30_000,
                    )
                    lettering.append(time.perf_counter() - start)
                    print(f"serve lettering edit {i + 1}: {lettering[-1]:.2f} s", flush=True)
                    caption = new
                    time.sleep(0.5)
                for i in range(-1, args.repeats):  # -1: a warm-up (the model loads)
                    sky, prop = VARIANTS[i + 1]
                    new = f"{{pip}} looking happy on the left, wide shot, grass, {sky}, {prop}"
                    old_src = page.evaluate(
                        "document.querySelector('figure.panel[data-panel=\"1.1\"] img').src"
                    )
                    mark = page.evaluate("window.comicgenStudio.events.length")
                    start = time.perf_counter()
                    replace(story, prompt, new)
                    page.wait_for_function(
                        "(old) => { const i = document.querySelector("
                        "'figure.panel[data-panel=\"1.1\"] img'); return i.src !== old"
                        " && !i.src.includes('queued') && i.complete && i.naturalWidth > 0; }",
                        arg=old_src,
                        polling=10,
                        timeout=900_000,
                    )
                    repaint.append(time.perf_counter() - start)
                    seconds = page.evaluate(
                        "(m) => window.comicgenStudio.events.slice(m)"
                        ".filter(e => e.type === 'painted').map(e => e.seconds)",
                        mark,
                    )
                    if i < 0:
                        repaint.pop()
                        prompt = new
                        continue
                    paint.append(sum(seconds))
                    print(
                        f"serve prompt edit {i + 1}: {repaint[-1]:.2f} s (paint {paint[-1]:.2f} s)"
                    )
                    prompt = new
                    time.sleep(0.5)
                edited = story.read_text(encoding="utf-8")
                if args.screenshot:  # the story as shipped (all cached), with takes
                    story.write_text(original, encoding="utf-8")
                    page.wait_for_function(
                        "(t) => document.querySelector('article.page').innerText.includes(t)",
                        arg=CAPTION,
                        timeout=60_000,
                    )
                    page.wait_for_function(
                        "() => [...document.querySelectorAll('figure.panel img')]"
                        ".every(i => !i.src.includes('queued') && i.complete)",
                        timeout=600_000,
                    )
                    screenshot(page, args.screenshot)
                    story.write_text(edited, encoding="utf-8")
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)

        render_lettering, render_prompt = [], []
        for i in range(0 if args.serve_only else args.repeats):
            new = f"Render edit {i}: Pip went for a walk."
            replace(story, caption, new)
            caption = new
            start = time.perf_counter()
            comicgen(root, "render", "example")
            render_lettering.append(time.perf_counter() - start)
            print(f"render after lettering edit {i + 1}: {render_lettering[-1]:.2f} s", flush=True)
        for i in range(0 if args.serve_only else args.repeats):
            sky, prop = VARIANTS[args.repeats + 1 + i]
            new = f"{{pip}} looking happy on the left, wide shot, grass, {sky}, {prop}"
            replace(story, prompt, new)
            prompt = new
            start = time.perf_counter()
            out = comicgen(root, "render", "example").stdout
            assert "1 panel painted" in out, out
            render_prompt.append(time.perf_counter() - start)
            print(f"render after prompt edit {i + 1}: {render_prompt[-1]:.2f} s", flush=True)

    def fmt(values):
        return " ".join(f"{v:.2f}" for v in values)

    print(f"serve, lettering edit → page updated: {fmt(lettering)} s")
    print(f"serve, one-panel prompt edit → page updated: {fmt(repaint)} s (paint {fmt(paint)} s)")
    print(f"render after a lettering edit: {fmt(render_lettering)} s")
    print(f"render after a one-panel prompt edit: {fmt(render_prompt)} s")

    def med(values):
        return statistics.median(values) if values else float("nan")

    print(
        f"serve lettering={med(lettering):.2f}s prompt={med(repaint):.2f}s "
        f"(paint {med(paint):.2f}s) render lettering={med(render_lettering):.2f}s "
        f"prompt={med(render_prompt):.2f}s"
    )


def screenshot(page, path: Path) -> None:
    """The studio with four takes of panel 1.3 side by side, for the README."""
    page.set_viewport_size({"width": 1100, "height": 860})
    page.evaluate("window.scrollTo(0, 0)")
    panel = page.locator('figure.panel[data-panel="1.3"]')
    panel.hover()
    panel.locator(".studio-takes-button").click()
    dialog = page.locator("#studio-takes")
    dialog.locator("select").select_option("4")
    dialog.locator("button.paint").click()
    page.wait_for_function(
        "() => { const i = [...document.querySelectorAll('#studio-takes li img')];"
        " return i.length === 4 && i.every(x => x.complete && x.naturalWidth > 0); }",
        timeout=120_000,
    )
    page.mouse.move(10, 10)
    time.sleep(0.3)
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")


if __name__ == "__main__":
    main()
