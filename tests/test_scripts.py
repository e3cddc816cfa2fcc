"""Lettering in every script: fallback faces found through fontconfig, per-run fonts."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from comicgen import lettering, typefaces
from comicgen.book import Speech
from comicgen.layout import layout_book
from comicgen.publish import publish
from comicgen.settings import PageSettings
from tests.test_publish import solid_book

SAMPLES = {
    "Chinese": ("你好，世界！今天天气很好。", "zh"),
    "Japanese": ("こんにちは、世界。カタカナも漢字も。", "ja"),
    "Arabic": ("مرحبا بالعالم", "ar"),
    "Hebrew": ("שלום עולם", "he"),
}


def installed(char: str) -> bool:
    """Whether fontconfig knows any font with ``char`` (asked directly, not through us)."""
    exe = shutil.which("fc-list")
    if exe is None:
        return False
    out = subprocess.run(
        [exe, f":charset={ord(char):x}", "file"], capture_output=True, text=True, check=False
    )
    return bool(out.stdout.strip())


def check_every_glyph(block) -> None:
    """Every character of every line is drawn in a face whose own cmap has it."""
    for index, line in enumerate(block.lines):
        joined = ""
        for text, key in block.runs(index):
            face = lettering.face(key)
            cmap = typefaces.coverage(face.path(block.bold), face.face_index(block.bold))
            lost = [c for c in text if typefaces.needs_glyph(c) and ord(c) not in cmap]
            assert not lost, (key, text, lost)
            joined += text
        assert joined == line


@pytest.mark.parametrize("script", list(SAMPLES))
def test_balloons_in_every_script_have_every_glyph(tmp_path, script):
    text, language = SAMPLES[script]
    if not installed(text[0]):
        pytest.skip(f"no {script} font installed (CI installs fonts-noto-cjk / DejaVu)")
    out = tmp_path / "out"
    dialogue = [
        Speech(text, "speech", "Alice", (0.3, 0.7)),
        Speech(text + " OK", "shout", "Alice", (0.3, 0.7)),
    ]
    book = solid_book(out, (1,), dialogue=dialogue, language=language)
    result = publish(book, out, PageSettings(), dpi=48)
    assert not [w for w in result.warnings if "font" in w]
    panel = result.layout.pages[0].panels[0]
    for balloon in panel.balloons:
        check_every_glyph(balloon.text_block)
        assert balloon.text_block.face != lettering.BUNDLED
    shout = panel.balloons[1].text_block
    assert [key for _t, key in shout.runs(len(shout.lines) - 1)][-1] == lettering.BUNDLED
    html = result.html_pages[0].read_text("utf-8")
    key = panel.balloons[0].text_block.face
    assert f"font-family:{key},sans-serif" in html
    assert f'font-family: "{key}"; src: local(' in html
    # the Latin word in the shout is a span in Kalam's run class... or the block's font
    assert "OK" in html


def test_mixed_scripts_in_one_line_use_one_face_per_run():
    book_text = "Hi 你好 שלום"
    if not (installed("你") and installed("ש")):
        pytest.skip("no CJK or Hebrew font installed")
    chain, warnings = typefaces.choose_chain([book_text], "en")
    assert not warnings and chain[0] == lettering.BUNDLED and len(chain) >= 2
    runs = lettering.runs(book_text, chain)
    assert runs[0] == ("Hi ", lettering.BUNDLED)
    assert "".join(t for t, _ in runs) == book_text
    assert len({key for _t, key in runs}) >= 2
    assert not lettering.missing(book_text, chain)
    width = lettering.text_width(book_text, 20, False, chain)
    assert width == pytest.approx(sum(lettering.text_width(t, 20, False, k) for t, k in runs))


def test_png_draws_bidi_runs_in_visual_order():
    from comicgen.publish.png import visual_order

    assert visual_order([("abc ", "k"), ("שלום", "h"), (" def", "k")]) == [
        ("abc ", "k"),
        ("שלום", "h"),
        (" def", "k"),
    ]
    # a right-to-left line: the first run is drawn rightmost
    assert visual_order([("שלום ", "h"), ("abc", "k"), (" עולם", "h")]) == [
        (" עולם", "h"),
        ("abc", "k"),
        ("שלום ", "h"),
    ]


def test_a_script_no_font_has_is_one_warning_naming_the_package():
    # private-use letters: no font on any machine is expected to have them
    pua = "\ue000\ue001"
    dialogue = [Speech(f"{pua} one", "speech"), Speech(f"{pua} two", "speech")]
    from tests.test_layout import lettered

    laid = lettered(dialogue)
    found = [w for w in laid.warnings if "no installed font" in w]
    assert len(found) == 1
    assert "install" in found[0]
    emoji = typefaces.missing_warnings([0x1F44B, 0x1F3FD])
    assert len(emoji) == 1 and "emoji" in emoji[0] and "apt install" in emoji[0]
    cjk = typefaces.missing_warnings([0x4F60, 0x3053])
    assert all("fonts-noto-cjk" in w for w in cjk)


def test_a_font_named_in_page_settings_comes_first():
    if not installed("a"):
        pytest.skip("no system fonts")
    family = "DejaVu Sans"
    if not any(f.family == family for f in typefaces.system_faces()):
        pytest.skip("DejaVu Sans is not installed")
    chain, _ = typefaces.choose_chain(["שלום"], "", [family])
    assert typefaces.face(chain[1]).family == family
    _, warnings = typefaces.choose_chain(["שלום"], "", ["No Such Family"])
    assert any("'No Such Family' is not an installed font" in w for w in warnings)
    # a family that is not installed is not silently replaced by another
    assert not any(
        f.family == "No Such Family" for f in typefaces.system_faces("", ["No Such Family"])
    )


def test_emoji_clusters_are_never_split_between_faces():
    chain = (lettering.BUNDLED, *[f.key for f in typefaces.system_faces()][:3])
    for text in ["👍🏽 ok", "👩‍👩‍👧 family", "e\u0301t\u00e9"]:
        runs = lettering.runs(text, chain)
        assert "".join(t for t, _ in runs) == text
        for (a, _), (b, _) in zip(runs, runs[1:], strict=False):
            assert not (a.endswith("\u200d") or b.startswith(("\u200d", "\U0001f3fd")))


def test_layout_lays_out_with_the_book_language(tmp_path):
    if not installed("你"):
        pytest.skip("no CJK font installed")
    out = tmp_path / "out"
    book = solid_book(out, (1,), dialogue=[Speech("你好", "speech")], language="zh-CN")
    laid = layout_book(book, PageSettings())
    assert len(laid.chain) >= 2
    assert laid.faces()[0] == lettering.BUNDLED
