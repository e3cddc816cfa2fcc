"""``comicgen characters …``: the character library (reference images per character)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from comicgen.commands._common import WorkspaceOption, console, escape, handle_errors

app = typer.Typer(
    help="Manage the character library: each character's reference images and description, "
    "which keep it looking the same from panel to panel.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

NameArgument = Annotated[
    str, typer.Argument(help="The character's name (any case: names are unique ignoring case).")
]


def _library(ws):
    from comicgen.library import Library

    return Library.open(ws.db_path, ws.cache_dir, display=ws.relative(ws.db_path))


@app.command("add")
@handle_errors
def add(
    name: NameArgument,
    image: Annotated[
        list[Path] | None,
        typer.Option(
            "--image",
            "-i",
            help="A reference image (PNG, JPEG, WebP…); repeat for several views.",
            show_default=False,
        ),
    ] = None,
    description: Annotated[
        str,
        typer.Option(
            "--description", "-d", help="What the character looks like; {name} in prompts."
        ),
    ] = "",
    sheet: Annotated[
        Path | None,
        typer.Option(
            help="One reference sheet holding several views, cut by --grid.", show_default=False
        ),
    ] = None,
    grid: Annotated[
        str | None,
        typer.Option(
            help="How --sheet is divided, COLUMNSxROWS (default 2x2).", show_default=False
        ),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace an existing character of this name.")
    ] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Add a character with its reference images (all or nothing).

    Example: comicgen characters add Pip -i pip-front.png -i pip-side.png -d "a small red
    creature with a blue hat"
    """
    from comicgen.commands._common import open_workspace

    ws = open_workspace(workspace)
    out = console()
    with _library(ws) as lib:
        info = lib.add_character(
            name, description, images=image or [], sheet=sheet, grid=grid, replace=replace
        )
    for note in info.notes:
        out.print(f"[yellow]note:[/] {escape(note)}")
    count = len(info.images)
    out.print(
        f"{'replaced' if replace else 'added'} character [bold]{escape(info.name)}[/] "
        f"with {count} image{'s' if count != 1 else ''}"
    )


@app.command("list")
@handle_errors
def list_(workspace: WorkspaceOption = None) -> None:
    """List the characters in the library."""
    from rich.table import Table

    from comicgen.commands._common import open_workspace

    ws = open_workspace(workspace)
    out = console()
    with _library(ws) as lib:
        characters = lib.list_characters()
    if not characters:
        out.print("no characters yet — add one with 'comicgen characters add NAME --image a.png'")
        return
    table = Table("name", "images", "description", "added")
    for info in characters:
        description = info.description
        if len(description) > 60:
            description = description[:59] + "…"
        added = info.created.strftime("%Y-%m-%d") if info.created else ""
        table.add_row(escape(info.name), str(len(info.images)), escape(description), added)
    out.print(table)


@app.command("show")
@handle_errors
def show(name: NameArgument, workspace: WorkspaceOption = None) -> None:
    """Show a character: its description and reference images."""
    from rich.table import Table

    from comicgen.commands._common import open_workspace

    ws = open_workspace(workspace)
    out = console()
    with _library(ws) as lib:
        info = lib.get_character(name)
    out.print(f"[bold]{escape(info.name)}[/]")
    out.print(escape(info.description) if info.description else "[dim](no description)[/]")
    table = Table("#", "size", "mask", "sha256", "source")
    for number, image in enumerate(info.images, start=1):
        table.add_row(
            str(number),
            f"{image.width}x{image.height}",
            "alpha" if image.has_alpha else "border",
            image.sha256[:12],
            escape(image.source),
        )
    out.print(table)


@app.command("remove")
@handle_errors
def remove(
    name: NameArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Remove a character and its images from the library (asks first)."""
    from comicgen.commands._common import open_workspace

    ws = open_workspace(workspace)
    out = console()
    with _library(ws) as lib:
        info = lib.get_character(name)
        count = len(info.images)
        if not yes and not typer.confirm(
            f"Remove character '{info.name}' and its {count} image{'s' if count != 1 else ''}?"
        ):
            out.print("nothing removed")
            raise typer.Exit(1)
        lib.remove_character(info.name)
    out.print(f"removed character [bold]{escape(info.name)}[/]")


@app.command("export")
@handle_errors
def export(
    name: NameArgument,
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            help="Folder to write NAME.yaml and NAME/01.png… into (default: the "
            "workspace's characters/).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an earlier export of this character.")
    ] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Write a character as NAME.yaml plus its images, the format 'import' reads."""
    from comicgen.commands._common import open_workspace

    ws = open_workspace(workspace)
    folder = to if to is not None else ws.characters_dir
    with _library(ws) as lib:
        path = lib.export_character(name, folder, overwrite=force)
    console().print(f"wrote [bold]{escape(ws.relative(path))}[/]")


@app.command("import")
@handle_errors
def import_(
    folder: Annotated[
        Path | None,
        typer.Argument(
            help="Folder of NAME.yaml files (default: the workspace's characters/).",
            show_default=False,
        ),
    ] = None,
    update: Annotated[
        bool,
        typer.Option("--update", help="Also replace characters already in the library."),
    ] = False,
    allow_outside: Annotated[
        bool,
        typer.Option("--allow-outside", help="Allow image paths that lead outside the folder."),
    ] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Import characters from NAME.yaml files and their image folders.

    Characters already in the library are skipped unless --update is given.
    """
    from comicgen.commands._common import open_workspace

    ws = open_workspace(workspace)
    out = console()
    source = folder if folder is not None else ws.characters_dir
    with _library(ws) as lib:
        names = lib.import_folder(source, update=update, allow_outside=allow_outside)
        total = len(lib.character_names())
    if names:
        out.print(
            f"imported {len(names)} character{'s' if len(names) != 1 else ''}: "
            + ", ".join(f"[bold]{escape(n)}[/]" for n in names)
        )
    else:
        out.print(f"nothing new to import ({total} in the library; --update replaces)")
