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
from comicgen.book import Direction, Speech
from comicgen.layout.geometry import (
    Balloon,
    CaptionBox,
    PanelLayout,
    Point,
    Rect,
    Style,
    TextBlock,
)

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


def letter_panel(
    panel: PanelLayout,
    style: Style,
    direction: Direction,
    warnings: list[str],
    page_area: Rect,
) -> None:
    """Fit the panel's caption and balloons into its box (sets ``caption``, ``balloons``)."""
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
