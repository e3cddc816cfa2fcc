"""Page geometry: panel boxes, cover-crops, captions and balloons. Pure, no I/O.

:func:`layout_book` turns a :class:`~comicgen.book.Book` into a :class:`BookLayout`:
pages → panels, each with its box on the page, the part of its image shown
(cover-crop around the focus point), its caption box and its balloons (outline polygon,
tail, text lines, font size). The HTML and PNG publishers both draw from this one
object, so they agree. Units are CSS pixels at 96 dpi, origin at the page's top left.

By subject:

- :mod:`~comicgen.layout.geometry`: Rect, Crop and the result types;
- :mod:`~comicgen.layout.trees`: layout trees, named layouts, grids and rows;
- :mod:`~comicgen.layout.compose`: page composition (placing panels, choosing a
  layout, the whole book);
- :mod:`~comicgen.layout.balloons`: captions, narration, sound effects and balloons
  placed in a panel;
- :mod:`~comicgen.layout.shapes`: balloon outlines (speech, thought, shout) and tails.
"""

from comicgen.layout.compose import (
    PRESETS,
    SHAPE_ASPECT,
    WEBTOON_GUTTER,
    PageFrames,
    choose_layout,
    layout_book,
    natural_height,
    page_frames,
    page_size,
    panel_aspect,
    place,
    shape_aspect,
)
from comicgen.layout.geometry import (
    Align,
    Balloon,
    BookLayout,
    CaptionBox,
    Crop,
    PageLayout,
    PanelLayout,
    Point,
    Rect,
    SoundEffectLayout,
    Style,
    TextBlock,
    cover_crop,
)
from comicgen.layout.trees import (
    NAMED_LAYOUTS,
    PANEL,
    Leaf,
    Node,
    Split,
    check_layout,
    count_panels,
    known_layouts,
    parse_layout,
    rows,
)

__all__ = [
    "NAMED_LAYOUTS",
    "PANEL",
    "PRESETS",
    "SHAPE_ASPECT",
    "WEBTOON_GUTTER",
    "Align",
    "Balloon",
    "BookLayout",
    "CaptionBox",
    "Crop",
    "Leaf",
    "Node",
    "PageFrames",
    "PageLayout",
    "PanelLayout",
    "Point",
    "Rect",
    "SoundEffectLayout",
    "Split",
    "Style",
    "TextBlock",
    "check_layout",
    "choose_layout",
    "count_panels",
    "cover_crop",
    "known_layouts",
    "layout_book",
    "natural_height",
    "page_frames",
    "page_size",
    "panel_aspect",
    "parse_layout",
    "place",
    "rows",
    "shape_aspect",
]
