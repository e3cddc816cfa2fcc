"""Two renders at once on one workspace, and a character added during a render."""

from __future__ import annotations

import re
import time

from tests.helpers import (
    cached_panel_files,
    comicgen_process,
    half_written,
    integrity,
    long_story,
    make_sheet,
    tiny_workspace,
)


def painted_reused(out: str) -> tuple[int, int]:
    match = re.search(r"(\d+) panels? painted, (\d+) reused", out)
    assert match, out
    return int(match.group(1)), int(match.group(2))


def test_two_renders_of_the_same_story_share_the_work(tmp_path):
    ws = tiny_workspace(tmp_path / "w", steps=6)
    (ws.stories_dir / "s.yaml").write_text(long_story(3), encoding="utf-8")
    first = comicgen_process(ws, "render", "stories/s.yaml")
    second = comicgen_process(ws, "render", "stories/s.yaml")
    out1, _ = first.communicate(timeout=300)
    out2, _ = second.communicate(timeout=300)
    assert first.returncode == 0, out1
    assert second.returncode == 0, out2
    assert "database is locked" not in out1 + out2
    p1, _ = painted_reused(out1)
    p2, _ = painted_reused(out2)
    assert p1 + p2 == 9  # no panel painted twice, none lost
    assert len(cached_panel_files(ws)) == 9
    assert integrity(ws) == "ok"
    assert half_written(ws.root / "build") == []


def test_two_different_stories_and_a_character_add_at_once(tmp_path):
    ws = tiny_workspace(tmp_path / "w", steps=6)
    (ws.stories_dir / "a.yaml").write_text(long_story(2), encoding="utf-8")
    (ws.stories_dir / "b.yaml").write_text(long_story(2).replace("scene", "view"), "utf-8")
    sheet = make_sheet(tmp_path / "bo", "blue")
    a = comicgen_process(ws, "render", "stories/a.yaml")
    b = comicgen_process(ws, "render", "stories/b.yaml")
    deadline = time.monotonic() + 120
    while not cached_panel_files(ws) and time.monotonic() < deadline:
        time.sleep(0.05)
    add = comicgen_process(
        ws,
        "characters",
        "add",
        "Bo",
        "--image",
        str(sheet[0]),
        "--image",
        str(sheet[1]),
        "--description",
        "a blue circle",
    )
    outs = [p.communicate(timeout=300)[0] for p in (a, b, add)]
    assert [p.returncode for p in (a, b, add)] == [0, 0, 0], outs
    assert painted_reused(outs[0]) == (6, 0)
    assert painted_reused(outs[1]) == (6, 0)
    listing = comicgen_process(ws, "characters", "list").communicate(timeout=60)[0]
    assert "Bo" in listing and "Pip" in listing
    assert integrity(ws) == "ok"
