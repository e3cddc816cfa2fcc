"""HTML pages and the index, from Jinja templates and the page geometry.

Templates are looked up in the workspace's ``templates/`` folder first, then in the
ones shipped with comicgen (``comicgen/templates``), file by file: a workspace can
override ``page.html`` alone. ``comic.css`` and ``reader.js`` are copied the same
way. Autoescaping is on for everything; story text is only ever passed as data.

Positions are percentages of the page (or of the panel, for text inside it) and font
sizes are in units of the page's width (``--u``, one page pixel), so a page scales to
any viewport and still matches the PNG. Balloon shapes and frames are one inline SVG
with the page's own coordinates; text is real HTML text, broken into the lines that
the geometry decided.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from comicgen import lettering
from comicgen.errors import ComicgenError
from comicgen.layout import (
    Balloon,
    BookLayout,
    PageLayout,
    PanelLayout,
    Point,
    Rect,
    SoundEffectLayout,
    Style,
    TextBlock,
)
from comicgen.publish import png

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
STATIC_TEMPLATES = ("comic.css", "reader.js")


def environment(template_dirs: Sequence[Path] = ()):
    """A Jinja environment searching ``template_dirs`` first, then the shipped ones."""
    import jinja2

    search = [str(Path(d)) for d in template_dirs] + [str(TEMPLATE_DIR)]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = num
    return env


def static_source(name: str, template_dirs: Sequence[Path] = ()) -> Path:
    """The file to copy for the asset ``name``: a workspace override, else the shipped one."""
    for folder in [*map(Path, template_dirs), TEMPLATE_DIR]:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(name)  # pragma: no cover - shipped with the package


def num(value: float) -> str:
    """A number for HTML/CSS/SVG: at most three decimals, no trailing zeros."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# -- views: what the templates see ---------------------------------------------------------


@dataclass
class TextView:
    lines: list[str]
    align: str
    style: str  # position (in % of the panel or page) and font size
    box: str  # "x y w h" in page px, for tests and scripts
    # each line as (text, face key or None): None = the block's own font; another key
    # is a span in that face (class "f-KEY"), the same runs the PNG letters
    runs: list[list[tuple[str, str | None]]] = field(default_factory=list)


@dataclass
class BalloonView:
    kind: str
    speaker: str | None
    text: str
    text_view: TextView
    box: str
    tip: str | None
    ink_paths: list[str]  # SVG path data: body, then the tail
    bubbles: list[tuple[str, str, str]]  # (cx, cy, r)


@dataclass
class CaptionView:
    """A narrator's or a voice's caption box (the panel's own caption is ``caption``)."""

    text_view: TextView
    box: Rect
    speaker: str | None


@dataclass
class SfxView:
    text: str
    x: str  # the letters' anchor point (centre of the baseline) in page px
    y: str
    transform: str  # rotate(angle cx cy)
    size: str
    color: str
    stroke: str  # outline width x 2 (half of it is covered by the fill)
    family: str
    runs: list[tuple[str, str | None]]
    box: str


@dataclass
class PanelView:
    id: str
    anchor: str  # element id, e.g. "panel-2-1"
    alt: str
    src: str
    image_width: int
    image_height: int
    style: str
    img_style: str
    box: str
    characters: list[str]
    caption: TextView | None = None
    caption_box: Rect | None = None
    caption_position: str = "top"
    balloons: list[BalloonView] = field(default_factory=list)
    narration: list[CaptionView] = field(default_factory=list)
    sfx: list[SfxView] = field(default_factory=list)


@dataclass
class PageView:
    number: int
    width: str
    height: str
    layout: str
    file: str
    png: str
    thumb: str
    panels: list[PanelView]
    frames: list[Rect]
    captions: list[Rect]
    page_number: TextView | None
    prev: str | None
    next: str | None


def _box(rect: Rect) -> str:
    return " ".join(num(v) for v in (rect.x, rect.y, rect.w, rect.h))


def _text_view(block: TextBlock, frame: Rect) -> TextView:
    """``block`` positioned in % of ``frame`` (the element it sits in), sized in page px."""
    b = block.box
    style = (
        f"left:{num((b.x - frame.x) / frame.w * 100)}%;"
        f"top:{num((b.y - frame.y) / frame.h * 100)}%;"
        f"width:{num(b.w / frame.w * 100)}%;"
        f"height:{num(b.h / frame.h * 100)}%;"
        f"--fs:{num(block.size)};--lh:{num(block.line_height)}"
    )
    if block.face != lettering.BUNDLED:  # a fallback face, copied into assets/
        style += f";font-family:{block.face},sans-serif"
    runs = [
        [(text, None if key == block.face else key) for text, key in block.runs(i)]
        for i in range(len(block.lines))
    ]
    return TextView(lines=list(block.lines), align=block.align, style=style, box=_box(b), runs=runs)


