"""Plain geometry and the layout's results: rects, cover-crops, and the page, panel, caption
and balloon objects the HTML and PNG publishers both draw from. Units are CSS pixels at
96 dpi, origin at the page's top left. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from comicgen import lettering
from comicgen.book import Book, Direction, PanelContent, SpeechKind

Point = tuple[float, float]
Align = Literal["center", "left", "right"]


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
    face: str = lettering.BUNDLED  # the block's own font (its line boxes' strut)
    # the face chain its lines are lettered with (see comicgen.lettering.runs)
    faces: tuple[str, ...] = (lettering.BUNDLED,)

    def runs(self, index: int) -> list[tuple[str, str]]:
        """Line ``index`` as (text, face key) runs, in logical order."""
        return lettering.runs(self.lines[index], self.faces)

    def baseline(self, index: int) -> float:
        """The y of line ``index``'s baseline (as CSS places it)."""
        offset = lettering.baseline_offset(self.size, self.line_height, self.bold, self.face)
        return self.box.y + index * self.line_height + offset

    def line_width(self, index: int) -> float:
        return lettering.text_width(self.lines[index], self.size, self.bold, self.faces)


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
    offpanel: bool = False  # the speaker is out of frame: the tail ends at the frame's edge
    nudged: bool = False  # placed where the story's 'at' asked, not automatically


@dataclass
class CaptionBox:
    text: str
    box: Rect
    text_block: TextBlock
    position: Literal["top", "bottom"] = "top"
    speaker: str | None = None  # a narrator's caption: None; a voice's: its name


@dataclass
class SoundEffectLayout:
    """Display lettering on the art: one line, turned ``angle`` degrees (clockwise)
    about ``center``; ``text_block`` is the unturned line centred there."""

    text: str
    center: Point
    angle: float
    color: str
    outline: float  # width of the ink outline around the letters
    text_block: TextBlock
    box: Rect  # bounding box of the turned letters (outline included)


@dataclass
class PanelLayout:
    content: PanelContent
    box: Rect
    crop: Crop
    caption: CaptionBox | None = None
    balloons: list[Balloon] = field(default_factory=list)
    narration: list[CaptionBox] = field(default_factory=list)  # narrator's and voices' lines
    sfx: list[SoundEffectLayout] = field(default_factory=list)

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
    chain: tuple[str, ...] = (lettering.BUNDLED,)  # the faces lettering may use, in order

    @property
    def direction(self) -> Direction:
        return self.book.direction

    def text_blocks(self) -> Iterator[TextBlock]:
        for page in self.pages:
            for panel in page.panels:
                if panel.caption is not None:
                    yield panel.caption.text_block
                for caption in panel.narration:
                    yield caption.text_block
                for balloon in panel.balloons:
                    yield balloon.text_block
                for effect in panel.sfx:
                    yield effect.text_block
            if page.page_number is not None:
                yield page.page_number

    def faces(self) -> list[str]:
        """The font faces the lettering uses (the bundled one first)."""
        used = {lettering.BUNDLED}
        for block in self.text_blocks():
            for index in range(len(block.lines)):
                used.update(key for _text, key in block.runs(index))
        return sorted(used, key=self.chain.index)
