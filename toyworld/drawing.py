"""The toy world's geometry and its Pillow renderer.

Everything is drawn in 64-unit coordinates (64 units = the model's native 64 pixels),
supersampled 4x and reduced, so any output size is a multiple of the same picture.  A
scene's frame is ``width`` x ``height`` units (64 x 64 by default; the aspect-ratio buckets
are wider or taller): the ground and the characters keep their distance from the frame's
bottom, the characters' x positions scale with the width, a taller frame has more sky.
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

from toyworld import world as W

# --- geometry (64-unit coordinates of a 64 x 64 frame) ---------------------------------
HORIZON = {"wide": 36.0, "close-up": 50.0}
FEET = {"wide": 58.0, "close-up": 63.0}
SHEET_FEET = 55.0
SHEET_BODY = 34.0
HAT_HEIGHT = 0.42  # of the body size
FACE_SHIFT = {"triangle": 0.045, "other": 0.10}  # face moved sideways per unit of look


def layout(
    shot: str, positions: tuple[str, ...], width: float = W.SIZE
) -> list[tuple[float, float]]:
    """Return (centre x, body size) for characters at ``positions`` in a ``shot`` (x scaled
    to a frame ``width`` units wide)."""
    f = width / W.SIZE
    if shot == "wide":
        xs = {"left": 13.0, "center": 32.0, "right": 51.0}
        return [(xs[p] * f, 20.0) for p in positions]
    if len(positions) == 1:
        xs = {"left": 17.0, "center": 32.0, "right": 47.0}
        return [(xs[positions[0]] * f, 28.0)]
    xs = {"left": 15.0, "right": 49.0}
    return [(xs[p] * f, 24.0) for p in positions]


def prop_slots(shot: str, positions: tuple[str, ...], width: float = W.SIZE) -> list[float]:
    """Centre x values where a prop may stand without hiding a character."""
    f = width / W.SIZE
    if shot == "wide":
        xs = {"left": 13.0, "center": 32.0, "right": 51.0}
        return [xs[p] * f for p in W.POSITIONS if p not in positions]
    if len(positions) == 2:
        return [32.0 * f]
    return [x * f for x in {"left": [55.0], "center": [9.0, 55.0], "right": [9.0]}[positions[0]]]


def horizon_y(scene: W.Scene) -> float:
    return HORIZON[scene.shot] + (scene.height - W.SIZE)


def feet_y(scene: W.Scene) -> float:
    return FEET[scene.shot] + (scene.height - W.SIZE)


def placements(scene: W.Scene) -> list[tuple[W.Character, float, float, float]]:
    """(character, centre x, feet y, body size) of every character in ``scene``."""
    if scene.kind == "sheet":
        return [(scene.characters[0], scene.width / 2, SHEET_FEET, SHEET_BODY)]
    slots = layout(scene.shot, scene.positions, scene.width)
    return [
        (ch, cx + scene.dx, feet_y(scene), s)
        for ch, (cx, s) in zip(scene.characters, slots, strict=False)
    ]


def face_geometry(ch: W.Character, cx: float, feet: float, s: float) -> dict[str, float]:
    """Where the face is drawn: eye/mouth centres, eye spacing and radius (64 units)."""
    tri = ch.shape == "triangle"
    y0 = feet - s
    fx = cx + ch.look * FACE_SHIFT["triangle" if tri else "other"] * s
    return {
        "fx": fx,
        "ey": y0 + (0.55 if tri else 0.36) * s,
        "my": y0 + (0.70 if tri else 0.57) * s,
        "ex": (0.12 if tri else 0.17) * s,
        "er": (0.12 if ch.expression == "surprised" else 0.10) * s,
        "mw": (0.13 if tri else 0.17) * s,
    }


def part_boxes(scene: W.Scene) -> dict[str, list[tuple[float, float, float, float]]]:
    """Boxes (x0, y0, x1, y1 in 64 units) of every character's face (eyes, brows, mouth),
    mouth (every expression's) and hat; a little margin covers the sheets' +-10 degree
    tilt."""
    out: dict[str, list[tuple[float, float, float, float]]] = {"face": [], "mouth": [], "hat": []}
    for ch, cx, feet, s in placements(scene):
        g = face_geometry(ch, cx, feet, s)
        half = g["ex"] + 0.12 * s + 0.06 * s
        out["face"].append((g["fx"] - half, g["ey"] - 0.26 * s, g["fx"] + half, g["my"] + 0.26 * s))
        mx, my, mw = g["fx"], g["my"], g["mw"]
        out["mouth"].append((mx - 1.1 * mw, my - 0.9 * mw, mx + 1.1 * mw, my + 1.5 * mw))
        if ch.hat != "none":
            base = feet - s + (0.16 if ch.shape == "triangle" else 0.04) * s
            out["hat"].append(
                (cx - 0.44 * s, base - HAT_HEIGHT * s - 0.05 * s, cx + 0.44 * s, base + 0.06 * s)
            )
    return out


def cell_mask(scene: W.Scene, part: str, cell: int):
    """uint8 (height/cell x width/cell): 1 where a ``cell``-unit square overlaps a ``part``
    box (``"face"`` or ``"hat"``)."""
    import numpy as np

    h, w = scene.height // cell, scene.width // cell
    m = np.zeros((h, w), dtype=np.uint8)
    for x0, y0, x1, y1 in part_boxes(scene)[part]:
        c0, c1 = max(0, int(x0 // cell)), min(w, int(math.ceil(x1 / cell)))
        r0, r1 = max(0, int(y0 // cell)), min(h, int(math.ceil(y1 / cell)))
        m[r0:r1, c0:c1] = 1
    return m


# --- rendering -------------------------------------------------------------------------
def _shade(rgb: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(int(round(v * f)) for v in rgb)  # type: ignore[return-value]


def _body_polygon(
    shape: str, x0: float, y0: float, x1: float, y1: float
) -> list[tuple[float, float]]:
    cx = (x0 + x1) / 2
    if shape == "triangle":
        return [(x0, y1), (x1, y1), (cx, y0)]
    if shape == "square":
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    n = 64
    rx, ry, cy = (x1 - x0) / 2, (y1 - y0) / 2, (y0 + y1) / 2
    return [
        (cx + rx * math.cos(2 * math.pi * i / n), cy + ry * math.sin(2 * math.pi * i / n))
        for i in range(n)
    ]


def _draw_pattern(dd, ch, P, x0, y0, x1, y1, s) -> None:
    dark = _shade(W.COLORS[ch.color], 0.55) + (255,)
    if ch.pattern == "stripes":
        period = s / 4.0
        y = y0 + period * 0.25
        while y < y1:
            dd.rectangle([P(x0, y), P(x1, y + period * 0.45)], fill=dark)
            y += period
    elif ch.pattern == "dots":
        step = s / 4.0
        r = s * 0.075
        row = 0
        y = y0 + step * 0.5
        while y < y1:
            x = x0 + step * (0.25 if row % 2 else 0.75)
            while x < x1:
                dd.ellipse([P(x - r, y - r), P(x + r, y + r)], fill=dark)
                x += step
            y += step
            row += 1


def _draw_face(d, ch, P, cx, feet, s, lw_px, k) -> None:
    """Eyes (pupils toward the facing), brows and mouth; the whole face sits toward the side
    the character faces (a three-quarter view), so facing reads at 64 pixels."""
    g = face_geometry(ch, cx, feet, s)
    ink = W.OUTLINE + (255,)
    pr = 0.055 * s
    for sx in (-1, 1):
        ecx = g["fx"] + sx * g["ex"]
        er, ey = g["er"], g["ey"]
        d.ellipse(
            [P(ecx - er, ey - er), P(ecx + er, ey + er)],
            fill=W.EYE_WHITE + (255,),
            outline=ink,
            width=max(1, lw_px // 2),
        )
        pcx = ecx + ch.look * 0.04 * s
        d.ellipse([P(pcx - pr, ey - pr), P(pcx + pr, ey + pr)], fill=W.PUPIL + (255,))
        if ch.expression == "angry":  # eyebrow: inner end low
            d.line(
                [P(ecx - sx * 0.13 * s, ey - 0.22 * s), P(ecx + sx * 0.09 * s, ey - 0.12 * s)],
                fill=ink,
                width=lw_px,
            )
    mx, my, mw = g["fx"], g["my"], g["mw"]
    mlw = max(1, int(round(0.05 * s * k)))
    if ch.expression == "happy":
        d.arc([P(mx - mw, my - mw * 0.8), P(mx + mw, my + mw * 0.6)], 20, 160, fill=ink, width=mlw)
    elif ch.expression == "sad":
        d.arc([P(mx - mw, my + 0.02 * s), P(mx + mw, my + mw * 1.4)], 200, 340, fill=ink, width=mlw)
    elif ch.expression == "surprised":
        r = 0.065 * s
        d.ellipse([P(mx - r, my - r * 0.3), P(mx + r, my + r * 1.7)], fill=ink)
    else:  # angry
        d.line(
            [P(mx - mw * 0.8, my + 0.04 * s), P(mx + mw * 0.8, my + 0.04 * s)], fill=ink, width=mlw
        )


def draw_character(
    img: Image.Image, ch: W.Character, cx: float, feet: float, s: float, k: float
) -> None:
    """Draw ``ch`` with body centre ``cx``, feet at ``feet``, body size ``s`` (64 units),
    onto ``img`` whose pixels are ``k`` units-to-pixels."""
    pad = s * 0.9
    # draw on a transparent layer (so the pose can tilt), then composite
    lw, lh = int(math.ceil((2 * pad) * k)), int(math.ceil((s + 2 * pad) * k))
    layer = Image.new("RGBA", (lw, lh), (0, 0, 0, 0))
    ox, oy = cx - pad, feet - s - pad  # layer origin in 64 units

    def P(x: float, y: float) -> tuple[float, float]:
        return ((x - ox) * k, (y - oy) * k)

    d = ImageDraw.Draw(layer)
    x0, y0, x1, y1 = cx - s / 2, feet - s, cx + s / 2, feet
    poly = [P(x, y) for x, y in _body_polygon(ch.shape, x0, y0, x1, y1)]
    lw_px = max(1, int(round(0.06 * s * k)))
    # body mask (for clipping pattern and scarf)
    mask = Image.new("L", layer.size, 0)
    ImageDraw.Draw(mask).polygon(poly, fill=255)
    d.polygon(poly, fill=W.COLORS[ch.color] + (255,))
    deco = Image.new("RGBA", layer.size, (0, 0, 0, 0))
    dd = ImageDraw.Draw(deco)
    _draw_pattern(dd, ch, P, x0, y0, x1, y1, s)
    scarf = W.SCARVES[ch.scarf]
    if scarf is not None:
        sy0 = y0 + (0.80 if ch.shape == "triangle" else 0.70) * s
        dd.rectangle([P(x0, sy0), P(x1, sy0 + 0.13 * s)], fill=scarf + (255,))
    layer.paste(
        deco, (0, 0), Image.composite(deco, Image.new("RGBA", layer.size), mask).getchannel("A")
    )
    d.polygon(poly, outline=W.OUTLINE + (255,), width=lw_px)
    _draw_face(d, ch, P, cx, feet, s, lw_px, k)
    if ch.hat != "none":
        hc, ink = W.COLORS[ch.hat] + (255,), W.OUTLINE + (255,)
        base = y0 + (0.16 if ch.shape == "triangle" else 0.04) * s
        top = base - HAT_HEIGHT * s
        d.rectangle(
            [P(cx - 0.24 * s, top), P(cx + 0.24 * s, base)], fill=hc, outline=ink, width=lw_px
        )
        d.rectangle(
            [P(cx - 0.40 * s, base - 0.08 * s), P(cx + 0.40 * s, base + 0.02 * s)],
            fill=hc,
            outline=ink,
            width=lw_px,
        )
    if ch.tilt:
        centre = P(cx, feet - s / 2)
        layer = layer.rotate(ch.tilt, resample=Image.Resampling.BICUBIC, center=centre)
    img.alpha_composite(layer, (int(round(ox * k)), int(round(oy * k))))


def draw_prop(img: Image.Image, prop: str, x: float, base: float, k: float) -> None:
    d = ImageDraw.Draw(img)
    ink = W.OUTLINE + (255,)

    def P(px: float, py: float) -> tuple[float, float]:
        return (px * k, py * k)

    lw = max(1, int(round(0.8 * k)))
    if prop == "tree":
        d.rectangle(
            [P(x - 1.6, base - 9), P(x + 1.6, base)], fill=W.TRUNK + (255,), outline=ink, width=lw
        )
        d.ellipse(
            [P(x - 6, base - 21), P(x + 6, base - 8)], fill=W.CROWN + (255,), outline=ink, width=lw
        )
    elif prop == "house":
        d.rectangle(
            [P(x - 6, base - 11), P(x + 6, base)], fill=W.WALL + (255,), outline=ink, width=lw
        )
        d.polygon(
            [P(x - 7.5, base - 10.5), P(x + 7.5, base - 10.5), P(x, base - 18)],
            fill=W.ROOF + (255,),
            outline=ink,
            width=lw,
        )
        d.rectangle([P(x - 1.6, base - 5.5), P(x + 1.6, base)], fill=W.DOOR + (255,))


def render(scene: W.Scene, size: int = W.SIZE) -> Image.Image:
    """Render ``scene`` as an RGB image; ``size`` pixels per 64 units (a 64 x 64 frame is
    ``size`` x ``size`` pixels, a 96 x 64 one 1.5 ``size`` x ``size``)."""
    k = size * W.SUPERSAMPLE / W.SIZE
    pw, ph = int(round(scene.width * k)), int(round(scene.height * k))
    if scene.kind == "sheet":
        img = Image.new("RGBA", (pw, ph), W.SHEET_BACKGROUND + (255,))
    else:
        img = Image.new("RGBA", (pw, ph), W.SKIES[scene.sky] + (255,))
        horizon = horizon_y(scene)
        ImageDraw.Draw(img).rectangle(
            [0, horizon * k, pw, ph], fill=W.GROUNDS[scene.ground] + (255,)
        )
        if scene.prop != "none":
            draw_prop(img, scene.prop, scene.prop_x, horizon + 2.0, k)
    for ch, cx, feet, s in placements(scene):
        draw_character(img, ch, cx, feet, s, k)
    return img.convert("RGB").reduce(W.SUPERSAMPLE)


def render_dataset(
    seed: int, start: int, count: int, size: int = W.SIZE, sheet_fraction: float = 0.15
):
    """Render scenes ``start .. start+count`` of the data set ``seed``.

    Returns (uint8 array N x size x size x 3, list of scenes).  Deterministic per index.
    """
    import numpy as np

    arr = np.empty((count, size, size, 3), dtype=np.uint8)
    scenes = []
    for i in range(count):
        sc = W.sample_scene(W.scene_rng(seed, start + i), sheet_fraction)
        arr[i] = np.asarray(render(sc, size))
        scenes.append(sc)
    return arr, scenes


def caption_grid(
    images: list[Image.Image], captions: list[str], cols: int = 6, cell: int = 128
) -> Image.Image:
    """A grid of images with their (wrapped) captions written under each (each image fitted
    into a ``cell`` x ``cell`` square, aspect kept)."""
    import textwrap

    from PIL import ImageFont

    font = ImageFont.load_default()
    wrapped = [textwrap.wrap(c or "(empty caption)", width=cell // 6) for c in captions]
    text_h = 11 * max(len(w) for w in wrapped) + 6
    rows = (len(images) + cols - 1) // cols
    grid = Image.new(
        "RGB", (cols * (cell + 6) + 6, rows * (cell + text_h + 6) + 6), (255, 255, 255)
    )
    d = ImageDraw.Draw(grid)
    for i, (im, lines) in enumerate(zip(images, wrapped, strict=False)):
        x = 6 + (i % cols) * (cell + 6)
        y = 6 + (i // cols) * (cell + text_h + 6)
        f = cell / max(im.size)
        tw, th = max(1, int(im.width * f)), max(1, int(im.height * f))
        grid.paste(im.convert("RGB").resize((tw, th), Image.Resampling.NEAREST), (x, y))
        for j, line in enumerate(lines):
            d.text((x, y + cell + 3 + 11 * j), line, fill=(0, 0, 0), font=font)
    return grid