def _path(points: Sequence[Point]) -> str:
    head, *rest = points
    return f"M{num(head[0])} {num(head[1])}" + "".join(f"L{num(x)} {num(y)}" for x, y in rest) + "Z"


def _balloon_view(balloon: Balloon, panel_box: Rect) -> BalloonView:
    paths = [_path(balloon.outline)]
    if balloon.tail:
        paths.append(_path(balloon.tail))
    tip = f"{num(balloon.tip[0])} {num(balloon.tip[1])}" if balloon.tip else None
    return BalloonView(
        kind=balloon.kind,
        speaker=balloon.speaker,
        text=balloon.text,
        text_view=_text_view(balloon.text_block, panel_box),
        box=_box(balloon.box),
        tip=tip,
        ink_paths=paths,
        bubbles=[(num(x), num(y), num(r)) for x, y, r in balloon.bubbles],
    )


def _panel_view(panel: PanelLayout, page: PageLayout, out_dir: Path) -> PanelView:
    content = panel.content
    b = panel.box
    image = Path(content.image)
    if not image.is_absolute():
        image = Path.cwd() / image
    try:
        relative = Path(os.path.relpath(image.resolve(), Path(out_dir).resolve()))
    except ValueError:  # another drive (Windows)
        relative = Path("..")
    if relative.parts and relative.parts[0] == "..":
        raise ValueError(f"panel {content.id}: image {image} is not inside {out_dir}")
    px, py = panel.crop.position
    view = PanelView(
        id=content.id,
        anchor="panel-" + content.id.replace(".", "-"),
        alt=content.alt,
        src=quote(relative.as_posix()),
        image_width=content.image_size[0],
        image_height=content.image_size[1],
        style=(
            f"left:{num(b.x / page.width * 100)}%;top:{num(b.y / page.height * 100)}%;"
            f"width:{num(b.w / page.width * 100)}%;height:{num(b.h / page.height * 100)}%"
        ),
        img_style=f"object-position:{num(px * 100)}% {num(py * 100)}%",
        box=_box(b),
        characters=list(content.characters),
    )
    if panel.caption is not None:
        view.caption = _text_view(panel.caption.text_block, b)
        view.caption_box = panel.caption.box
        view.caption_position = panel.caption.position
    view.balloons = [_balloon_view(balloon, b) for balloon in panel.balloons]
    view.narration = [
        CaptionView(_text_view(c.text_block, b), c.box, c.speaker) for c in panel.narration
    ]
    view.sfx = [_sfx_view(effect) for effect in panel.sfx]
    return view


def _sfx_view(effect: SoundEffectLayout) -> SfxView:
    block = effect.text_block
    cx, cy = effect.center
    family = "Kalam" if block.face == lettering.BUNDLED else block.face
    return SfxView(
        text=effect.text,
        x=num(cx),
        y=num(block.baseline(0)),
        transform=f"rotate({num(effect.angle)} {num(cx)} {num(cy)})",
        size=num(block.size),
        color=effect.color,
        stroke=num(2 * effect.outline),
        family=family,
        runs=[(text, None if key == block.face else key) for text, key in block.runs(0)],
        box=_box(effect.box),
    )


def page_views(
    layout: BookLayout,
    out_dir: Path,
    html_names: Sequence[str],
    png_names: Sequence[str],
    thumb_names: Sequence[str],
) -> list[PageView]:
    views = []
    count = len(layout.pages)
    for i, page in enumerate(layout.pages):
        page_box = Rect(0, 0, page.width, page.height)
        views.append(
            PageView(
                number=page.number,
                width=num(page.width),
                height=num(page.height),
                layout=page.layout,
                file=html_names[i],
                png=png_names[i],
                thumb=thumb_names[i],
                panels=[_panel_view(p, page, out_dir) for p in page.panels],
                frames=[p.box for p in page.panels],
                captions=[p.caption.box for p in page.panels if p.caption is not None]
                + [c.box for p in page.panels for c in p.narration],
                page_number=(_text_view(page.page_number, page_box) if page.page_number else None),
                prev=html_names[i - 1] if i > 0 else "index.html",
                next=html_names[i + 1] if i + 1 < count else None,
            )
        )
    return views


# -- fonts ---------------------------------------------------------------------------------


