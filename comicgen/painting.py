"""Painting the jobs of a plan: cached, locked per panel, batched, resumable.

``paint_jobs`` paints the panels that are not in the library's cache yet, each under
an advisory lock so two renders (or two processes of one render) never paint the
same panel; what is painted is stored in the cache at once, so an interrupted render
resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from typing import Protocol

from comicgen.errors import Interrupted
from comicgen.jobs import CharacterSpec, PanelJob, Plan
from comicgen.workspace import Workspace


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
        sig += (job.loras, job.embeddings)  # one LoRA set per pipeline call
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
        side=the_plan.render.size,  # the memory plan's estimate is for this panel size
    )


def _paint_job(job: PanelJob, library):
    """The painter's view of a job: every field of :class:`~comicgen.painter.PaintJob`
    taken from the job by name, the characters with their reference images loaded."""
    from dataclasses import fields

    from comicgen.painter import PaintJob

    same = {f.name: getattr(job, f.name) for f in fields(PaintJob) if f.name != "characters"}
    return PaintJob(**same, characters=[character_refs(c, library) for c in job.characters])


def png_bytes(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
