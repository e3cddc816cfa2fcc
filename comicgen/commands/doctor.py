"""``comicgen doctor``: check a workspace and report in a table (exit 1 if a check fails)."""

from __future__ import annotations

import typer

from comicgen.commands._common import WorkspaceOption, console, escape, handle_errors

_STYLE = {"ok": "green", "warn": "yellow", "FAIL": "bold red"}


@handle_errors
def doctor(workspace: WorkspaceOption = None) -> None:
    """Check the workspace: config, database integrity and schema, character images,
    panel cache, torch and device, the device's memory and the memory plan that
    [model] memory chooses there, and whether the configured model and upscaler load.

    Exits with 1 when a check fails.
    """
    from rich.table import Table

    from comicgen.doctor import FAIL, WARN, run_checks

    checks = run_checks(workspace)
    table = Table("check", "result", "detail", title="comicgen doctor")
    for check in checks:
        style = _STYLE[check.status]
        table.add_row(check.name, f"[{style}]{check.status}[/]", escape(check.detail))
    out = console()
    out.print(table)
    failed = [c for c in checks if c.status == FAIL]
    if failed:
        out.print(f"[bold red]{len(failed)} check{'s' if len(failed) != 1 else ''} failed[/]")
        raise typer.Exit(1)
    warned = sum(1 for c in checks if c.status == WARN)
    out.print(
        "all checks passed" + (f" ({warned} warning{'s' if warned != 1 else ''})" if warned else "")
    )
