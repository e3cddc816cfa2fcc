"""PNG pages painted by Pillow from the page geometry (the same one the HTML uses).

Panels are pasted at the page's resolution; frames, captions, balloons and text are
drawn on a transparent layer at ``supersample`` times that resolution and scaled down,
which smooths their edges (Pillow draws shapes without anti-aliasing).
"""

from __future__ import annotations

import math
import unicodedata

from comicgen import lettering
from comicgen.layout import PageLayout, Style, TextBlock

SUPERSAMPLE = 2
DASH = (3.0, 2.2)  # whisper outlines: dash and gap, in stroke widths (the SVG uses the same)


def pixel_size(page: PageLayout, dpi: int) -> tuple[int, int]:
    """The PNG size of ``page`` at ``dpi`` (the geometry is at 96 dpi)."""
    scale = dpi / 96
    return max(1, round(page.width * scale)), max(1, round(page.height * scale))


def render_page(
    page: PageLayout,
    style: Style,
    dpi: int,
    supersample: int = SUPERSAMPLE,
    *,
    with_text: bool = True,
):
    """Paint one page; returns an RGB ``PIL.Image``.

    ``with_text=False`` leaves the text of captions and balloons out (their shapes stay;
    sound effects, part of the art, too): the art for exports that set the text as real
    text over it (EPUB).
    """
    from PIL import Image, ImageDraw

    scale = dpi / 96
    size = pixel_size(page, dpi)
    canvas = Image.new("RGB", size, style.paper)
    for panel in page.panels:
        box = _pixel_box(panel.box.x, panel.box.y, panel.box.right, panel.box.bottom, scale)
        w, h = box[2] - box[0], box[3] - box[1]
        if w <= 0 or h <= 0:
            continue
        with Image.open(panel.content.image) as source:
            image = source.convert("RGB")
        fx = image.width / panel.content.image_size[0]
        fy = image.height / panel.content.image_size[1]
        crop = panel.crop
        region = (crop.x * fx, crop.y * fy, (crop.x + crop.w) * fx, (crop.y + crop.h) * fy)
        canvas.paste(image.resize((w, h), Image.Resampling.LANCZOS, box=region), box[:2])
    for panel in page.panels:  # sound effects sit on the art, under frames and balloons
        for effect in panel.sfx:
            _draw_sfx(canvas, effect, style, scale)

    s = scale * supersample
    ink_layer = Image.new("RGBA", (size[0] * supersample, size[1] * supersample), (0, 0, 0, 0))
    draw = ImageDraw.Draw(ink_layer)
    ink = _rgba(style.ink)
    paper = _rgba(style.paper)
    for panel in page.panels:
        b = panel.box
        half = style.border / 2
        draw.rectangle(
            _pixel_box(b.x - half, b.y - half, b.right + half, b.bottom + half, s),
            outline=ink,
            width=max(1, round(style.border * s)),
        )
    for panel in page.panels:
        boxes = [panel.caption] if panel.caption is not None else []
        for caption in boxes + list(panel.narration):
            c = caption.box
            half = style.stroke / 2
            draw.rectangle(
                _pixel_box(c.x - half, c.y - half, c.right + half, c.bottom + half, s),
                fill=_rgba(style.caption_fill),
                outline=ink,
                width=max(1, round(style.stroke * s)),
            )
            if with_text:
                _draw_text(draw, caption.text_block, s, ink)
        for balloon in panel.balloons:
            shapes = [balloon.outline] + ([balloon.tail] if balloon.tail else [])
            stroke = max(1, round(2 * style.stroke * s))
            for shape in shapes:
                points = _scaled(shape, s)
                if balloon.kind == "whisper":  # a dashed outline; the paper covers its inside
                    dash = style.stroke * s * DASH[0], style.stroke * s * DASH[1]
                    _dashed(draw, points + points[:1], ink, stroke, dash)
                    continue
                draw.polygon(points, fill=ink)
                draw.line(points + points[:1], fill=ink, width=stroke, joint="curve")
            for x, y, r in balloon.bubbles:
                rr = r + style.stroke
                draw.ellipse(((x - rr) * s, (y - rr) * s, (x + rr) * s, (y + rr) * s), fill=ink)
            for shape in shapes:
                draw.polygon(_scaled(shape, s), fill=paper)
            for x, y, r in balloon.bubbles:
                draw.ellipse(((x - r) * s, (y - r) * s, (x + r) * s, (y + r) * s), fill=paper)
            if with_text:
                _draw_text(draw, balloon.text_block, s, ink)
    if page.page_number is not None:
        _draw_text(draw, page.page_number, s, _rgba(style.page_number_color))
    if supersample != 1:
        # box-average in premultiplied alpha, so edges fade to the panel, not to black
        ink_layer = ink_layer.convert("RGBa").reduce(supersample).convert("RGBA")
    canvas.paste(ink_layer, (0, 0), ink_layer)
    return canvas


