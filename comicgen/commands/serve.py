"""``comicgen serve``: the live studio for a workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from comicgen.commands._common import WorkspaceOption, console, escape, handle_errors


@handle_errors
def serve(
    story: Annotated[
        Path | None,
        typer.Argument(help="The story to open first (default: the list of stories)."),
    ] = None,
    workspace: WorkspaceOption = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8765,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on. Anything but 127.0.0.1 lets other machines read "
            "your workspace's stories and pages.",
        ),
    ] = "127.0.0.1",
    open_: Annotated[bool, typer.Option("--open", help="Open the page in the browser.")] = False,
) -> None:
    """Serve the workspace's stories live: save the YAML, see the page.

    Keeps the model loaded, watches stories/, characters/, templates/, comicgen.toml and
    the workspace's LoRA and embedding files, repaints only the panels that changed
    (through the same panel cache as 'render') and updates the open pages in place.
    Takes of a panel and the character library are in the browser. Stop with Ctrl-C.
    """
    from comicgen.commands._common import open_workspace
    from comicgen.serve.server import run

    ws = open_workspace(workspace)
    out = console()
    if host not in ("127.0.0.1", "localhost", "::1"):
        console(stderr=True).print(
            f"[yellow]warning:[/] listening on {escape(host)}: anyone who can reach this "
            "machine can read the workspace's stories and pages (writes still need the "
            "page's token)",
            soft_wrap=True,
        )
    run(ws.root, story, host=host, port=port, open_browser=open_, out=out)
