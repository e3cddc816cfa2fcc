"""The story schema: valid stories load; every mistake names file:line:column."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from comicgen.errors import ComicgenError, LocatedError
from comicgen.layout import check_layout
from comicgen.story import (
    check_story,
    expand_prompt,
    load_story,
    placeholders,
    story_json_schema,
)

GOOD = """\
title: The Lost Hat
author: Ann
direction: rtl
settings: {steps: 4}
infusion: {weight: 0.5, mode: mean}
cast:
  pip: {strength: 0.8}
pages:
  - layout: [1, 2]
    panels:
      - prompt: "{pip} on the left, grass"
        characters: [{name: pip, position: left}, bo]
        caption: Once upon a time
        dialogue:
          - {speaker: pip, text: "Hello!"}
          - {speaker: bo, text: "Hmm", kind: thought}
        shape: wide
        seed: 7
      - prompt: a house
        infusion: {weight: 0}
      - id: end
        prompt: "{bo} in the snow"
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, known=("Pip", "Bo")) -> LocatedError:
    path = write(tmp_path, text)
    with pytest.raises(ComicgenError) as info:
        loaded = load_story(path, display="s.yaml")
        check_story(loaded, list(known), check_layout)
    return info.value


def test_valid_story_loads(tmp_path):
    loaded = load_story(write(tmp_path, GOOD))
    story = loaded.story
    check_story(loaded, ["Pip", "Bo"], check_layout)
    assert story.direction == "rtl"
    assert [p.id for _, _, _, p in story.panels()] == ["1.1", "1.2", "end"]
    first = story.pages[0].panels[0]
    assert first.characters[1].name == "bo" and first.characters[1].position is None
    assert first.dialogue[1].kind == "thought"
    assert story.settings.steps == 4 and story.settings.guidance is None
    assert loaded.place(("pages", 0, "panels", 1, "prompt")) == (19, 17)


def test_prompt_placeholders_expand():
    assert placeholders("{pip} and {Bo}") == ["pip", "Bo"]
    text = expand_prompt("{Pip} meets {bo}", {"pip": "a red circle", "Bo": "a square"})
    assert text == "a red circle meets a square"


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        (
            "title: x\npages:\n  - panels:\n      - promt: hi\n",
            "s.yaml:4:9",
            "unknown field 'promt'",
        ),
        (
            "title: x\npages:\n  - panels:\n      - prompt: hi\n        sead: 3\n",
            "s.yaml:5:9",
            "did you mean 'seed'?",
        ),
        (
            "title: x\npages:\n  - panels:\n      - prompt: hi\n        seed: -1\n",
            "s.yaml:5:15",
            "greater than or equal to 0",
        ),
        (
            "title: x\npages:\n  - panels:\n      - prompt: hi\n        seed: 99999999999\n",
            "s.yaml:5:15",
            "less than or equal to 4294967295",
        ),
        ("title: x\npages:\n  - panels: []\n", "s.yaml:3:13", "at least 1"),
        ("title: x\npages:\n  - panels:\n      - prompt: [1, 2]\n", "s.yaml:4:17", "expected text"),
        ("pages:\n  - panels:\n      - prompt: hi\n", "s.yaml:1:1", "'title' is missing"),
        (
            "title: x\npages:\n  - panels:\n      - prompt: hi\n        shape: round\n",
            "s.yaml:5:16",
            "'square', 'wide' or 'tall'",
        ),
        (
            "title: x\npages:\n  - panels:\n      - prompt: hi\n       bad indent: 1\n",
            "s.yaml:5:",
            "YAML syntax error",
        ),
        ("title: x\ntitle: y\npages: []\n", "s.yaml:2:1", "duplicate key 'title'"),
        (
            "title: x\npages:\n  - panels:\n      - prompt: a\n        id: a\n      - prompt: b\n"
            "        id: a\n",
            "s.yaml:7:13",
            "duplicate panel id 'a'",
        ),
    ],
)
def test_structure_errors_name_the_place(tmp_path, text, where, words):
    err = error_of(tmp_path, text)
    line = err.line()
    assert line.startswith(where), line
    assert words in line, line
    assert "\n" not in line


def test_unknown_character_did_you_mean(tmp_path):
    text = "title: x\npages:\n  - panels:\n      - prompt: hi\n        characters: [alise]\n"
    err = error_of(tmp_path, text, known=("Alice", "Bob"))
    assert err.line().startswith("s.yaml:5:22: pages[0].panels[0].characters[0]")
    assert "unknown character 'alise' — did you mean 'Alice'?" in err.line()


