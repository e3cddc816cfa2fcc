"""`comicgen serve`: builds, repaints, takes and the safety rules, through Starlette's
TestClient (the browser side is in test_serve_browser.py)."""

from __future__ import annotations

import difflib
import os
import re
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from comicgen.serve.app import create_app
from comicgen.serve.paths import safe_child
from comicgen.serve.studio import Studio
from tests.helpers import comicgen_process, integrity, tiny_workspace

STORY = """\
# A hand-written story: comments and spacing must survive a pick.
title: Served
pages:
  - panels:
      - prompt: "{pip} on the left, grass, day sky"   # the opening
        characters: [{name: pip, position: left}]
        caption: Hello there.
      - prompt: a house, night sky
        dialogue:
          - {text: "Anyone home?"}   # an off-panel voice
"""


def wait_for(condition, timeout: float = 60.0, what="condition"):
    """``condition()``'s first true value; ``what`` (a string, or a callable read at the
    timeout so that the message shows the state then) names it in the failure."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")


@pytest.fixture
def served(tmp_path):
    ws = tiny_workspace(tmp_path / "ws")
    (ws.stories_dir / "served.yaml").write_text(STORY, encoding="utf-8")
    studio = Studio(ws.root, Path("served"))
    app = create_app(studio, allowed_hosts=["testserver"])
    with TestClient(app) as client:
        client.studio = studio
        client.ws = ws
        client.story = ws.stories_dir / "served.yaml"
        yield client


def stacks() -> str:
    """Where the studio's threads stand (for a timeout's message)."""
    import sys
    import threading
    import traceback

    frames = sys._current_frames()
    return "\n".join(
        f"--- {t.name}\n" + "".join(traceback.format_stack(frames[t.ident], limit=8))
        for t in threading.enumerate()
        if t.ident in frames and t.name.startswith(("comicgen", "asyncio", "AnyIO"))
    )


def settled(client) -> dict:
    """Wait until every panel is painted and the last build shows it."""
    studio = client.studio
    state = studio.stories["served"]

    def done():
        return (
            state.build is not None
            and all(state.build.cached.values())
            and not studio.painter.status("served")
        )

    wait_for(
        done,
        timeout=120,
        what=lambda: (
            f"all panels painted ({state.history}, {studio.painter.errors}, "
            f"{studio.painter.status('served')}, {studio.painter.painted}, "
            f"dirty={studio.dirty}, painter alive={studio.painter.is_alive()})\n{stacks()}"
        ),
    )
    return state


def edit(client, old: str, new: str) -> None:
    text = client.story.read_text(encoding="utf-8")
    assert old in text
    client.story.write_text(text.replace(old, new), encoding="utf-8")


def test_pages_are_served_and_only_changed_panels_repaint(served):
    page = served.get("/s/served/page-01.html")
    assert page.status_code == 200
    assert "Hello there." in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert 'http-equiv="Content-Security-Policy"' in page.text  # the page's own stays
    assert '<script src="/_studio/studio.js" defer>' in page.text
    state = settled(served)
    assert sorted(p for _, p in served.studio.painter.painted) == ["1.1", "1.2"]
    assert served.get("/", follow_redirects=False).headers["location"] == ("/s/served/index.html")

    # lettering only: a new build, nothing to paint
    mark = len(state.history)
    edit(served, "Hello there.", "Goodbye now.")
    wait_for(
        lambda: "Goodbye now." in served.get("/s/served/page-01.html").text,
        what="a build after the caption edit",
    )
    builds = [h for h in state.history[mark:] if "changed" in h]
    assert builds and all(h["changed"] == [] and h["missing"] == [] for h in builds)

    # one prompt: only that panel is painted again
    mark = len(state.history)
    edit(served, "a house, night sky", "a tree, night sky")
    wait_for(
        lambda: any(h.get("changed") == ["1.2"] for h in state.history[mark:]),
        what="the prompt edit",
    )
    settled(served)
    assert sorted(p for _, p in served.studio.painter.painted) == ["1.1", "1.2", "1.2"]
    html = served.get("/s/served/page-01.html").text
    key = state.build.job("1.2").key
    assert f"p01-2.png?v={key[:24]}" in html
    image = served.get(f"/s/served/panels/p01-2.png?v={key[:24]}")
    assert image.status_code == 200 and image.content[:4] == b"\x89PNG"
    for name in ("page-01.png", "thumbs/page-01.png", "assets/comic.css", "assets/reader.js"):
        assert served.get(f"/s/served/{name}").status_code == 200, name
    # nothing of this went to build/: that stays what `render` writes
    assert not served.ws.build_dir.exists() or not any(served.ws.build_dir.iterdir())


def test_a_broken_story_keeps_the_last_good_pages_and_reports_the_cli_line(served):
    state = settled(served)
    version = state.version
    good = served.get("/s/served/page-01.html").text
    edit(served, "title: Served", "title: [Served")
    wait_for(lambda: state.error, what="the error")
    assert re.match(r"^stories/served\.yaml:\d+:\d+: ", state.error), state.error
    assert state.version == version
    assert served.get("/s/served/page-01.html").text == good
    edit(served, "title: [Served", "title: Served")
    wait_for(lambda: state.error is None, what="the fix")


def test_takes_and_pick_through_the_api_keep_comments(served):
    state = settled(served)
    token = served.studio.token
    headers = {"X-Comicgen-Token": token}
    answer = served.post(
        "/_studio/takes", json={"story": "served", "panel": "1.2", "count": 3}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    takes = answer.json()["takes"]
    assert [t["take"] for t in takes] == [1, 2, 3] and takes[0]["ready"]  # 1 = the panel now
    wait_for(lambda: all(served.get(t["src"]).status_code == 200 for t in takes), what="the takes")
    before = served.story.read_text(encoding="utf-8")
    answer = served.post(
        "/_studio/pick", json={"story": "served", "panel": "1.2", "take": 3}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    seed = answer.json()["seed"]
    assert seed == takes[2]["seed"]
    after = served.story.read_text(encoding="utf-8")
    diff = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert diff == [f"+        seed: {seed}"]
    # the chosen take is in the cache: the rebuild paints nothing
    wait_for(lambda: state.build.job("1.2").seed == seed, what="the rebuild after the pick")
    assert all(state.build.cached.values())
    # and the contact sheet is where `render --takes` puts it, for `comicgen pick`
    wait_for(lambda: (served.ws.build_dir / "served" / "takes" / "1-2.json").is_file())


def test_a_bug_in_a_build_is_reported_and_the_next_save_builds(served, monkeypatch):
    import comicgen.serve.studio as studio_module

    state = settled(served)
    real = studio_module.build_pages

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(studio_module, "build_pages", broken)
    edit(served, "Hello there.", "Hello again.")
    wait_for(lambda: state.error, what="the bug's report")
    assert state.error == "building failed: RuntimeError('a bug')"
    monkeypatch.setattr(studio_module, "build_pages", real)
    edit(served, "Hello again.", "Hello at last.")
    wait_for(lambda: state.error is None, what="the next build")
    assert "Hello at last." in served.get("/s/served/page-01.html").text


def test_writes_need_the_token_json_and_this_origin(served):
    url = "/_studio/pick"
    body = {"story": "served", "panel": "1.1", "take": 1}
    token = served.studio.token
    before = served.story.read_bytes()
    assert served.post(url, json=body).status_code == 403
    assert served.post(url, json=body, headers={"X-Comicgen-Token": "x" * 43}).status_code == 403
    assert served.post("/_studio/takes", json=body).status_code == 403
    other = {"X-Comicgen-Token": token, "Origin": "http://evil.example"}
    assert served.post(url, json=body, headers=other).status_code == 403
    form = served.post(
        url,
        content=b"story=served",
        headers={"X-Comicgen-Token": token, "Content-Type": "text/plain"},
    )
    assert form.status_code == 415
    assert served.get(url).status_code in (404, 405)
    assert served.story.read_bytes() == before
    # the token is in the story's pages only, never in the lists
    assert token in served.get("/s/served/index.html").text
    assert token not in served.get("/?list").text


def test_nothing_outside_the_workspace_is_served(served, tmp_path):
    ws = served.ws
    (ws.build_dir / "served").mkdir(parents=True)
    (ws.build_dir / "served" / "ok.txt").write_text("inside", encoding="utf-8")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside", encoding="utf-8")
    os.symlink(secret, ws.build_dir / "served" / "out.txt")
    os.symlink(ws.build_dir / "served" / "ok.txt", ws.build_dir / "served" / "in.txt")
    assert served.get("/build/served/ok.txt").text == "inside"
    assert served.get("/build/served/in.txt").text == "inside"  # a symlink inside is fine
    refused = [
        "/build/served/out.txt",  # a symlink out
        "/build/%2e%2e/comicgen.toml",
        "/build/..%2fcomicgen.toml",
        "/build/served/%2e%2e/%2e%2e/comicgen.toml",
        "/build/%2fetc%2fpasswd",
        "/build//etc/passwd",
        f"/build/{secret}",
        "/build/served\\..\\..\\comicgen.toml",
        "/s/served/assets/..%2f..%2fcomicgen.toml",
        "/s/served/panels/..%2f..%2f..%2fcomicgen.toml",
        "/s/served/panels/%2e%2e/%2e%2e/%2e%2e/comicgen.db",
        "/s/nope/index.html",
        "/_studio/panel/..%2f..%2fcomicgen.db.png",
        "/_studio/characters/Pip/0-../../x.png",
    ]
    for url in refused:
        response = served.get(url)
        assert response.status_code in (404, 400), url
        assert "outside" not in response.text and "[model]" not in response.text, url
    # another Host (DNS rebinding) is refused
    assert served.get("/?list", headers={"Host": "evil.example"}).status_code == 400


def test_the_watcher_sees_inputs_and_adapter_files_not_outputs(tmp_path):
    from comicgen.serve.watcher import relevant

    accept = relevant(tmp_path)
    seen = [
        "comicgen.toml", "stories/a.yaml", "characters/pip/0.png", "templates/page.html",
        "loras/ink.safetensors", "style.safetensors", "characters/pip.pt", "emb/x.bin",
    ]  # fmt: skip
    unseen = [
        "notes.txt", "build/a/p01.png", "build/x.safetensors", ".cache/y.safetensors",
        "stories/.a.yaml.swp", "stories/a.yaml.tmp", "comicgen.db", "stories/.hidden/a.yaml",
    ]  # fmt: skip
    assert [p for p in seen if not accept(None, str(tmp_path / p))] == []
    assert [p for p in unseen if accept(None, str(tmp_path / p))] == []
    assert not accept(None, str(tmp_path.parent / "elsewhere.safetensors"))


def test_safe_child(tmp_path):
    base = tmp_path / "base"
    (base / "a").mkdir(parents=True)
    (base / "a" / "f.txt").write_text("x")
    assert safe_child(base, "a/f.txt") == (base / "a" / "f.txt").resolve()
    for bad in ("", "/etc/passwd", "../x", "a/../a/f.txt", "a\\f.txt", ".hidden", "a//f.txt"):
        assert safe_child(base, bad) is None, bad


def test_character_library_page(served):
    page = served.get("/_studio/characters")
    assert page.status_code == 200 and 'data-name="Pip"' in page.text
    mask = served.get("/_studio/characters/Pip/0-mask.png")
    view = served.get("/_studio/characters/Pip/0-view.png")
    assert mask.status_code == view.status_code == 200
    from io import BytesIO

    from PIL import Image

    tinted = Image.open(BytesIO(mask.content)).convert("RGB")
    plain = Image.open(BytesIO(view.content)).convert("RGB")
    # the sheet's circle is masked (tinted), its plain border is not
    assert tinted.getpixel((32, 32)) != plain.getpixel((32, 32))
    assert tinted.getpixel((2, 30)) == plain.getpixel((2, 30))
    assert "box 0.2" in page.text  # the mask's box: the circle starts at x = 16 of 64
    assert served.get("/_studio/characters/Nobody/0-view.png").status_code == 404


def test_render_and_serve_at_once_paint_each_panel_once(tmp_path):
    from tests.helpers import long_story

    ws = tiny_workspace(tmp_path / "ws", steps=4)
    (ws.stories_dir / "long.yaml").write_text(long_story(3, 3), encoding="utf-8")
    studio = Studio(ws.root, Path("long"))
    with TestClient(create_app(studio, allowed_hosts=["testserver"])) as client:
        assert client.get("/s/long/index.html").status_code == 200
        process = comicgen_process(ws, "render", "long")
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output
        state = studio.stories["long"]
        studio.mark_dirty({"long"})
        wait_for(lambda: state.build and all(state.build.cached.values()), timeout=300)
        wait_for(lambda: not studio.painter.status("long"))
    painted_by_render = int(re.search(r"(\d+) panels? painted", output).group(1))
    assert painted_by_render + len(studio.painter.painted) == 9, output
    assert integrity(ws) == "ok"
    assert len(list((ws.cache_dir / "panels").rglob("*.png"))) == 9


def test_a_panel_made_stale_while_painting_is_dropped_at_the_next_step(tmp_path):
    """The painting thread checks between denoising steps that its panel is still wanted:
    a new build that no longer wants it stops it there (not cached, not shown), and the
    thread goes on to the panels that are wanted."""
    from comicgen.library import Library
    from comicgen.render import plan
    from comicgen.serve.jobs import Painter, Work

    ws = tiny_workspace(tmp_path / "ws", steps=12)
    path = ws.stories_dir / "served.yaml"
    path.write_text(STORY, encoding="utf-8")
    with Library.open(ws.db_path, ws.cache_dir) as lib:
        the_plan = plan(ws, path, lib)
    first, second = (Work("served", ws, the_plan, job) for job in the_plan.jobs[:2])
    events: list[tuple[str, str, int | None]] = []
    thread: Painter

    def emit(event: str, data: dict, story: str | None) -> None:
        events.append((event, data.get("id"), data.get("step")))
        if event == "progress" and data["id"] == first.job.id and data["step"] == 3:
            thread.replace("served", [second])  # a save changed the first panel

    thread = Painter(lambda: Library.open(ws.db_path, ws.cache_dir), emit)
    thread.replace("served", [first, second])
    thread.start()
    try:
        wait_for(lambda: thread.painted, timeout=120, what=f"a panel painted {events}")
    finally:
        thread.stop()
        thread.join(timeout=30)
    assert thread.errors == []
    assert thread.dropped == [("served", first.job.id)]
    assert thread.painted == [("served", second.job.id)]
    steps = [s for e, i, s in events if e == "progress" and i == first.job.id]
    assert steps == [1, 2, 3]  # stopped at the step after the build that dropped it
    assert ("dropped", first.job.id, None) in events
    assert ("painted", first.job.id, None) not in events
    with Library.open(ws.db_path, ws.cache_dir) as lib:
        assert lib.cache_get(first.job.key) is None
        assert lib.cache_get(second.job.key) is not None
