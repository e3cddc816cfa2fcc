"""Loading a story YAML file with precise error places, and checking it.

The schema (what a story may hold) is :mod:`comicgen.story_schema`; its names are
importable from here too. ``{name}`` in a prompt expands to that character's
description from the library.

Every error a person can make in the file is reported as one line,
``file:line:column: field: what is wrong — the fix``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from comicgen.errors import (
    ComicgenError,
    LocatedError,
    did_you_mean,
    one_or_all,
    validation_message,
)
from comicgen.story_schema import (
    MAX_SEED,
    NARRATOR,
    CastMember,
    DialogueLine,
    InfusionOverride,
    Page,
    PageOverride,
    Panel,
    PanelCharacter,
    RenderOverride,
    Story,
    story_json_schema,
)
from comicgen.yamlfile import format_loc, parse_yaml
from comicgen.yamlfile import place as _place

__all__ = [
    "MAX_SEED",
    "NARRATOR",
    "CastMember",
    "DialogueLine",
    "InfusionOverride",
    "LoadedStory",
    "Page",
    "PageOverride",
    "Panel",
    "PanelCharacter",
    "RenderOverride",
    "Story",
    "check_story",
    "expand_prompt",
    "format_loc",
    "load_story",
    "parse_yaml",
    "placeholders",
    "story_json_schema",
    "validation_error",
]

MAX_STORY_BYTES = 2_000_000
# {name} inserts a character's description. A name starts with a letter or digit, so
# other brace text ({{ }}, {% %}, { x }) is left as it is.
PLACEHOLDER = re.compile(r"(?<!\{)\{(\w[^{}\n]{0,63})\}(?!\})")


# -- loading ---------------------------------------------------------------------------


@dataclass
class LoadedStory:
    story: Story
    path: Path
    marks: dict[tuple, tuple[int, int]]  # path in the data → (line, column), 1-based
    key_marks: dict[tuple, tuple[int, int]]  # path of a key → place of the key itself
    display: str = ""  # how the file is named in messages

    @property
    def name(self) -> str:
        return self.path.stem

    def error(self, loc: tuple, message: str, hint: str | None = None) -> LocatedError:
        line, col = self.place(loc)
        return LocatedError(
            message,
            file=self.display or self.path,
            line=line,
            column=col,
            field=format_loc(loc),
            hint=hint,
        )

    def place(self, loc: tuple) -> tuple[int | None, int | None]:
        return _place(self.marks, loc)


def load_story(path: Path, display: str | None = None) -> LoadedStory:
    """Read, parse and validate a story file (structure only; characters are checked
    against the library by :func:`check_story`)."""
    path = Path(path)
    shown = display or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ComicgenError(
            f"{shown}: no such story file",
            hint="create one with 'comicgen new-story NAME'",
        ) from None
    except IsADirectoryError:
        raise ComicgenError(f"{shown}: is a folder, not a story file") from None
    if len(raw) > MAX_STORY_BYTES:
        raise LocatedError(
            f"story file is {len(raw):,} bytes; the limit is {MAX_STORY_BYTES:,}", file=shown
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise LocatedError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x})",
            file=shown,
            line=line,
            hint="save the file as UTF-8",
        ) from None
    data, marks, key_marks = parse_yaml(text, shown)
    if not marks:
        raise LocatedError(
            "the story file is empty", file=shown, hint="start from 'comicgen new-story NAME'"
        )
    if not isinstance(data, dict):
        raise LocatedError(
            "a story is a mapping with 'title:' and 'pages:' at the top level",
            file=shown,
            line=1,
            column=1,
            hint="start from 'comicgen new-story NAME'",
        )
    try:
        story = Story.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, shown, marks, key_marks, data) from None
    loaded = LoadedStory(story=story, path=path, marks=marks, key_marks=key_marks, display=shown)
    _check_ids(loaded, shown)
    return loaded


def _check_ids(loaded: LoadedStory, shown: str) -> None:
    seen: dict[str, tuple] = {}
    found: list[LocatedError] = []
    for p, n, _page, panel in loaded.story.panels():
        loc = ("pages", p - 1, "panels", n - 1, "id")
        if panel.id in seen:
            line, col = _place(loaded.marks, loc)
            found.append(
                LocatedError(
                    f"duplicate panel id '{panel.id}' (also at {format_loc(seen[panel.id])})",
                    file=shown,
                    line=line,
                    column=col,
                    field=format_loc(loc),
                    hint="give each panel its own id",
                )
            )
        seen.setdefault(panel.id, loc)
    if found:
        raise one_or_all(found)


def _model_at(loc: tuple) -> Any:
    """The pydantic model class that holds the field at ``loc`` (for 'did you mean')."""
    model: Any = Story
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        annotation = fields[part].annotation
        model = _unwrap(annotation)
    return model


def _unwrap(annotation: Any) -> Any:
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    for arg in args:
        inner = _unwrap(arg)
        if hasattr(inner, "model_fields"):
            return inner
    return annotation


def validation_error(exc: ValidationError, shown: str, marks, key_marks, data) -> ComicgenError:
    """Every problem pydantic found, each at its place in the file, in file order."""
    found: list[LocatedError] = []
    places: set[tuple] = set()
    for err in _useful(exc.errors()):
        located = _located(err, shown, marks, key_marks, data)
        place = (located.lineno, located.column)
        union_branch = any(isinstance(p, str) and "[" in p for p in err["loc"])
        if union_branch and place in places:
            continue  # one line per value that fits no branch of a union
        if all(f.line() != located.line() for f in found):
            places.add(place)
            found.append(located)
    return one_or_all(found)


def _located(err: dict, shown: str, marks, key_marks, data) -> LocatedError:
    loc = _data_loc(err["loc"], data, err["type"])
    kind = err["type"]
    hint = None
    if kind == "extra_forbidden":
        model = _model_at(loc)
        known = list(getattr(model, "model_fields", {}))
        message = f"unknown field '{loc[-1]}'"
        hint = did_you_mean(str(loc[-1]), known) or (
            f"known fields here: {', '.join(known)}" if known else None
        )
        line, col = key_marks.get(loc, _place(marks, loc))
    elif kind == "missing":
        message = f"required field '{loc[-1]}' is missing"
        hint = f"add '{loc[-1]}: …'"
        line, col = _place(marks, loc[:-1])
    else:
        message = validation_message(err)
        line, col = _place(marks, loc)
    return LocatedError(
        message, file=shown, line=line, column=col, field=format_loc(loc), hint=hint
    )


def _data_loc(loc: tuple, data: Any, kind: str) -> tuple:
    """``loc`` without pydantic's union tags (``'str'``, ``'list[int]'``…): only the
    parts that lead through the data, plus the missing/unknown key at the end."""
    out: list = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif last and kind in ("missing", "extra_forbidden"):
            out.append(part)
    return tuple(out)


def _useful(errors: list[dict]) -> list[dict]:
    """The errors worth showing: not the 'required field missing' that a misspelt
    field beside it causes."""
    misspelt = {tuple(e["loc"][:-1]) for e in errors if e["type"] == "extra_forbidden"}
    return [e for e in errors if not (e["type"] == "missing" and tuple(e["loc"][:-1]) in misspelt)]


# -- checks against the library ---------------------------------------------------------


def placeholders(prompt: str) -> list[str]:
    return [m.group(1).strip() for m in PLACEHOLDER.finditer(prompt)]


def check_story(
    loaded: LoadedStory,
    known_characters: list[str],
    layout_check: Callable[[Any, int], None] | None = None,
) -> None:
    """Check names against the library, and each page's layout with ``layout_check``
    (:func:`comicgen.layout.check_layout`), raising errors that name the place: all of
    them, in file order."""
    story = loaded.story
    lookup = {n.lower(): n for n in known_characters}

    def unknown(name: str, loc: tuple) -> LocatedError:
        hint = did_you_mean(name, known_characters)
        if hint is None:
            hint = (
                f"known characters: {', '.join(sorted(known_characters))}"
                if known_characters
                else "the library is empty"
            )
            hint += "; add it with 'comicgen characters add NAME --image …'"
        return loaded.error(loc, f"unknown character '{name}'", hint)

    voices = {name.lower() for name in story.cast if name.lower() not in lookup}
    found: list[LocatedError] = []
    for p, n, page, panel in story.panels():
        base = ("pages", p - 1, "panels", n - 1)
        for i, ch in enumerate(panel.characters):
            if ch.name.lower() not in lookup:
                found.append(unknown(ch.name, (*base, "characters", i)))
        for name in placeholders(panel.prompt):
            if name.lower() not in lookup:
                found.append(unknown(name, (*base, "prompt")))
        in_panel = {c.name.lower() for c in panel.characters} | {
            x.lower() for x in placeholders(panel.prompt)
        }
        for i, line in enumerate(panel.dialogue):
            if line.speaker is None:
                continue
            name = line.speaker.lower()
            if name == NARRATOR or name in voices:
                continue
            if name not in lookup:
                error = unknown(line.speaker, (*base, "dialogue", i, "speaker"))
                found.append(
                    loaded.error(
                        (*base, "dialogue", i, "speaker"),
                        f"unknown character '{line.speaker}'",
                        f"{error.hint or ''}; or add it to 'cast:' as a voice, or use 'narrator'",
                    )
                )
            elif name not in in_panel and not line.offpanel:
                found.append(
                    loaded.error(
                        (*base, "dialogue", i, "speaker"),
                        f"'{line.speaker}' speaks but is not in this panel",
                        f"add '{line.speaker}' to the panel's characters, or set "
                        "'offpanel: true' on this line for a voice from out of frame",
                    )
                )
        if page.layout is not None and layout_check is not None:
            try:
                layout_check(page.layout, len(page.panels))
            except ComicgenError as exc:
                found.append(loaded.error(("pages", p - 1, "layout"), exc.message, exc.hint))
    if found:
        raise one_or_all(found)


def expand_prompt(prompt: str, descriptions: dict[str, str]) -> str:
    """Replace ``{name}`` with the character's description (names case-insensitive)."""
    lowered = {k.lower(): v for k, v in descriptions.items()}

    def sub(match: re.Match) -> str:
        key = match.group(1).strip().lower()
        return lowered.get(key, match.group(0))

    return PLACEHOLDER.sub(sub, prompt)