def _dashed(draw, points, fill, width: int, dash: tuple[float, float]) -> None:
    """A dashed polyline: the pattern runs on along the whole line, corners included."""
    on, off = dash
    phase = 0.0  # distance into the current dash + gap period
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        length = math.hypot(x1 - x0, y1 - y0)
        at = 0.0
        while at < length:
            if phase < on:
                step = min(on - phase, length - at)
                t0, t1 = at / length, (at + step) / length
                draw.line(
                    [
                        (x0 + (x1 - x0) * t0, y0 + (y1 - y0) * t0),
                        (x0 + (x1 - x0) * t1, y0 + (y1 - y0) * t1),
                    ],
                    fill=fill,
                    width=width,
                )
            else:
                step = min(on + off - phase, length - at)
            at += step
            phase = (phase + step) % (on + off)


def _draw_sfx(canvas, effect, style: Style, scale: float) -> None:
    """A sound effect: its letters in colour with an ink outline, turned about its centre."""
    from PIL import Image, ImageDraw

    block = effect.text_block
    outline = effect.outline * scale
    side = math.ceil(math.hypot(block.box.w, block.box.h) * scale + 4 * outline + 4)
    patch = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(patch)
    cx, cy = effect.center
    origin = (cx - side / 2 / scale, cy - side / 2 / scale)  # the patch's corner on the page
    fill = _rgba(effect.color)
    _draw_text(draw, block, scale, fill, origin=origin, stroke=(round(outline), _rgba(style.ink)))
    turned = patch.rotate(-effect.angle, resample=Image.Resampling.BICUBIC)
    canvas.paste(turned, (round(origin[0] * scale), round(origin[1] * scale)), turned)


def _pixel_box(x0: float, y0: float, x1: float, y1: float, scale: float) -> tuple[int, ...]:
    return (round(x0 * scale), round(y0 * scale), round(x1 * scale), round(y1 * scale))


def _scaled(points, scale: float) -> list[tuple[float, float]]:
    return [(x * scale, y * scale) for x, y in points]


def _rgba(colour: str) -> tuple[int, int, int, int]:
    from PIL import ImageColor

    r, g, b = ImageColor.getrgb(colour)[:3]
    return (r, g, b, 255)


def _draw_text(
    draw, block: TextBlock, scale: float, fill, origin=(0.0, 0.0), stroke=(0, None)
) -> None:
    """Letter ``block``; ``origin`` is the page point at the image's top left."""
    ox, oy = origin
    width, stroke_fill = stroke
    x = {
        "center": block.box.x + block.box.w / 2,
        "left": block.box.x,
        "right": block.box.right,
    }[block.align] - ox
    for index, line in enumerate(block.lines):
        if not line:
            continue
        y = (block.baseline(index) - oy) * scale
        runs = block.runs(index)
        if len(runs) == 1:  # one face: Pillow (raqm) shapes and orders the whole line
            font = lettering.font(block.size * scale, block.bold, runs[0][1])
            anchor = {"center": "ms", "left": "ls", "right": "rs"}[block.align]
            draw.text(
                (x * scale, y),
                line,
                font=font,
                fill=fill,
                anchor=anchor,
                stroke_width=width,
                stroke_fill=stroke_fill,
            )
            continue
        # several faces: each run drawn in its own, left to right in visual order
        line_width = block.line_width(index)
        left = {"center": x - line_width / 2, "left": x, "right": x - line_width}[block.align]
        at = left * scale
        for text, key in visual_order(runs):
            font = lettering.font(block.size * scale, block.bold, key)
            draw.text(
                (at, y),
                text,
                font=font,
                fill=fill,
                anchor="ls",
                stroke_width=width,
                stroke_fill=stroke_fill,
            )
            at += lettering.text_width(text, block.size, block.bold, key) * scale


def _direction(text: str) -> str | None:
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind == "L":
            return "ltr"
        if kind in ("R", "AL"):
            return "rtl"
    return None


def visual_order(runs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Runs of one line, left to right as the Unicode bidi algorithm shows them (at the
    granularity of runs: the paragraph's direction from its first strong letter, as
    ``dir="auto"`` does; a neutral run between two of one direction takes it)."""
    paragraph = _direction("".join(text for text, _ in runs)) or "ltr"
    own = [_direction(text) for text, _ in runs]
    levels = []
    for i, direction in enumerate(own):
        if direction is None:
            before = next((d for d in reversed(own[:i]) if d), paragraph)
            after = next((d for d in own[i + 1 :] if d), paragraph)
            direction = before if before == after else paragraph
        base = 0 if paragraph == "ltr" else 1
        levels.append(base if (direction == "ltr") == (base == 0) else base + 1)
    order = list(range(len(runs)))
    for level in range(max(levels), 0, -1):  # reverse every sequence at >= level
        i = 0
        while i < len(order):
            if levels[order[i]] >= level:
                j = i
                while j < len(order) and levels[order[j]] >= level:
                    j += 1
                order[i:j] = reversed(order[i:j])
                i = j
            else:
                i += 1
    return [runs[i] for i in order]
