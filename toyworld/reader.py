"""Attribute reader: reads the toy world's attributes back from any image of it.

Analytic: it knows the world's palettes and layout (``world.py``), so it finds the sky and
ground by palette votes, the shot by which of them fills the band between the two possible
horizons, the characters as column runs of foreground in the body band, and then reads
each character's body colour, shape (row widths), hat, pattern, scarf, expression and
facing at the geometry the layout gives.  It works in 64-unit frames of any bucket's shape
(an image is reduced so that its short side is 64 pixels), on rendered scenes, model
sheets, VAE reconstructions and generated panels alike; ``Reading.figures`` counts the
figures standing in the picture (a second copy of a character shows there).

``read(img)`` returns a :class:`Reading`; ``read_character(img, "left")`` the character at
a position (what the Infusion benchmark compares with each side's own reference).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from toyworld import world as W

Palette = dict[str, tuple[int, int, int]]


@dataclass
class CharacterReading:
    position: str
    shape: str
    color: str
    hat: str
    pattern: str
    scarf: str
    expression: str
    facing: str = "ahead"


@dataclass
class Reading:
    kind: str  # "scene" or "sheet"
    sky: str = ""
    ground: str = ""
    shot: str = ""
    prop: str = "none"
    characters: list[CharacterReading] = field(default_factory=list)
    figures: int = 0  # figures seen standing (scenes); more than characters: a second copy

    @property
    def position(self) -> str:
        """'left', 'center', 'right', 'left and right' (or '' when nobody is seen)."""
        return " and ".join(c.position for c in self.characters)

    def character(self, position: str) -> CharacterReading | None:
        for c in self.characters:
            if c.position == position:
                return c
        return None


def to_array(img) -> np.ndarray:
    """H x W x 3 float32 array (0..255) in 64-units (the short side 64 pixels) from a PIL
    image or an HxWx3 array."""
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8:
            img = np.clip(img, 0, 255).astype(np.uint8)
        img = Image.fromarray(img)
    img = img.convert("RGB")
    short = min(img.size)
    if short != W.SIZE:
        if short % W.SIZE == 0:
            img = img.reduce(short // W.SIZE)
        else:
            f = W.SIZE / short
            img = img.resize((round(img.width * f), round(img.height * f)), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.float32)


def _dist(a: np.ndarray, color) -> np.ndarray:
    return np.sqrt(((a - np.asarray(color, dtype=np.float32)) ** 2).sum(-1))


def _nearest(color: np.ndarray, palette: Palette) -> str:
    names = list(palette)
    d = [float(np.sqrt(((color - np.asarray(palette[n], np.float32)) ** 2).sum())) for n in names]
    return names[int(np.argmin(d))]


def _votes(pixels: np.ndarray, palette: Palette, threshold: float) -> dict[str, int]:
    """Count pixels (N x 3) whose nearest palette colour is within ``threshold``."""
    if len(pixels) == 0:
        return {n: 0 for n in palette}
    cols = np.asarray(list(palette.values()), np.float32)
    d = np.sqrt(((pixels[:, None, :] - cols[None]) ** 2).sum(-1))
    best = d.argmin(1)
    ok = d[np.arange(len(pixels)), best] < threshold
    return {n: int(((best == i) & ok).sum()) for i, n in enumerate(palette)}


def is_sheet(a: np.ndarray) -> bool:
    border = np.concatenate(
        [
            a[:2].reshape(-1, 3),
            a[-2:].reshape(-1, 3),
            a[:, :2].reshape(-1, 3),
            a[:, -2:].reshape(-1, 3),
        ]
    )
    return float((_dist(border, W.SHEET_BACKGROUND) < 30).mean()) > 0.7


def read(img) -> Reading:
    """Read every attribute of a scene or model sheet."""
    a = to_array(img)
    h, width = a.shape[:2]
    oy = h - W.SIZE  # a taller frame: the same scene under more sky
    if is_sheet(a):
        bg = _dist(a, W.SHEET_BACKGROUND) < 30
        ch = _read_char(a, "center", width / 2, W.SHEET_FEET, W.SHEET_BODY, bg, sheet=True)
        return Reading(kind="sheet", characters=[ch], figures=1)
    sky = _nearest(np.median(a[:6].reshape(-1, 3), 0), W.SKIES)
    gv = _votes(a[oy + 54 :].reshape(-1, 3), W.GROUNDS, 45.0)
    ground = max(gv, key=gv.get)
    sky_c, ground_c = (
        np.asarray(W.SKIES[sky], np.float32),
        np.asarray(W.GROUNDS[ground], np.float32),
    )
    # shot: between the two horizons (rows 39..47) the background is ground in a wide shot
    band = a[oy + 39 : oy + 48].reshape(-1, 3)
    ds, dg = _dist(band, sky_c), _dist(band, ground_c)
    n_sky = int(((ds < dg) & (ds < 40)).sum())
    n_ground = int(((dg <= ds) & (dg < 40)).sum())
    shot = "close-up" if n_sky > n_ground else "wide"
    horizon = W.HORIZON[shot] + oy
    # foreground: far from the background expected at that row
    rows = np.arange(h)[:, None]
    bg_d = np.where(rows < horizon, _dist(a, sky_c), _dist(a, ground_c))
    near_h = np.abs(rows + 0.5 - horizon) < 1.5
    bg_d = np.where(near_h, np.minimum(_dist(a, sky_c), _dist(a, ground_c)), bg_d)
    fg = bg_d > 40
    all_runs = _character_runs(fg, shot, oy)
    runs = sorted(sorted(all_runs, key=lambda r: -r[1])[:2])  # the two widest
    positions = _positions(runs, shot, width)
    chars, boxes = [], []
    feet = W.FEET[shot] + oy
    if positions:
        slots = W.layout(shot, tuple(positions), width)
        for (cx_run, w_run), pos, (cx, s) in zip(runs, positions, slots, strict=False):
            cx = cx_run if abs(cx_run - cx) < 4 else cx
            chars.append(_read_char(a, pos, cx, feet, s, bg_d < 30))
            top = feet - s * (1.0 + W.HAT_HEIGHT + 0.12) - 1
            boxes.append((cx - max(w_run, s) / 2 - 1, cx + max(w_run, s) / 2 + 1, top))
    prop = _read_prop(a, fg, shot, boxes, oy)
    return Reading("scene", sky, ground, shot, prop, chars, figures=len(all_runs))


def _character_runs(fg: np.ndarray, shot: str, oy: int = 0) -> list[tuple[float, float]]:
    """(centre x, width) of every column run of foreground in the band where only bodies
    are."""
    band = fg[oy + 42 : oy + 57] if shot == "wide" else fg[oy + 53 : oy + 63]
    col = band.mean(0) > 0.3
    width = fg.shape[1]
    runs, x = [], 0
    while x < width:
        if col[x]:
            x0 = x
            while x < width and col[x]:
                x += 1
            runs.append([x0, x])
        else:
            x += 1
    merged: list[list[int]] = []
    for r in runs:  # close small gaps (a dark pattern row or an eye can break a run)
        if merged and r[0] - merged[-1][1] <= 2:
            merged[-1][1] = r[1]
        else:
            merged.append(r)
    return [((r[0] + r[1] - 1) / 2, float(r[1] - r[0])) for r in merged if r[1] - r[0] >= 6]


def _positions(runs: list[tuple[float, float]], shot: str, width: float = W.SIZE) -> list[str]:
    if len(runs) == 2:
        return ["left", "right"]
    if len(runs) == 1:
        slots = {p: W.layout(shot, (p,), width)[0][0] for p in W.POSITIONS}
        return [min(slots, key=lambda p: abs(slots[p] - runs[0][0]))]
    return []


def _read_prop(a: np.ndarray, fg: np.ndarray, shot: str, boxes, oy: int = 0) -> str:
    horizon = int(W.HORIZON[shot]) + oy
    top = max(0, horizon - 22)
    region = a[top : horizon + 3]
    mask = fg.copy()
    for x0, x1, y0 in boxes:  # exclude the characters (with their hats)
        mask[max(0, int(y0)) :, max(0, int(x0)) : int(np.ceil(x1))] = False
    mask = mask[top : horizon + 3]
    pix = region[mask]
    palette = {"crown": W.CROWN, "trunk": W.TRUNK, "wall": W.WALL, "roof": W.ROOF, "door": W.DOOR}
    v = _votes(pix, palette, 40.0)
    tree, house = v["crown"] + v["trunk"], v["wall"] + v["roof"] + v["door"]
    if max(tree, house) < 15:
        return "none"
    return "tree" if tree >= house else "house"


def _seg_dist(a: np.ndarray, p, q) -> np.ndarray:
    """Distance of every pixel to the colour segment p..q (blends of p and q lie on it)."""
    p, q = np.asarray(p, np.float32), np.asarray(q, np.float32)
    d = q - p
    t = np.clip(((a - p) * d).sum(-1) / float((d * d).sum()), 0, 1)
    return np.sqrt(((a - (p + t[..., None] * d)) ** 2).sum(-1))


def _body_likeness(a: np.ndarray, color: str, bg: np.ndarray) -> np.ndarray:
    """1 where a pixel can be part of a body of ``color`` (colour, pattern shade, scarf, and
    their blends) and is not background."""
    c = np.asarray(W.COLORS[color], np.float32)
    m = _seg_dist(a, c, c * 0.55) < 35
    for scarf in W.SCARVES.values():
        if scarf is not None:
            m |= (_dist(a, scarf) < 35) | (_seg_dist(a, c, scarf) < 25)
    return (m & ~bg).astype(np.float32)


_SILHOUETTES: dict[tuple, np.ndarray] = {}


def _silhouette(
    shape: str, cx: float, feet: float, s: float, tilt: float = 0.0, size=(W.SIZE, W.SIZE)
) -> np.ndarray:
    """Soft mask (``size`` = height, width) of a body (no hat) drawn like
    ``drawing.draw_character`` does."""
    key = (shape, round(cx * 4), round(feet * 4), round(s * 4), tilt, size)
    if key not in _SILHOUETTES:
        k = W.SUPERSAMPLE
        img = Image.new("L", (size[1] * k, size[0] * k), 0)
        poly = [
            (x * k, y * k)
            for x, y in W._body_polygon(shape, cx - s / 2, feet - s, cx + s / 2, feet)
        ]
        from PIL import ImageDraw

        ImageDraw.Draw(img).polygon(poly, fill=255)
        if tilt:
            img = img.rotate(
                tilt, resample=Image.Resampling.BICUBIC, center=(cx * k, (feet - s / 2) * k)
            )
        _SILHOUETTES[key] = np.asarray(img.reduce(k), np.float32) / 255.0
    return _SILHOUETTES[key]


def _render_char(ch: W.Character, cx: float, feet: float, s: float, size) -> np.ndarray:
    k = W.SUPERSAMPLE
    img = Image.new("RGBA", (size[1] * k, size[0] * k), (128, 128, 128, 255))
    W.draw_character(img, ch, cx, feet, s, k)
    return np.asarray(img.convert("RGB").reduce(k), np.float32)


def _blur(a: np.ndarray) -> np.ndarray:
    """A light 3x3 binomial blur (edges replicated)."""
    p = np.pad(a, ((1, 1), (1, 1), (0, 0)), mode="edge")
    p = (p[:-2] + 2 * p[1:-1] + p[2:]) / 4
    return (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) / 4


def _shift(m: np.ndarray, dx: int, dy: int) -> np.ndarray:
    return np.roll(np.roll(m, dy, 0), dx, 1)


def _erode(m: np.ndarray, n: int = 1) -> np.ndarray:
    for _ in range(n):
        e = m.copy()
        e[1:] &= m[:-1]
        e[:-1] &= m[1:]
        e[:, 1:] &= m[:, :-1]
        e[:, :-1] &= m[:, 1:]
        m = e
    return m


def _body_color(
    a: np.ndarray, bg: np.ndarray, cx: float, y0: float, s: float, f0: float, f1: float
) -> str:
    """The body colour most pixels of rows f0..f1 (body units) vote for; background and
    scarf-coloured pixels left out, the pattern's dark shade counts for its colour."""
    h, w = a.shape[:2]
    x0, x1 = int(max(0, round(cx - 0.42 * s))), int(min(w, round(cx + 0.42 * s)))
    ya, yb = int(max(0, round(y0 + f0 * s))), int(min(h, round(y0 + f1 * s)))
    pix = a[ya:yb, x0:x1][~bg[ya:yb, x0:x1]]
    for scarf in W.SCARVES.values():
        if scarf is not None:
            pix = pix[_dist(pix, scarf) > 40]
    if len(pix) == 0:
        return "red"
    seg = np.stack(
        [_seg_dist(pix, c, np.asarray(c, np.float32) * 0.55) for c in W.COLORS.values()], 1
    )
    near = seg.argmin(1)[seg.min(1) < 55]
    if len(near) == 0:
        return "red"
    return list(W.COLORS)[int(np.bincount(near, minlength=len(W.COLORS)).argmax())]


