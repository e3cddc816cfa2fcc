"""Lettering placement: captions and balloons fitted into a laid-out panel.

Text is wrapped and sized to fit (:mod:`comicgen.lettering` measures it), balloons are
placed in reading order near their speakers and off their bodies, and each gets its
outline (speech, thought, shout), tail and text block.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from comicgen import lettering
from comicgen.book import Direction, SoundEffect, Speech
from comicgen.layout.geometry import (
    Balloon,
    CaptionBox,
    PanelLayout,
    Point,
    Rect,
    SoundEffectLayout,
    Style,
    TextBlock,
)
from comicgen.layout.shapes import (
    SUPERELLIPSE,
    add_tail,
    cloud,
    nearest_edge,
    spiky,
    superellipse,
)


@dataclass
class _Fit:
    lines: list[str]
    size: float
    text_w: float
    text_h: float
    body_w: float
    body_h: float
    fits: bool
    face: tuple[str, ...]  # the face chain


def _expand(kind: str) -> float:
    return math.sqrt(2) if kind in ("thought", "shout") else 2 ** (1 / SUPERELLIPSE)


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
    faces: tuple[str, ...] = (lettering.BUNDLED,),
) -> _Fit:
    """Wrap ``text`` so its balloon fits ``max_w`` x ``max_h``: widen, then shrink the font."""
    bold = kind == "shout"
    face = faces
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


def letter_panel(
    panel: PanelLayout,
    style: Style,
    direction: Direction,
    warnings: list[str],
    page_area: Rect,
    faces: tuple[str, ...] = (lettering.BUNDLED,),
) -> None:
    """Fit the panel's caption, narration, sound effects and balloons into its box."""
    content = panel.content
    box = panel.box
    lines = [s for s in content.dialogue if lettering.clean_text(s.text)]
    speeches = [s for s in lines if not s.caption]
    anchors = [_anchor_point(s, panel) for s in speeches]
    inset = max(style.border, 0.45 * style.font_size)
    free = box.inset(inset)

    panel.sfx = [_sound_effect(e, box, style, faces) for e in content.sfx if e.text.strip()]
    caption_text = lettering.clean_text(content.caption or "")
    top_y, bottom_y = free.y, free.bottom  # room left between the caption boxes
    if caption_text:
        top = content.caption_at != "bottom"
        panel.caption = _caption(caption_text, panel, style, direction, top, warnings, faces)
        cap = panel.caption.box
        if top:
            top_y = cap.bottom + inset
        else:
            bottom_y = cap.y - inset
    for voice in (s for s in lines if s.caption):  # narrator and voices: boxes at the top
        caption = _caption(
            lettering.clean_text(voice.text), panel, style, direction, True, warnings, faces
        )
        caption.speaker = voice.speaker
        shift = 0.0
        if panel.narration or (panel.caption is not None and panel.caption.position == "top"):
            shift = top_y - caption.box.y  # below the boxes already there
        panel.narration.append(_shifted(caption, shift))
        top_y = panel.narration[-1].box.bottom + inset
    free = Rect(free.x, top_y, free.w, max(bottom_y - top_y, 0.0))
    if not speeches:
        return

    bodies = [_body_rect(a, box) for a in anchors if a is not None]
    bodies += [effect.box for effect in panel.sfx]
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
                faces,
            )
            for s in speeches
        ]
        placed = _place_balloons(fits, speeches, anchors, free, box, bodies, direction, page_area)
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
            "shorten the dialogue, move some of it to another panel or place it with 'at'"
        )


def _shifted(caption: CaptionBox, dy: float) -> CaptionBox:
    if not dy:
        return caption
    b, t = caption.box, caption.text_block
    caption.box = Rect(b.x, b.y + dy, b.w, b.h)
    t.box = Rect(t.box.x, t.box.y + dy, t.box.w, t.box.h)
    return caption


def _sound_effect(
    effect: SoundEffect, box: Rect, style: Style, faces: tuple[str, ...]
) -> SoundEffectLayout:
    """Big display letters centred at ``effect.at`` (fractions of the frame), turned."""
    text = lettering.clean_text(effect.text).replace("\n", " ")
    size = max(effect.size * box.h, style.min_font_size)
    width = lettering.text_width(text, size, True, faces)
    if width > 0.95 * box.w:  # never wider than the frame
        size *= 0.95 * box.w / width
        width = lettering.text_width(text, size, True, faces)
    cx = box.x + min(max(effect.at[0], 0.0), 1.0) * box.w
    cy = box.y + min(max(effect.at[1], 0.0), 1.0) * box.h
    outline = max(1.0, round(size * 0.06 * 2) / 2)
    block = TextBlock(
        box=Rect(cx - width / 2, cy - size / 2, width, size),
        lines=[text],
        size=size,
        line_height=size,
        bold=True,
        face=lettering.main_face(text, faces),
        faces=faces,
    )
    angle = math.radians(effect.angle)
    half_w, half_h = width / 2 + outline, size / 2 + outline
    corners = [
        (
            cx + dx * math.cos(angle) - dy * math.sin(angle),
            cy + dx * math.sin(angle) + dy * math.cos(angle),
        )
        for dx, dy in ((-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h))
    ]
    bounds = Rect.bounding(corners)
    inside = bounds.moved_into(box)  # the letters stay in their frame
    dx, dy = inside.x - bounds.x, inside.y - bounds.y
    if dx or dy:
        cx, cy = cx + dx, cy + dy
        block.box = Rect(block.box.x + dx, block.box.y + dy, width, size)
    return SoundEffectLayout(
        text=text,
        center=(cx, cy),
        angle=effect.angle,
        color=effect.color,
        outline=outline,
        text_block=block,
        box=inside,
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
    faces: tuple[str, ...] = (lettering.BUNDLED,),
) -> CaptionBox:
    box = panel.box
    size = style.font_size
    inner = style.border / 2
    face = faces
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
        face=lettering.main_face(text, faces),
        faces=face,
    )
    return CaptionBox(text=text, box=rect, text_block=block, position="top" if top else "bottom")


