"""A story's pages, built in memory for the studio from the same stages as ``render``.

``build_pages`` plans the story (parse, check, one job per panel), describes the
book with the panels painted so far (grey placeholders for the others), lays it out
and renders the page templates — nothing is written to ``build/``; the panel files
the book refers to live in ``.cache/serve/<story>/``. Each panel's ``src`` carries
its content key, so the browser fetches a panel again exactly when it changed.
"""

from __future__ import annotations

import html as html_escape
import time
from dataclasses import dataclass, field
from pathlib import Path

from comicgen.fsutil import safe_filename
from comicgen.jobs import PanelJob, Plan, plan
from comicgen.render import build_book
from comicgen.workspace import Workspace

STUDIO_HEAD = (
    '<meta name="comicgen-token" content="{token}">\n'
    '<meta name="comicgen-story" content="{story}">\n'
    '<meta name="comicgen-version" content="{version}">\n'
    '<link rel="stylesheet" href="/_studio/studio.css">\n'
    '<script src="/_studio/studio.js" defer></script>\n'
)


@dataclass
class Build:
    """One successful build of a story: its plan, layout and HTML pages."""

    version: int
    plan: Plan
    layout: object  # comicgen.layout.BookLayout
    pages: dict[str, str]  # file name → HTML, index.html included
    png_names: list[str]
    thumb_names: list[str]
    cached: dict[str, bool]  # panel id → painted already
    seconds: float = 0.0
    page_pngs: dict[str, bytes] = field(default_factory=dict)  # rendered on request

    @property
    def jobs(self) -> list[PanelJob]:
        return self.plan.jobs

    def job(self, panel_id: str) -> PanelJob | None:
        return next((j for j in self.plan.jobs if j.id == panel_id), None)


def serve_dir(ws: Workspace, name: str) -> Path:
    return ws.cache_dir / "serve" / safe_filename(name, "story")


def build_pages(
    ws: Workspace, story_path: Path, library, *, version: int, token: str, url_name: str
) -> Build:
    """Plan, describe, lay out and render one story (ComicgenError on a bad input)."""
    from comicgen.layout import layout_book
    from comicgen.publish import page_file_names
    from comicgen.publish.html import page_views, render_html

    start = time.perf_counter()
    the_plan = plan(ws, story_path, library)
    out_dir = serve_dir(ws, the_plan.loaded.name)
    book, _skipped = build_book(the_plan, out_dir, library)
    layout = layout_book(book, the_plan.page)
    html_names, png_names = page_file_names(len(layout.pages))
    thumb_names = [f"thumbs/{name}" for name in png_names]
    cached = {j.id: library.cache_get(j.key) is not None for j in the_plan.jobs}
    keys = {j.id: j.key for j in the_plan.jobs}
    views = page_views(layout, out_dir, html_names, png_names, thumb_names)
    for view in views:
        for panel in view.panels:
            state = "v" if cached.get(panel.id) else "queued"
            panel.src = f"{panel.src}?{state}={keys[panel.id][:24]}"
    assets = {"comic.css": "assets/comic.css", "reader.js": "assets/reader.js"}
    templates = [ws.templates_dir] if ws.templates_dir.is_dir() else []
    rendered = render_html(
        layout,
        out_dir,
        templates,
        html_names,
        png_names,
        thumb_names,
        assets,
        views=views,
        env=_environment(templates),
    )
    head = STUDIO_HEAD.format(
        token=html_escape.escape(token, quote=True),
        story=html_escape.escape(url_name, quote=True),
        version=version,
    )
    pages = {name: inject(text, head) for name, text in rendered}
    return Build(
        version=version,
        plan=the_plan,
        layout=layout,
        pages=pages,
        png_names=png_names,
        thumb_names=thumb_names,
        cached=cached,
        seconds=time.perf_counter() - start,
    )


_ENVIRONMENTS: dict[tuple[str, ...], object] = {}


def _environment(template_dirs: list[Path]):
    """The Jinja environment for these template folders, kept between builds (Jinja
    reloads a template whose file changed; a new override file calls forget_templates)."""
    from comicgen.publish.html import environment

    key = tuple(str(d) for d in template_dirs)
    if key not in _ENVIRONMENTS:
        _ENVIRONMENTS[key] = environment(template_dirs)
    return _ENVIRONMENTS[key]


def forget_templates() -> None:
    _ENVIRONMENTS.clear()


def inject(text: str, head: str) -> str:
    """``head`` (the studio's meta tags and script) into a page, before ``</head>``."""
    at = text.lower().find("</head>")
    if at == -1:
        return head + text
    return text[:at] + head + text[at:]


def page_png(build: Build, name: str, thumb: bool) -> bytes | None:
    """The PNG of page ``name`` (page-01.png), or its thumbnail, drawn on request."""
    import io

    from comicgen.publish import THUMB_WIDTH
    from comicgen.publish.png import render_page

    key = ("thumbs/" if thumb else "") + name
    if key in build.page_pngs:
        return build.page_pngs[key]
    if name not in build.png_names:
        return None
    laid = build.layout.pages[build.png_names.index(name)]
    dpi = min(build.plan.page.dpi, 96) if thumb else build.plan.page.dpi
    image = render_page(laid, build.layout.style, dpi)
    if thumb:
        image.thumbnail((THUMB_WIDTH, THUMB_WIDTH * 100))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    build.page_pngs[key] = buffer.getvalue()
    return build.page_pngs[key]
