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

import yaml
from pydantic import ValidationError

from comicgen.errors import ComicgenError, LocatedError, did_you_mean
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
MAX_NODES = 200_000  # YAML nodes after alias expansion; more is a "YAML bomb"
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


def format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


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
    for p, n, _page, panel in loaded.story.panels():
        loc = ("pages", p - 1, "panels", n - 1, "id")
        if panel.id in seen:
            line, col = _place(loaded.marks, loc)
            raise LocatedError(
                f"duplicate panel id '{panel.id}' (also at {format_loc(seen[panel.id])})",
                file=shown,
                line=line,
                column=col,
                field=format_loc(loc),
                hint="give each panel its own id",
            )
        seen[panel.id] = loc


def parse_yaml(text: str, shown: str):
    """Parse YAML safely; return (data, value marks, key marks)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise LocatedError(
                "the story file is empty", file=shown, hint="start from 'comicgen new-story NAME'"
            )
        _check_size(node, shown)
        marks: dict[tuple, tuple[int, int]] = {}
        key_marks: dict[tuple, tuple[int, int]] = {}
        _collect_marks(loader, node, (), marks, key_marks, shown)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "YAML syntax error"
        raise LocatedError(
            f"YAML syntax error: {problem}",
            file=shown,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
            hint="check the indentation and quote text that contains ':' or '#'",
        ) from None
    except yaml.YAMLError as exc:
        raise LocatedError(f"YAML error: {exc}", file=shown) from None
    finally:
        loader.dispose()
    return data, marks, key_marks


def _check_size(root: yaml.Node, shown: str) -> None:
    """Refuse documents whose aliases expand to too many nodes (a 'YAML bomb')."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done or not children:
            total = 1 + sum(sizes.get(id(c), 0) for c in children)
            sizes[id(node)] = total
            if total > MAX_NODES:
                raise LocatedError(
                    f"the YAML expands to more than {MAX_NODES:,} values through aliases "
                    "(a 'YAML bomb'); refusing it",
                    file=shown,
                    line=node.start_mark.line + 1,
                    column=node.start_mark.column + 1,
                    hint="write the story without deeply nested '*alias' references",
                )
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _collect_marks(loader, node, path, marks, key_marks, shown, depth=0):
    if depth > 64:
        raise LocatedError(
            "the YAML is nested more than 64 levels deep",
            file=shown,
            line=node.start_mark.line + 1,
        )
    if path in marks:  # an alias seen before: keep the first place
        return
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            _collect_marks(loader, child, (*path, i), marks, key_marks, shown, depth + 1)
    elif isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = loader.construct_object(key_node, deep=True)
            if key == "<<":
                continue  # merge key: its fields are checked where they land
            if key in seen:
                raise LocatedError(
                    f"duplicate key '{key}'",
                    file=shown,
                    line=key_node.start_mark.line + 1,
                    column=key_node.start_mark.column + 1,
                    field=format_loc((*path, key)),
                    hint="each key may appear once in a mapping; remove one of them",
                )
            seen.add(key)
            key_marks[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _collect_marks(loader, value_node, (*path, key), marks, key_marks, shown, depth + 1)


def _place(marks: dict, loc: tuple) -> tuple[int | None, int | None]:
    loc = tuple(loc)
    while loc:
        if loc in marks:
            return marks[loc]
        loc = loc[:-1]
    return marks.get((), (None, None))


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


_FRIENDLY = {
    "missing": "required field is missing",
    "string_type": "expected text",
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "float_parsing": "expected a number",
    "list_type": "expected a list (lines starting with '- ')",
    "dict_type": "expected a mapping (key: value lines)",
    "model_type": "expected a mapping (key: value lines)",
    "model_attributes_type": "expected a mapping (key: value lines)",
}


def validation_error(exc: ValidationError, shown: str, marks, key_marks, data) -> LocatedError:
    errors = exc.errors()
    err = _most_useful(errors)
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
        loc_field = loc
        return LocatedError(
            message, file=shown, line=line, column=col, field=format_loc(loc_field), hint=hint
        )
    else:
        message = _FRIENDLY.get(kind, err["msg"])
        if kind == "literal_error":
            message = err["msg"].replace("Input should be", "expected")
        elif kind == "too_short":
            message = f"needs at least {err['ctx'].get('min_length', 1)} item(s)"
        elif kind.startswith(("greater", "less", "too_", "string_too", "string_pattern")):
            message = err["msg"].replace("Input should", "should").replace("Value should", "should")
        elif kind == "value_error":
            message = err["msg"].removeprefix("Value error, ")
        line, col = _place(marks, loc)
    more = len(errors) - 1
    if more:
        hint = (
            hint + "; " if hint else ""
        ) + f"{more} more problem{'s' if more > 1 else ''} after this one"
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


def _most_useful(errors: list[dict]) -> dict:
    """Pick the error to show first: the earliest in the file, unions resolved."""
    # Prefer errors that are not the 'wrong branch of a union' kind, and a misspelt
    # field over the 'required field missing' that the misspelling causes.
    plain = [e for e in errors if not any(isinstance(p, str) and "[" in p for p in e["loc"])]
    order = {"extra_forbidden": 0, "missing": 2}
    return sorted(plain or errors, key=lambda e: order.get(e["type"], 1))[0]


# -- checks against the library ---------------------------------------------------------


def placeholders(prompt: str) -> list[str]:
    return [m.group(1).strip() for m in PLACEHOLDER.finditer(prompt)]


def check_story(
    loaded: LoadedStory,
    known_characters: list[str],
    layout_check: Callable[[Any, int], None] | None = None,
) -> None:
    """Check names against the library, and each page's layout with ``layout_check``
    (:func:`comicgen.layout.check_layout`), raising errors that name the place."""
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
    for p, n, page, panel in story.panels():
        base = ("pages", p - 1, "panels", n - 1)
        for i, ch in enumerate(panel.characters):
            if ch.name.lower() not in lookup:
                raise unknown(ch.name, (*base, "characters", i))
        for name in placeholders(panel.prompt):
            if name.lower() not in lookup:
                raise unknown(name, (*base, "prompt"))
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
                raise loaded.error(
                    (*base, "dialogue", i, "speaker"),
                    f"unknown character '{line.speaker}'",
                    f"{error.hint or ''}; or add it to 'cast:' as a voice, or use 'narrator'",
                )
            if name not in in_panel and not line.offpanel:
                raise loaded.error(
                    (*base, "dialogue", i, "speaker"),
                    f"'{line.speaker}' speaks but is not in this panel",
                    f"add '{line.speaker}' to the panel's characters, or set 'offpanel: true' "
                    "on this line for a voice from out of frame",
                )
        if page.layout is not None and layout_check is not None:
            try:
                layout_check(page.layout, len(page.panels))
            except ComicgenError as exc:
                raise loaded.error(("pages", p - 1, "layout"), exc.message, exc.hint) from None


def expand_prompt(prompt: str, descriptions: dict[str, str]) -> str:
    """Replace ``{name}`` with the character's description (names case-insensitive)."""
    lowered = {k.lower(): v for k, v in descriptions.items()}

    def sub(match: re.Match) -> str:
        key = match.group(1).strip().lower()
        return lowered.get(key, match.group(0))

    return PLACEHOLDER.sub(sub, prompt)
