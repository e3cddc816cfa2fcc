"""Page geometry: panel boxes, cover-crops, captions and balloons. Pure, no I/O.

:func:`layout_book` turns a :class:`~comicgen.book.Book` into a :class:`BookLayout`:
pages → panels, each with its box on the page, the part of its image shown
(cover-crop around the focus point), its caption box and its balloons (outline polygon,
tail, text lines, font size). The HTML and PNG publishers both draw from this one
object, so they agree. Units are CSS pixels at 96 dpi, origin at the page's top left.

Page layouts are trees of splits: a ``row`` puts its children side by side, a
``column`` stacks them. Named layouts (:func:`known_layouts`), grids (``"3x2"``:
3 columns, 2 rows) and rows (``[1, 2, 1]`` or ``"1-2-1"``: panels per row, top to
bottom) all become such trees. Without a name, the layout is chosen from the panel
count and the panels' shapes (shape hint, else the image's aspect): every candidate is
placed on the page and the one that crops the images least wins.

Reading order is the tree's order, left to right; for right-to-left stories the whole
page is mirrored, so the first panel sits top right and each row reads leftwards.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from comicgen import lettering
from comicgen.book import Book, Direction, PageContent, PanelContent, Speech, SpeechKind
from comicgen.errors import ComicgenError, did_you_mean
from comicgen.settings import PageSettings

Point = tuple[float, float]
Align = Literal["center", "left", "right"]

PRESETS: dict[str, tuple[int, int | None]] = {
    "comic": (800, 1200),  # 2:3 portrait, close to a comic book's trim
    "square": (1080, 1080),
    "webtoon": (800, None),  # one column; the height grows with the panels
}
SHAPE_ASPECT = {"square": 1.0, "wide": 1.5, "tall": 1 / 1.5}
WEBTOON_GUTTER = 3  # webtoon panels are spaced wider: this many gutters


# -- plain geometry ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    @property
    def center(self) -> Point:
        return (self.x + self.w / 2, self.y + self.h / 2)

    @property
    def area(self) -> float:
        return max(self.w, 0.0) * max(self.h, 0.0)

    def inset(self, d: float) -> Rect:
        return Rect(self.x + d, self.y + d, max(self.w - 2 * d, 0.0), max(self.h - 2 * d, 0.0))

    def overlap(self, other: Rect) -> float:
        w = min(self.right, other.right) - max(self.x, other.x)
        h = min(self.bottom, other.bottom) - max(self.y, other.y)
        return w * h if w > 0 and h > 0 else 0.0

    def contains(self, other: Rect, tol: float = 1e-6) -> bool:
        return (
            other.x >= self.x - tol
            and other.y >= self.y - tol
            and other.right <= self.right + tol
            and other.bottom <= self.bottom + tol
        )

    def contains_point(self, p: Point) -> bool:
        return self.x <= p[0] <= self.right and self.y <= p[1] <= self.bottom

    def mirrored(self, width: float) -> Rect:
        return Rect(width - self.right, self.y, self.w, self.h)

    def moved_into(self, area: Rect) -> Rect:
        """This rect shifted (not resized) to lie inside ``area`` where it can."""
        x = min(max(self.x, area.x), max(area.right - self.w, area.x))
        y = min(max(self.y, area.y), max(area.bottom - self.h, area.y))
        return Rect(x, y, self.w, self.h)

    @staticmethod
    def bounding(points: Sequence[Point]) -> Rect:
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        return Rect(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


@dataclass(frozen=True)
class Crop:
    """The part of a panel image shown in its box, in image pixels (cover-crop).

    ``position`` is the same crop as CSS ``object-position`` fractions, for
    ``object-fit: cover``.
    """

    x: float
    y: float
    w: float
    h: float
    position: tuple[float, float]

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.x + self.w, self.y + self.h)


def cover_crop(
    image_size: tuple[int, int], box_size: tuple[float, float], focus: Point = (0.5, 0.5)
) -> Crop:
    """The largest region of the image with the box's aspect, centred on ``focus``."""
    iw, ih = image_size
    bw, bh = box_size
    if iw <= 0 or ih <= 0 or bw <= 0 or bh <= 0:
        raise ValueError(f"empty image {image_size} or box {box_size}")
    scale = max(bw / iw, bh / ih)
    cw, ch = min(bw / scale, iw), min(bh / scale, ih)
    fx = min(max(focus[0], 0.0), 1.0)
    fy = min(max(focus[1], 0.0), 1.0)
    x = min(max(fx * iw - cw / 2, 0.0), iw - cw)
    y = min(max(fy * ih - ch / 2, 0.0), ih - ch)
    px = x / (iw - cw) if iw - cw > 1e-6 else 0.5
    py = y / (ih - ch) if ih - ch > 1e-6 else 0.5
    return Crop(x, y, cw, ch, (px, py))


# -- the geometry handed to the publishers ------------------------------------------------


