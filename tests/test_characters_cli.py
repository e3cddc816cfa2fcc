"""``comicgen characters …`` and ``comicgen doctor`` through typer's CliRunner."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from comicgen.cli import app
from comicgen.library.migrations import SCHEMA_VERSION
from comicgen.workspace import Workspace
from tests.support.tiny import TINY

runner = CliRunner()


def figure(path: Path, colour=(200, 30, 30)) -> Path:
    img = Image.new("RGB", (48, 48), (255, 255, 255))
    ImageDraw.Draw(img).ellipse((12, 12, 36, 36), fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@pytest.fixture
def ws(tmp_path) -> Workspace:
    workspace = Workspace.create(tmp_path / "ws")
    config = workspace.config_path.read_text()
    workspace.config_path.write_text(config.replace('"bundled:toyworld"', f"'{TINY}'"))
    return Workspace.load(workspace.root)


def cli(ws: Workspace, *args: str, input: str | None = None):
    return runner.invoke(app, [*args, "--workspace", str(ws.root)], input=input)


def error_line(result) -> str:
    """The single error line of a failed command (and no traceback)."""
    text = result.output.strip()
    assert "Traceback" not in text
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_add_list_show_remove(ws, tmp_path):
    a, b = figure(tmp_path / "a.png"), figure(tmp_path / "b.png", (0, 0, 200))
    result = cli(
        ws,
        "characters",
        "add",
        "Pip",
        "-i",
        str(a),
        "--image",
        str(b),
        "-d",
        "a small red creature",
    )
    assert result.exit_code == 0, result.output
    assert "added character Pip with 2 images" in result.output

    result = cli(ws, "characters", "list")
    assert result.exit_code == 0
    assert "Pip" in result.output and "a small red creature" in result.output

    result = cli(ws, "characters", "show", "pip")
    assert result.exit_code == 0
    assert "48x48" in result.output and "border" in result.output
    assert "a small red creature" in result.output

    result = cli(ws, "characters", "remove", "PIP", input="n\n")
    assert result.exit_code == 1
    assert "nothing removed" in result.output
    result = cli(ws, "characters", "remove", "PIP", input="y\n")
    assert result.exit_code == 0 and "removed character Pip" in result.output
    assert "no characters yet" in cli(ws, "characters", "list").output


def test_remove_with_yes_does_not_ask(ws, tmp_path):
    cli(ws, "characters", "add", "Pip", "-i", str(figure(tmp_path / "a.png")))
    result = cli(ws, "characters", "remove", "pip", "--yes")
    assert result.exit_code == 0 and "removed" in result.output


def test_duplicate_needs_replace(ws, tmp_path):
    a = figure(tmp_path / "a.png")
    assert cli(ws, "characters", "add", "Pip", "-i", str(a)).exit_code == 0
    result = cli(ws, "characters", "add", "pip", "-i", str(a))
    assert result.exit_code == 2
    line = error_line(result)
    assert "character 'Pip' already exists" in line and "--replace" in line
    result = cli(ws, "characters", "add", "pip", "-i", str(a), "-i", str(a), "--replace")
    assert result.exit_code == 0 and "replaced character pip with 2 images" in result.output


def test_bad_image_is_one_line_and_adds_nothing(ws, tmp_path):
    good = figure(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"GIF89a broken")
    result = cli(ws, "characters", "add", "Pip", "-i", str(good), "-i", str(bad))
    assert result.exit_code == 2
    assert str(bad) in error_line(result)
    assert "no characters yet" in cli(ws, "characters", "list").output


def test_unknown_character_suggests(ws, tmp_path):
    cli(ws, "characters", "add", "alice", "-i", str(figure(tmp_path / "a.png")))
    for command in ("show", "remove", "export"):
        result = cli(ws, "characters", command, "alise")
        assert result.exit_code == 2
        assert "unknown character 'alise' — did you mean 'alice'?" in error_line(result)


def test_sheet_and_grid(ws, tmp_path):
    sheet = Image.new("RGB", (90, 30), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(3):
        draw.rectangle((30 * i + 8, 8, 30 * i + 20, 22), fill=(80 * i, 50, 200))
    sheet.save(tmp_path / "sheet.png")
    result = cli(
        ws, "characters", "add", "Bo", "--sheet", str(tmp_path / "sheet.png"), "--grid", "3x1"
    )
    assert result.exit_code == 0, result.output
    assert "with 3 images" in result.output
    result = cli(
        ws, "characters", "add", "Cy", "--sheet", str(tmp_path / "sheet.png"), "--grid", "three"
    )
    assert result.exit_code == 2 and "--grid 'three'" in error_line(result)


def test_hostile_name_is_printed_as_text(ws, tmp_path):
    name = "[bold red]<script>{{ x }}"
    result = cli(ws, "characters", "add", name, "-i", str(figure(tmp_path / "a.png")))
    assert result.exit_code == 0, result.output
    assert name in result.output
    assert name in cli(ws, "characters", "list").output
    result = cli(ws, "characters", "export", name, "--to", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    (exported,) = (tmp_path / "out").glob("*.yaml")
    assert yaml.safe_load(exported.read_text(encoding="utf-8"))["name"] == name


def test_export_then_import_in_another_workspace(ws, tmp_path):
    cli(ws, "characters", "add", "Pip", "-i", str(figure(tmp_path / "a.png")), "-d", "red")
    result = cli(ws, "characters", "export", "pip")
    assert result.exit_code == 0, result.output
    assert "characters/Pip.yaml" in result.output
    assert (ws.characters_dir / "Pip" / "01.png").is_file()
    again = cli(ws, "characters", "export", "pip")
    assert again.exit_code == 2 and "--force" in error_line(again)
    assert cli(ws, "characters", "export", "pip", "--force").exit_code == 0

    other = Workspace.create(tmp_path / "other")
    result = cli(other, "characters", "import", str(ws.characters_dir))
    assert result.exit_code == 0, result.output
    assert "imported 1 character: Pip" in result.output
    result = cli(other, "characters", "import", str(ws.characters_dir))
    assert "nothing new to import" in result.output
    show = cli(other, "characters", "show", "pip")
    assert "red" in show.output


def test_import_defaults_to_the_workspace_folder_and_update(ws, tmp_path):
    figure(ws.characters_dir / "pip" / "front.png")
    (ws.characters_dir / "pip.yaml").write_text("name: Pip\ndescription: one\n")
    assert "imported 1 character: Pip" in cli(ws, "characters", "import").output
    (ws.characters_dir / "pip.yaml").write_text("name: Pip\ndescription: two\n")
    assert "nothing new" in cli(ws, "characters", "import").output
    assert "imported 1" in cli(ws, "characters", "import", "--update").output
    assert "two" in cli(ws, "characters", "show", "Pip").output


def test_import_outside_needs_the_flag(ws, tmp_path):
    figure(tmp_path / "secret.png")
    (ws.characters_dir / "pip.yaml").write_text("name: Pip\nimages: [../../secret.png]\n")
    result = cli(ws, "characters", "import")
    assert result.exit_code == 2
    line = error_line(result)
    assert "characters/pip.yaml:2:" in line and "--allow-outside" in line
    result = cli(ws, "characters", "import", "--allow-outside")
    assert result.exit_code == 0 and "Pip" in result.output


def test_help_texts(ws):
    result = runner.invoke(app, ["characters", "--help"])
    assert result.exit_code == 0
    for command in ("add", "list", "show", "remove", "export", "import"):
        assert command in result.output
    result = runner.invoke(app, ["characters", "add", "--help"])
    assert "--sheet" in result.output and "--replace" in result.output


# -- doctor --------------------------------------------------------------------------------


def test_doctor_on_a_healthy_workspace(ws, tmp_path):
    cli(ws, "characters", "add", "Pip", "-i", str(figure(tmp_path / "a.png")))
    result = cli(ws, "doctor")
    assert result.exit_code == 0, result.output
    for check in (
        "config",
        "database integrity",
        "schema version",
        "character images",
        "panel cache",
        "torch",
        "device",
        "model",
    ):
        assert check in result.output
    assert "FAIL" not in result.output
    assert "all checks passed" in result.output


def test_doctor_reports_cache_problems_and_damaged_images(ws, tmp_path):
    from comicgen.library import Library

    cli(ws, "characters", "add", "Pip", "-i", str(figure(tmp_path / "a.png")))
    with Library.open(ws.db_path, ws.cache_dir) as lib:
        lib.cache_put("ab" * 32, b"png").unlink()
    stray = ws.cache_dir / "panels" / "cd" / "stray.png"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"x")
    result = cli(ws, "doctor")
    assert result.exit_code == 0, result.output  # warnings only
    assert "lost" in result.output and "stray.png" in result.output

    conn = sqlite3.connect(ws.db_path)
    conn.execute("UPDATE reference_image SET png = X'00'")
    conn.commit()
    conn.close()
    result = cli(ws, "doctor")
    assert result.exit_code == 1
    assert "does not decode" in result.output and "1 check failed" in result.output


def test_doctor_fails_on_a_newer_database_and_a_missing_model(ws, tmp_path):
    cli(ws, "characters", "list")  # creates the database
    conn = sqlite3.connect(ws.db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    config = ws.config_path.read_text().replace(f"'{TINY}'", '"nobody/no-such-model"')
    ws.config_path.write_text(config)
    result = cli(ws, "doctor")
    assert result.exit_code == 1
    assert "newer than this comicgen" in result.output
    assert "nobody/no-such-model" in result.output
    assert "2 checks failed" in result.output


def test_doctor_reports_a_broken_config(ws):
    ws.config_path.write_text("[model\nname = 1\n")
    result = cli(ws, "doctor")
    assert result.exit_code == 1
    assert "TOML syntax error" in result.output


def test_doctor_without_a_workspace_is_one_line(tmp_path):
    result = runner.invoke(app, ["doctor", "--workspace", str(tmp_path)])
    assert result.exit_code == 2
    assert "no comicgen workspace" in error_line(result)
