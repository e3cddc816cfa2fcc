"""Story → panel jobs → painted panels (cached, resumable) → pages.

``plan`` turns a validated story into one :class:`PanelJob` per panel, each with a
cache key made of everything that affects its pixels. ``render_story`` paints the
panels that are not cached yet, copies every panel into ``build/<story>/panels/``
and hands a :class:`~comicgen.book.Book` to :mod:`comicgen.publish`.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from comicgen.book import Book, PageContent, PanelContent, Speech
from comicgen.errors import ComicgenError, Interrupted
from comicgen.fsutil import atomic_write_bytes, remove_stale_temp_files, safe_filename
from comicgen.layout import check_layout
from comicgen.settings import (
    InfusionSettings,
    PageSettings,
    RenderSettings,
    merge,
)
from comicgen.story import LoadedStory, check_story, expand_prompt, load_story, placeholders
from comicgen.workspace import Workspace

# Where a character at a position stands in the panel, as (x, y) fractions: used for
# balloon tails and the crop's centre of interest.
POSITION_ANCHORS = {"left": (0.27, 0.6), "center": (0.5, 0.6), "right": (0.73, 0.6)}


@dataclass
class CharacterSpec:
    name: str
    description: str
    image_shas: list[str]
    strength: float = 1.0
    position: str | None = None
    box: tuple[float, float, float, float] | None = None

    @property
    def anchor(self) -> tuple[float, float] | None:
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            return ((x0 + x1) / 2, (y0 + y1) / 2)
        return POSITION_ANCHORS.get(self.position or "")


@dataclass
class PanelJob:
    page: int
    index: int
    id: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    scheduler: str
    model: str  # model fingerprint
    guidance_rescale: float | None = None  # None: the model's recommendation
    characters: list[CharacterSpec] = field(default_factory=list)
    infusion: InfusionSettings = field(default_factory=InfusionSettings)
    key: str = ""

    @property
    def file_name(self) -> str:
        return f"p{self.page:02d}-{self.index}.png"

    def compute_key(self) -> str:
        data = {
            "v": 1,
            "prompt": self.prompt,
            "negative": self.negative_prompt,
            "size": [self.width, self.height],
            "steps": self.steps,
            "guidance": self.guidance,
            "seed": self.seed,
            "scheduler": self.scheduler,
            "model": self.model,
        }
        if self.guidance_rescale is not None:
            data["guidance_rescale"] = self.guidance_rescale
        if self.characters and self.infusion.weight > 0:
            data["characters"] = [asdict(c) for c in self.characters]
            data["infusion"] = self.infusion.model_dump()
        blob = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()


def panel_seed(base: int, panel_id: str) -> int:
    """A panel's own seed: from its id, so no panel depends on another."""
    return (base * 1_000_003 + zlib.crc32(panel_id.encode())) % 2**32


@dataclass
class Plan:
    loaded: LoadedStory
    jobs: list[PanelJob]
    model_name: str
    info: object  # painter.ModelInfo
    render: RenderSettings
    page: PageSettings
    warnings: list[str] = field(default_factory=list)