@dataclass(frozen=True)
class Style:
    """Sizes and colours shared by HTML and PNG (px at 96 dpi)."""

    font_size: float = 16.0
    min_font_size: float = 10.5
    line_height: float = 1.15  # times the font size
    border: float = 2.5  # panel frame
    stroke: float = 1.6  # balloon and caption outline
    ink: str = "#111111"
    paper: str = "#ffffff"
    caption_fill: str = "#fff1bf"
    page_number_color: str = "#555555"

    @classmethod
    def for_page(cls, width: float) -> Style:
        size = min(max(round(width / 50 * 2) / 2, 12.0), 40.0)
        return cls(
            font_size=size,
            min_font_size=max(9.0, round(size * 0.65 * 2) / 2),
            border=round(max(1.5, width / 320) * 2) / 2,
            stroke=round(max(1.0, width / 500) * 10) / 10,
        )


@dataclass
class TextBlock:
    """Lines of text, drawn exactly as broken here. ``box`` holds all the lines."""

    box: Rect
    lines: list[str]
    size: float
    line_height: float
    bold: bool = False
    align: Align = "center"
    face: str = lettering.BUNDLED  # the font family (see comicgen.lettering.face_for)

    def baseline(self, index: int) -> float:
        """The y of line ``index``'s baseline (as CSS places it)."""
        offset = lettering.baseline_offset(self.size, self.line_height, self.bold, self.face)
        return self.box.y + index * self.line_height + offset

    def line_width(self, index: int) -> float:
        return lettering.text_width(self.lines[index], self.size, self.bold, self.face)


@dataclass
class Balloon:
    kind: SpeechKind
    speaker: str | None
    text: str
    box: Rect  # bounding box of the body (tail and bubbles excluded)
    center: Point
    outline: list[Point]  # closed polygon of the body
    text_block: TextBlock
    tail: list[Point] = field(default_factory=list)  # closed polygon; empty: none
    bubbles: list[tuple[float, float, float]] = field(default_factory=list)  # thought (x, y, r)
    tip: Point | None = None


@dataclass
class CaptionBox:
    text: str
    box: Rect
    text_block: TextBlock
    position: Literal["top", "bottom"] = "top"


@dataclass
class PanelLayout:
    content: PanelContent
    box: Rect
    crop: Crop
    caption: CaptionBox | None = None
    balloons: list[Balloon] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.content.id


@dataclass
class PageLayout:
    number: int
    width: float
    height: float
    layout: str  # the layout's name, e.g. "2x2", "1-2-1", "tall-left-3"
    panels: list[PanelLayout]
    page_number: TextBlock | None = None


@dataclass
class BookLayout:
    book: Book
    pages: list[PageLayout]
    style: Style
    preset: str
    warnings: list[str] = field(default_factory=list)

    @property
    def direction(self) -> Direction:
        return self.book.direction

    def faces(self) -> list[str]:
        """The font faces the lettering uses (the bundled one first)."""
        used = {lettering.BUNDLED}
        for page in self.pages:
            for panel in page.panels:
                blocks = [b.text_block for b in panel.balloons]
                if panel.caption is not None:
                    blocks.append(panel.caption.text_block)
                used.update(block.face for block in blocks)
        return sorted(used, key=lambda key: (key != lettering.BUNDLED, key))


# -- layout trees -------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    """One panel."""


@dataclass(frozen=True)
class Split:
    direction: Literal["row", "column"]  # row: side by side; column: stacked
    children: tuple[Node, ...]


Node = Leaf | Split
PANEL = Leaf()


def rows(*counts: int) -> Node:
    """A stack of rows holding ``counts`` panels each."""
    row_nodes = tuple(PANEL if c == 1 else Split("row", (PANEL,) * c) for c in counts)
    return row_nodes[0] if len(row_nodes) == 1 else Split("column", row_nodes)


def _columns_beside(tall_first: bool, stacked: int) -> Node:
    stack = Split("column", (PANEL,) * stacked)
    return Split("row", (PANEL, stack) if tall_first else (stack, PANEL))


NAMED_LAYOUTS: dict[str, Node] = {
    "splash": PANEL,
    "stack-2": rows(1, 1),
    "side-by-side-2": rows(2),
    "stack-3": rows(1, 1, 1),
    "wide-top-3": rows(1, 2),
    "wide-bottom-3": rows(2, 1),
    "tall-left-3": _columns_beside(True, 2),
    "tall-right-3": _columns_beside(False, 2),
    "2x2": rows(2, 2),
    "wide-top-4": rows(1, 3),
    "wide-middle-4": rows(1, 2, 1),
    "tall-left-4": _columns_beside(True, 3),
    "tall-right-4": _columns_beside(False, 3),
    "stack-4": rows(1, 1, 1, 1),
    "wide-top-5": rows(1, 2, 2),
    "wide-middle-5": rows(2, 1, 2),
    "2-3": rows(2, 3),
    "3-2": rows(3, 2),
    "tall-left-5": Split("row", (PANEL, Split("column", (PANEL, rows(2), PANEL)))),
    "2x3": rows(2, 2, 2),
    "3x2": rows(3, 3),
    "wide-top-6": rows(1, 3, 2),
    "1-2-2-1": rows(1, 2, 2, 1),
    "3x3": rows(3, 3, 3),
}
_GRID = re.compile(r"^\s*(\d{1,2})\s*[x×]\s*(\d{1,2})\s*$")
_ROWS = re.compile(r"^\s*\d{1,2}(\s*-\s*\d{1,2})*\s*$")
_MAX_PER_ROW = 8
_MAX_ROWS = 12


