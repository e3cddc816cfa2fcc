"""Balloon shapes: outlines (speech, thought, shout, whisper) and tails. Pure geometry.

A speech balloon is a superellipse around its text, a thought a cloud of arcs, a shout a
ring of spikes; a whisper has the speech outline (the publishers dash it). A tail runs
from the body towards the speaker's head, or to the frame's edge for a voice from out of
frame; a thought's tail is a line of shrinking bubbles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from comicgen.layout.geometry import Balloon, Point, Rect

SUPERELLIPSE = 2.6  # speech balloons: between an ellipse (2) and a rounded box
OUTLINE_POINTS = 72


def superellipse(c: Point, a: float, b: float, n: float) -> list[Point]:
    points = []
    for i in range(OUTLINE_POINTS):
        t = 2 * math.pi * i / OUTLINE_POINTS
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


def cloud(c: Point, a: float, b: float, bulge: float, size: float) -> list[Point]:
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


def spiky(c: Point, a: float, b: float, spike: float, size: float) -> list[Point]:
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


def add_tail(
    balloon: Balloon,
    anchor: Point | None,
    panel_box: Rect,
    size: float,
    edge: Point | None = None,
) -> None:
    """A tail from the body towards the speaker's head, or to ``edge`` (off-panel)."""
    c = balloon.center
    body = balloon.box
    if anchor is not None:
        head = (anchor[0], max(anchor[1] - panel_box.h * 0.2, panel_box.y))
    else:
        head = edge
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
    elif edge is not None:
        length = dist  # right up to the frame's edge
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


def nearest_edge(point: Point, box: Rect) -> Point:
    """The point of the frame's left, right or top edge nearest ``point`` (the bottom
    edge is where speakers' bodies are, so a voice from off-panel never comes from it)."""
    x, y = point
    candidates = [(x - box.x, (box.x, y)), (box.right - x, (box.right, y)), (y - box.y, (x, box.y))]
    return min(candidates, key=lambda c: c[0])[1]
