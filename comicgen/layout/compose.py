"""Page composition: panel boxes on the page, the layout chosen per page, the whole book.

:func:`layout_book` turns a :class:`~comicgen.book.Book` into a :class:`BookLayout`:
pages → panels, each with its box on the page, the part of its image shown
(cover-crop around the focus point), its caption box and its balloons. Without a
named layout, the layout is chosen from the panel count and the panels' shapes (a pinned
``wide``/``tall``/``square``; ``auto`` counts as square): every candidate is placed on
the page and the one whose frames suit the shapes best wins.

The frames depend on the story alone (:func:`page_frames`), never on painted images, so
rendering decides them first and paints each panel at its frame's own aspect: the
cover-crop then trims only what rounding to the model's size multiple leaves.

Reading order is the tree's order, left to right; for right-to-left stories the whole
page is mirrored, so the first panel sits top right and each row reads leftwards.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from comicgen import lettering, typefaces
from comicgen.book import Book, Direction, PageContent, PanelContent
from comicgen.errors import ComicgenError
from comicgen.layout.balloons import letter_panel
from comicgen.layout.geometry import (
    BookLayout,
    PageLayout,
    PanelLayout,
    Rect,
    Style,
    TextBlock,
    cover_crop,
)
from comicgen.layout.trees import (
    NAMED_LAYOUTS,
    PANEL,
    Leaf,
    Node,
    check_layout,
    count_panels,
    parse_layout,
    rows,
)
from comicgen.settings import PageSettings

PRESETS: dict[str, tuple[int, int | None]] = {
    "comic": (800, 1200),  # 2:3 portrait, close to a comic book's trim
    "square": (1080, 1080),
    "webtoon": (800, None),  # one column; the height grows with the panels
}
SHAPE_ASPECT = {"square": 1.0, "wide": 1.5, "tall": 1 / 1.5}
WEBTOON_GUTTER = 3  # webtoon panels are spaced wider: this many gutters
CROP_ALLOWANCE = 0.03  # a frame crops its painting's width or height by this at most…
YIELD_LIMIT = 0.12  # …and yields (narrows) for the rest of a miss up to this


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
    pinned: Sequence[bool] | None = None,
) -> list[Rect]:
    """Panel boxes for ``node`` filling ``area``, in reading order (left to right).

    With ``aspects`` (width / height, one per panel) space is shared so that each box
    comes near its panel's aspect ("justified"); without, equally. Panels marked in
    ``pinned`` (a story pinned their shape) keep their aspect where a split also holds
    unpinned panels: those take the slack.
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
        fixed = [False] * k
        if aspects is not None:
            start = index
            for i, child in enumerate(n.children):
                count = count_panels(child)
                a = _natural_aspect(child, iter(aspects[start : start + count]))
                weights[i] = a if n.direction == "row" else 1 / a
                fixed[i] = pinned is not None and all(pinned[start : start + count])
                start += count
        row = n.direction == "row"
        free = max((rect.w if row else rect.h) - gutter * (k - 1), 0.0)
        sizes = [free * wgt / sum(weights) for wgt in weights]
        if any(fixed) and not all(fixed):
            natural = [wgt * (rect.h if row else rect.w) for wgt in weights]
            taken = sum(size for size, f in zip(natural, fixed, strict=True) if f)
            if taken <= 0.85 * free:
                rest = sum(wgt for wgt, f in zip(weights, fixed, strict=True) if not f)
                sizes = [
                    size if f else (free - taken) * wgt / rest
                    for size, wgt, f in zip(natural, weights, fixed, strict=True)
                ]
        offset = rect.x if row else rect.y
        for child, size in zip(n.children, sizes, strict=True):
            if row:
                visit(child, Rect(offset, rect.y, size, rect.h))
            else:
                visit(child, Rect(rect.x, offset, rect.w, size))
            offset += size + gutter

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
    aspects: Sequence[float], area: Rect, gutter: float, pinned: Sequence[bool] | None = None
) -> tuple[str, Node, list[Rect]]:
    """The layout whose frames suit panels of these ``aspects`` best in ``area``
    (ties: simpler first)."""
    best: tuple[float, str, Node, list[Rect]] | None = None
    for order, (name, node) in enumerate(_candidates(len(aspects))):
        boxes = place(node, area, gutter, aspects, pinned)
        cost = _crop_cost(boxes, aspects, area.w) + 0.001 * order
        if best is None or cost < best[0]:
            best = (cost, name, node, boxes)
    assert best is not None
    return best[1], best[2], best[3]


def shape_aspect(shape: str | None) -> float:
    """Width / height a panel's shape asks of its frame; ``auto`` (or none): square-ish,
    the frame decides and the painting follows it."""
    return SHAPE_ASPECT.get(shape or "auto", 1.0)


def panel_aspect(panel: PanelContent) -> float:
    """Width / height the panel wants of its frame (from its shape, not its image: the
    frames are decided before anything is painted)."""
    return shape_aspect(panel.shape)


# -- the book -----------------------------------------------------------------------------


def page_size(page: PageSettings) -> tuple[int, int | None]:
    """(width, height) in px at 96 dpi; height None = grows with the content (webtoon)."""
    width, height = PRESETS[page.preset]
    return page.width or width, page.height or height


