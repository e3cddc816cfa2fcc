"""Bad story input: one clear line naming file:line:column, exit 2, nothing written."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from comicgen.cli import app
from tests.helpers import tiny_workspace
from tests.support.tiny import TINY

OK_PANEL = "      - prompt: a tree, grass\n"


@pytest.fixture
def ws(tmp_path):
    return tiny_workspace(tmp_path / "w")


def render_text(ws, text: str | bytes, name: str = "bad.yaml"):
    path = ws.stories_dir / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["render", str(path), "--workspace", str(ws.root)])
    return result


def assert_one_line_error(ws, result, where: str, *words: str):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"error: stories/bad.yaml:{where}"), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert not (ws.build_dir / "bad").exists()
    assert not (ws.cache_dir / "panels").exists() or not any((ws.cache_dir / "panels").iterdir())


def story(*panel_lines: str, page_extra: str = "") -> str:
    return (
        "title: Bad\npages:\n  - "
        + (page_extra + "\n    " if page_extra else "")
        + ("panels:\n" + "".join(panel_lines))
    )


def test_yaml_syntax_error(ws):
    result = render_text(ws, "title: Bad\npages:\n  - panels:\n      - prompt: [a, b\n")
    assert_one_line_error(ws, result, "5:", "YAML syntax error")


def test_wrong_type(ws):
    result = render_text(ws, story("      - prompt: a tree\n        seed: seven\n"))
    assert_one_line_error(ws, result, "5:15", "pages[0].panels[0].seed", "whole number")


def test_unknown_field_did_you_mean(ws):
    result = render_text(ws, story("      - prompt: a tree\n        captoin: Hi\n"))
    assert_one_line_error(ws, result, "5:9", "unknown field 'captoin'", "did you mean 'caption'?")


def test_unknown_character(ws):
    result = render_text(ws, story("      - prompt: a tree\n        characters: [pop]\n"))
    assert_one_line_error(ws, result, "5:22", "unknown character 'pop'", "did you mean 'Pip'?")


def test_empty_page(ws):
    result = render_text(ws, "title: Bad\npages:\n  - panels: []\n")
    assert_one_line_error(ws, result, "3:13", "pages[0].panels", "at least 1")


def test_duplicate_panel_ids(ws):
    text = story("      - {id: a, prompt: x}\n", "      - {id: a, prompt: y}\n")
    result = render_text(ws, text)
    assert_one_line_error(ws, result, "5:", "duplicate panel id 'a'")


def test_seed_out_of_range(ws):
    result = render_text(ws, story("      - prompt: a tree\n        seed: 4294967296\n"))
    assert_one_line_error(ws, result, "5:15", "seed", "less than or equal to 4294967295")


def test_unknown_layout(ws):
    result = render_text(ws, story(OK_PANEL, page_extra="layout: spiral"))
    assert_one_line_error(ws, result, "3:13", "unknown layout 'spiral'")


def test_absurd_size_rejected(ws):
    text = "title: Bad\nsettings: {size: 5000}\npages:\n  - panels:\n" + OK_PANEL
    result = render_text(ws, text)
    assert_one_line_error(ws, result, "2:", "settings.size", "less than or equal to 2048")


def test_size_not_divisible_is_rounded_with_a_warning(ws):
    text = "title: Ok\nsettings: {size: 70}\npages:\n  - panels:\n" + OK_PANEL
    result = render_text(ws, text, name="ok.yaml")
    assert result.exit_code == 0, result.output
    assert "size 70x70 rounded to 64x64 (the model needs multiples of 16)" in result.output


def test_story_not_utf8(ws):
    result = render_text(ws, "title: Caf\xe9\npages: []\n".encode("latin-1"))
    assert_one_line_error(ws, result, "1:", "not UTF-8", "save the file as UTF-8")


def test_yaml_bomb_refused_quickly(ws):
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    started = time.perf_counter()
    result = render_text(ws, "\n".join(lines) + "\ntitle: *a8\npages: []\n")
    assert_one_line_error(ws, result, "", "YAML bomb")
    assert time.perf_counter() - started < 30


def test_story_file_missing(ws):
    result = CliRunner().invoke(app, ["render", "stories/none.yaml", "--workspace", str(ws.root)])
    assert result.exit_code == 2
    assert "no such story file" in result.output


def test_model_unreachable_offline(ws):
    ws.config_path.write_text('[model]\nname = "someone/some-model"\n', encoding="utf-8")
    result = render_text(ws, story(OK_PANEL), name="ok.yaml")
    assert result.exit_code == 2, result.output
    assert "model 'someone/some-model' is not in the local Hugging Face cache" in result.output
    assert "local folder" in result.output


def test_model_folder_not_diffusers(ws):
    (ws.root / "mymodel").mkdir()
    ws.config_path.write_text('[model]\nname = "./mymodel"\n', encoding="utf-8")
    result = render_text(ws, story(OK_PANEL), name="ok.yaml")
    assert result.exit_code == 2, result.output
    assert "'./mymodel' is a folder but not a diffusers model (no model_index.json)" in (
        result.output.replace("\n", " ")
    )


def test_out_of_memory_is_one_clear_line():
    """A real out-of-memory error raised inside the U-Net (injected through a forward
    pre-hook, the same extension point Infusion uses) becomes one line with the fixes."""
    import torch

    from comicgen.errors import ModelError
    from comicgen.models import inspect_model
    from comicgen.painter import Painter, PaintJob
    from comicgen.settings import ModelSettings

    painter = Painter.load(ModelSettings(name=TINY), info=inspect_model(TINY))

    def exhausted(module, args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    handle = painter.pipe.unet.register_forward_pre_hook(exhausted)
    try:
        with pytest.raises(ModelError) as caught:
            painter.paint(PaintJob("a tree", 64, 64, 2, 5.0, seed=1))
    finally:
        handle.remove()
    line = caught.value.line()
    assert "\n" not in line
    assert line.startswith("out of memory on cpu")
    for fix in ("smaller size", 'memory = "low"', "--device cpu", "float16"):
        assert fix in line