def _best_silhouette(
    like: np.ndarray, region: np.ndarray, cx: float, feet: float, s: float, sheet: bool
):
    """(shape, tilt, dx, dy) of the silhouette overlapping ``like`` best (1-px shifts)."""
    best = (-1.0, "circle", 0.0, 0, 0)
    for tilt in (0.0, -10.0, 10.0) if sheet else (0.0,):
        for shape in W.SHAPES:
            t = _silhouette(shape, cx, feet, s, tilt, region.shape) * region
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    ts = _shift(t, dx, dy)
                    iou = float(np.minimum(like, ts).sum() / max(np.maximum(like, ts).sum(), 1.0))
                    if iou > best[0]:
                        best = (iou, shape, tilt, dx, dy)
    return best[1:]


def _read_char(
    a: np.ndarray,
    position: str,
    cx: float,
    feet: float,
    s: float,
    bg: np.ndarray,
    *,
    sheet: bool = False,
) -> CharacterReading:
    y0 = feet - s
    h, w = a.shape[:2]

    def box(fx0: float, fx1: float, fy0: float, fy1: float, dy: float = 0.0) -> np.ndarray:
        """Pixels of the box in body units (x from centre, y from body top)."""
        x0, x1 = int(round(cx + fx0 * s)), int(round(cx + fx1 * s))
        ya, yb = int(round(y0 + (fy0 + dy) * s)), int(round(y0 + (fy1 + dy) * s))
        x0, x1, ya, yb = max(0, x0), min(w, x1), max(0, ya), min(h, yb)
        return a[ya:yb, x0:x1]

    region = np.zeros((h, w), bool)
    region[
        int(max(0, y0 + 0.12 * s)) : int(min(h, feet + 2)),
        int(max(0, cx - 0.75 * s)) : int(min(w, cx + 0.75 * s)),
    ] = True
    # body colour: votes in the upper body (below any hat, above any scarf); a triangle's
    # upper body is small, so for one the votes are taken again lower, beside the face
    color = _body_color(a, bg, cx, y0, s, 0.2, 0.64)
    shape, tilt, sdx, sdy = _best_silhouette(
        _body_likeness(a, color, bg) * region, region, cx, feet, s, sheet
    )
    if shape == "triangle":
        color2 = _body_color(a, bg, cx, y0, s, 0.25, 0.79)
        if color2 != color:
            color = color2
            like = _body_likeness(a, color, bg) * region
            shape, tilt, sdx, sdy = _best_silhouette(like, region, cx, feet, s, sheet)
    tri = shape == "triangle"
    # hat: the crown above the body top
    crown = box(-0.17, 0.17, -0.34, -0.12, dy=0.12 if tri else 0.0).reshape(-1, 3)
    hv = _votes(crown, W.COLORS, 60.0)
    hat = max(hv, key=hv.get)
    if hv[hat] < 0.35 * max(1, len(crown)):
        hat = "none"
    # scarf: the band at 0.70 (0.80 for triangles) of the body
    sy = 0.80 if tri else 0.70
    sw = 0.22 if tri else 0.3
    band = box(-sw, sw, sy + 0.03, sy + 0.10).reshape(-1, 3)
    scarf_pal = {k: v for k, v in W.SCARVES.items() if v is not None}
    sv = _votes(band, scarf_pal | {"body": W.COLORS[color]}, 55.0)
    scarf = max(sv, key=sv.get)
    if scarf == "body" or sv[scarf] < 0.3 * max(1, len(band)):
        scarf = "none"
    # pattern and expression: compare with renders of the candidates (analysis by synthesis)
    ccx, cfeet = cx + sdx, feet + sdy
    hw = (h, w)
    inner = _erode(_silhouette(shape, ccx, cfeet, s, tilt, hw) > 0.99, 1 if s < 26 else 2)
    rows = (np.arange(h) + 0.5)[:, None]
    cols = (np.arange(w) + 0.5)[None, :]
    yb = cfeet - s
    ey, my = yb + (0.55 if tri else 0.36) * s, yb + (0.70 if tri else 0.57) * s
    face = (  # the face moves sideways with the facing
        (np.abs(cols - ccx) < (0.32 if tri else 0.43) * s)
        & (rows > ey - 0.17 * s)
        & (rows < my + 0.15 * s)
    )
    scarf_rows = (rows > yb + (sy - 0.03) * s) & (rows < yb + (sy + 0.16) * s)
    top_rows = rows < yb + 0.14 * s
    pat_region = inner & ~face & ~scarf_rows & ~top_rows
    base = W.Character(shape=shape, color=color, hat="none", scarf=scarf, tilt=tilt)

    ab = _blur(a)  # compared sharp and blurred: generated and decoded images are softer

    def err(ch: W.Character, region: np.ndarray) -> float:
        if not region.any():
            return 0.0
        r = _render_char(ch, ccx, cfeet, s, hw)
        sharp = ((r - a) ** 2).sum(-1)[region].mean()
        soft = ((_blur(r) - ab) ** 2).sum(-1)[region].mean()
        return float(sharp + 4.0 * soft)

    base = replace(base, hat=hat)
    if sheet and shape == "circle":  # a circle's tilt shows only inside it
        pattern, tilt = min(
            ((p, t) for p in W.PATTERNS for t in (0.0, -10.0, 10.0)),
            key=lambda pt: err(replace(base, pattern=pt[0], tilt=pt[1]), pat_region),
        )
        base = replace(base, tilt=tilt)
    else:
        pattern = min(W.PATTERNS, key=lambda p: err(replace(base, pattern=p), pat_region))
    face_region = face & (_silhouette(shape, ccx, cfeet, s, tilt, hw) > 0.5)
    cands = [(e, lk) for e in W.EXPRESSIONS for lk in (-1, 0, 1)]
    expression, look = min(
        cands,
        key=lambda c: err(replace(base, pattern=pattern, expression=c[0], look=c[1]), face_region),
    )
    # the pattern again, now over the whole body with the face modelled
    body_region = inner & ~top_rows
    pattern = min(
        W.PATTERNS,
        key=lambda p: err(replace(base, pattern=p, expression=expression, look=look), body_region),
    )
    facing = W.FACINGS[look + 1]
    return CharacterReading(position, shape, color, hat, pattern, scarf, expression, facing)


