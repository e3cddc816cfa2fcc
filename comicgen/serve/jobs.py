"""The studio's painting thread: one loaded model, a queue of panels, stale work dropped.

Every build hands the thread the story's panels that are not cached yet, in the order
to paint them (the pages on screen first); the previous list is replaced. Between
denoising steps the thread checks that the panel it paints is still wanted; a save
that changed the panel again stops it there. Takes asked for in the browser come
first. Panels are painted with the same functions as ``render`` (same pixels, same
cache keys) under the same per-panel locks, so a ``render`` running at the same time
never paints the same panel twice and never sees a half-written one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from comicgen.errors import ComicgenError
from comicgen.jobs import PanelJob, Plan
from comicgen.painting import panel_lock, png_bytes
from comicgen.workspace import Workspace


class Stale(Exception):
    """Raised inside a step callback: the panel being painted is no longer wanted."""


@dataclass(eq=False)
class Work:
    story: str  # the story's URL name
    ws: Workspace
    plan: Plan
    job: PanelJob
    take: int | None = None  # the take's number, for takes
    request: object | None = None  # the TakeRequest a take belongs to


@dataclass(eq=False)
class TakeRequest:
    story: str
    panel: str
    works: list[Work] = field(default_factory=list)
    done: set[int] = field(default_factory=set)


Emit = Callable[[str, dict, str | None], None]


class Painter(threading.Thread):
    """The painting thread. ``emit(event, data, story)`` reports progress."""

    def __init__(self, library_factory: Callable[[], object], emit: Emit, on_painted=None):
        super().__init__(name="comicgen-painter", daemon=True)
        self.library_factory = library_factory
        self.emit = emit
        self.on_painted = on_painted or (lambda story, work: None)
        self.cond = threading.Condition()
        self.queues: dict[str, list[Work]] = {}  # story → panels to paint, in order
        self.takes: list[Work] = []
        self.current: Work | None = None
        self.stopping = False
        self.painter = None
        self.painter_key: tuple | None = None
        self.warm_with: tuple[Workspace, Plan] | None = None
        self.painted: list[tuple[str, str]] = []  # (story, panel id) painted, in order
        self.dropped: list[tuple[str, str]] = []  # (story, panel id) dropped as stale
        self.errors: list[str] = []
        self.load_seconds: float | None = None

    # -- what the other threads call ---------------------------------------------------

    def replace(self, story: str, works: list[Work]) -> None:
        """The panels of ``story`` to paint now, in order (replacing the previous list)."""
        with self.cond:
            self.queues[story] = list(works)
            self.cond.notify_all()

    def add_takes(self, request: TakeRequest) -> None:
        with self.cond:
            wanted = {w.job.key for w in request.works}
            self.takes = [w for w in self.takes if w.job.key not in wanted] + request.works
            self.cond.notify_all()

    def warm(self, ws: Workspace, the_plan: Plan) -> None:
        """Load the story's model now, so the first edit does not wait for it."""
        with self.cond:
            if self.painter_key != self._model_key(the_plan):
                self.warm_with = (ws, the_plan)
                self.cond.notify_all()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    def status(self, story: str) -> dict[str, str]:
        """panel id → 'painting' or 'queued' for ``story``."""
        with self.cond:
            states = {w.job.id: "queued" for w in self.queues.get(story, [])}
            current = self.current
            if current is not None and current.story == story and current.take is None:
                states[current.job.id] = "painting"
            return states

    def wanted(self, work: Work) -> bool:
        with self.cond:
            if self.stopping:
                return False
            if work.take is not None:
                return work in self.takes or work is self.current
            return any(w.job.key == work.job.key for w in self.queues.get(work.story, []))

    # -- the thread ----------------------------------------------------------------------

    def _next(self) -> Work | None:
        with self.cond:
            while not self.stopping:
                if self.takes:
                    self.current = self.takes[0]
                    return self.current
                for works in self.queues.values():
                    if works:
                        self.current = works[0]
                        return self.current
                if self.warm_with is not None:
                    return None
                self.cond.wait()
            return None

    def _finish(self, work: Work) -> None:
        with self.cond:
            if work.take is not None:
                if work in self.takes:
                    self.takes.remove(work)
            else:
                queue = self.queues.get(work.story, [])
                self.queues[work.story] = [w for w in queue if w.job.key != work.job.key]
            self.current = None

    def _defer(self, work: Work) -> None:
        """Another process paints this panel now: try the others first."""
        with self.cond:
            queue = self.takes if work.take is not None else self.queues.get(work.story, [])
            if work in queue:
                queue.remove(work)
                queue.append(work)
            self.current = None
            only_this = all(w is work for w in queue)
        if only_this:
            time.sleep(0.2)

    def run(self) -> None:
        library = self.library_factory()
        try:
            while True:
                work = self._next()
                if self.stopping:
                    return
                if work is None:  # only a warm-up asked for
                    with self.cond:
                        warm, self.warm_with = self.warm_with, None
                    if warm is not None:
                        self._guarded(lambda warm=warm: self._painter_for(*warm), None)
                    continue
                self._guarded(lambda work=work: self._paint(work, library), work)
        finally:
            library.close()

    def _guarded(self, action, work: Work | None) -> None:
        try:
            action()
        except ComicgenError as exc:  # e.g. the model cannot be loaded
            self.errors.append(exc.line())
            self.emit("notice", {"message": exc.line()}, work.story if work else None)
            if work is not None:
                self._finish(work)
                with self.cond:  # without a model, the rest cannot be painted either
                    self.queues[work.story] = []
        except Exception as exc:  # a bug: report it in the page, keep serving
            import traceback

            traceback.print_exc()
            self.errors.append(repr(exc))
            self.emit("notice", {"message": f"painting failed: {exc!r}"}, None)
            if work is not None:
                self._finish(work)

    def _model_key(self, the_plan: Plan) -> tuple:
        return (the_plan.model_name, the_plan.info.fingerprint, the_plan.render.scheduler)

    def _painter_for(self, ws: Workspace, the_plan: Plan):
        from comicgen.painting import SilentReporter, _load_painter

        key = self._model_key(the_plan)
        if self.painter is None or self.painter_key != key:
            self.painter = None  # free the old model first
            start = time.perf_counter()
            self.painter = _load_painter(ws, the_plan, None, SilentReporter())
            self.painter_key = key
            self.load_seconds = time.perf_counter() - start
        return self.painter

    def _paint(self, work: Work, library) -> None:
        from comicgen.painting import _paint_job

        job = work.job
        if library.cache_get(job.key) is not None:
            return self._done(work, painted=False)
        with panel_lock(work.ws, job.key, blocking=False) as mine:
            if not mine:
                return self._defer(work)
            if library.cache_get(job.key) is not None:
                return self._done(work, painted=False)
            painter = self._painter_for(work.ws, work.plan)
            info = {"story": work.story, "id": job.id, "key": job.key, "take": work.take}
            self.emit("painting", info, work.story)

            def on_step(done: int, total: int) -> None:
                if not self.wanted(work):
                    raise Stale
                self.emit("progress", info | {"step": done, "total": total}, work.story)

            start = time.perf_counter()
            try:
                (image,) = painter.paint_batch([_paint_job(job, library)], on_step=on_step)
            except Stale:
                self.dropped.append((work.story, job.id))
                self.emit("dropped", info, work.story)
                with self.cond:
                    self.current = None
                return None
            library.cache_put(job.key, png_bytes(image), model=work.plan.model_name)
            done = {"seconds": time.perf_counter() - start}
            if work.take is None:  # the page shows it at once, before the next build
                done["src"] = f"panels/{job.file_name}?v={job.key[:24]}"
            self.emit("painted", info | done, work.story)
        self._done(work, painted=True)
        return None

    def _done(self, work: Work, painted: bool) -> None:
        self._finish(work)
        if painted and work.take is None:
            self.painted.append((work.story, work.job.id))
        if work.take is not None:
            request = work.request
            request.done.add(work.take)
            self.emit(
                "take",
                {
                    "story": work.story,
                    "panel": work.job.id,
                    "take": work.take,
                    "seed": work.job.seed,
                    "src": f"/_studio/panel/{work.job.key}.png",
                    "complete": len(request.done) == len(request.works),
                },
                work.story,
            )
        self.on_painted(work.story, work)
