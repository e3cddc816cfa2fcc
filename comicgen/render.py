"""Story → panel jobs → painted panels (cached, resumable) → pages.

The stages live by subject: :mod:`comicgen.jobs` plans (one :class:`PanelJob` per
panel, with a cache key made of everything that affects its pixels),
:mod:`comicgen.painting` paints what is not cached yet, and this module runs the
whole render: it copies every panel into ``build/<story>/panels/`` and hands a
:class:`~comicgen.book.Book` to :mod:`comicgen.publish`. The names of the stages are
importable from here too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from comicgen.book import Book, PageContent, PanelContent, SoundEffect, Speech
from comicgen.errors import Interrupted
from comicgen.fsutil import atomic_write_bytes, remove_stale_temp_files, safe_filename
from comicgen.jobs import (
    POSITION_ANCHORS,
    CharacterSpec,
    PanelJob,
    Plan,
    panel_seed,
    parse_pages,
    plan,
    resolve_story_path,
    select,
)
from comicgen.painting import (
    Reporter,
    SilentReporter,
    batches,
    character_refs,
    paint_jobs,
    panel_lock,
    png_bytes,
)
from comicgen.story import NARRATOR
from comicgen.upscale import load_upscaler, resolve_upscaler, upscale_panels
from comicgen.workspace import Workspace

__all__ = [
    "POSITION_ANCHORS",
    "CharacterSpec",
    "PanelJob",
    "Plan",
    "RenderResult",
    "Reporter",
    "SilentReporter",
    "batches",
    "build_book",
    "character_refs",
    "distributed_state",
    "open_in_browser",
    "paint_jobs",
    "panel_lock",
    "panel_seed",
    "parse_pages",
    "plan",
    "png_bytes",
    "render_story",
    "resolve_story_path",
    "select",
]


@dataclass
class RenderResult:
    story: str
    out_dir: Path
    total: int
    painted: int
    reused: int
    skipped: int
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    main: bool = True  # False in the helper processes of a multi-process render
    extras: list[Path] = field(default_factory=list)  # exports besides the pages (CBZ, EPUB...)

    @property
    def index(self) -> Path:
        return self.out_dir / "index.html"


# -- the whole render --------------------------------------------------------------------


def render_story(
    ws: Workspace,
    story_path: Path,
    *,
    library,
    reporter: Reporter | None = None,
    pages: str | None = None,
    panel: str | None = None,
    device: str | None = None,
    allow_outside: bool = False,
    pdf: bool = False,
    strip: bool = False,
    epub: bool = False,
    acbf: bool = False,
    dpi: int | None = None,
    batch_size: int | None = 1,
    compile: bool = False,
) -> RenderResult:
    """Paint what is missing and publish the pages.

    Under ``accelerate launch`` (or ``--processes N``) every process runs this: the
    panels to paint are split between the processes, each paints its share into the
    shared cache, and the main process lays out and writes the pages.
    """
    reporter = reporter or SilentReporter()
    from comicgen.painter import pick_device

    pick_device(device or ws.config.model.device)  # before anything is loaded
    state = distributed_state(device)
    if state is None:
        the_plan = plan(ws, story_path, library, allow_outside=allow_outside)
    else:
        if state.distributed_type.name != "MULTI_CPU":
            device = str(state.device)
        with state.main_process_first():  # the main process imports characters first
            the_plan = plan(ws, story_path, library, allow_outside=allow_outside)
    for warning in the_plan.warnings:
        reporter.message(f"warning: {warning}")
    jobs = select(the_plan, pages, panel)
    missing = [j for j in jobs if library.cache_get(j.key) is None]
    reporter.planned(len(jobs), len(missing))
    model: dict = ({"device": device} if device else {}) | ({"compile": True} if compile else {})
    upscaler = None
    if state is None or state.is_main_process:  # before painting: a bad file fails early
        upscaler = _load_upscaler(ws, the_plan, device)
    if state is None:
        painted, reused = paint_jobs(
            ws, the_plan, jobs, library, reporter, model=model, batch_size=batch_size
        )
    else:
        from accelerate.utils import gather_object

        state.wait_for_everyone()  # all processes have seen the same cache
        with state.split_between_processes(missing) as mine:
            mine_painted, _ = paint_jobs(
                ws, the_plan, list(mine), library, reporter, model=model, batch_size=batch_size
            )
        painted = sum(gather_object([mine_painted]))
        reused = len(jobs) - len(missing)
        state.wait_for_everyone()
        if not state.is_main_process:
            return RenderResult(
                the_plan.loaded.name, ws.build_dir, len(jobs), painted, reused, 0, main=False
            )
    name = safe_filename(the_plan.loaded.name, "story")
    out_dir = ws.build_dir / name
    remove_stale_temp_files(out_dir)
    upscaled: dict[str, str] = {}
    if upscaler is not None:
        try:
            upscaled = upscale_panels(
                [j.key for j in the_plan.jobs], library, upscaler, reporter.message
            )
        except KeyboardInterrupt:
            raise Interrupted(
                "interrupted while upscaling — every painted panel is kept; "
                "run the same command to resume"
            ) from None
    book, skipped = build_book(the_plan, out_dir, library, upscaled)
    from comicgen.publish import publish

    result = publish(
        book,
        out_dir,
        the_plan.page,
        template_dirs=[ws.templates_dir] if ws.templates_dir.is_dir() else [],
        pdf=pdf,
        strip=strip,
        epub=epub,
        acbf=acbf,
        dpi=dpi,
    )
    return RenderResult(
        story=the_plan.loaded.name,
        out_dir=out_dir,
        total=len(jobs),
        painted=painted,
        reused=reused,
        skipped=skipped,
        files=list(getattr(result, "files", [])),
        warnings=list(result.warnings),  # the plan's warnings were reported already
        extras=result.extras,
    )


def _load_upscaler(ws: Workspace, the_plan: Plan, device: str | None):
    """The plan's upscaler on the painter's device, or None for ``"none"``."""
    if resolve_upscaler(the_plan.upscale, ws.root) is None:
        return None
    from comicgen.painter import pick_device

    return load_upscaler(
        the_plan.upscale, device=pick_device(device or ws.config.model.device), base=ws.root
    )


def distributed_state(device: str | None):
    """Accelerate's PartialState when launched as several processes, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    cpu = device == "cpu" or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    if not cpu:
        import torch

        cpu = not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def build_book(
    the_plan: Plan, out_dir: Path, library, upscaled: dict[str, str] | None = None
) -> tuple[Book, int]:
    """Copy every available panel into ``out_dir/panels`` and describe the pages.

    ``upscaled`` maps a painted panel's key to its upscaled copy's key: that copy is the
    one the pages show (the layout still works in the painted panel's pixels)."""
    upscaled = upscaled or {}
    from PIL import Image

    story = the_plan.loaded.story
    panels_dir = out_dir / "panels"
    panels_dir.mkdir(parents=True, exist_ok=True)
    by_id = {j.id: j for j in the_plan.jobs}
    known = {name.lower(): name for name in library.character_names()}
    voices = {name.lower() for name in story.cast if name.lower() not in known}
    pages: list[PageContent] = []
    skipped = 0
    for p, page in enumerate(story.pages, start=1):
        contents = []
        for n, panel in enumerate(page.panels, start=1):
            job = by_id[panel.id or f"{p}.{n}"]
            target = panels_dir / job.file_name
            cached = library.cache_get(upscaled.get(job.key, job.key))
            if cached is not None:
                data = Path(cached).read_bytes()
                if not target.exists() or target.read_bytes() != data:
                    atomic_write_bytes(target, data)
            else:
                skipped += 1
                # not painted yet (outside --pages/--panel): a grey placeholder
                placeholder = Image.new("RGB", (job.width, job.height), (200, 200, 200))
                atomic_write_bytes(target, png_bytes(placeholder))
            anchors = {c.name.lower(): c.anchor for c in job.characters}
            dialogue = [_speech(line, job, anchors, voices, known) for line in panel.dialogue]
            points = [a for a in anchors.values() if a is not None]
            focus = (
                (sum(x for x, _ in points) / len(points), sum(y for _, y in points) / len(points))
                if points
                else (0.5, 0.5)
            )
            contents.append(
                PanelContent(
                    id=job.id,
                    image=target,
                    image_size=(job.width, job.height),
                    alt=job.prompt,
                    shape=panel.shape,
                    caption=panel.caption,
                    caption_at=panel.caption_at,
                    dialogue=dialogue,
                    characters=[c.name for c in job.characters],
                    sfx=[SoundEffect(**effect.model_dump()) for effect in panel.sfx],
                    focus=focus,
                    fitted=True,
                )
            )
        pages.append(PageContent(number=p, panels=contents, layout=page.layout))
    names: list[str] = []
    for job in the_plan.jobs:
        for c in job.characters:
            if c.name not in names:
                names.append(c.name)
    book = Book(
        name=safe_filename(the_plan.loaded.name, "story"),
        title=story.title,
        pages=pages,
        author=story.author,
        language=story.language,
        direction=story.direction,
        characters=names,
        summary=story.summary,
    )
    return book, skipped


def _speech(line, job: PanelJob, anchors: dict, voices: set[str], known: dict) -> Speech:
    """A story's dialogue line as the book letters it."""
    name = line.speaker.lower() if line.speaker else None
    narration = name == NARRATOR or (name in voices and not line.offpanel)
    speaker = _display(line.speaker, job)
    if name in known and speaker == line.speaker:  # off-panel: the library's spelling
        speaker = known[name]
    return Speech(
        text=line.text,
        kind=line.kind,
        speaker=None if name == NARRATOR else speaker,
        anchor=None if line.offpanel or name is None else anchors.get(name),
        offpanel=line.offpanel,
        at=line.at,
        caption=narration,
    )


def _display(speaker: str | None, job: PanelJob) -> str | None:
    if speaker is None:
        return None
    for c in job.characters:
        if c.name.lower() == speaker.lower():
            return c.name
    return speaker


def open_in_browser(path: Path) -> bool:
    """Open ``path`` in the web browser; False when there is none to open it."""
    import webbrowser

    try:
        return bool(webbrowser.open(path.resolve().as_uri()))
    except webbrowser.Error:
        return False
