"""``comicgen new-story`` and ``comicgen schema``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from comicgen.commands._common import console, escape, handle_errors


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
    from comicgen.story_schema import story_template, write_schema
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


@handle_errors
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of story files (for editors: validation and completion)."""
    from comicgen.story_schema import story_json_schema

    text = json.dumps(story_json_schema(), indent=2, ensure_ascii=False)
    if output is None:
        typer.echo(text)
    else:
        from comicgen.fsutil import atomic_write_text

        atomic_write_text(output, text + "\n")
