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