def count_panels(node: Node) -> int:
    if isinstance(node, Leaf):
        return 1
    return sum(count_panels(child) for child in node.children)


def known_layouts() -> dict[str, int]:
    """Named layouts and how many panels each holds.

    Besides these names a page may use a grid ``"COLSxROWS"`` (``"3x2"``) or rows
    (``[1, 2, 1]`` or ``"1-2-1"``, panels per row from the top).
    """
    return {name: count_panels(node) for name, node in NAMED_LAYOUTS.items()}


def parse_layout(spec: str | Sequence[int]) -> tuple[str, Node]:
    """A layout named in a story → (its name, its tree). Unknown → ComicgenError."""
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in NAMED_LAYOUTS:
            return text, NAMED_LAYOUTS[text]
        grid = _GRID.match(text)
        if grid:
            cols, nrows = int(grid.group(1)), int(grid.group(2))
            counts = [cols] * nrows
            _check_counts(counts, spec)
            return f"{cols}x{nrows}", rows(*counts)
        if _ROWS.match(text):
            counts = [int(part) for part in text.split("-")]
            _check_counts(counts, spec)
            return "-".join(map(str, counts)), rows(*counts)
        raise _unknown_layout(spec)
    if isinstance(spec, Sequence) and spec and all(_is_int(c) for c in spec):
        counts = [int(c) for c in spec]
        _check_counts(counts, spec)
        return "-".join(map(str, counts)), rows(*counts)
    raise _unknown_layout(spec)


