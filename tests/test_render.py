"""End to end: a two-page story rendered with a tiny model, then rendered again."""

from __future__ import annotations

import re

import pytest
from PIL import Image
from typer.testing import CliRunner

from comicgen.cli import app
from comicgen.workspace import Workspace
from tests.helpers import make_sheet
from tests.support.tiny import TINY

STORY = """\
title: Two Pages
author: Tester
pages:
  - panels:
      - prompt: "{pip} on the left, grass, day sky"
        characters: [{name: pip, position: left}]
        caption: It began.
        dialogue:
          - {speaker: pip, text: "Hello!"}
        shape: wide
      - prompt: a house, night sky
  - panels:
      - prompt: a tree, sand
        caption: The end.
"""


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    ws = Workspace.create(tmp_path / "comic")
    ws.config_path.write_text(
        f"[model]\nname = '{TINY}'\n[render]\nsteps = 2\n[page]\ndpi = 96\n", encoding="utf-8"
    )
    make_sheet(ws.characters_dir / "pip", "red")
    (ws.characters_dir / "pip.yaml").write_text(
        "name: Pip\ndescription: a red circle character\n", encoding="utf-8"
    )
    (ws.stories_dir / "two.yaml").write_text(STORY, encoding="utf-8")
    return Workspace.load(ws.root)


def render(ws: Workspace, *args: str):
    result = CliRunner().invoke(
        app, ["render", str(ws.stories_dir / "two.yaml"), "--workspace", str(ws.root), *args]
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_render_two_pages_then_reuse_then_repaint_one(workspace):
    out = render(workspace)
    assert "3 panels painted, 0 reused" in out
    build = workspace.build_dir / "two"
    for name in ("index.html", "page-01.html", "page-02.html", "page-01.png", "page-02.png"):
        assert (build / name).is_file(), name
    assert sorted(p.name for p in (build / "panels").glob("*.png")) == [
        "p01-1.png",
        "p01-2.png",
        "p02-1.png",
    ]
    # every image an HTML page references exists
    for page in build.glob("*.html"):
        for src in re.findall(r'<img[^>]+src="([^"]+)"', page.read_text(encoding="utf-8")):
            assert (build / src).is_file(), f"{page.name} -> {src}"
    # the PNG page has the size of the layout geometry (96 dpi: 1 px per CSS px)
    from comicgen.layout import layout_book
    from comicgen.library import Library
    from comicgen.render import build_book, plan

    with Library.open(workspace.db_path, workspace.cache_dir) as lib:
        the_plan = plan(workspace, workspace.stories_dir / "two.yaml", lib)
        book, skipped = build_book(the_plan, build, lib)
    assert skipped == 0
    geometry = layout_book(book, the_plan.page)
    first = geometry.pages[0]
    with Image.open(build / "page-01.png") as png:
        assert png.size == (round(first.width), round(first.height))

    # a second render paints nothing
    assert "0 panels painted, 3 reused" in render(workspace)

    # editing one prompt repaints exactly that panel
    story = workspace.stories_dir / "two.yaml"
    story.write_text(story.read_text().replace("a tree, sand", "a tree, snow"))
    assert "1 panel painted, 2 reused" in render(workspace)


def test_render_a_part_only(workspace):
    out = render(workspace, "--panel", "2.1")
    assert "1 panel painted, 0 reused, 2 not painted yet" in out
    out = render(workspace, "--pages", "1")
    assert "2 panels painted, 0 reused" in out


def test_panel_seed_is_independent_of_other_panels(workspace):
    """Painting one panel alone gives the same pixels as painting the whole story."""
    render(workspace, "--panel", "2.1")
    alone = (workspace.build_dir / "two" / "panels" / "p02-1.png").read_bytes()
    story = workspace.stories_dir / "two.yaml"
    story.write_text(story.read_text().replace("a house, night sky", "a house, snow"))
    render(workspace)
    assert (workspace.build_dir / "two" / "panels" / "p02-1.png").read_bytes() == alone


def test_unknown_character_is_one_line(workspace):
    story = workspace.stories_dir / "two.yaml"
    story.write_text(story.read_text().replace("[{name: pip,", "[{name: pop,"))
    result = CliRunner().invoke(app, ["render", str(story), "--workspace", str(workspace.root)])
    assert result.exit_code == 2
    assert "stories/two.yaml:6:" in result.output
    assert "unknown character 'pop' — did you mean 'Pip'?" in result.output
    assert not (workspace.build_dir / "two").exists()
