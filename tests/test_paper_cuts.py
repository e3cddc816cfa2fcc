"""The small failures a new user hit (issue 17, item 6), one test each."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from comicgen.cli import app
from comicgen.errors import ComicgenError
from tests.helpers import tiny_workspace


@pytest.fixture
def ws(tmp_path):
    return tiny_workspace(tmp_path / "w")


def run(*args: str, cwd=None, monkeypatch=None):
    if cwd is not None and monkeypatch is not None:
        monkeypatch.chdir(cwd)
    return CliRunner().invoke(app, list(args))


def error_lines(result) -> list[str]:
    assert "Traceback" not in result.output
    return [line for line in result.output.splitlines() if line.startswith("error:")]


STORY = "title: T\npages:\n  - panels:\n      - prompt: a tree, grass\n      - prompt: a house\n"


# -- the device is checked before anything is loaded ------------------------------------


def test_an_unknown_device_is_one_line_before_loading(ws):
    (ws.stories_dir / "s.yaml").write_text(STORY, encoding="utf-8")
    result = run("render", "stories/s.yaml", "--device", "tpu", "-w", str(ws.root))
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result)
    assert "'tpu' is not a device" in line and "cuda" in line
    assert "loading model" not in result.output
    assert not (ws.build_dir / "s").exists()


def test_a_config_device_that_does_not_exist_names_its_line(ws):
    text = ws.config_path.read_text(encoding="utf-8")
    ws.config_path.write_text(text.replace("[model]\n", '[model]\ndevice = "gpu"\n'), "utf-8")
    (ws.stories_dir / "s.yaml").write_text(STORY, encoding="utf-8")
    result = run("render", "stories/s.yaml", "-w", str(ws.root))
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result)
    assert "comicgen.toml:2: model.device: 'gpu' is not a device" in line, line


# -- config errors read like story errors ------------------------------------------------


def test_config_errors_name_line_field_and_what_is_allowed(ws, monkeypatch):
    base = ws.config_path.read_text(encoding="utf-8")
    ws.config_path.write_text(base + '[render]\nguidance = "lots"\n', "utf-8")
    result = run("doctor", cwd=ws.root, monkeypatch=monkeypatch)
    assert "comicgen.toml" in result.output
    ws.config_path.write_text('[render]\nsteps = 0\nguidance = "lots"\n', "utf-8")
    result = run("render", "x", cwd=ws.root, monkeypatch=monkeypatch)
    lines = error_lines(result)
    assert lines == [
        "error: comicgen.toml:2: render.steps: should be greater than or equal to 1 — "
        "Denoising steps per panel (from 1 to 200)",
        "error: comicgen.toml:3: render.guidance: expected a number — "
        "Classifier-free guidance scale (from 0.0 to 30.0)",
    ], result.output
    assert "Input should" not in result.output
    ws.config_path.write_text("[render]\nsteps = twenty\n", "utf-8")
    (line,) = error_lines(run("render", "x", cwd=ws.root, monkeypatch=monkeypatch))
    assert line.startswith("error: comicgen.toml:2:9: TOML syntax error: invalid value"), line
    assert "(at line" not in line and 'device = "cpu"' in line


# -- a story with several problems shows them all, in file order --------------------------


def test_every_problem_of_a_story_is_shown_in_line_order(ws):
    text = (
        "title: T\n"
        "pages:\n"
        "  - panels:\n"
        "      - prompt: a tree\n"
        "        seed: -1\n"  # line 5
        "      - prompt: a house\n"
        "        shape: round\n"  # line 7
        "  - panels:\n"
        "      - promt: a cat\n"  # line 9 (and no 'required prompt' besides)
        "      - prompt: '{nobody} waves'\n"  # an unknown character: checked after
    )
    (ws.stories_dir / "s.yaml").write_text(text, encoding="utf-8")
    result = run("render", "stories/s.yaml", "-w", str(ws.root))
    assert result.exit_code == 2
    lines = error_lines(result)
    assert [line.split(":")[2] for line in lines] == ["5", "7", "9"], result.output
    assert "unknown field 'promt'" in lines[2] and "missing" not in result.output

    fixed = text.replace("seed: -1", "seed: 1").replace("round", "wide").replace("promt", "prompt")
    fixed = fixed.replace("a cat\n", "'{nobody} sits'\n        characters: [ghost]\n")
    (ws.stories_dir / "s.yaml").write_text(fixed, encoding="utf-8")
    lines = error_lines(run("render", "stories/s.yaml", "-w", str(ws.root)))
    assert len(lines) == 3 and all("unknown character" in line for line in lines), lines
    assert [int(line.split(":")[2]) for line in lines] == sorted(
        int(line.split(":")[2]) for line in lines
    )


def test_problems_beyond_the_limit_are_counted():
    from comicgen.errors import LocatedError, Problems

    errors = [LocatedError("bad", file="s.yaml", line=n) for n in range(25, 0, -1)]
    text = Problems(errors).line().splitlines()
    assert len(text) == Problems.limit + 1
    assert text[0].startswith("s.yaml:1:") and text[-1] == "… and 15 more problems"


# -- --pages that select nothing -----------------------------------------------------------


def test_pages_backwards_is_refused(ws):
    from comicgen.jobs import parse_pages

    with pytest.raises(ComicgenError, match="runs backwards"):
        parse_pages("3-1", 4)
    assert parse_pages("1-3", 4) == {1, 2, 3}
    (ws.stories_dir / "s.yaml").write_text(STORY * 1, encoding="utf-8")
    result = run("render", "stories/s.yaml", "--pages", "1-0", "-w", str(ws.root))
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert "--pages '1-0'" in line and "write 0-1" in line
    assert not (ws.build_dir / "s").exists()  # nothing rewritten


# -- words -----------------------------------------------------------------------------------


def test_one_panel_is_singular():
    from rich.console import Console

    from comicgen.commands.render import RichReporter

    out = Console(record=True, width=100)
    with RichReporter(out) as reporter:
        reporter.planned(1, 1)
    assert "1 panel: 1 to paint, 0 cached" in out.export_text()
    out = Console(record=True, width=100)
    with RichReporter(out) as reporter:
        reporter.planned(2, 0)
    assert "2 panels: 0 to paint, 2 cached" in out.export_text()


# -- help texts --------------------------------------------------------------------------------


def test_help_has_no_type_labels_and_whole_examples():
    from tests.test_docs import generate

    text = generate()
    assert "comicgen characters add" in text  # the subcommands are in it too
    for label in ("<bool>", "<list[", "<str>", "<path>", "<int"):
        assert label not in text, label
    assert '-d "a small red creature with a blue hat"' in text


# -- new-story -----------------------------------------------------------------------------


def test_new_story_prints_a_command_that_works_from_here(tmp_path, monkeypatch):
    import shlex

    from tests.support.tiny import TINY

    monkeypatch.chdir(tmp_path)
    result = run("new-story", "hello", "--dir", "w")
    assert result.exit_code == 0, result.output
    assert "created w/stories/hello.yaml" in result.output
    assert "characters add NAME" in result.output and "--workspace w" in result.output
    (command,) = [line for line in result.output.splitlines() if line.startswith("next:")]
    args = shlex.split(command.split("run", 1)[1])
    assert args[:2] == ["comicgen", "render"] and "--workspace" in args
    text = (tmp_path / "w" / "stories" / "hello.yaml").read_text(encoding="utf-8")
    for kind in ("speech", "kind: thought", "kind: shout"):
        assert kind in text, kind
    config = tmp_path / "w" / "comicgen.toml"
    config.write_text(config.read_text().replace("bundled:toyworld", TINY).replace("20", "2"))
    rendered = run(*[a for a in args[1:] if a != "--open"])
    assert rendered.exit_code == 0, rendered.output
    assert (tmp_path / "w" / "build" / "hello" / "index.html").is_file()


def test_new_story_uses_a_character_of_the_library(ws, monkeypatch):
    result = run("new-story", "pipstory", cwd=ws.stories_dir, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert "created pipstory.yaml" in result.output  # relative to where the user stands
    assert "comicgen render pipstory.yaml --open" in result.output
    assert "no characters yet" not in result.output
    text = (ws.stories_dir / "pipstory.yaml").read_text(encoding="utf-8")
    assert "{speaker: pip," in text and "kind: thought" in text and "kind: shout" in text
    rendered = run("render", "pipstory.yaml", cwd=ws.stories_dir, monkeypatch=monkeypatch)
    assert rendered.exit_code == 0, rendered.output
    assert "pages: ../build/pipstory/index.html" in rendered.output  # shown from here


# -- the end of a render -----------------------------------------------------------------------


def test_open_without_a_browser_says_so_and_extras_are_listed(ws, monkeypatch):
    import webbrowser

    (ws.stories_dir / "s.yaml").write_text(STORY, encoding="utf-8")
    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or False)
    result = run(
        "render",
        "stories/s.yaml",
        "--pdf",
        "--strip",
        "--open",
        cwd=ws.root,
        monkeypatch=monkeypatch,
    )
    assert result.exit_code == 0, result.output
    assert opened == [(ws.build_dir / "s" / "index.html").resolve().as_uri()]
    assert "no web browser found" in result.output and opened[0] in result.output
    assert "pages: build/s/index.html" in result.output
    (also,) = [line for line in result.output.splitlines() if line.startswith("also: ")]
    assert also == "also: build/s/s.cbz, build/s/s.pdf, build/s/s-strip.png"


# -- the bundled model's words ------------------------------------------------------------------


def test_the_bundled_model_warns_once_about_words_it_does_not_know(tmp_path):
    from comicgen.jobs import plan
    from comicgen.library import Library
    from comicgen.workspace import Workspace

    ws = Workspace.create(tmp_path / "w")  # the default model: bundled:toyworld
    text = (
        "title: T\npages:\n  - panels:\n"
        "      - prompt: a knight fights a dragon in a dark castle\n"
        "      - prompt: a red circle character on the left, wide shot, grass, day sky\n"
        "      - prompt: a dragon, night sky\n"
    )
    (ws.stories_dir / "s.yaml").write_text(text, encoding="utf-8")
    with Library.open(ws.db_path, ws.cache_dir) as lib:
        warnings = plan(ws, ws.stories_dir / "s.yaml", lib).warnings
    (warning,) = [w for w in warnings if "does not know" in w]
    assert "knight, fights, dragon, dark, castle and paints as if they were not there" in warning
    assert "MODEL_CARD.md" in warning
    assert "circle" not in warning and "grass" not in warning


def test_doctor_checks_the_stories(tmp_path, monkeypatch):
    from comicgen.doctor import FAIL, OK, WARN, run_checks
    from comicgen.workspace import Workspace

    ws = Workspace.create(tmp_path / "w")
    (ws.stories_dir / "good.yaml").write_text(
        "title: T\npages:\n  - panels:\n      - prompt: a tree, grass, day sky\n", "utf-8"
    )
    (ws.stories_dir / "odd.yaml").write_text(
        "title: T\npages:\n  - panels:\n      - prompt: a knight, grass\n", "utf-8"
    )
    (ws.stories_dir / "bad.yaml").write_text(
        "title: T\npages:\n  - panels:\n      - prompt: x\n        seed: -1\n"
        "      - prompt: y\n        characters: [nobody]\n",
        "utf-8",
    )
    checks = {c.name: c for c in run_checks(ws.root)}
    assert checks["story good"].status == OK and "1 panel" in checks["story good"].detail
    assert checks["story odd"].status == WARN and "knight" in checks["story odd"].detail
    assert checks["story bad"].status == FAIL
    assert checks["story bad"].detail.startswith("stories/bad.yaml:5:15")
    result = run("doctor", "-w", str(ws.root))
    assert result.exit_code == 1 and "story bad" in result.output


# -- characters: sheets and contact sheets ----------------------------------------------------


def test_a_grid_of_mostly_empty_cells_is_refused(ws, tmp_path):
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (256, 256), "white")
    ImageDraw.Draw(picture).ellipse((70, 60, 190, 200), fill=(200, 30, 30))
    picture.save(tmp_path / "solo.png")
    result = run(
        "characters",
        "add",
        "Solo",
        "--sheet",
        str(tmp_path / "solo.png"),
        "--grid",
        "8x8",
        "-w",
        str(ws.root),
    )
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result)
    assert "--grid 8x8" in line and "of the 64 cells are empty" in line and "--image" in line
    assert "note:" not in result.output
    listing = run("characters", "list", "-w", str(ws.root)).output
    assert "Solo" not in listing
    ok = run("characters", "add", "Solo", "--image", str(tmp_path / "solo.png"), "-w", str(ws.root))
    assert ok.exit_code == 0, ok.output


def test_characters_show_writes_a_contact_sheet_of_views_and_masks(ws, monkeypatch, tmp_path):
    import webbrowser

    from PIL import Image, ImageDraw

    for n, colour in enumerate(("red", "blue")):
        picture = Image.new("RGB", (64, 64), "white")
        ImageDraw.Draw(picture).rectangle((20, 16, 44, 56), fill=colour)
        picture.save(tmp_path / f"v{n}.png")
    add = run(
        "characters",
        "add",
        "Duo",
        "-i",
        str(tmp_path / "v0.png"),
        "-i",
        str(tmp_path / "v1.png"),
        "-w",
        str(ws.root),
    )
    assert add.exit_code == 0, add.output
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: False)
    result = run("characters", "show", "duo", "--open", cwd=ws.root, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert "views and masks: build/characters/Duo.png" in result.output
    assert "no web browser found" in result.output
    sheet = Image.open(ws.build_dir / "characters" / "Duo.png").convert("RGB")
    w, h = sheet.size
    top = [sheet.getpixel((x, h // 4)) for x in range(w)]  # the views, side by side
    bottom = [sheet.getpixel((x, 3 * h // 4)) for x in range(w)]  # each one's mask
    assert top.index((255, 0, 0)) < w // 2 < top.index((0, 0, 255))
    assert (128, 128, 128) in bottom and (255, 0, 0) in bottom  # background greyed out