def face_assets(layout: BookLayout) -> dict[str, Path]:
    """Fallback font files the pages need: asset name → source file (open licences only;
    the others are referenced by name, ``local()``, and found where they are installed)."""
    files: dict[str, Path] = {}
    for key in layout.faces():
        if key == lettering.BUNDLED:
            continue
        face = lettering.face(key)
        if not face.copyable:
            continue
        files[key + face.regular.suffix.lower()] = face.regular
        if face.bold is not None:
            files[key + "-Bold" + face.bold.suffix.lower()] = face.bold
    return files


def _face_css(layout: BookLayout) -> str:
    """@font-face rules for the fallback faces (keys are [A-Za-z0-9-] only)."""
    rules = []
    for key in layout.faces():
        if key == lettering.BUNDLED:
            continue
        face = lettering.face(key)
        weights = [(400, key + face.regular.suffix.lower())]
        if face.bold is not None:
            weights.append((700, key + "-Bold" + face.bold.suffix.lower()))
        # local() first: a collection (.ttc) file holds several faces and a browser
        # loads only its first; the installed face is the exact one the PNG used
        family = _css_string(face.family)
        for weight, name in weights:
            sources = [f'local("{family}")']
            if face.copyable:
                sources.append(f'url("assets/{quote(name)}")')
            rules.append(
                f'@font-face {{ font-family: "{key}"; src: {", ".join(sources)}; '
                f"font-weight: {weight}; font-display: block; }}"
            )
        # runs in this face inside a block lettered in another: they must not make
        # the line taller than the block's own line height (the PNG's baselines)
        rules.append(f'.f-{key} {{ font-family: "{key}"; line-height: 0; }}')
    return "\n".join(rules)


def _css_string(text: str) -> str:
    return "".join(c for c in text if c.isalnum() or c in " -_.")


# -- writing -------------------------------------------------------------------------------


def write_html(
    layout: BookLayout,
    out_dir: Path,
    template_dirs: Sequence[Path],
    html_names: Sequence[str],
    png_names: Sequence[str],
    thumb_names: Sequence[str],
    assets: dict[str, str],
) -> list[Path]:
    """Write ``index.html`` and one HTML file per page; returns the paths written."""
    from comicgen.fsutil import atomic_write_text

    written = []
    for name, text in render_html(
        layout, out_dir, template_dirs, html_names, png_names, thumb_names, assets
    ):
        atomic_write_text(Path(out_dir) / name, text)
        written.append(Path(out_dir) / name)
    return written


def render_html(
    layout: BookLayout,
    out_dir: Path,
    template_dirs: Sequence[Path],
    html_names: Sequence[str],
    png_names: Sequence[str],
    thumb_names: Sequence[str],
    assets: dict[str, str],
    views: list[PageView] | None = None,
    env=None,
) -> list[tuple[str, str]]:
    """(file name, HTML) of every page, then of ``index.html`` (``comicgen serve`` keeps
    them in memory; ``views`` lets it adjust what the templates see, ``env`` reuses its
    compiled templates)."""
    import jinja2
    import markupsafe

    out_dir = Path(out_dir)
    env = env or environment(template_dirs)
    if views is None:
        views = page_views(layout, out_dir, html_names, png_names, thumb_names)
    common = {
        "book": layout.book,
        "direction": layout.direction,
        "style": layout.style,
        "preset": layout.preset,
        "pages": views,
        "assets": assets,
        "stroke": num(layout.style.stroke),
        "stroke2": num(layout.style.stroke * 2),
        "dash": " ".join(num(layout.style.stroke * d) for d in png.DASH),
        "border": num(layout.style.border),
        "css_vars": _css_vars(layout.style),
        # generated here from font keys, never from story text
        "face_css": markupsafe.Markup(_face_css(layout)),
    }
    written = []
    try:
        template = env.get_template("page.html")
        for view in views:
            text = template.render(
                **common, page=view, prev=view.prev, next=view.next, title_suffix=view.number
            )
            written.append((view.file, text))
        index = env.get_template("index.html").render(
            **common, page=None, prev=None, next=views[0].file if views else None
        )
        written.append(("index.html", index))
    except jinja2.TemplateSyntaxError as exc:
        where = f"{exc.filename or exc.name}:{exc.lineno}"
        raise ComicgenError(
            f"{where}: template syntax error: {exc.message}",
            hint="fix the template or delete it to use the shipped one",
        ) from None
    except jinja2.TemplateError as exc:
        raise ComicgenError(
            f"template error: {exc}",
            hint="check your templates/ overrides against the shipped ones",
        ) from None
    return written


def _css_vars(style: Style) -> str:
    return (
        f"--ink:{style.ink};--paper:{style.paper};--caption:{style.caption_fill};"
        f"--folio:{style.page_number_color}"
    )
