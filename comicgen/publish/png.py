"""PNG pages painted by Pillow from the page geometry (the same one the HTML uses).

Panels are pasted at the page's resolution; frames, captions, balloons and text are
drawn on a transparent layer at ``supersample`` times that resolution and scaled down,
which smooths their edges (Pillow draws shapes without anti-aliasing).
"""

from __future__ import annotations

from comicgen import lettering
from comicgen.layout import PageLayout, Style, TextBlock

SUPERSAMPLE = 2


def pixel_size(page: PageLayout, dpi: int) -> tuple[int, int]:
    """The PNG size of ``page`` at ``dpi`` (the geometry is at 96 dpi)."""
    scale = dpi / 96
    return max(1, round(page.width * scale)), max(1, round(page.height * scale))


def render_page(page: PageLayout, style: Style, dpi: int, supersample: int = SUPERSAMPLE):
    """Paint one page; returns an RGB ``PIL.Image``."""
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
        if panel.caption is not None:
            c = panel.caption.box
            half = style.stroke / 2
            draw.rectangle(
                _pixel_box(c.x - half, c.y - half, c.right + half, c.bottom + half, s),
                fill=_rgba(style.caption_fill),
                outline=ink,
                width=max(1, round(style.stroke * s)),
            )
            _draw_text(draw, panel.caption.text_block, s, ink)
        for balloon in panel.balloons:
            shapes = [balloon.outline] + ([balloon.tail] if balloon.tail else [])
            stroke = max(1, round(2 * style.stroke * s))
            for shape in shapes:
                points = _scaled(shape, s)
                draw.polygon(points, fill=ink)
                draw.line(points + points[:1], fill=ink, width=stroke, joint="curve")
            for x, y, r in balloon.bubbles:
                rr = r + style.stroke
                draw.ellipse(((x - rr) * s, (y - rr) * s, (x + rr) * s, (y + rr) * s), fill=ink)
            for shape in shapes:
                draw.polygon(_scaled(shape, s), fill=paper)
            for x, y, r in balloon.bubbles:
                draw.ellipse(((x - r) * s, (y - r) * s, (x + r) * s, (y + r) * s), fill=paper)
            _draw_text(draw, balloon.text_block, s, ink)
    if page.page_number is not None:
        _draw_text(draw, page.page_number, s, _rgba(style.page_number_color))
    if supersample != 1:
        # box-average in premultiplied alpha, so edges fade to the panel, not to black
        ink_layer = ink_layer.convert("RGBa").reduce(supersample).convert("RGBA")
    canvas.paste(ink_layer, (0, 0), ink_layer)
    return canvas


def _pixel_box(x0: float, y0: float, x1: float, y1: float, scale: float) -> tuple[int, ...]:
    return (round(x0 * scale), round(y0 * scale), round(x1 * scale), round(y1 * scale))


def _scaled(points, scale: float) -> list[tuple[float, float]]:
    return [(x * scale, y * scale) for x, y in points]


def _rgba(colour: str) -> tuple[int, int, int, int]:
    from PIL import ImageColor

    r, g, b = ImageColor.getrgb(colour)[:3]
    return (r, g, b, 255)


def _draw_text(draw, block: TextBlock, scale: float, fill) -> None:
    font = lettering.font(block.size * scale, block.bold, block.face)
    anchor = {"center": "ms", "left": "ls", "right": "rs"}[block.align]
    x = {
        "center": block.box.x + block.box.w / 2,
        "left": block.box.x,
        "right": block.box.right,
    }[block.align]
    for index, line in enumerate(block.lines):
        if line:
            draw.text(
                (x * scale, block.baseline(index) * scale),
                line,
                font=font,
                fill=fill,
                anchor=anchor,
            )