def check_layout(spec: str | Sequence[int] | None, panel_count: int) -> None:
    """Raise ComicgenError when ``spec`` is unknown or holds another number of panels."""
    if spec is None:
        return
    name, node = parse_layout(spec)
    holds = count_panels(node)
    if holds != panel_count:
        fitting = [n for n, c in known_layouts().items() if c == panel_count]
        hint = f"layouts for {panel_count} panels: {', '.join(fitting)}" if fitting else None
        raise ComicgenError(
            f"layout '{name}' holds {holds} panel{'s' * (holds != 1)} "
            f"but the page has {panel_count}",
            hint=hint or "leave 'layout' out to choose one automatically",
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_counts(counts: Sequence[int], spec: object) -> None:
    if not counts or len(counts) > _MAX_ROWS or any(not 1 <= c <= _MAX_PER_ROW for c in counts):
        raise ComicgenError(
            f"layout {spec!r} is out of range",
            hint=f"use 1 to {_MAX_ROWS} rows of 1 to {_MAX_PER_ROW} panels, e.g. [1, 2, 1]",
        )


def _unknown_layout(spec: object) -> ComicgenError:
    names = list(NAMED_LAYOUTS)
    guess = did_you_mean(spec, names) if isinstance(spec, str) else None
    known = ", ".join(names)
    return ComicgenError(
        f"unknown layout {spec!r}",
        hint=(f"{guess} " if guess else "")
        + f"known layouts: {known}; or a grid like '3x2' (columns x rows), "
        "or rows like [1, 2, 1]",
    )


# -- placing panels -----------------------------------------------------------------------


def _natural_aspect(node: Node, aspects: Iterator[float]) -> float:
    if isinstance(node, Leaf):
        return next(aspects)
    child = [_natural_aspect(c, aspects) for c in node.children]
    if node.direction == "row":
        return sum(child)
    return 1 / sum(1 / a for a in child)


def place(
    node: Node,
    area: Rect,
    gutter: float,
    aspects: Sequence[float] | None = None,
) -> list[Rect]:
    """Panel boxes for ``node`` filling ``area``, in reading order (left to right).

    With ``aspects`` (width / height, one per panel) space is shared so that each box
    comes near its panel's aspect ("justified"); without, equally.
    """
    boxes: list[Rect] = []
    index = 0

    def visit(n: Node, rect: Rect) -> None:
        nonlocal index
        if isinstance(n, Leaf):
            boxes.append(rect)
            index += 1
            return
        k = len(n.children)
        weights = [1.0] * k
        if aspects is not None:
            start = index
            for i, child in enumerate(n.children):
                count = count_panels(child)
                a = _natural_aspect(child, iter(aspects[start : start + count]))
                weights[i] = a if n.direction == "row" else 1 / a
                start += count
        total = sum(weights)
        if n.direction == "row":
            free = max(rect.w - gutter * (k - 1), 0.0)
            x = rect.x
            for child, wgt in zip(n.children, weights, strict=True):
                w = free * wgt / total
                visit(child, Rect(x, rect.y, w, rect.h))
                x += w + gutter
        else:
            free = max(rect.h - gutter * (k - 1), 0.0)
            y = rect.y
            for child, wgt in zip(n.children, weights, strict=True):
                h = free * wgt / total
                visit(child, Rect(rect.x, y, rect.w, h))
                y += h + gutter

    visit(node, area)
    return boxes


def natural_height(node: Node, width: float, gutter: float, aspects: Sequence[float]) -> float:
    """The height that lets every panel keep its aspect at ``width`` (webtoon pages)."""
    index = 0

    def height(n: Node, w: float) -> float:
        nonlocal index
        if isinstance(n, Leaf):
            index += 1
            return w / aspects[index - 1]
        if n.direction == "column":
            return sum(height(c, w) for c in n.children) + gutter * (len(n.children) - 1)
        start = index
        child_aspects = []
        for child in n.children:
            count = count_panels(child)
            child_aspects.append(_natural_aspect(child, iter(aspects[start : start + count])))
            start += count
        index = start
        return max(w - gutter * (len(n.children) - 1), 1.0) / sum(child_aspects)

    return height(node, width)


def _compositions(n: int, max_part: int, max_rows: int) -> Iterator[tuple[int, ...]]:
    for nrows in range(1, max_rows + 1):
        for parts in itertools.product(range(1, max_part + 1), repeat=nrows):
            if sum(parts) == n:
                yield parts


def _candidates(n: int) -> list[tuple[str, Node]]:
    found: dict[str, Node] = {}
    for name, node in NAMED_LAYOUTS.items():
        if count_panels(node) == n:
            found[name] = node
    if n <= 9:
        for parts in _compositions(n, 3, 4):
            name = "-".join(map(str, parts))
            if rows(*parts) not in found.values():
                found[name] = rows(*parts)
    else:
        per_row = 3 if n <= 12 else 4
        nrows = math.ceil(n / per_row)
        counts = [n // nrows + (1 if i < n % nrows else 0) for i in range(nrows)]
        found["-".join(map(str, counts))] = rows(*counts)
    return list(found.items())


def _crop_cost(boxes: Sequence[Rect], aspects: Sequence[float], page_width: float) -> float:
    """How badly ``boxes`` suit the panels: cropping, uneven sizes, tiny panels."""
    cost = 0.0
    for box, aspect in zip(boxes, aspects, strict=True):
        if box.w <= 1 or box.h <= 1:
            return math.inf
        cost += abs(math.log((box.w / box.h) / aspect))
        if min(box.w, box.h) < page_width * 0.2:  # too small to hold a balloon
            cost += 2.0
        if aspect >= 1.3 and box.w < 0.9 * page_width:  # wide shots span the page
            cost += 0.3
    mean = sum(math.log(b.area) for b in boxes) / len(boxes)
    cost += 0.5 * sum(abs(math.log(b.area) - mean) for b in boxes)
    return cost


def choose_layout(
    panels: Sequence[PanelContent], area: Rect, gutter: float
) -> tuple[str, Node, list[Rect]]:
    """The layout that crops these panels least in ``area`` (ties: simpler first)."""
    aspects = [panel_aspect(p) for p in panels]
    best: tuple[float, str, Node, list[Rect]] | None = None
    for order, (name, node) in enumerate(_candidates(len(panels))):
        boxes = place(node, area, gutter, aspects)
        cost = _crop_cost(boxes, aspects, area.w) + 0.001 * order
        if best is None or cost < best[0]:
            best = (cost, name, node, boxes)
    assert best is not None
    return best[1], best[2], best[3]


def panel_aspect(panel: PanelContent) -> float:
    """Width / height the panel wants: its shape hint, else its image's aspect."""
    if panel.shape in SHAPE_ASPECT:
        return SHAPE_ASPECT[panel.shape]
    w, h = panel.image_size
    return w / h if w > 0 and h > 0 else 1.0


# -- the book -----------------------------------------------------------------------------


def page_size(page: PageSettings) -> tuple[int, int | None]:
    """(width, height) in px at 96 dpi; height None = grows with the content (webtoon)."""
    width, height = PRESETS[page.preset]
    return page.width or width, page.height or height


def layout_book(book: Book, page: PageSettings | None = None) -> BookLayout:
    """Lay out every page of ``book``: panel boxes, crops, captions, balloons."""
    page = page or PageSettings()
    width, fixed_height = page_size(page)
    style = Style.for_page(width)
    result = BookLayout(book=book, pages=[], style=style, preset=page.preset)
    for content in book.pages:
        result.pages.append(
            _layout_page(content, page, width, fixed_height, style, book.direction, result)
        )
    return result


def _layout_page(
    content: PageContent,
    page: PageSettings,
    width: int,
    fixed_height: int | None,
    style: Style,
    direction: Direction,
    result: BookLayout,
) -> PageLayout:
    panels = content.panels
    if not panels:
        raise ComicgenError(f"page {content.number} has no panels", hint="add a panel or drop it")
    margin = min(page.margin, width // 4)
    gutter = page.gutter
    aspects = [panel_aspect(p) for p in panels]
    webtoon = fixed_height is None
    if webtoon:
        gutter = gutter * WEBTOON_GUTTER
    try:
        if content.layout is not None:
            check_layout(content.layout, len(panels))
            name, node = parse_layout(content.layout)
            justified = False
        elif webtoon:
            name, node = f"stack-{len(panels)}", rows(*([1] * len(panels)))
            justified = True
        else:
            name, node, justified = "", PANEL, True
    except ComicgenError as exc:
        raise ComicgenError(f"page {content.number}: {exc.message}", hint=exc.hint) from None

    content_w = width - 2 * margin
    if webtoon:
        height = round(2 * margin + natural_height(node, content_w, gutter, aspects))
    else:
        height = fixed_height
    area = Rect(margin, margin, content_w, height - 2 * margin)
    if area.w < 50 or area.h < 50:
        raise ComicgenError(
            f"page {content.number}: the page ({width}x{height} px) leaves no room "
            f"inside margins of {margin} px",
            hint="make the page larger or the margin smaller",
        )
    if name == "":
        name, node, boxes = choose_layout(panels, area, gutter)
    elif justified:
        boxes = place(node, area, gutter, aspects)
    else:
        boxes = place(node, area, gutter)
    if min(min(b.w, b.h) for b in boxes) < 16:
        raise ComicgenError(
            f"page {content.number}: layout '{name}' leaves panels too small on a "
            f"{width}x{height} px page",
            hint="put fewer panels on the page, or make the page larger or the gutter smaller",
        )
    if direction == "rtl":
        boxes = [b.mirrored(width) for b in boxes]

    page_layout = PageLayout(
        number=content.number, width=width, height=height, layout=name, panels=[]
    )
    for panel, box in zip(panels, boxes, strict=True):
        crop = cover_crop(panel.image_size, (box.w, box.h), panel.focus)
        laid = PanelLayout(content=panel, box=box, crop=crop)
        _letter_panel(laid, style, direction, result.warnings, page_area=Rect(0, 0, width, height))
        page_layout.panels.append(laid)
    if margin >= style.font_size:
        size = round(style.font_size * 0.8 * 2) / 2
        line = size * style.line_height
        text = str(content.number)
        w = lettering.text_width(text, size)
        page_layout.page_number = TextBlock(
            box=Rect(width / 2 - w / 2, height - margin / 2 - line / 2, w, line),
            lines=[text],
            size=size,
            line_height=line,
        )
    return page_layout


# -- lettering ----------------------------------------------------------------------------

_SUPERELLIPSE = 2.6  # speech balloons: between an ellipse (2) and a rounded box
_OUTLINE_POINTS = 72


@dataclass
class _Fit:
    lines: list[str]
    size: float
    text_w: float
    text_h: float
    body_w: float
    body_h: float
    fits: bool
    face: str


def _expand(kind: str) -> float:
    return math.sqrt(2) if kind in ("thought", "shout") else 2 ** (1 / _SUPERELLIPSE)


def _body_size(kind: str, text_w: float, text_h: float, size: float) -> tuple[float, float]:
    pad = 0.4 * size
    k = _expand(kind)
    w, h = (text_w + 2 * pad) * k, (text_h + 2 * pad) * k
    if kind == "thought":
        w, h = w + 0.9 * size, h + 0.9 * size
    elif kind == "shout":
        w, h = w + 1.6 * size, h + 1.6 * size
    return w, max(h, 0.55 * w) if kind == "thought" else h


def _fit_text(
    text: str,
    kind: str,
    max_w: float,
    max_h: float,
    start: float,
    minimum: float,
    line_factor: float,
) -> _Fit:
    """Wrap ``text`` so its balloon fits ``max_w`` x ``max_h``: widen, then shrink the font."""
    bold = kind == "shout"
    face = lettering.face_for(text)
    size = start
    last: _Fit | None = None
    while True:
        line = size * line_factor
        total = lettering.text_width(text.replace("\n", " "), size, bold, face)
        k = _expand(kind)
        extra = 0.9 * size if kind == "thought" else 1.6 * size if kind == "shout" else 0.0
        widest = max((max_w - extra) / k - 0.8 * size, 3 * size)
        longest = max(lettering.text_width(w, size, bold, face) for w in text.split() or [""])
        # about twice as wide as high, and wide enough not to break a word if possible
        target = min(max(math.sqrt(total * line * 2.2), 5 * size, longest), widest)
        while True:
            lines = lettering.wrap(text, size, target, bold, face)
            text_w = max(lettering.text_width(t, size, bold, face) for t in lines)
            text_h = len(lines) * line
            body_w, body_h = _body_size(kind, text_w, text_h, size)
            last = _Fit(lines, size, text_w, text_h, body_w, body_h, False, face)
            if body_w <= max_w + 1e-6 and body_h <= max_h + 1e-6:
                last.fits = True
                return last
            if target >= widest - 1e-6:
                break
            target = min(target * 1.25, widest)
        if size - 0.5 < minimum - 1e-6:
            return last
        size -= 0.5


def _letter_panel(
    panel: PanelLayout,
    style: Style,
    direction: Direction,
    warnings: list[str],
    page_area: Rect,
) -> None:
    content = panel.content
    box = panel.box
    speeches = [s for s in content.dialogue if lettering.clean_text(s.text)]
    anchors = [_anchor_point(s, panel) for s in speeches]
    inset = max(style.border, 0.45 * style.font_size)
    free = box.inset(inset)

    caption_text = lettering.clean_text(content.caption or "")
    if caption_text:
        top = not any(a is not None and a[1] < box.y + 0.3 * box.h for a in anchors)
        panel.caption = _caption(caption_text, panel, style, direction, top, warnings)
        cap = panel.caption.box
        if top:
            free = Rect(
                free.x, cap.bottom + inset, free.w, max(free.bottom - cap.bottom - inset, 0)
            )
        else:
            free = Rect(free.x, free.y, free.w, max(cap.y - inset - free.y, 0))
    if not speeches:
        return

    bodies = [_body_rect(a, box) for a in anchors if a is not None]
    size = style.font_size
    while True:
        fits = [
            _fit_text(
                lettering.clean_text(s.text),
                s.kind,
                free.w,
                free.h,
                size,
                style.min_font_size,
                style.line_height,
            )
            for s in speeches
        ]
        placed = _place_balloons(fits, anchors, free, bodies, direction, page_area, box.h)
        overlapping = any(a.overlap(b) > 0 for a, b in itertools.combinations(placed, 2))
        if not overlapping or size <= style.min_font_size:
            break
        size = max(size - 1.0, style.min_font_size)

    for number, (speech, fit, rect, anchor) in enumerate(
        zip(speeches, fits, placed, anchors, strict=True), start=1
    ):
        if not fit.fits:
            warnings.append(
                f"panel {content.id}: dialogue {number} ({_quote(speech.text)}) does not fit "
                f"the panel even at the smallest font size ({style.min_font_size:g} px) — "
                "shorten it, split it over two panels or give the panel more room"
            )
        panel.balloons.append(_balloon(speech, fit, rect, anchor, box, style))
    if overlapping:
        warnings.append(
            f"panel {content.id}: its {len(speeches)} balloons overlap — "
            "shorten the dialogue or move some of it to another panel"
        )


def _quote(text: str, limit: int = 30) -> str:
    text = lettering.clean_text(text).replace("\n", " ")
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _anchor_point(speech: Speech, panel: PanelLayout) -> Point | None:
    """The speaker's position on the page, from image fractions through the crop."""
    if speech.anchor is None:
        return None
    iw, ih = panel.content.image_size
    crop, box = panel.crop, panel.box
    scale = box.w / crop.w
    x = box.x + (speech.anchor[0] * iw - crop.x) * scale
    y = box.y + (speech.anchor[1] * ih - crop.y) * scale
    return (min(max(x, box.x), box.right), min(max(y, box.y), box.bottom))


def _body_rect(anchor: Point, box: Rect) -> Rect:
    """Roughly where a character standing at ``anchor`` is: keep balloons off it."""
    w = box.w * 0.3
    top = anchor[1] - box.h * 0.25
    return Rect(anchor[0] - w / 2, top, w, max(box.bottom - top, 0.0))


def _caption(
    text: str,
    panel: PanelLayout,
    style: Style,
    direction: Direction,
    top: bool,
    warnings: list[str],
) -> CaptionBox:
    box = panel.box
    size = style.font_size
    inner = style.border / 2
    face = lettering.face_for(text)
    while True:
        pad = 0.45 * size
        line = size * style.line_height
        lines = lettering.wrap(text, size, max(box.w - 2 * inner - 2 * pad, 3 * size), False, face)
        text_w = max(lettering.text_width(t, size, False, face) for t in lines)
        height = len(lines) * line + 2 * pad
        if height <= box.h * 0.4 or size <= style.min_font_size:
            break
        size = max(size - 0.5, style.min_font_size)
    if height > box.h * 0.4:
        warnings.append(
            f"panel {panel.id}: the caption ({_quote(text)}) takes {height / box.h:.0%} of the "
            f"panel even at the smallest font size ({style.min_font_size:g} px) — shorten it"
        )
    width = text_w + 2 * pad
    x = box.x + inner if direction == "ltr" else box.right - inner - width
    y = box.y + inner if top else box.bottom - inner - height
    rect = Rect(x, y, width, height)
    block = TextBlock(
        box=Rect(x + pad, y + pad, text_w, len(lines) * line),
        lines=lines,
        size=size,
        line_height=line,
        align="left" if direction == "ltr" else "right",
        face=face,
    )
    return CaptionBox(text=text, box=rect, text_block=block, position="top" if top else "bottom")


def _place_balloons(
    fits: Sequence[_Fit],
    anchors: Sequence[Point | None],
    free: Rect,
    bodies: Sequence[Rect],
    direction: Direction,
    page_area: Rect,
    panel_h: float,
) -> list[Rect]:
    """Balloon rects in reading order, near their speakers, off their bodies."""
    placed: list[Rect] = []
    steps = 10
    for fit, anchor in zip(fits, anchors, strict=True):
        w, h = fit.body_w, fit.body_h
        if w > free.w or h > free.h:  # too big for the panel: centre it, keep it on the page
            rect = Rect(free.center[0] - w / 2, free.y, w, h).moved_into(page_area)
            placed.append(rect)
            continue
        best: tuple[float, Rect] | None = None
        for i, j in itertools.product(range(steps + 1), repeat=2):
            x = free.x + (free.w - w) * i / steps
            y = free.y + (free.h - h) * j / steps
            rect = Rect(x, y, w, h)
            cost = _placement_cost(rect, anchor, free, bodies, placed, direction, panel_h, fit.size)
            if best is None or cost < best[0] - 1e-9:
                best = (cost, rect)
        assert best is not None
        placed.append(best[1])
    return placed


def _placement_cost(
    rect: Rect,
    anchor: Point | None,
    free: Rect,
    bodies: Sequence[Rect],
    placed: Sequence[Rect],
    direction: Direction,
    panel_h: float,
    size: float,
) -> float:
    area = rect.area or 1.0
    cost = 0.0
    for other in placed:
        cost += 50 * other.overlap(rect) / area
    for body in bodies:
        cost += 6 * body.overlap(rect) / area
    if placed:
        prev = placed[-1]
        below = rect.y >= prev.y + 0.6 * prev.h
        beside = rect.y >= prev.y - 0.3 * rect.h and (
            rect.x >= prev.right - 0.1 * rect.w
            if direction == "ltr"
            else rect.right <= prev.x + 0.1 * rect.w
        )
        if not (below or beside):
            cost += 6
    if anchor is not None:
        head = anchor[1] - panel_h * 0.2
        gap = head - rect.bottom  # room between the balloon and the speaker's head
        cost += 0.5 * (rect.y - free.y) / max(free.h, 1.0)
        cost += 1.5 * abs(rect.center[0] - anchor[0]) / max(free.w, 1.0)
        cost += (gap - 2 * size if gap > 2 * size else -2 * gap) / max(free.h, 1.0)
    else:
        cost += 1.2 * (rect.y - free.y) / max(free.h, 1.0)
        start = rect.x - free.x if direction == "ltr" else free.right - rect.right
        cost += 0.6 * start / max(free.w, 1.0)
    return cost


def _balloon(
    speech: Speech, fit: _Fit, rect: Rect, anchor: Point | None, panel_box: Rect, style: Style
) -> Balloon:
    kind = speech.kind
    size = fit.size
    center = rect.center
    # the body is generated around the text's ellipse; the rect is its bounding box
    pad = 0.4 * size
    k = _expand(kind)
    a = (fit.text_w + 2 * pad) * k / 2
    b = (fit.text_h + 2 * pad) * k / 2
    if kind == "thought":
        b = max(b, (rect.h - 0.9 * size) / 2)
        outline = _cloud(center, a, b, 0.45 * size, size)
    elif kind == "shout":
        outline = _spiky(center, a, b, 0.8 * size, size)
    else:
        outline = _superellipse(center, a, b, _SUPERELLIPSE)
    line = size * style.line_height
    block = TextBlock(
        box=Rect(center[0] - fit.text_w / 2, center[1] - fit.text_h / 2, fit.text_w, fit.text_h),
        lines=fit.lines,
        size=size,
        line_height=line,
        bold=kind == "shout",
        align="center",
        face=fit.face,
    )
    balloon = Balloon(
        kind=kind,
        speaker=speech.speaker,
        text=lettering.clean_text(speech.text),
        box=Rect.bounding(outline),
        center=center,
        outline=outline,
        text_block=block,
    )
    if speech.speaker is not None or anchor is not None:
        _add_tail(balloon, anchor, panel_box, size)
    return balloon


def _superellipse(c: Point, a: float, b: float, n: float) -> list[Point]:
    points = []
    for i in range(_OUTLINE_POINTS):
        t = 2 * math.pi * i / _OUTLINE_POINTS
        ct, st = math.cos(t), math.sin(t)
        x = a * math.copysign(abs(ct) ** (2 / n), ct)
        y = b * math.copysign(abs(st) ** (2 / n), st)
        points.append((c[0] + x, c[1] + y))
    return points


def _ellipse_points(c: Point, a: float, b: float, count: int) -> list[Point]:
    """``count`` points spaced evenly along an ellipse's perimeter."""
    fine = 360
    samples = [
        (c[0] + a * math.cos(2 * math.pi * i / fine), c[1] + b * math.sin(2 * math.pi * i / fine))
        for i in range(fine)
    ]
    lengths = [0.0]
    for p, q in zip(samples, samples[1:] + samples[:1], strict=True):
        lengths.append(lengths[-1] + math.dist(p, q))
    total = lengths[-1]
    points, j = [], 0
    for i in range(count):
        target = total * i / count
        while lengths[j + 1] < target:
            j += 1
        points.append(samples[j])
    return points


def _cloud(c: Point, a: float, b: float, bulge: float, size: float) -> list[Point]:
    perimeter = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
    count = max(8, round(perimeter / (2.2 * size)))
    base = _ellipse_points(c, a, b, count)
    points: list[Point] = []
    for p, q in zip(base, base[1:] + base[:1], strict=True):
        mx, my = (p[0] + q[0]) / 2, (p[1] + q[1]) / 2
        half = math.dist(p, q) / 2
        # outward normal of the chord (the ellipse runs clockwise on screen)
        nx, ny = (q[1] - p[1]) / (2 * half or 1), -(q[0] - p[0]) / (2 * half or 1)
        if (mx - c[0]) * nx + (my - c[1]) * ny < 0:
            nx, ny = -nx, -ny
        start = math.atan2(p[1] - my, p[0] - mx)
        for s in range(9):
            ang = start + math.pi * s / 8 * _turn(p, q, (mx, my), (nx, ny))
            r = half
            points.append((mx + r * math.cos(ang), my + r * math.sin(ang)))
    return points


def _turn(p: Point, q: Point, m: Point, n: Point) -> float:
    """+1 or -1: which way round from p to q passes the outward side of the chord."""
    start = math.atan2(p[1] - m[1], p[0] - m[0])
    mid = start + math.pi / 2
    return 1.0 if math.cos(mid) * n[0] + math.sin(mid) * n[1] > 0 else -1.0


def _spiky(c: Point, a: float, b: float, spike: float, size: float) -> list[Point]:
    perimeter = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
    count = max(10, round(perimeter / (1.3 * size)))
    base = _ellipse_points(c, a, b, 2 * count)
    points = []
    for i, (x, y) in enumerate(base):
        dx, dy = x - c[0], y - c[1]
        norm = math.hypot(dx / a**2, dy / b**2) or 1.0
        nx, ny = dx / a**2 / norm, dy / b**2 / norm
        if i % 2 == 0:
            length = spike * (1.0 if i % 4 == 0 else 0.7)
            points.append((x + nx * length, y + ny * length))
        else:
            points.append((x - nx * spike * 0.15, y - ny * spike * 0.15))
    return points


def _edge_point(center: Point, target: Point, outline: Sequence[Point]) -> Point:
    """Where the ray from ``center`` towards ``target`` leaves the outline."""
    dx, dy = target[0] - center[0], target[1] - center[1]
    best_t = 0.0
    for p, q in zip(outline, list(outline[1:]) + [outline[0]], strict=True):
        ex, ey = q[0] - p[0], q[1] - p[1]
        denom = dx * ey - dy * ex
        if abs(denom) < 1e-12:
            continue
        t = ((p[0] - center[0]) * ey - (p[1] - center[1]) * ex) / denom
        u = ((p[0] - center[0]) * dy - (p[1] - center[1]) * dx) / denom
        if t > 0 and 0 <= u <= 1:
            best_t = max(best_t, t)
    return (center[0] + dx * best_t, center[1] + dy * best_t)


def _add_tail(balloon: Balloon, anchor: Point | None, panel_box: Rect, size: float) -> None:
    c = balloon.center
    body = balloon.box
    if anchor is not None:
        head = (anchor[0], max(anchor[1] - panel_box.h * 0.2, panel_box.y))
    else:
        head = None
    if head is None or body.contains_point(head):
        target = (c[0] + body.w * 0.12, body.bottom + 1.6 * size)
        short = True
    else:
        target = head
        short = False
    edge = _edge_point(c, target, balloon.outline)
    dist = math.dist(edge, target)
    if dist < 1e-6:
        return
    ux, uy = (target[0] - edge[0]) / dist, (target[1] - edge[1]) / dist
    if short:
        length = 1.6 * size
    else:
        length = min(max(dist - 0.04 * panel_box.h, 1.4 * size), 0.35 * panel_box.h, dist)
    tip = (edge[0] + ux * length, edge[1] + uy * length)
    balloon.tip = tip
    if balloon.kind == "thought":
        for t, r in ((0.2, 0.42), (0.55, 0.3), (0.9, 0.2)):
            balloon.bubbles.append(
                (edge[0] + ux * length * t, edge[1] + uy * length * t, r * size * 1.2)
            )
        return
    half = min(max(0.18 * min(body.w, body.h), 0.4 * size), 1.1 * size)
    if balloon.kind == "shout":
        half *= 0.8
    px, py = -uy, ux
    root = (edge[0] - ux * half * 1.5, edge[1] - uy * half * 1.5)
    b1 = (root[0] + px * half, root[1] + py * half)
    b2 = (root[0] - px * half, root[1] - py * half)
    if balloon.kind == "shout":
        balloon.tail = [b1, tip, b2]
        return
    bend = 0.15 * length
    side1 = _quad(b1, _mid(b1, tip, px * bend, py * bend), tip, 8)
    side2 = _quad(tip, _mid(b2, tip, px * bend, py * bend), b2, 8)
    balloon.tail = side1 + side2[1:]


def _mid(p: Point, q: Point, dx: float, dy: float) -> Point:
    return ((p[0] + q[0]) / 2 + dx, (p[1] + q[1]) / 2 + dy)


def _quad(p0: Point, p1: Point, p2: Point, steps: int) -> list[Point]:
    out = []
    for i in range(steps + 1):
        t = i / steps
        u = 1 - t
        out.append(
            (
                u * u * p0[0] + 2 * u * t * p1[0] + t * t * p2[0],
                u * u * p0[1] + 2 * u * t * p1[1] + t * t * p2[1],
            )
        )
    return out
