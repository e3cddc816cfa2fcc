"""``comicgen pick``: keep one take of a panel (its seed goes into the story)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from comicgen.commands._common import WorkspaceOption, console, escape, handle_errors


@handle_errors
def pick(
    panel: Annotated[str, typer.Argument(help="The panel, e.g. 2.1 (as in render --panel).")],
    take: Annotated[int, typer.Argument(min=1, help="The take's number on the contact sheet.")],
    story: Annotated[
        Path | None,
        typer.Argument(help="The story (default: the one whose takes of PANEL are newest)."),
    ] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Keep take TAKE of PANEL: write its seed into the story YAML.

    Paint takes first with 'comicgen render STORY --panel 2.1 --takes 4'. Only the
    panel's seed line changes; comments and formatting stay as they are.
    """
    from comicgen.commands._common import open_workspace
    from comicgen.takes import pick as pick_take

    ws = open_workspace(workspace)
    path, seed = pick_take(ws, panel, take, story)
    where = escape(ws.relative(path))
    console().print(f"panel {escape(panel)}: seed {seed} (take {take}) → {where}")
