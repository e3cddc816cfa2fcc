"""The ``comicgen`` command line. It only parses arguments and calls the stages.

Heavy libraries (torch, diffusers) are imported inside the commands that need them,
so ``comicgen --help`` answers at once.
"""

from __future__ import annotations

from typing import Annotated

import typer

from comicgen import __version__
from comicgen.commands import characters, doctor, render, serve, stories, takes
from comicgen.commands._common import Command, Group

app = typer.Typer(
    cls=Group,
    name="comicgen",
    help="Turn a story written as YAML into comic pages.\n\n"
    "Start with 'comicgen new-story NAME', edit stories/NAME.yaml, then "
    "'comicgen render stories/NAME.yaml --open'.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)

app.command("new-story", cls=Command)(stories.new_story)
app.command("render", cls=Command)(render.render)
app.command("pick", cls=Command)(takes.pick)
app.command("serve", cls=Command)(serve.serve)
app.command("schema", cls=Command)(stories.schema)
app.command("doctor", cls=Command)(doctor.doctor)
app.add_typer(characters.app, name="characters")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"comicgen {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Turn a story written as YAML into comic pages."""


def main() -> None:
    app()
