"""End to end: a story's lettering fields reach the pages (narrator, voices, off-panel,
whisper, nudge, sound effects, caption at the bottom, fonts)."""

from __future__ import annotations

from typer.testing import CliRunner

from comicgen.cli import app
from tests import test_render

workspace = test_render.workspace  # the shared fixture: a workspace with Pip and a tiny model

STORY = """\
title: Voices
language: zh
cast:
  radio: {}
page: {fonts: ["Noto Sans CJK SC"]}
pages:
  - panels:
      - prompt: "{pip} on the left, grass, day sky"
        characters: [{name: pip, position: left}]
        caption: It began.
        caption_at: bottom
        dialogue:
          - {speaker: narrator, text: "Once upon a time"}
          - {speaker: radio, text: "This is the radio."}
          - {speaker: pip, text: "psst", kind: whisper, at: [0.7, 0.3]}
          - {text: "Who's there?"}
        sfx: BOOM!
      - prompt: a house, night sky
        dialogue:
          - {speaker: pip, text: "你好！", offpanel: true}
          - {speaker: radio, text: "Over.", offpanel: true}
        sfx: [{text: "CRASH", at: [0.3, 0.7], angle: 20, color: "#36f"}]
"""


def test_a_storys_lettering_reaches_the_pages(workspace):
    story = workspace.stories_dir / "voices.yaml"
    story.write_text(STORY, encoding="utf-8")
    result = CliRunner().invoke(app, ["render", str(story), "--workspace", str(workspace.root)])
    assert result.exit_code == 0, result.output
    html = (workspace.build_dir / "voices" / "page-01.html").read_text(encoding="utf-8")
    assert 'class="caption bottom"' in html
    assert html.count('class="caption narration"') == 2
    assert 'data-speaker="radio"' in html
    assert 'data-kind="whisper"' in html and "stroke-dasharray" in html
    assert html.count('<text class="sfx"') == 2 and ">BOOM!<" in html and 'fill="#36f"' in html

    from comicgen.layout import layout_book
    from comicgen.library import Library
    from comicgen.render import build_book, plan

    build = workspace.build_dir / "voices"
    with Library.open(workspace.db_path, workspace.cache_dir) as lib:
        the_plan = plan(workspace, story, lib)
        book, _ = build_book(the_plan, build, lib)
    laid = layout_book(book, the_plan.page)
    first, second = laid.pages[0].panels
    assert [c.speaker for c in first.narration] == [None, "radio"]
    whisper, voice = first.balloons
    assert whisper.kind == "whisper" and whisper.nudged and not whisper.offpanel
    assert voice.speaker is None and voice.offpanel and voice.tail
    assert [b.offpanel for b in second.balloons] == [True, True]
    assert [b.speaker for b in second.balloons] == ["Pip", "radio"]
    assert the_plan.page.fonts == ["Noto Sans CJK SC"]


def test_new_storys_template_shows_the_lettering_fields(tmp_path):
    import os

    from comicgen.story import check_story, load_story
    from comicgen.workspace import Workspace

    ws = Workspace.create(tmp_path / "w")
    (ws.characters_dir / "pip.yaml").write_text("name: Pip\ndescription: a red circle\n")
    old = os.getcwd()
    os.chdir(ws.root)
    try:
        result = CliRunner().invoke(app, ["new-story", "voices"])
    finally:
        os.chdir(old)
    assert result.exit_code == 0, result.output
    path = ws.stories_dir / "voices.yaml"
    text = path.read_text(encoding="utf-8")
    for shown in ("caption_at:", "speaker: narrator", "offpanel: true", "kind: whisper", "sfx:"):
        assert shown in text, shown
    loaded = load_story(path)
    check_story(loaded, ["Pip"], None)
    last = loaded.story.pages[-1].panels[-1]
    assert last.caption_at == "bottom" and last.sfx[0].text == "CREAK"
    assert [d.offpanel for d in last.dialogue] == [False, True]
