"""The command line: new-story, schema, workspace discovery, fast --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from comicgen.cli import app
from comicgen.story import check_story, load_story
from comicgen.workspace import CONFIG_NAME, Workspace

runner = CliRunner()


def run(*args: str, cwd: Path | None = None):
    if cwd is not None:
        import os

        old = Path.cwd()
        os.chdir(cwd)
        try:
            return runner.invoke(app, list(args))
        finally:
            os.chdir(old)
    return runner.invoke(app, list(args))


def test_help_imports_no_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from comicgen.cli import app\n"
        "for args in (['--help'], ['render', '--help'], ['characters', '--help']):\n"
        "    r = CliRunner().invoke(app, args)\n"
        "    assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'PIL') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_new_story_creates_workspace_and_never_overwrites(tmp_path):
    ws_dir = tmp_path / "comic"
    result = run("new-story", "first", "--dir", str(ws_dir), "--title", "My First")
    assert result.exit_code == 0, result.output
    story = ws_dir / "stories" / "first.yaml"
    assert (ws_dir / CONFIG_NAME).is_file() and story.is_file()
    text = story.read_text()
    assert text.startswith("# yaml-language-server: $schema=story.schema.json\n")
    schema = json.loads((ws_dir / "stories" / "story.schema.json").read_text())
    assert "pages" in schema["properties"]
    loaded = load_story(story)
    check_story(loaded, [], None)
    assert loaded.story.title == "My First"

    story.write_text(text + "# my edits\n")
    again = run("new-story", "first", "--dir", str(ws_dir))
    assert again.exit_code == 2
    assert "already exists" in again.output
    assert story.read_text().endswith("# my edits\n")


def test_new_story_uses_library_characters(tmp_path):
    ws = Workspace.create(tmp_path / "w")
    (ws.characters_dir / "pip.yaml").write_text("name: Pip\ndescription: a red circle\n")
    (ws.characters_dir / "bo.yaml").write_text("name: Bo\ndescription: a square\n")
    result = run("new-story", "duo", cwd=ws.root)
    assert result.exit_code == 0, result.output
    loaded = load_story(ws.stories_dir / "duo.yaml")
    check_story(loaded, ["Pip", "Bo"], None)
    names = {c.name for _, _, _, p in loaded.story.panels() for c in p.characters}
    assert names == {"bo", "pip"}


def test_workspace_found_by_walking_up(tmp_path):
    ws = Workspace.create(tmp_path / "w")
    deep = ws.root / "stories" / "a" / "b"
    deep.mkdir(parents=True)
    assert Workspace.find(deep).root == ws.root
    result = run("new-story", "x", cwd=tmp_path)
    assert result.exit_code == 2
    assert "no comicgen workspace" in result.output


def test_env_var_names_the_workspace(tmp_path, monkeypatch):
    ws = Workspace.create(tmp_path / "w")
    monkeypatch.setenv("COMICGEN_WORKSPACE", str(ws.root))
    assert Workspace.find().root == ws.root


def test_bad_config_is_one_line(tmp_path):
    ws = Workspace.create(tmp_path / "w")
    ws.config_path.write_text("[render]\nstepz = 3\n")
    result = run("new-story", "x", cwd=ws.root)
    assert result.exit_code == 2
    assert "comicgen.toml:2: render.stepz: unknown setting 'stepz'" in result.output
    assert "Traceback" not in result.output


def test_schema_command_prints_json():
    result = run("schema")
    assert result.exit_code == 0
    assert json.loads(result.output)["title"] == "comicgen story"


@pytest.mark.parametrize("name", ["../evil", "a/b"])
def test_new_story_name_stays_in_stories(tmp_path, name):
    ws = Workspace.create(tmp_path / "w")
    result = run("new-story", name, cwd=ws.root)
    created = list(ws.stories_dir.glob("*.yaml"))
    assert all(p.parent == ws.stories_dir for p in created)
    assert result.exit_code in (0, 2)