def layout_book(book: Book, page: PageSettings | None = None) -> BookLayout:
    """Lay out every page of ``book``: panel boxes, crops, captions, balloons."""
    page = page or PageSettings()
    style = Style.for_page(page_size(page)[0])
    result = BookLayout(book=book, pages=[], style=style, preset=page.preset)
    result.chain, missing = typefaces.choose_chain(_book_texts(book), book.language, page.fonts)
    result.warnings += missing
    for content in book.pages:
        result.pages.append(_layout_page(content, page, style, book.direction, result))
    return result


def _book_texts(book: Book) -> Iterator[str]:
    for page in book.pages:
        yield str(page.number)
        for panel in page.panels:
            yield panel.caption or ""
            for speech in panel.dialogue:
                yield speech.text
            for effect in panel.sfx:
                yield effect.text


@dataclass(frozen=True)
class PageFrames:
    """Where a page's panels go, decided before anything is painted: the layout's name,
    the page's size and one frame per panel in reading order (mirrored for rtl)."""

    name: str
    width: int
    height: int
    margin: int
    boxes: list[Rect]


def page_frames(
    number: int,
    shapes: Sequence[str | None],
    layout: str | Sequence[int] | None,
    page: PageSettings,
    direction: Direction = "ltr",
) -> PageFrames:
    """The frames of page ``number`` holding panels of ``shapes`` (see :func:`shape_aspect`)
    with ``layout`` (None: chosen to suit the shapes). Depends on nothing painted, so the
    painter can paint each panel at its frame's own aspect."""
    if not shapes:
        raise ComicgenError(f"page {number} has no panels", hint="add a panel or drop it")
    width, fixed_height = page_size(page)
    margin = min(page.margin, width // 4)
    gutter = page.gutter
    aspects = [shape_aspect(s) for s in shapes]
    pinned = [s in SHAPE_ASPECT for s in shapes]
    webtoon = fixed_height is None
    if webtoon:
        gutter = gutter * WEBTOON_GUTTER
    try:
        if layout is not None:
            check_layout(layout, len(shapes))
            name, node = parse_layout(layout)
            justified = False
        elif webtoon:
            name, node = f"stack-{len(shapes)}", rows(*([1] * len(shapes)))
            justified = True
        else:
            name, node, justified = "", PANEL, True
    except ComicgenError as exc:
        raise ComicgenError(f"page {number}: {exc.message}", hint=exc.hint) from None

    content_w = width - 2 * margin
    if webtoon:
        height = round(2 * margin + natural_height(node, content_w, gutter, aspects))
    else:
        height = fixed_height
    area = Rect(margin, margin, content_w, height - 2 * margin)
    if area.w < 50 or area.h < 50:
        raise ComicgenError(
            f"page {number}: the page ({width}x{height} px) leaves no room "
            f"inside margins of {margin} px",
            hint="make the page larger or the margin smaller",
        )
    if name == "":
        name, node, boxes = choose_layout(aspects, area, gutter, pinned)
    elif justified:
        boxes = place(node, area, gutter, aspects, pinned)
    else:
        boxes = place(node, area, gutter)
    if min(min(b.w, b.h) for b in boxes) < 16:
        raise ComicgenError(
            f"page {number}: layout '{name}' leaves panels too small on a {width}x{height} px page",
            hint="put fewer panels on the page, or make the page larger or the gutter smaller",
        )
    if direction == "rtl":
        boxes = [b.mirrored(width) for b in boxes]
    return PageFrames(name, width, height, margin, boxes)


def meet_painting(box: Rect, image_size: tuple[int, int]) -> Rect:
    """The frame for a painting painted for it: where the painting's aspect misses the
    frame's a little (its size was rounded to the model's multiple), the frame crops up
    to :data:`CROP_ALLOWANCE` and narrows (centred) by the rest. A bigger miss (an image
    made for another frame) is left to the cover-crop."""
    iw, ih = image_size
    if iw <= 0 or ih <= 0 or box.w <= 0 or box.h <= 0:
        return box
    miss = math.log((box.w / box.h) / (iw / ih))
    if abs(miss) <= math.log1p(CROP_ALLOWANCE) or abs(miss) > math.log1p(YIELD_LIMIT):
        return box
    if miss > 0:  # the frame is wider: it narrows
        w = box.h * iw / ih * (1 + CROP_ALLOWANCE)
        return Rect(box.x + (box.w - w) / 2, box.y, w, box.h)
    h = box.w * ih / iw * (1 + CROP_ALLOWANCE)
    return Rect(box.x, box.y + (box.h - h) / 2, box.w, h)


def _layout_page(
    content: PageContent,
    page: PageSettings,
    style: Style,
    direction: Direction,
    result: BookLayout,
) -> PageLayout:
    panels = content.panels
    frames = page_frames(content.number, [p.shape for p in panels], content.layout, page, direction)
    width, height, margin, name = frames.width, frames.height, frames.margin, frames.name
    boxes = frames.boxes

    page_layout = PageLayout(
        number=content.number, width=width, height=height, layout=name, panels=[]
    )
    for panel, box in zip(panels, boxes, strict=True):
        if panel.fitted:
            box = meet_painting(box, panel.image_size)
        crop = cover_crop(panel.image_size, (box.w, box.h), panel.focus)
        laid = PanelLayout(content=panel, box=box, crop=crop)
        letter_panel(
            laid, style, direction, result.warnings, Rect(0, 0, width, height), result.chain
        )
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
