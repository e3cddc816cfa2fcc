"""``comicgen characters …``: the character library (reference images per character)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from comicgen.commands._common import (
    AllowOutsideOption,
    Command,
    Group,
    WorkspaceOption,
    console,
    escape,
    handle_errors,
)

app = typer.Typer(
    cls=Group,
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


@app.command("add", cls=Command)
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

    Example (one command):

    \b
      comicgen characters add Pip -i pip-front.png -i pip-side.png \\
        -d "a small red creature with a blue hat"
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


@app.command("list", cls=Command)
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


@app.command("show", cls=Command)
@handle_errors
def show(
    name: NameArgument,
    open_: Annotated[
        bool, typer.Option("--open", help="Open the contact sheet in the browser.")
    ] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Show a character: its description and reference images, and write a contact
    sheet of its views and their masks (build/characters/NAME.png)."""
    from rich.table import Table

    from comicgen.commands._common import open_workspace
    from comicgen.fsutil import atomic_save_image, safe_filename, shown_path
    from comicgen.images import contact_sheet
    from comicgen.render import open_in_browser

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
    path = ws.build_dir / "characters" / f"{safe_filename(info.name, 'character')}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet = contact_sheet([i.image() for i in info.images], [i.mask() for i in info.images])
    atomic_save_image(sheet, path, format="PNG")
    out.print(f"views and masks: [bold]{escape(shown_path(path))}[/]")
    if open_ and not open_in_browser(path):
        out.print(
            f"no web browser found to open it; open this address: {path.resolve().as_uri()}",
            soft_wrap=True,
        )


@app.command("remove", cls=Command)
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


@app.command("export", cls=Command)
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
    from comicgen.fsutil import shown_path

    ws = open_workspace(workspace)
    folder = to if to is not None else ws.characters_dir
    with _library(ws) as lib:
        path = lib.export_character(name, folder, overwrite=force)
    console().print(f"wrote [bold]{escape(shown_path(path))}[/]")


@app.command("import", cls=Command)
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
    allow_outside: AllowOutsideOption = False,
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