def _place_balloons(
    fits: Sequence[_Fit],
    speeches: Sequence[Speech],
    anchors: Sequence[Point | None],
    free: Rect,
    box: Rect,
    bodies: Sequence[Rect],
    direction: Direction,
    page_area: Rect,
) -> list[Rect]:
    """Balloon rects in reading order, near their speakers, off their bodies.

    Each balloon comes below the one before it, or level with it and further along the
    reading direction. A balloon whose speaker has no place in the panel (off-panel,
    unnamed) aims at its share of the top band, in reading order; one with ``at`` goes
    where the story says.
    """
    placed: list[Rect] = []
    steps = 12
    unplaced = [i for i, a in enumerate(anchors) if a is None]
    for index, (fit, speech, anchor) in enumerate(zip(fits, speeches, anchors, strict=True)):
        w, h = fit.body_w, fit.body_h
        if speech.at is not None:  # placed by hand: centred there, kept in the frame
            cx = box.x + speech.at[0] * box.w
            cy = box.y + speech.at[1] * box.h
            placed.append(Rect(cx - w / 2, cy - h / 2, w, h).moved_into(box))
            continue
        if w > free.w or h > free.h:  # too big for the panel: centre it, keep it on the page
            rect = Rect(free.center[0] - w / 2, free.y, w, h).moved_into(page_area)
            placed.append(rect)
            continue
        target = None
        if anchor is None:
            share = (unplaced.index(index) + 0.5) / len(unplaced)
            target = free.x + free.w * (share if direction == "ltr" else 1 - share)
        best: tuple[float, Rect] | None = None
        for i, j in itertools.product(range(steps + 1), repeat=2):
            x = free.x + (free.w - w) * i / steps
            y = free.y + (free.h - h) * j / steps
            rect = Rect(x, y, w, h)
            cost = _placement_cost(
                rect, anchor, target, free, bodies, placed, direction, box.h, fit.size
            )
            if best is None or cost < best[0] - 1e-9:
                best = (cost, rect)
        assert best is not None
        placed.append(best[1])
    return placed


def in_reading_order(prev: Rect, rect: Rect, direction: Direction) -> bool:
    """Whether ``rect`` reads after ``prev``: below it, or level and further along."""
    below = rect.y >= prev.y + 0.6 * prev.h
    beside = rect.y >= prev.y - 0.3 * rect.h and (
        rect.x >= prev.right - 0.1 * rect.w
        if direction == "ltr"
        else rect.right <= prev.x + 0.1 * rect.w
    )
    return below or beside


def _placement_cost(
    rect: Rect,
    anchor: Point | None,
    target: float | None,
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
    if placed and not in_reading_order(placed[-1], rect, direction):
        cost += 25
    if anchor is not None:
        head = anchor[1] - panel_h * 0.2
        gap = head - rect.bottom  # room between the balloon and the speaker's head
        cost += 0.5 * (rect.y - free.y) / max(free.h, 1.0)
        cost += 1.5 * abs(rect.center[0] - anchor[0]) / max(free.w, 1.0)
        cost += (gap - 2 * size if gap > 2 * size else -2 * gap) / max(free.h, 1.0)
    else:
        cost += 1.2 * (rect.y - free.y) / max(free.h, 1.0)
        if target is not None:
            cost += 1.0 * abs(rect.center[0] - target) / max(free.w, 1.0)
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
        outline = cloud(center, a, b, 0.45 * size, size)
    elif kind == "shout":
        outline = spiky(center, a, b, 0.8 * size, size)
    else:
        outline = superellipse(center, a, b, SUPERELLIPSE)
    line = size * style.line_height
    block = TextBlock(
        box=Rect(center[0] - fit.text_w / 2, center[1] - fit.text_h / 2, fit.text_w, fit.text_h),
        lines=fit.lines,
        size=size,
        line_height=line,
        bold=kind == "shout",
        align="center",
        face=lettering.main_face(lettering.clean_text(speech.text), fit.face),
        faces=fit.face,
    )
    balloon = Balloon(
        kind=kind,
        speaker=speech.speaker,
        text=lettering.clean_text(speech.text),
        box=Rect.bounding(outline),
        center=center,
        outline=outline,
        text_block=block,
        offpanel=speech.offpanel or (speech.speaker is None and anchor is None),
        nudged=speech.at is not None,
    )
    if balloon.offpanel:  # the voice comes from out of frame: the tail runs to the edge
        add_tail(balloon, None, panel_box, size, edge=nearest_edge(center, panel_box))
    elif speech.speaker is not None or anchor is not None:
        add_tail(balloon, anchor, panel_box, size)
    return balloon