def read_character(img, position: str) -> CharacterReading | None:
    """The character at ``position`` ('left', 'center', 'right'; sheets: 'center')."""
    return read(img).character(position)


def read_at(img, shot: str, positions: tuple[str, ...]) -> list[tuple[CharacterReading, float]]:
    """Each character read where the layout of ``shot`` puts ``positions`` (any number the
    layout has slots for, e.g. three in a wide shot), with the width of the figure found
    there (its foreground's column run through the body band, 0 when none).

    For scoring panels whose layout is known (the Infusion benchmark); ``read`` finds the
    characters itself and stops at two."""
    a = to_array(img)
    sky = _nearest(np.median(a[:6].reshape(-1, 3), 0), W.SKIES)
    gv = _votes(a[54:].reshape(-1, 3), W.GROUNDS, 45.0)
    ground = max(gv, key=gv.get)
    sky_c = np.asarray(W.SKIES[sky], np.float32)
    ground_c = np.asarray(W.GROUNDS[ground], np.float32)
    horizon = W.HORIZON[shot]
    rows = np.arange(W.SIZE)[:, None]
    bg_d = np.where(rows < horizon, _dist(a, sky_c), _dist(a, ground_c))
    near_h = np.abs(rows + 0.5 - horizon) < 1.5
    bg_d = np.where(near_h, np.minimum(_dist(a, sky_c), _dist(a, ground_c)), bg_d)
    band = (bg_d > 40)[42:57] if shot == "wide" else (bg_d > 40)[53:63]
    col = band.mean(0) > 0.3
    out = []
    for pos, (cx, s) in zip(positions, W.layout(shot, tuple(positions)), strict=True):
        # the run of foreground columns through the slot's centre (or nearest to it)
        xs = [x for x in range(int(cx - s), int(cx + s) + 1) if 0 <= x < W.SIZE and col[x]]
        width = 0.0
        if xs:
            x = min(xs, key=lambda x: abs(x - cx))
            x0, x1 = x, x
            while x0 > 0 and col[x0 - 1]:
                x0 -= 1
            while x1 < W.SIZE - 1 and col[x1 + 1]:
                x1 += 1
            width = float(x1 - x0 + 1)
            run_cx = (x0 + x1) / 2
            cx = run_cx if abs(run_cx - cx) < 4 else cx
        out.append((_read_char(a, pos, cx, W.FEET[shot], s, bg_d < 30), width))
    return out


