"""``comicgen render``: paint a story's panels and lay out its pages."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from comicgen.commands._common import (
    AllowOutsideOption,
    WorkspaceOption,
    console,
    escape,
    handle_errors,
)


@handle_errors
def render(
    ctx: typer.Context,
    story: Annotated[
        Path, typer.Argument(help="The story file, e.g. stories/example.yaml (or just 'example').")
    ],
    workspace: WorkspaceOption = None,
    pages: Annotated[
        str | None,
        typer.Option(
            "--pages", help="Paint only these pages, e.g. 2-3 or 1,4.", show_default=False
        ),
    ] = None,
    panel: Annotated[
        str | None,
        typer.Option("--panel", help="Paint only this panel, e.g. 2.1.", show_default=False),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(help="cpu, cuda, cuda:1, mps (default: the workspace's model.device)."),
    ] = None,
    open_: Annotated[
        bool, typer.Option("--open", help="Open index.html in the browser when done.")
    ] = False,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also write NAME.pdf.")] = False,
    strip: Annotated[
        bool, typer.Option("--strip", help="Also write one long vertical image (webtoon).")
    ] = False,
    epub: Annotated[
        bool,
        typer.Option(
            "--epub",
            help="Also write NAME.epub: EPUB 3 fixed layout with panel-by-panel "
            "(region-based) navigation and the lettering as text.",
        ),
    ] = False,
    acbf: Annotated[
        bool,
        typer.Option(
            "--acbf",
            help="Also write NAME.acbf (ACBF 1.1: frames and text layers, for comic readers).",
        ),
    ] = False,
    dpi: Annotated[
        int | None,
        typer.Option(min=36, max=1200, help="Resolution of the PNG pages (default from config)."),
    ] = None,
    allow_outside: AllowOutsideOption = False,
    batch_size: Annotated[
        str,
        typer.Option(
            "--batch-size",
            help="Panels painted per model call: a number, or 'auto' (from free GPU memory; "
            "4 on the CPU). Panels are batched when they share size and, for panels with "
            "characters, the same characters and infusion settings.",
        ),
    ] = "1",
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            min=1,
            max=64,
            help="Split the panels over N processes (GPUs, or CPU processes with one thread "
            "each) through Accelerate.",
        ),
    ] = 1,
    takes: Annotated[
        int | None,
        typer.Option(
            "--takes",
            min=1,
            max=16,
            help="Paint N takes (seeds) of the --panel and write a contact sheet to "
            "build/NAME/takes/; keep one with 'comicgen pick'.",
            show_default=False,
        ),
    ] = None,
    compile_: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the U-Net: slower first panels, faster later ones "
            "(worth it for long stories on a GPU).",
        ),
    ] = False,
) -> None:
    """Paint every panel of a story and write its pages to build/NAME/.

    Panels are cached: after an edit only the changed panels are painted again.
    Output: build/NAME/index.html, page-01.html…, page-01.png…, NAME.cbz.
    """
    import os

    from comicgen.commands._common import open_workspace
    from comicgen.fsutil import shown_path
    from comicgen.library import Library
    from comicgen.render import open_in_browser, render_story

    size = _batch_size(batch_size)
    ws = open_workspace(workspace)
    if takes is not None:
        return _takes(ws, story, panel, takes, device, allow_outside, size)
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        from comicgen.launch import relaunch, same_command

        args = same_command(ctx, drop=("processes",), workspace=ws.root)
        cpu = device == "cpu" or (device is None and ws.config.model.device == "cpu")
        raise typer.Exit(relaunch(processes, args, cpu=cpu or not _has_cuda()))
    from comicgen.story_schema import write_schema

    write_schema(ws)  # keeps stories/story.schema.json in step with this comicgen
    out = console()
    main = os.environ.get("RANK", "0") == "0"
    reporter_cm = RichReporter(out) if main else _Quiet()
    with (
        _sigterm_as_interrupt(),
        Library.open(ws.db_path, ws.cache_dir) as library,
        reporter_cm as reporter,
    ):
        result = render_story(
            ws,
            story,
            library=library,
            reporter=reporter,
            pages=pages,
            panel=panel,
            device=device,
            allow_outside=allow_outside,
            pdf=pdf,
            strip=strip,
            epub=epub,
            acbf=acbf,
            dpi=dpi,
            batch_size=size,
            compile=compile_,
        )
    if not result.main:
        return
    for warning in result.warnings:
        out.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    parts = [f"{result.painted} panel{'s' if result.painted != 1 else ''} painted"]
    parts.append(f"{result.reused} reused")
    if result.skipped:
        parts.append(f"{result.skipped} not painted yet (outside --pages/--panel)")
    out.print(", ".join(parts))
    out.print(f"pages: [bold]{escape(shown_path(result.index))}[/]")
    if result.extras:
        out.print("also: " + ", ".join(escape(shown_path(p)) for p in result.extras))
    if open_ and not open_in_browser(result.index):
        out.print(
            "no web browser found to open the pages; open this address in one: "
            f"{escape(result.index.resolve().as_uri())}",
            soft_wrap=True,
        )


def _takes(ws, story, panel, count, device, allow_outside, size) -> None:
    from comicgen.library import Library
    from comicgen.takes import render_takes

    if not panel:
        raise typer.BadParameter("--takes needs --panel, e.g. --panel 2.1", param_hint="--takes")
    out = console()
    model = {"device": device} if device else {}
    with (
        _sigterm_as_interrupt(),
        Library.open(ws.db_path, ws.cache_dir) as library,
        RichReporter(out) as reporter,
    ):
        result = render_takes(
            ws,
            story,
            panel,
            count,
            library=library,
            reporter=reporter,
            model=model,
            allow_outside=allow_outside,
            batch_size=size,
        )
    out.print(f"{result.painted} takes painted, {result.reused} reused")
    for take in result.takes:
        out.print(f"  take {take.number}: seed {take.seed}")
    out.print(f"contact sheet: [bold]{escape(ws.relative(result.html))}[/]")
    out.print(f"keep one with: comicgen pick {result.panel} NUMBER")


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (kill, a closing terminal) stops a render like Ctrl-C: temporary files
    removed, finished panels kept, the usual message."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _batch_size(value: str) -> int | None:
    if value == "auto":
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= 256:
        raise typer.BadParameter("a number from 1 to 256, or 'auto'", param_hint="--batch-size")
    return number


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


class _Quiet:
    """The reporter of the helper processes of a multi-process render: silent."""

    def __enter__(self):
        from comicgen.render import SilentReporter

        return SilentReporter()

    def __exit__(self, *exc):
        return False


class RichReporter:
    """Progress bars over panels and over the denoising steps of the current panel."""

    def __init__(self, out):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.out = out
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=out,
            transient=True,
        )
        self.panels = None
        self.steps = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def planned(self, total: int, to_paint: int) -> None:
        noun = "panel" if total == 1 else "panels"
        self.out.print(f"{total} {noun}: {to_paint} to paint, {total - to_paint} cached")
        self.panels = self.progress.add_task("panels", total=total)

    def panel_started(self, job) -> None:
        if self.steps is not None:
            self.progress.remove_task(self.steps)
        self.steps = self.progress.add_task(f"  panel {job.id}", total=job.steps)

    def step(self, done: int, total: int) -> None:
        if self.steps is not None:
            self.progress.update(self.steps, completed=done, total=total)

    def panel_done(self, job, painted: bool) -> None:
        if self.panels is not None:
            self.progress.advance(self.panels)
        if painted and self.steps is not None:
            self.progress.remove_task(self.steps)
            self.steps = None

    def message(self, text: str) -> None:
        self.progress.console.print(escape(text), soft_wrap=True)