def resolve_story_path(ws: Workspace, story: Path, allow_outside: bool = False) -> Path:
    """The story file (as given, or relative to the workspace or its stories/ folder),
    refusing one outside the workspace unless allowed."""
    path = Path(story)
    candidates = [path]
    if not path.is_absolute():
        candidates += [ws.root / path, ws.stories_dir / path, ws.stories_dir / f"{path}.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            path = candidate
            break
    else:
        raise ComicgenError(
            f"{story}: no such story file", hint="create one with 'comicgen new-story NAME'"
        )
    resolved = path.resolve()
    if not allow_outside and not resolved.is_relative_to(ws.root):
        raise ComicgenError(
            f"{story}: the story is outside the workspace {ws.root}",
            hint="move it into stories/, or pass --allow-outside",
        )
    return resolved


def plan(ws: Workspace, story_path: Path, library, *, allow_outside: bool = False) -> Plan:
    """Load and check a story and make one job per panel (no painting)."""
    from comicgen.painter import inspect_model, round_size

    path = resolve_story_path(ws, story_path, allow_outside)
    loaded = load_story(path, display=ws.relative(path))
    story = loaded.story
    if ws.characters_dir.is_dir():  # the workspace's example characters, when missing
        library.import_folder(ws.characters_dir, allow_outside=allow_outside)
    check_story(loaded, library.character_names(), check_layout)

    cfg = ws.config
    render = merge(cfg.render, story.settings)
    page = merge(cfg.page, story.page)
    infusion_base = merge(cfg.infusion, story.infusion)
    model_name = story.model or cfg.model.name
    info = inspect_model(model_name, base=ws.root)
    warnings: list[str] = []

    characters = {c.name.lower(): c for c in library.list_characters()}
    descriptions = {}
    for key, ch in characters.items():
        cast = _cast(story, key)
        descriptions[key] = cast.description if cast and cast.description else ch.description

    jobs: list[PanelJob] = []
    side = render.size or info.native_size
    for p, n, _page, panel in story.panels():
        long = side * 3 // 2
        w, h = {"wide": (long, side), "tall": (side, long)}.get(panel.shape or "", (side, side))
        rw, rh = round_size(w, info.size_multiple), round_size(h, info.size_multiple)
        if (rw, rh) != (w, h):
            warnings.append(
                f"panel {panel.id}: size {w}x{h} rounded to {rw}x{rh} "
                f"(the model needs multiples of {info.size_multiple})"
            )
        specs: list[CharacterSpec] = []
        named = [(c.name, c) for c in panel.characters]
        listed = {c.name.lower() for c in panel.characters}
        for extra in placeholders(panel.prompt):
            if extra.lower() not in listed:
                listed.add(extra.lower())
                named.append((extra, None))
        for name, ref in named:
            record = characters[name.lower()]
            cast = _cast(story, name.lower())
            strength = 1.0
            if cast and cast.strength is not None:
                strength = cast.strength
            if ref is not None and ref.strength is not None:
                strength = ref.strength
            specs.append(
                CharacterSpec(
                    name=record.name,
                    description=descriptions[name.lower()],
                    image_shas=[img.sha256 for img in record.images],
                    strength=strength,
                    position=ref.position if ref else None,
                    box=tuple(ref.box) if ref and ref.box else None,
                )
            )
        job = PanelJob(
            page=p,
            index=n,
            id=panel.id or f"{p}.{n}",
            prompt=expand_prompt(panel.prompt, descriptions),
            negative_prompt=panel.negative_prompt
            if panel.negative_prompt is not None
            else render.negative_prompt,
            width=rw,
            height=rh,
            steps=render.steps,
            guidance=render.guidance,
            seed=panel.seed if panel.seed is not None else panel_seed(render.seed, panel.id),
            scheduler=render.scheduler,
            model=info.fingerprint,
            guidance_rescale=render.guidance_rescale,
            characters=specs,
            infusion=merge(infusion_base, panel.infusion),
        )
        job.key = job.compute_key()
        jobs.append(job)
    return Plan(loaded, jobs, model_name, info, render, page, warnings)


def _cast(story, lowered: str):
    for name, member in story.cast.items():
        if name.lower() == lowered:
            return member
    return None


# -- selection -------------------------------------------------------------------------


def parse_pages(spec: str | None, total: int) -> set[int] | None:
    """'2-3', '1,4', '2-' → page numbers; None means all."""
    if not spec:
        return None
    pages: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                start = int(lo) if lo else 1
                end = int(hi) if hi else total
                pages.update(range(start, end + 1))
            else:
                pages.add(int(part))
        except ValueError:
            raise ComicgenError(
                f"--pages '{spec}' is not a page range", hint="write e.g. 2-3 or 1,4"
            ) from None
    bad = sorted(p for p in pages if not 1 <= p <= total)
    if bad:
        raise ComicgenError(
            f"--pages '{spec}': the story has {total} page{'s' if total != 1 else ''}",
            hint=f"no page {bad[0]}",
        )
    return pages


# -- painting ----------------------------------------------------------------------------


class Reporter(Protocol):
    def planned(self, total: int, to_paint: int) -> None: ...
    def panel_started(self, job: PanelJob) -> None: ...
    def step(self, done: int, total: int) -> None: ...
    def panel_done(self, job: PanelJob, painted: bool) -> None: ...
    def message(self, text: str) -> None: ...


class SilentReporter:
    def planned(self, total, to_paint):
        pass

    def panel_started(self, job):
        pass

    def step(self, done, total):
        pass

    def panel_done(self, job, painted):
        pass

    def message(self, text):
        pass


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

    @property
    def index(self) -> Path:
        return self.out_dir / "index.html"


@contextmanager
def panel_lock(ws: Workspace, key: str, blocking: bool) -> Iterator[bool]:
    """An advisory lock on one panel, so two renders never paint the same panel."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no cross-process lock
        yield True
        return
    lock_dir = ws.cache_dir / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{key[:32]}.lock"
    with open(path, "a+") as handle:
        flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(handle, flags)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def character_refs(spec: CharacterSpec, library):
    from comicgen.infusion import CharacterRefs

    record = library.get_character(spec.name)
    return CharacterRefs(
        name=spec.name,
        images=[img.image() for img in record.images],
        masks=[img.mask() for img in record.images],
        description=spec.description,
        strength=spec.strength,
        position=spec.position,
        box=spec.box,
        key="+".join(spec.image_shas),
    )


def batches(jobs: list[PanelJob], size: int) -> list[list[PanelJob]]:
    """Group jobs that can share one pipeline call: same size, steps and guidance and,
    for infused panels, the same characters and infusion settings (with a fixed
    reference seed, so the reference rows do not depend on the panel). Order is kept
    inside a group."""
    groups: dict[tuple, list[list[PanelJob]]] = {}
    order: list[list[PanelJob]] = []
    for job in jobs:
        sig: tuple = (job.width, job.height, job.steps, job.guidance, job.guidance_rescale)
        if job.characters and job.infusion.weight > 0:
            if job.infusion.reference_seed is None:
                order.append([job])
                continue
            sig += (
                json.dumps([asdict(c) for c in job.characters], sort_keys=True),
                job.infusion.model_dump_json(),
            )
        runs = groups.setdefault(sig, [])
        if not runs or len(runs[-1]) >= max(1, size):
            runs.append([])
            order.append(runs[-1])
        runs[-1].append(job)
    return order


def paint_jobs(
    ws: Workspace,
    the_plan: Plan,
    jobs: list[PanelJob],
    library,
    reporter: Reporter,
    *,
    model: dict | None = None,
    batch_size: int | None = 1,
) -> tuple[int, int]:
    """Paint the jobs that are not cached; returns (painted, reused).

    ``model`` overrides fields of the workspace's ``[model]`` settings (``device``,
    ``compile``: what the command line says).

    Each panel is locked while it is painted, so a second render of the same story
    (or another process of a multi-process render) paints other panels meanwhile and
    then reuses this one instead of painting it twice.
    """
    from comicgen.painter import Painter

    painter: Painter | None = None
    painted = reused = 0
    queue = list(jobs)
    size = batch_size or 1
    if batch_size is None and any(library.cache_get(j.key) is None for j in jobs):
        painter = _load_painter(ws, the_plan, model, reporter)
        size = painter.auto_batch_size(jobs[0].width, jobs[0].height)
    try:
        for blocking in (False, True):
            deferred: list[PanelJob] = []
            for group in batches(queue, size):
                with ExitStack() as stack:
                    ready: list[PanelJob] = []
                    for job in group:
                        if library.cache_get(job.key) is None:
                            if not stack.enter_context(panel_lock(ws, job.key, blocking)):
                                deferred.append(job)  # another render is painting it now
                                continue
                            if library.cache_get(job.key) is None:
                                ready.append(job)
                                continue
                        reused += 1
                        reporter.panel_done(job, painted=False)
                    if not ready:
                        continue
                    if painter is None:
                        painter = _load_painter(ws, the_plan, model, reporter)
                    reporter.panel_started(ready[0])
                    images = painter.paint_batch(
                        [_paint_job(job, library) for job in ready], on_step=reporter.step
                    )
                    for job, image in zip(ready, images, strict=True):
                        library.cache_put(job.key, png_bytes(image), model=the_plan.model_name)
                        painted += 1
                        reporter.panel_done(job, painted=True)
            queue = deferred
    except KeyboardInterrupt:
        total = len(the_plan.jobs)
        done = sum(1 for j in the_plan.jobs if library.cache_get(j.key) is not None)
        raise Interrupted(
            f"interrupted — {done} of {total} panels kept; run the same command to resume"
        ) from None
    return painted, reused


def _load_painter(ws: Workspace, the_plan: Plan, model: dict | None, reporter: Reporter):
    from comicgen.painter import Painter

    update = (model or {}) | {"name": the_plan.model_name}
    reporter.message(f"loading model {the_plan.model_name} …")
    return Painter.load(
        ws.config.model.model_copy(update=update),
        info=the_plan.info,
        scheduler=the_plan.render.scheduler,
        base=ws.root,
    )


def _paint_job(job: PanelJob, library):
    from comicgen.painter import PaintJob

    return PaintJob(
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        width=job.width,
        height=job.height,
        steps=job.steps,
        guidance=job.guidance,
        guidance_rescale=job.guidance_rescale,
        seed=job.seed,
        characters=[character_refs(c, library) for c in job.characters],
        infusion=job.infusion,
    )


def png_bytes(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


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
    book, skipped = build_book(the_plan, out_dir, library)
    from comicgen.publish import publish

    result = publish(
        book,
        out_dir,
        the_plan.page,
        template_dirs=[ws.templates_dir] if ws.templates_dir.is_dir() else [],
        pdf=pdf,
        strip=strip,
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


def select(the_plan: Plan, pages: str | None, panel: str | None) -> list[PanelJob]:
    jobs = the_plan.jobs
    if panel:
        chosen = [j for j in jobs if j.id == panel]
        if not chosen:
            from comicgen.errors import did_you_mean

            raise ComicgenError(
                f"--panel '{panel}': no panel with that id",
                hint=did_you_mean(panel, [j.id for j in jobs])
                or f"panel ids: {', '.join(j.id for j in jobs[:12])}",
            )
        return chosen
    wanted = parse_pages(pages, len(the_plan.loaded.story.pages))
    if wanted is None:
        return jobs
    return [j for j in jobs if j.page in wanted]


def build_book(the_plan: Plan, out_dir: Path, library) -> tuple[Book, int]:
    """Copy every available panel into ``out_dir/panels`` and describe the pages."""
    from PIL import Image

    story = the_plan.loaded.story
    panels_dir = out_dir / "panels"
    panels_dir.mkdir(parents=True, exist_ok=True)
    by_id = {j.id: j for j in the_plan.jobs}
    pages: list[PageContent] = []
    skipped = 0
    for p, page in enumerate(story.pages, start=1):
        contents = []
        for n, panel in enumerate(page.panels, start=1):
            job = by_id[panel.id or f"{p}.{n}"]
            target = panels_dir / job.file_name
            cached = library.cache_get(job.key)
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
            dialogue = [
                Speech(
                    text=line.text,
                    kind=line.kind,
                    speaker=_display(line.speaker, job),
                    anchor=anchors.get(line.speaker.lower()) if line.speaker else None,
                )
                for line in panel.dialogue
            ]
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
                    focus=focus,
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


def _display(speaker: str | None, job: PanelJob) -> str | None:
    if speaker is None:
        return None
    for c in job.characters:
        if c.name.lower() == speaker.lower():
            return c.name
    return speaker


def open_in_browser(path: Path) -> None:
    import webbrowser

    webbrowser.open(path.resolve().as_uri())