# --- accuracy on ground truth ----------------------------------------------------------
def truth(scene: W.Scene) -> Reading:
    """The reading a perfect reader would return for ``scene``."""
    chars = [
        CharacterReading(p, c.shape, c.color, c.hat, c.pattern, c.scarf, c.expression, c.facing)
        for c, p in zip(scene.characters, scene.positions, strict=False)
    ]
    if scene.kind == "sheet":
        return Reading(kind="sheet", characters=chars, figures=1)
    n = len(chars)
    return Reading("scene", scene.sky, scene.ground, scene.shot, scene.prop, chars, figures=n)


CHAR_ATTRS = ("shape", "color", "hat", "pattern", "scarf", "expression", "facing")
SCENE_ATTRS = ("sky", "ground", "prop", "shot", "position")


def character_matches(
    got: Reading, want: Reading, attrs: tuple[str, ...] = CHAR_ATTRS
) -> list[tuple[CharacterReading, CharacterReading | None, dict[str, bool]]]:
    """Per character of ``want``: (that character, what ``got`` read at its place — None
    when nothing — and per attribute of ``attrs`` whether it was read right)."""
    out = []
    for wc in want.characters:
        gc = got.character(wc.position)
        out.append(
            (wc, gc, {a: gc is not None and getattr(gc, a) == getattr(wc, a) for a in attrs})
        )
    return out