def test_unknown_character_in_prompt_and_speaker(tmp_path):
    text = "title: x\npages:\n  - panels:\n      - prompt: '{zed} walks'\n"
    assert "unknown character 'zed'" in error_of(tmp_path, text).line()
    text = (
        "title: x\npages:\n  - panels:\n      - prompt: hi\n        characters: [pip]\n"
        "        dialogue: [{speaker: bo, text: hi}]\n"
    )
    err = error_of(tmp_path, text)
    assert err.line().startswith("s.yaml:6:")
    assert "'bo' speaks but is not in this panel" in err.line()


def test_unknown_layout(tmp_path):
    text = "title: x\npages:\n  - layout: zigzag\n    panels:\n      - prompt: hi\n"
    err = error_of(tmp_path, text)
    assert err.line().startswith("s.yaml:3:13: pages[0].layout: unknown layout 'zigzag'")
    text = "title: x\npages:\n  - layout: 2x2\n    panels:\n      - prompt: hi\n"
    assert "holds 4 panels but the page has 1" in error_of(tmp_path, text).line()
    text = "title: x\npages:\n  - layout: [1, 2]\n    panels:\n      - prompt: hi\n"
    assert "holds 3 panels but the page has 1" in error_of(tmp_path, text).line()


def test_not_utf8_and_empty(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"title: caf\xe9\npages: []\n")
    with pytest.raises(ComicgenError, match=r"s.yaml:1: not UTF-8"):
        load_story(path, display="s.yaml")
    path.write_text("")
    with pytest.raises(ComicgenError, match="empty"):
        load_story(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ComicgenError, match="mapping with 'title:'"):
        load_story(path)


def test_yaml_bomb_is_refused_quickly(tmp_path):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    lines.append("title: *a9\npages: []")
    started = time.perf_counter()
    err = error_of(tmp_path, "\n".join(lines) + "\n")
    assert "YAML bomb" in err.line()
    assert time.perf_counter() - started < 30  # would never finish if expanded


def test_json_schema_is_complete():
    schema = story_json_schema()
    text = json.dumps(schema)
    assert schema["additionalProperties"] is False
    for word in (
        "prompt",
        "characters",
        "dialogue",
        "caption",
        "shape",
        "seed",
        "infusion",
        "direction",
        "layout",
        "position",
    ):
        assert f'"{word}"' in text


LETTERING = """\
title: Voices
cast:
  radio: {}
pages:
  - panels:
      - prompt: "{pip} on the left"
        characters: [pip]
        caption: Later
        caption_at: bottom
        dialogue:
          - {speaker: narrator, text: "Meanwhile"}
          - {speaker: radio, text: "Beep"}
          - {speaker: bo, text: "Over here!", offpanel: true}
          - {speaker: pip, text: "psst", kind: whisper, at: [0.7, 0.2]}
        sfx: BOOM!
      - prompt: a house
        sfx: [{text: CRASH, at: [0.3, 0.6], angle: 15, color: "#36f", size: 0.2}, bang]
"""


def test_lettering_fields_load(tmp_path):
    loaded = load_story(write(tmp_path, LETTERING), display="s.yaml")
    check_story(loaded, ["Pip", "Bo"], check_layout)
    first, second = loaded.story.pages[0].panels
    assert first.caption_at == "bottom"
    assert [d.kind for d in first.dialogue][-1] == "whisper"
    assert first.dialogue[2].offpanel and first.dialogue[3].at == (0.7, 0.2)
    assert [e.text for e in first.sfx] == ["BOOM!"] and first.sfx[0].angle == -8
    assert second.sfx[0].color == "#36f" and second.sfx[1].text == "bang"


@pytest.mark.parametrize(
    "change, where, words",
    [
        ("at: [0.7, 0.2]", "at: [1.7, 0.2]", "pages[0].panels[0].dialogue[3].at[0]"),
        ("kind: whisper", "kind: whisperr", "dialogue[3].kind"),
        ("angle: 15", "angle: 150", "sfx[0].angle"),
        ('color: "#36f"', 'color: "nocolour"', "sfx[0].color"),
        ("offpanel: true", "offpanel: maybe", "dialogue[2].offpanel"),
    ],
)
def test_lettering_field_errors_are_one_located_line(tmp_path, change, where, words):
    err = error_of(tmp_path, LETTERING.replace(change, where))
    line = err.line()
    assert line.startswith("s.yaml:") and "\n" not in line
    assert words in line


def test_a_library_character_out_of_the_panel_needs_offpanel(tmp_path):
    text = LETTERING.replace(", offpanel: true", "")
    err = error_of(tmp_path, text)
    assert "'bo' speaks but is not in this panel" in err.line()
    assert "offpanel: true" in err.line()
    # a name neither in the library nor in the cast is still an error
    err = error_of(tmp_path, LETTERING.replace("speaker: radio", "speaker: radi0"))
    assert "unknown character 'radi0'" in err.line() and "cast" in err.line()
