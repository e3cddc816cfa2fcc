"""Shared CLI pieces: the --workspace option and turning errors into one line."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer
import typer.core

WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder (default: found by walking up from the current directory, "
        "or $COMICGEN_WORKSPACE).",
        show_default=False,
    ),
]


AllowOutsideOption = Annotated[
    bool,
    typer.Option(
        "--allow-outside",
        help="Allow files outside the workspace (stories) or the characters folder (images "
        "and character files).",
    ),
]


def _plain_labels(params: list) -> list:
    """--help without Typer's type labels (``<bool>``, ``<list[Path]>``): a flag shows
    none, an option a word in capitals after it (its own metavar, or its name)."""
    for param in params:
        if getattr(param, "param_type_name", "") == "argument":
            param.display_type_rich = lambda ctx: None
        elif param.metavar is None:
            param.metavar = "" if param.is_flag else (param.name or "value").upper()
    return params


class Command(typer.core.TyperCommand):
    """Every comicgen command: plain option labels in --help."""

    def get_params(self, ctx):
        return _plain_labels(super().get_params(ctx))


class Group(typer.core.TyperGroup):
    """Every comicgen command group: plain option labels in --help."""

    def get_params(self, ctx):
        return _plain_labels(super().get_params(ctx))


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one red error line to stderr and return an Exit to raise."""
    err = console(stderr=True)
    for line in message.splitlines() or [message]:  # several problems: one line each
        err.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)
    return typer.Exit(code)


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def handle_errors(func):
    """Decorator: a ComicgenError becomes one line on stderr and its exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from comicgen.errors import ComicgenError

        try:
            return func(*args, **kwargs)
        except ComicgenError as exc:
            raise fail(exc.line(), exc.exit_code) from None
        except KeyboardInterrupt:
            console(stderr=True).print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None
        except BrokenPipeError:  # e.g. `comicgen schema | head`
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper


def open_workspace(path: Path | None):
    from comicgen.workspace import Workspace

    return Workspace.find(path)
