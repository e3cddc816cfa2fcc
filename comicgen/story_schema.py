"""The story schema: what a story file may hold, its JSON Schema, and the template.

A story is ``title`` + metadata + ``pages`` → ``panels``. Each panel has a prompt,
the characters it shows, a caption and dialogue. ``{name}`` in a prompt expands to
that character's description from the library. Reading a file against this schema,
with the place of every error, is :mod:`comicgen.story`'s job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from comicgen.settings import (
    EmbeddingSpec,
    InfusionSettings,
    LoraSpec,
    PageSettings,
    RenderSettings,
    Shape,
    Strict,
    partial,
)

MAX_SEED = 2**32 - 1
SCHEMA_FILE = "story.schema.json"  # written beside the stories, for editors

InfusionOverride = partial(InfusionSettings)
RenderOverride = partial(RenderSettings)
PageOverride = partial(PageSettings)

Text = Annotated[str, Field(min_length=1, max_length=2000)]
Name = Annotated[str, Field(min_length=1, max_length=64)]


NARRATOR = "narrator"  # a speaker name: the line is lettered in a caption box

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class DialogueLine(Strict):
    """One line of dialogue, lettered in a balloon."""

    speaker: Name | None = Field(
        None,
        description=(
            "Who speaks: a character in the panel; 'narrator' (a caption box); a cast "
            "entry with no library image (a voice: a caption box, or with offpanel a "
            "balloon whose tail leaves the frame); empty for an unnamed voice."
        ),
    )
    text: Text = Field(description="What is said.")
    kind: Literal["speech", "thought", "shout", "whisper"] = Field(
        "speech",
        description="speech (oval balloon), thought (cloud), shout (spiky), whisper (dashed).",
    )
    offpanel: bool = Field(
        False,
        description="The speaker is out of frame: the tail points to the frame's nearest edge.",
    )
    at: tuple[Fraction, Fraction] | None = Field(
        None,
        description=(
            "Where the balloon's centre goes, as fractions (x, y) of the frame, when the "
            "automatic placement is wrong."
        ),
    )


class SoundEffect(Strict):
    """Display lettering drawn on the art ('BOOM!'); a plain string is short for {text}."""

    text: Annotated[str, Field(min_length=1, max_length=40)] = Field(
        description="The sound, e.g. 'BOOM!'."
    )
    at: tuple[Fraction, Fraction] = Field(
        (0.5, 0.5), description="Its centre, as fractions (x, y) of the frame."
    )
    angle: float = Field(-8.0, ge=-90, le=90, description="Rotation in degrees (+ = clockwise).")
    color: str = Field(
        "#e63222",
        pattern=r"^(#[0-9A-Fa-f]{3}|#[0-9A-Fa-f]{6}|[A-Za-z]{3,20})$",
        description="Fill colour: '#rgb', '#rrggbb' or a CSS colour name.",
    )
    size: float = Field(
        0.16, ge=0.03, le=0.6, description="Letter height as a fraction of the frame's height."
    )

    @field_validator("color")
    @classmethod
    def _known_colour(cls, value: str) -> str:
        from PIL import ImageColor

        try:
            ImageColor.getrgb(value)
        except ValueError:
            raise ValueError(f"unknown colour {value!r}: use '#rrggbb' or a CSS name") from None
        return value


class PanelCharacter(Strict):
    """A character shown in a panel; a plain name is short for ``{name: NAME}``."""

    name: Name = Field(description="The character's name in the library.")
    position: Literal["left", "center", "right"] | None = Field(
        None, description="Where the character stands; guides infusion and balloon tails."
    )
    box: tuple[float, float, float, float] | None = Field(
        None,
        description="Region (x0, y0, x1, y1) as fractions of the panel; overrides position.",
    )
    strength: float | None = Field(
        None, ge=0.0, le=5.0, description="Infusion strength for this character here."
    )

    @field_validator("box")
    @classmethod
    def _box_inside(cls, box):
        if box is None:
            return box
        x0, y0, x1, y1 = box
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise ValueError("box must be x0 < x1 and y0 < y1, all between 0 and 1")
        return box


class Panel(Strict):
    """One panel: what to paint and what to letter on it."""

    id: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")] | None = (
        Field(None, description="A stable id (default 'page.panel', e.g. '2.1').")
    )
    prompt: Text = Field(description="What the panel shows. {name} inserts a character.")
    negative_prompt: str | None = Field(None, max_length=2000)
    characters: list[PanelCharacter] = Field(
        default_factory=list, max_length=8, description="Characters infused into this panel."
    )
    caption: str | None = Field(None, max_length=2000, description="Narration box text.")
    caption_at: Literal["top", "bottom"] = Field(
        "top", description="Where the caption box sits: top or bottom of the frame."
    )
    dialogue: list[DialogueLine] = Field(default_factory=list, max_length=20)
    sfx: list[SoundEffect] = Field(
        default_factory=list, max_length=8, description="Sound effects lettered on the art."
    )
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Seed for this panel.")
    shape: Shape | None = Field(
        None,
        description="auto (default: painted to fit its frame), or square, wide or tall: "
        "the automatic layout gives it a frame of that shape.",
    )
    infusion: InfusionOverride | None = Field(None, description="Infusion settings here.")
    loras: list[LoraSpec] = Field(
        default_factory=list,
        max_length=16,
        description="LoRAs for this panel, added to the story's and the characters' "
        "(the same file again sets its weight; weight 0 turns it off here).",
    )

    @field_validator("characters", mode="before")
    @classmethod
    def _names_to_objects(cls, value):
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("sfx", mode="before")
    @classmethod
    def _sfx_strings(cls, value):
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [{"text": v} if isinstance(v, str) else v for v in value]
        return value


class Page(Strict):
    layout: str | list[int] | None = Field(
        None, description="Panel arrangement: a name such as '2x2', or rows like [1, 2, 1]."
    )
    panels: list[Panel] = Field(min_length=1, max_length=12)

    @field_validator("layout")
    @classmethod
    def _rows_positive(cls, value):
        if isinstance(value, list) and (not value or any(n < 1 or n > 6 for n in value)):
            raise ValueError("each row holds 1 to 6 panels, e.g. [1, 2, 1]")
        return value


class CastMember(Strict):
    """Story-wide settings for one character. A cast entry whose name is not in the
    library is a voice: it may speak in any panel (captions, or off-panel balloons)."""

    description: str | None = Field(
        None, max_length=1000, description="Replaces the library description in this story."
    )
    strength: float | None = Field(None, ge=0.0, le=5.0, description="Infusion strength.")


class Story(Strict):
    """A comic story: metadata, optional overrides of the workspace settings, pages."""

    title: Annotated[str, Field(min_length=1, max_length=200)]
    author: str | None = Field(None, max_length=200)
    language: str = Field("en", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    direction: Literal["ltr", "rtl"] = Field(
        "ltr", description="Reading direction: rtl for manga order."
    )
    summary: str | None = Field(None, max_length=5000)
    model: str | None = Field(None, description="Overrides the workspace's model.name.")
    settings: RenderOverride | None = Field(None, description="Overrides [render] settings.")
    infusion: InfusionOverride | None = Field(None, description="Overrides [infusion].")
    page: PageOverride | None = Field(None, description="Overrides [page] settings.")
    loras: list[LoraSpec] = Field(
        default_factory=list,
        max_length=32,
        description="LoRAs for every panel, added to [model] loras (the same file again "
        "sets its weight). Paths are relative to the workspace.",
    )
    embeddings: list[EmbeddingSpec] = Field(
        default_factory=list,
        max_length=64,
        description="Textual-inversion embeddings, added to [model] embeddings.",
    )
    cast: dict[Name, CastMember] = Field(
        default_factory=dict, description="Per-story character settings."
    )
    pages: list[Page] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _ids(self):
        for p, page in enumerate(self.pages, start=1):
            for n, panel in enumerate(page.panels, start=1):
                if panel.id is None:
                    panel.id = f"{p}.{n}"
        return self

    def panels(self):
        """(page number, panel number, page, panel) for every panel in order."""
        for p, page in enumerate(self.pages, start=1):
            for n, panel in enumerate(page.panels, start=1):
                yield p, n, page, panel


def story_json_schema() -> dict[str, Any]:
    schema = Story.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "comicgen story"
    return schema


def write_schema(ws) -> Path:
    """Write stories/story.schema.json, which the template's first line points at."""
    from comicgen.fsutil import atomic_write_text

    path = ws.stories_dir / SCHEMA_FILE
    text = json.dumps(story_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
    return path


# -- a new story ---------------------------------------------------------------------------


def create_story(ws, name: str, title: str | None = None) -> tuple[Path, list[str]]:
    """Write ``stories/NAME.yaml`` from the template (never over an existing file) and
    the schema beside it; returns the file and the character names it could use."""
    from comicgen.errors import ComicgenError
    from comicgen.fsutil import safe_filename

    slug = safe_filename(Path(name).stem if name.endswith(".yaml") else name, "")
    if not slug:
        raise ComicgenError(
            f"'{name}' is not usable as a file name", hint="use letters, digits, '-' or '_'"
        )
    ws.stories_dir.mkdir(parents=True, exist_ok=True)
    path = ws.stories_dir / f"{slug}.yaml"
    if path.exists():
        raise ComicgenError(
            f"{ws.relative(path)} already exists; it was left as it is",
            hint="pick another name or edit that file",
        )
    names = _character_names(ws)
    text = story_template(slug, title or slug.replace("-", " ").replace("_", " ").title(), ws)
    write_schema(ws)
    with open(path, "x", encoding="utf-8") as handle:  # 'x': never overwrite
        handle.write(text)
    return path, names


def render_command(ws, path: Path) -> str:
    """The command that renders ``path``, written to work from the current directory."""
    import shlex

    from comicgen.fsutil import shown_path

    return f"comicgen render {shlex.quote(shown_path(path))}{workspace_option(ws)} --open"


def workspace_option(ws) -> str:
    """`` --workspace PATH`` when commands run here would not find ``ws``, else ''."""
    import shlex

    from comicgen.fsutil import shown_path

    if Path.cwd().resolve().is_relative_to(ws.root):
        return ""
    return f" --workspace {shlex.quote(shown_path(ws.root))}"


def story_template(slug: str, title: str, ws) -> str:
    from jinja2 import Environment, PackageLoader

    names = _character_names(ws)
    first = names[0] if names else None
    second = names[1] if len(names) > 1 else None
    if first:
        prompt1 = f"{{{first}}} on the left, wide shot, grass, day sky, a tree"
        prompt2 = (
            f"{{{first}}} on the left and {{{second}}} on the right, wide shot, snow, day sky"
            if second
            else f"{{{first}}}, close-up, snow, day sky"
        )
    else:
        prompt1 = "a character on the left, wide shot, grass, day sky, a tree"
        prompt2 = "a character, close-up, snow, day sky"
    prompt3 = "a house, wide shot, sand, night sky"
    env = Environment(
        loader=PackageLoader("comicgen", "data"), keep_trailing_newline=True, autoescape=False
    )
    return env.get_template("story-template.yaml.j2").render(
        name=slug,
        title=json.dumps(title, ensure_ascii=False),
        author=json.dumps(_author(), ensure_ascii=False),
        first=first,
        second=second,
        prompt1=prompt1,
        prompt2=prompt2,
        prompt3=prompt3,
    )


def _author() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name is fine
        return "me"


def _character_names(ws) -> list[str]:
    """Names usable as YAML plain scalars, from the library and characters/ folder."""
    import re

    from comicgen.library.folders import character_files, read_name

    names: list[str] = []
    if ws.db_path.exists():
        try:
            from comicgen.library import Library

            with Library.open(ws.db_path, ws.cache_dir) as lib:
                names += lib.character_names()
        except Exception:  # noqa: BLE001 - the template works without them
            pass
    if ws.characters_dir.is_dir():
        names += [n for n in map(read_name, character_files(ws.characters_dir)) if n]
    seen: list[str] = []
    for n in names:
        if re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,30}", n) and n.lower() not in (
            s.lower() for s in seen
        ):
            seen.append(n)
    return [n.lower() for n in seen]
