"""Round-trip seed edits of a hand-written story, takes of a panel, and `pick`."""

from __future__ import annotations

import difflib
import json

import pytest
from typer.testing import CliRunner

from comicgen.cli import app
from comicgen.errors import ComicgenError
from comicgen.story import load_story
from comicgen.story_edit import set_panel_seed
from tests.helpers import tiny_workspace

STORY = """\
# yaml-language-server: $schema=story.schema.json
# A story written by hand: every comment, quote and blank line must survive.
title:   "Takes"      # odd spacing on purpose
pages:
  - layout: [1, 2]    # rows

    panels:
      - prompt: "{pip} on the left, grass, day sky"   # the opening
        characters: [{name: pip, position: left}]
        # what the narrator says
        caption: 'It began.'
        dialogue:
          - {speaker: pip, text: "Hello!"}   # first words
      - {prompt: 'a house, night sky',   caption: "flow style"}
      - prompt: >
          a tree,
          sand
        seed: 12   # an old seed
  - panels:
      - id: last
        prompt: a road
"""


def changed_lines(old: str, new: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


@pytest.mark.parametrize(
    ("panel", "expected"),
    [
        ("1.1", ["+        seed: 77"]),  # inserted after the caption, the last one-line value
        (
            "1.2",
            [
                "-      - {prompt: 'a house, night sky',   caption: \"flow style\"}",
                "+      - {prompt: 'a house, night sky',   caption: \"flow style\", seed: 77}",
            ],
        ),
        ("1.3", ["-        seed: 12   # an old seed", "+        seed: 77   # an old seed"]),
        ("last", ["+        seed: 77"]),  # by id
        ("2.1", ["+        seed: 77"]),  # by place, though it has an id
    ],
)
def test_set_panel_seed_changes_only_the_seed_line(tmp_path, panel, expected):
    path = tmp_path / "story.yaml"
    path.write_bytes(STORY.encode())
    path.chmod(0o640)
    set_panel_seed(path, panel, 77)
    new = path.read_text(encoding="utf-8")
    assert changed_lines(STORY, new) == expected
    assert len(new.splitlines()) - len(STORY.splitlines()) == (0 if "-" in expected[0][:1] else 1)
    assert (path.stat().st_mode & 0o777) == 0o640
    story = load_story(path).story
    seeds = {p.id: p.seed for _, _, _, p in story.panels()}
    wanted = {"1.1": None, "1.2": None, "1.3": 12, "last": None}
    wanted["last" if panel in ("2.1", "last") else panel] = 77
    assert seeds == wanted
    assert [f.name for f in tmp_path.iterdir()] == ["story.yaml"]  # no temp file left


def test_set_panel_seed_keeps_crlf_and_a_missing_final_newline(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"title: x\r\npages:\r\n- panels:\r\n  - prompt: a\r\n    caption: b")
    set_panel_seed(path, "1.1", 5)
    assert path.read_bytes() == (
        b"title: x\r\npages:\r\n- panels:\r\n  - prompt: a\r\n    caption: b\r\n    seed: 5"
    )


def test_set_panel_seed_errors_are_one_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(STORY, encoding="utf-8")
    with pytest.raises(ComicgenError, match="no panel '9.9'"):
        set_panel_seed(path, "9.9", 1)
    with pytest.raises(ComicgenError, match="out of range"):
        set_panel_seed(path, "1.1", -1)
    path.write_text("title: [unclosed\n", encoding="utf-8")
    with pytest.raises(ComicgenError, match=r"s\.yaml:2:1"):
        set_panel_seed(path, "1.1", 1)
    assert path.read_text(encoding="utf-8") == "title: [unclosed\n"


def test_takes_then_pick(tmp_path):
    ws = tiny_workspace(tmp_path / "ws")
    story = ws.stories_dir / "takes.yaml"
    story.write_text(STORY, encoding="utf-8")
    runner = CliRunner()
    args = ["render", "takes", "--panel", "1.2", "--takes", "3", "--workspace", str(ws.root)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "3 takes painted, 0 reused" in result.output
    folder = ws.build_dir / "takes" / "takes"
    record = json.loads((folder / "1-2.json").read_text())
    seeds = [t["seed"] for t in record["takes"]]
    assert record["panel"] == "1.2" and len(set(seeds)) == 3
    html = (folder / "1-2.html").read_text()
    assert html.count('data-take="') == 3 and "Content-Security-Policy" in html
    for n in (1, 2, 3):
        assert (folder / f"1-2-{n}.png").is_file()
    from PIL import Image

    assert Image.open(folder / "1-2.png").width > 3 * 64
    # the takes are in the panel cache: asking again paints nothing
    result = runner.invoke(app, args)
    assert "0 takes painted, 3 reused" in result.output, result.output

    result = runner.invoke(app, ["pick", "1.2", "3", "--workspace", str(ws.root)])
    assert result.exit_code == 0, result.output
    assert changed_lines(STORY, story.read_text())[1].endswith(f"seed: {seeds[2]}}}")
    # the picked take is the panel now: rendering it reuses the take
    result = runner.invoke(app, ["render", "takes", "--panel", "1.2", "--workspace", str(ws.root)])
    assert "0 panels painted, 1 reused" in result.output, result.output

    result = runner.invoke(app, ["pick", "1.2", "7", "--workspace", str(ws.root)])
    assert result.exit_code == 2 and "has no take 7" in result.output
    result = runner.invoke(app, ["render", "takes", "--takes", "2", "--workspace", str(ws.root)])
    assert result.exit_code == 2 and "--takes needs --panel" in result.output
