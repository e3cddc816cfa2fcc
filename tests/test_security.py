"""Hostile stories and files: nothing outside the workspace is read or written, and
every piece of user text is shown as text."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from comicgen.cli import app
from tests.helpers import make_sheet, tiny_workspace

HOSTILE = "<script>alert(1)</script> {{ 7*7 }} {% raw %} \u05e9\u05dc\u05d5\u05dd \U0001f600"


@pytest.fixture
def ws(tmp_path):
    return tiny_workspace(tmp_path / "w")


def run(ws, *args):
    return CliRunner().invoke(app, [*args, "--workspace", str(ws.root)])


def test_story_outside_workspace_refused_unless_allowed(ws, tmp_path):
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text("title: Out\npages:\n  - panels:\n      - prompt: a tree\n")
    result = run(ws, "render", str(outside))
    assert result.exit_code == 2
    assert "outside the workspace" in result.output and "--allow-outside" in result.output
    assert not ws.build_dir.exists()
    result = run(ws, "render", str(outside), "--allow-outside")
    assert result.exit_code == 0, result.output
    assert (ws.build_dir / "elsewhere" / "index.html").is_file()


def test_story_symlink_out_of_workspace_refused(ws, tmp_path):
    outside = tmp_path / "secret.yaml"
    outside.write_text("title: Out\npages:\n  - panels:\n      - prompt: a tree\n")
    os.symlink(outside, ws.stories_dir / "link.yaml")
    result = run(ws, "render", "stories/link.yaml")
    assert result.exit_code == 2
    assert "outside the workspace" in result.output


@pytest.mark.parametrize("image", ["../../../etc/passwd", "/etc/passwd"])
def test_character_file_pointing_outside_refused(ws, image):
    (ws.characters_dir / "evil.yaml").write_text(
        f"name: Evil\ndescription: x\nimages: [{image}]\n", encoding="utf-8"
    )
    (ws.stories_dir / "s.yaml").write_text(
        "title: S\npages:\n  - panels:\n      - prompt: a tree\n", encoding="utf-8"
    )
    result = run(ws, "render", "stories/s.yaml")
    assert result.exit_code == 2, result.output
    assert "evil.yaml" in result.output and "outside" in result.output
    assert "Traceback" not in result.output


def test_hostile_text_rendered_as_text(ws):
    name = "Zoë <b>&amp;</b> ../../x"
    sheet = make_sheet(ws.root / "sheets", "green")
    result = run(
        ws,
        "characters",
        "add",
        name,
        "--image",
        str(sheet[0]),
        "--description",
        "a green circle character",
    )
    assert result.exit_code == 0, result.output
    title = HOSTILE.replace('"', "")
    (ws.stories_dir / "evil.yaml").write_text(
        f'title: "{title}"\n'
        "pages:\n  - panels:\n"
        f'      - prompt: "a tree {HOSTILE}"\n'
        f'        caption: "{HOSTILE}"\n'
        f"        characters: ['{name}']\n"
        f"        dialogue:\n"
        f"          - {{speaker: '{name}', text: \"{HOSTILE} {'W' * 300}\"}}\n",
        encoding="utf-8",
    )
    result = run(ws, "render", "stories/evil.yaml")
    assert result.exit_code == 0, result.output
    out = ws.build_dir / "evil"
    html = (out / "page-01.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "{{ 7*7 }}" in html  # template syntax in text is not evaluated
    assert "<b>&amp;</b>" not in html
    assert (out / "page-01.png").is_file() and (out / "evil.cbz").is_file()
    # nothing was written outside build/<story>/ and the cache
    written = {p.relative_to(ws.root).parts[0] for p in ws.root.rglob("*") if p.is_file()}
    assert written <= {
        "comicgen.toml",
        "stories",
        "characters",
        "build",
        ".cache",
        "comicgen.db",
        "comicgen.db-wal",
        "comicgen.db-shm",
        "sheets",
    }
    assert {p.name for p in ws.build_dir.iterdir()} == {"evil"}


def test_story_name_cannot_escape_build(ws):
    (ws.stories_dir / "..yaml").write_text(
        "title: Dots\npages:\n  - panels:\n      - prompt: a tree\n", encoding="utf-8"
    )
    result = run(ws, "render", "stories/..yaml")
    assert result.exit_code == 0, result.output
    assert [p.parent for p in ws.build_dir.rglob("index.html")] == [ws.build_dir / "story"]
