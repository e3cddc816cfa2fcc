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
    from comicgen.fsutil import shown_path
    from comicgen.story_schema import create_story, render_command, workspace_option
    from comicgen.workspace import Workspace

    ws = Workspace.create(directory) if directory is not None else Workspace.find()
    path, names = create_story(ws, name, title)
    out = console()
    out.print(f"created [bold]{escape(shown_path(path))}[/]")
    if not names:
        out.print(
            "the library has no characters yet: add one with  comicgen characters add NAME "
            f'--image PICTURE.png --description "…"{escape(workspace_option(ws))}'
        )
    out.print(f"next: edit it, then run  {escape(render_command(ws, path))}")


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
