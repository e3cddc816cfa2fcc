"""``comicgen new-story`` and ``comicgen schema``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from comicgen.commands._common import console, escape, handle_errors

SCHEMA_FILE = "story.schema.json"


@handle_errors
def new_story(
    name: Annotated[str, typer.Argument(help="Story name: stories/NAME.yaml is created.")],
    title: Annotated[str | None, typer.Option(help="The story's title.")] = None,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Workspace folder; created (with comicgen.toml, stories/, characters/) "
            "when it is not one yet. Default: the workspace around the current directory.",
        ),
    ] = None,
) -> None:
    """Create stories/NAME.yaml from a commented template that shows every field.

    An existing story is never overwritten.
    """
    from comicgen.errors import ComicgenError
    from comicgen.fsutil import safe_filename
    from comicgen.workspace import Workspace

    if directory is not None:
        ws = Workspace.create(directory)
    else:
        ws = Workspace.find()
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
    text = story_template(slug, title or slug.replace("-", " ").replace("_", " ").title(), ws)
    write_schema(ws)
    with open(path, "x", encoding="utf-8") as handle:  # 'x': never overwrite
        handle.write(text)
    out = console()
    out.print(f"created [bold]{escape(ws.relative(path))}[/]")
    out.print(f"next: edit it, then run  comicgen render {escape(ws.relative(path))} --open")


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
            else f"close-up of {{{first}}}, snow, day sky"
        )
    else:
        prompt1 = "a character on the left, wide shot, grass, day sky, a tree"
        prompt2 = "close-up of a character, snow, day sky"
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

    import yaml

    names: list[str] = []
    if ws.db_path.exists():
        try:
            from comicgen.library import Library

            with Library.open(ws.db_path, ws.cache_dir) as lib:
                names += lib.character_names()
        except Exception:  # noqa: BLE001 - the template works without them
            pass
    for path in sorted(ws.characters_dir.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            continue
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            names.append(data["name"])
    seen: list[str] = []
    for n in names:
        if re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,30}", n) and n.lower() not in (
            s.lower() for s in seen
        ):
            seen.append(n)
    return [n.lower() for n in seen]


def write_schema(ws) -> Path:
    """Write stories/story.schema.json, which the template's first line points at."""
    from comicgen.fsutil import atomic_write_text
    from comicgen.story import story_json_schema

    path = ws.stories_dir / SCHEMA_FILE
    text = json.dumps(story_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
    return path


@handle_errors
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of story files (for editors: validation and completion)."""
    from comicgen.story import story_json_schema

    text = json.dumps(story_json_schema(), indent=2, ensure_ascii=False)
    if output is None:
        typer.echo(text)
    else:
        from comicgen.fsutil import atomic_write_text

        atomic_write_text(output, text + "\n")
