"""The checks of ``comicgen doctor``: config, database, characters, panel cache, stories,
torch and device, model. Each is a :class:`Check`; none changes anything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass
class Check:
    name: str
    status: str
    detail: str


def run_checks(start: Path | None) -> list[Check]:
    """Every check, in order; a ComicgenError only when there is no workspace at all."""
    from comicgen.errors import ComicgenError
    from comicgen.settings import WorkspaceConfig
    from comicgen.workspace import CONFIG_NAME, Workspace, find_root

    checks: list[Check] = []
    root = find_root(start)
    try:
        ws = Workspace.load(root)
        checks.append(Check("config", OK, f"{CONFIG_NAME} parses"))
    except ComicgenError as exc:  # the workspace exists but its config is broken
        checks.append(Check("config", FAIL, exc.line()))
        ws = Workspace(root=root, config=WorkspaceConfig())
    checks.extend(_database_checks(ws))
    checks.extend(_story_checks(ws))
    checks.extend(_torch_checks(ws))
    checks.append(_memory_check(ws))
    checks.append(_model_check(ws))
    checks.append(_upscaler_check(ws))
    return checks


# -- the stories ---------------------------------------------------------------------------


def _story_checks(ws) -> list[Check]:
    """Each story as a render would check it (structure, characters, layouts), and the
    words a bundled model would not know — without painting or importing anything."""
    from comicgen.errors import ComicgenError
    from comicgen.jobs import vocabulary_warning
    from comicgen.layout import check_layout
    from comicgen.story import check_story, expand_prompt, load_story

    files = sorted(ws.stories_dir.glob("*.yaml")) if ws.stories_dir.is_dir() else []
    if not files:
        return [Check("stories", OK, "none yet")]
    descriptions = _characters(ws)
    checks = []
    for path in files:
        name = f"story {path.stem}"
        try:
            loaded = load_story(path, display=ws.relative(path))
            check_story(loaded, list(descriptions), check_layout)
        except ComicgenError as exc:
            lines = exc.line().splitlines()
            more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
            checks.append(Check(name, FAIL, lines[0] + more))
            continue
        story = loaded.story
        panels = sum(len(page.panels) for page in story.pages)
        pages = len(story.pages)
        detail = f"{pages} page{'s' * (pages != 1)}, {panels} panel{'s' * (panels != 1)}"
        warning = None
        try:
            from comicgen.models import inspect_model

            info = inspect_model(story.model or ws.config.model.name, base=ws.root)
            prompts = [expand_prompt(p.prompt, descriptions) for _p, _n, _pg, p in story.panels()]
            warning = vocabulary_warning(info, prompts)
        except ComicgenError:
            pass  # the model check reports an unavailable model
        checks.append(Check(name, WARN, warning) if warning else Check(name, OK, detail))
    return checks


def _characters(ws) -> dict[str, str]:
    """Name → description of every character a render of ``ws`` would know: the
    library's and the characters/ folder's."""
    from comicgen.errors import ComicgenError

    known: dict[str, str] = {}
    if ws.characters_dir.is_dir():
        from comicgen.library.folders import character_files, read_character_file

        for path in character_files(ws.characters_dir):
            try:
                spec = read_character_file(path, ws.characters_dir)
            except ComicgenError:
                continue  # 'characters import' reports it
            known[spec.name] = spec.description
    if ws.db_path.exists():
        from comicgen.library import Library
        from comicgen.library.migrations import SCHEMA_VERSION

        try:
            if Library.inspect(ws.db_path)[0] != SCHEMA_VERSION:
                return known  # opening it would migrate it; the database checks say so
            with Library.open(ws.db_path, ws.cache_dir) as lib:
                known |= {c.name: c.description for c in lib.list_characters()}
        except ComicgenError:
            pass  # the database checks report it
    return known


# -- the database --------------------------------------------------------------------------


def _database_checks(ws) -> list[Check]:
    from comicgen.library.migrations import SCHEMA_VERSION

    name = ws.relative(ws.db_path)
    if not ws.db_path.exists():
        return [Check("database", OK, f"{name} not created yet (made on first use)")]
    from comicgen.errors import ComicgenError
    from comicgen.library import Library

    try:
        version, integrity = Library.inspect(ws.db_path)
    except ComicgenError as exc:
        return [Check("database", FAIL, f"{name}: {exc.message}")]
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


def _memory_check(ws) -> Check:
    """The device's memory and the plan ``[model] memory`` makes there (comicgen.memory)."""
    from comicgen.errors import ComicgenError
    from comicgen.memory import doctor_line

    try:
        fits, detail = doctor_line(ws.config.model, ws.root)
    except ComicgenError as exc:  # the device check reports an unavailable device
        return Check("memory", WARN, exc.line())
    return Check("memory", OK if fits else WARN, detail)


def _model_check(ws) -> Check:
    from comicgen.errors import ComicgenError

    name = ws.config.model.name
    try:
        from comicgen.models import check_model_available

        available, detail = check_model_available(name, base=ws.root)
    except ComicgenError as exc:
        available, detail = False, exc.line()
    return Check("model", OK if available else FAIL, f"{name}: {detail}")


def _upscaler_check(ws) -> Check:
    """``[render] upscale``: loads it (small models, a second at most) and names it."""
    from comicgen.errors import ComicgenError
    from comicgen.upscale import default_upscaler, load_upscaler

    spec = ws.config.render.upscale or default_upscaler(ws.config.model.name)
    try:
        upscaler = load_upscaler(spec, base=ws.root)
    except ComicgenError as exc:
        return Check("upscaler", FAIL, exc.line())
    if upscaler is None:
        return Check("upscaler", OK, "none (panels are resized on the page)")
    return Check("upscaler", OK, f"{spec}: {upscaler.arch} x{upscaler.scale}")