def compare(got: Reading, want: Reading) -> dict[str, bool]:
    """Per-attribute correctness (character attributes: all characters must match)."""
    out: dict[str, bool] = {}
    if want.kind == "scene":
        for k in SCENE_ATTRS:
            out[k] = getattr(got, k) == getattr(want, k)
        out["once"] = got.figures == want.figures
    matches = character_matches(got, want)
    for k in CHAR_ATTRS:
        out[k] = all(ok[k] for _, _, ok in matches)
    return out


def accuracy(
    n: int = 200,
    seed: int = 12345,
    sheet_fraction: float = 0.15,
    transform=None,
    bucket: str = "square",
) -> dict[str, float]:
    """Per-attribute accuracy of the reader on ``n`` fresh ground-truth renders (``once``:
    the figures counted match the characters)."""
    totals: dict[str, list[bool]] = {}
    for i in range(n):
        sc = W.sample_scene(W.scene_rng(seed, i), sheet_fraction, bucket)
        img = W.render(sc)
        if transform is not None:
            img = transform(img)
        for k, v in compare(read(img), truth(sc)).items():
            totals.setdefault(k, []).append(v)
    return {k: float(np.mean(v)) for k, v in totals.items()}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m toyworld.reader")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--bucket", default="square", choices=list(W.BUCKETS))
    args = ap.parse_args()
    sheets = 0.15 if args.bucket == "square" else 0.0
    for k, v in accuracy(args.n, args.seed, sheets, bucket=args.bucket).items():
        print(f"{k:12s} {v:.3f}")
