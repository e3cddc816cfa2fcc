"""``comicgen doctor``: check a workspace and report in a table (exit 1 if a check fails)."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import typer

from comicgen.commands._common import WorkspaceOption, console, escape, handle_errors

OK, WARN, FAIL = "ok", "warn", "FAIL"
_STYLE = {OK: "green", WARN: "yellow", FAIL: "bold red"}


@dataclass
class Check:
    name: str
    status: str
    detail: str


@handle_errors
def doctor(workspace: WorkspaceOption = None) -> None:
    """Check the workspace: config, database integrity and schema, character images,
    panel cache, torch and device, and whether the configured model is available.

    Exits with 1 when a check fails.
    """
    from rich.table import Table

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


def run_checks(start: Path | None) -> list[Check]:
    """Every check, in order; a ComicgenError only when there is no workspace at all."""
    from comicgen.errors import LocatedError
    from comicgen.settings import WorkspaceConfig
    from comicgen.workspace import CONFIG_NAME, Workspace

    checks: list[Check] = []
    try:
        ws = Workspace.find(start)
        checks.append(Check("config", OK, f"{CONFIG_NAME} parses"))
    except LocatedError as exc:  # the workspace exists but its config is broken
        root = _workspace_root(start)
        checks.append(Check("config", FAIL, exc.line()))
        ws = Workspace(root=root, config=WorkspaceConfig())
    checks.extend(_database_checks(ws))
    checks.extend(_torch_checks(ws))
    checks.append(_model_check(ws))
    return checks


def _workspace_root(start: Path | None) -> Path:
    from comicgen.workspace import CONFIG_NAME, ENV_WORKSPACE

    if start is None and os.environ.get(ENV_WORKSPACE):
        return Path(os.environ[ENV_WORKSPACE]).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    return here


# -- the database --------------------------------------------------------------------------


def _database_checks(ws) -> list[Check]:
    from comicgen.library.migrations import SCHEMA_VERSION

    name = ws.relative(ws.db_path)
    if not ws.db_path.exists():
        return [Check("database", OK, f"{name} not created yet (made on first use)")]
    try:
        conn = sqlite3.connect(f"{ws.db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return [Check("database", FAIL, f"{name}: cannot be read as SQLite ({exc})")]
    checks = []
    if integrity == ["ok"]:
        checks.append(Check("database integrity", OK, f"{name}: integrity_check ok"))
    else:
        more = f" (+{len(integrity) - 1} more)" if len(integrity) > 1 else ""
        checks.append(Check("database integrity", FAIL, f"{name}: {integrity[0]}{more}"))
    if version == SCHEMA_VERSION:
        checks.append(Check("schema version", OK, f"{version} (current)"))
    elif version > SCHEMA_VERSION:
        checks.append(
            Check(
                "schema version",
                FAIL,
                f"{version} is newer than this comicgen knows ({SCHEMA_VERSION}); upgrade comicgen",
            )
        )
        return checks
    else:
        checks.append(
            Check(
                "schema version",
                WARN,
                f"{version}, older than {SCHEMA_VERSION}: migrated on next use "
                f"(after a backup to {ws.db_path.name}.bak-v{version})",
            )
        )
        return checks
    if integrity != ["ok"]:
        return checks
    checks.extend(_library_checks(ws))
    return checks


def _library_checks(ws) -> list[Check]:
    from comicgen.errors import ComicgenError
    from comicgen.library import Library

    try:
        lib = Library.open(ws.db_path, ws.cache_dir, display=ws.relative(ws.db_path))
    except ComicgenError as exc:
        return [Check("library", FAIL, exc.line())]
    checks = []
    with lib:
        characters = lib.list_characters()
        problems = lib.image_problems()
        images = sum(len(c.images) for c in characters)
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            checks.append(Check("character images", FAIL, problems[0] + more))
        else:
            checks.append(
                Check(
                    "character images",
                    OK,
                    f"{len(characters)} character{'s' if len(characters) != 1 else ''}, "
                    f"{images} image{'s' if images != 1 else ''}, all decode",
                )
            )
        missing = lib.cache_missing()
        kept = len(lib.cache_keys())
        if missing:
            checks.append(
                Check(
                    "panel cache",
                    WARN,
                    f"{len(missing)} cached panel{'s' if len(missing) != 1 else ''} lost "
                    f"their file (they are painted again when needed); {kept} intact",
                )
            )
        else:
            checks.append(Check("panel cache", OK, f"{kept} panel{'s' if kept != 1 else ''}"))
        orphans = lib.cache_orphans()
        if orphans:
            size = sum(p.stat().st_size for p in orphans if p.exists())
            checks.append(
                Check(
                    "orphaned cache files",
                    WARN,
                    f"{len(orphans)} file{'s' if len(orphans) != 1 else ''} "
                    f"({size / 2**20:.1f} MiB) under {ws.relative(ws.cache_dir)}/panels with no "
                    f"database row, e.g. {orphans[0].name}; safe to delete",
                )
            )
        else:
            checks.append(Check("orphaned cache files", OK, "none"))
    return checks


# -- torch, device, model ------------------------------------------------------------------


def _torch_checks(ws) -> list[Check]:
    try:
        import torch
    except ImportError as exc:
        return [Check("torch", FAIL, f"cannot import torch ({exc}); pip install torch")]
    checks = [Check("torch", OK, f"torch {torch.__version__}")]
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.insert(0, f"cuda ({torch.cuda.get_device_name(0)})")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.insert(0, "mps")
    wanted = ws.config.model.device
    detail = "available: " + ", ".join(devices)
    kind = wanted.split(":")[0]
    if wanted == "auto" or any(d.startswith(kind) for d in devices):
        checks.append(Check("device", OK, f"model.device = {wanted}; {detail}"))
    else:
        checks.append(Check("device", FAIL, f"model.device = {wanted} is not available; {detail}"))
    return checks


def _model_check(ws) -> Check:
    from comicgen.errors import ComicgenError

    name = ws.config.model.name
    try:
        from comicgen.painter import check_model_available

        available, detail = check_model_available(name, base=ws.root)
    except ComicgenError as exc:
        available, detail = False, exc.line()
    return Check("model", OK if available else FAIL, f"{name}: {detail}")
