"""The studio: the served stories, their builds, the painting thread and the token.

One build runs at a time (in a worker thread, so the server keeps answering); saves
that arrive during a build make one more build afterwards, never a queue of them.
A build that fails keeps the last good pages and reports the error's one line (the
same line the command line prints) to the open pages.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from comicgen.errors import ComicgenError
from comicgen.fsutil import safe_filename
from comicgen.serve.events import Hub, event_text
from comicgen.serve.jobs import Painter, TakeRequest, Work
from comicgen.serve.pages import Build, build_pages
from comicgen.workspace import Workspace

WAKE_CHECK_S = 1.0  # the builder looks for dirty stories at least this often


@dataclass(eq=False)
class StoryState:
    name: str  # in URLs
    path: Path
    build: Build | None = None  # the last good one
    error: str | None = None
    version: int = 0
    built_at: float = 0.0
    history: list[dict] = field(default_factory=list)  # one entry per build, for tests


class Studio:
    def __init__(self, root: Path, story: Path | None = None, token: str | None = None):
        self.root = Path(root).resolve()
        self.ws = Workspace.load(self.root)
        self.token = token or secrets.token_urlsafe(32)
        self.hub = Hub()
        self.stories: dict[str, StoryState] = {}
        self.first: str | None = None
        self._local = threading.local()
        self._libraries: list = []
        self._libraries_lock = threading.Lock()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="comicgen-build")
        self.painter = Painter(self.library, self._emit, self._painted)
        self.dirty: set[str] = set()
        self.wake: asyncio.Event | None = None
        self.takes: dict[tuple[str, str], TakeRequest] = {}
        if story is not None:
            from comicgen.jobs import resolve_story_path

            path = resolve_story_path(self.ws, story)
            self.first = self._register(path).name

    # -- stories ---------------------------------------------------------------------------

    def _register(self, path: Path) -> StoryState:
        name = safe_filename(path.stem, "story")
        state = self.stories.get(name)
        if state is None:
            state = self.stories[name] = StoryState(name, path)
        return state

    def story_files(self) -> dict[str, Path]:
        """The workspace's stories (stories/*.yaml) and any registered one, by URL name."""
        found = {}
        if self.ws.stories_dir.is_dir():
            for path in sorted(self.ws.stories_dir.glob("*.y*ml")):
                if path.is_file() and path.suffix in (".yaml", ".yml"):
                    found[safe_filename(path.stem, "story")] = path.resolve()
        for name, state in self.stories.items():
            found.setdefault(name, state.path)
        return found

    def story(self, name: str) -> StoryState | None:
        """The state of story ``name``, registered on first use (None when unknown)."""
        if name in self.stories:
            return self.stories[name]
        path = self.story_files().get(name)
        return self._register(path) if path is not None else None

    # -- one library per thread (SQLite connections stay in their thread) ----------------

    def library(self):
        library = getattr(self._local, "library", None)
        if library is None:
            from comicgen.library import Library

            library = Library.open(self.ws.db_path, self.ws.cache_dir)
            self._local.library = library
            with self._libraries_lock:
                self._libraries.append(library)
        return library

    # -- building --------------------------------------------------------------------------

    def build_now(self, name: str) -> StoryState:
        """Build story ``name`` in this thread (the builder thread, or a test)."""
        state = self.stories[name]
        version = state.version + 1
        start = time.perf_counter()
        try:
            ws = self.ws = Workspace.load(self.root)
            build = build_pages(
                ws,
                state.path,
                self.library(),
                version=version,
                token=self.token,
                url_name=name,
            )
        except ComicgenError as exc:
            return self._failed(state, exc.line())
        old = state.build
        state.build, state.error, state.version = build, None, version
        state.built_at = time.time()
        changed = [
            j.id
            for j in build.jobs
            if old is None or (o := old.job(j.id)) is None or o.key != j.key
        ]
        state.history.append(
            {
                "version": version,
                "seconds": time.perf_counter() - start,
                "changed": changed,
                "missing": [j.id for j in build.jobs if not build.cached[j.id]],
            }
        )
        self._queue(state, ws)
        self._emit("state", self.state_of(state), name)
        return state

    def _queue(self, state: StoryState, ws: Workspace) -> None:
        build = state.build
        viewed = self.hub.viewed_pages(state.name)
        missing = [j for j in build.jobs if not build.cached[j.id]]
        missing.sort(key=lambda j: (j.page not in viewed, j.page, j.index))
        self.painter.replace(state.name, [Work(state.name, ws, build.plan, j) for j in missing])
        if missing or self.painter.painter is None:
            self.painter.warm(ws, build.plan)

    def reprioritize(self, state: StoryState) -> None:
        if state.build is not None and any(not c for c in state.build.cached.values()):
            self._queue(state, self.ws)

    def state_of(self, state: StoryState) -> dict:
        """What an open page needs: the version, the error, each panel's status."""
        statuses = self.painter.status(state.name)
        panels = {}
        if state.build is not None:
            for job in state.build.jobs:
                status = "done" if state.build.cached[job.id] else statuses.get(job.id, "queued")
                panels[job.id] = {"status": status, "key": job.key[:24], "page": job.page}
        return {
            "story": state.name,
            "version": state.version,
            "error": state.error,
            "panels": panels,
        }

    def mark_dirty(self, names: set[str] | None = None) -> None:
        """Rebuild these stories (all the open ones when None) soon. Any thread."""
        with self._libraries_lock:
            self.dirty |= set(self.stories) if names is None else names
        if self.wake is not None and self.hub.loop is not None:
            try:
                self.hub.loop.call_soon_threadsafe(self.wake.set)
            except RuntimeError:
                pass

    async def builder(self) -> None:
        """Build the dirty stories, one build at a time, until cancelled."""
        loop = asyncio.get_running_loop()
        if self.wake is None:
            self.wake = asyncio.Event()
        while True:
            if not self.dirty:
                try:  # woken by mark_dirty; the timeout only guards against a lost wake-up
                    await asyncio.wait_for(self.wake.wait(), WAKE_CHECK_S)
                except asyncio.TimeoutError:
                    continue
            self.wake.clear()
            with self._libraries_lock:
                names, self.dirty = sorted(self.dirty), set()
            for name in names:
                if name in self.stories:
                    await loop.run_in_executor(self.executor, self._build_guarded, name)

    def _build_guarded(self, name: str) -> None:
        """``build_now``, with a bug reported in the open pages (and its traceback on
        stderr) instead of ending the builder: the next save builds again."""
        try:
            self.build_now(name)
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the live loop
            import traceback

            traceback.print_exc()
            self._failed(self.stories[name], f"building failed: {exc!r}")

    def _failed(self, state: StoryState, line: str) -> StoryState:
        """A build of ``state`` failed with ``line``: the last good pages stay, the open
        pages show the line."""
        state.error = line
        state.history.append({"version": state.version, "error": line})
        self._emit("state", self.state_of(state), state.name)
        return state

    async def ensure_built(self, state: StoryState) -> None:
        if state.build is None and state.error is None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.executor, self._build_guarded, state.name)

    def files_changed(self, paths: set[Path]) -> None:
        """The watcher saw these files change: rebuild what they can affect."""
        stories = {str(s.path): n for n, s in self.stories.items()}
        touched = {stories[str(p.resolve())] for p in paths if str(p.resolve()) in stories}
        others = [p for p in paths if str(p.resolve()) not in stories]
        story_dir = self.ws.stories_dir.resolve()
        templates = self.ws.templates_dir.resolve()
        if any(p.resolve().is_relative_to(templates) for p in others):
            from comicgen.serve.pages import forget_templates

            forget_templates()  # a new override file is not seen by the cached ones
        if any(not p.resolve().is_relative_to(story_dir) for p in others):
            self.mark_dirty(None)  # characters, comicgen.toml or a template
        elif touched:
            self.mark_dirty(touched)
        if any(not p.resolve().is_relative_to(story_dir) for p in others):
            self._emit("library", {"changed": True}, None)

    # -- events from the painting thread -------------------------------------------------

    def _emit(self, event: str, data: dict, story: str | None) -> None:
        self.hub.publish(event, data, story)

    def _painted(self, story: str, work: Work) -> None:
        if work.take is None:
            self.mark_dirty({story})
        elif work.request is not None and len(work.request.done) == len(work.request.works):
            self.executor.submit(self._write_sheet, work.request)

    def _write_sheet(self, request: TakeRequest) -> None:
        from comicgen.takes import write_sheet

        works = request.works
        try:
            write_sheet(works[0].ws, works[0].plan, [w.job for w in works], self.library())
        except (ComicgenError, OSError) as exc:
            self._emit("notice", {"message": f"takes sheet not written: {exc}"}, request.story)

    # -- takes -----------------------------------------------------------------------------

    def ask_takes(self, state: StoryState, panel: str, count: int) -> list[dict]:
        from comicgen.takes import take_jobs

        if state.build is None:
            raise ComicgenError(state.error or "the story has not been built yet")
        jobs = take_jobs(state.build.plan, panel, count)
        request = TakeRequest(state.name, panel)
        request.works = [
            Work(state.name, self.ws, state.build.plan, job, take=n, request=request)
            for n, job in enumerate(jobs, start=1)
        ]
        self.takes[(state.name, panel)] = request
        library = self.library()
        ready = [w for w in request.works if library.cache_get(w.job.key) is not None]
        self.painter.add_takes(request)
        return [
            {
                "take": w.take,
                "seed": w.job.seed,
                "src": f"/_studio/panel/{w.job.key}.png",
                "ready": w in ready,
            }
            for w in request.works
        ]

    def pick(self, state: StoryState, panel: str, take: int) -> int:
        from comicgen.story_edit import set_panel_seed

        request = self.takes.get((state.name, panel))
        if request is None or not 1 <= take <= len(request.works):
            raise ComicgenError(f"panel {panel} has no take {take}", hint="ask for takes first")
        seed = request.works[take - 1].job.seed
        set_panel_seed(state.path, panel, seed)
        return seed

    # -- life ------------------------------------------------------------------------------

    def first_events(self, state: StoryState) -> list[str]:
        return [event_text("state", self.state_of(state))]

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.hub.attach(loop)
        self.wake = asyncio.Event()
        if not self.painter.is_alive():
            self.painter.start()

    def close(self) -> None:
        self.hub.close()
        self.painter.stop()
        self.painter.join(timeout=30)
        self.executor.shutdown(wait=True, cancel_futures=True)
        with self._libraries_lock:
            for library in self._libraries:
                try:
                    library.close()
                except Exception:  # noqa: BLE001 - closing on the way out
                    pass
            self._libraries.clear()
