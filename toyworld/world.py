"""The toy world: shape characters in small scenes, a Pillow renderer and captions.

Everything is drawn in a 64x64 coordinate system (the model's native size), supersampled
4x and reduced, so any output size is a multiple of the same picture.

A *character* has a body shape, a body colour, an optional hat (with its colour), eyes and
an expression - all of which captions can name - and two identity details that captions
never mention: a body ``pattern`` and a ``scarf`` colour.  Only a reference image can carry
those (that is what Infusion is for).

A *scene* has a sky, a ground, an optional prop (tree, house), one character (left, center
or right) or two (left and right) and a shot (wide or close-up).  A *model sheet* is one
character alone on a plain background, centred.

Regenerate the example characters' reference sheets with::

    python -m toyworld.world --sheets characters/
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 64  # native size; geometry below is in these units
SUPERSAMPLE = 4

# --- palettes --------------------------------------------------------------------------
SHAPES = ("circle", "square", "triangle")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 45, 45),
    "orange": (250, 145, 30),
    "yellow": (250, 220, 50),
    "green": (60, 180, 75),
    "blue": (50, 90, 220),
    "purple": (140, 70, 200),
    "pink": (250, 130, 200),
}
HATS = ("none", *COLORS)  # a hat is "none" or a hat colour
EXPRESSIONS = ("happy", "sad", "surprised", "angry")
PATTERNS = ("plain", "stripes", "dots")  # identity detail, never in captions
SCARVES: dict[str, tuple[int, int, int] | None] = {  # identity detail, never in captions
    "none": None,
    "black": (25, 25, 30),
    "cyan": (40, 200, 220),
    "magenta": (200, 30, 140),
}
SKIES: dict[str, tuple[int, int, int]] = {
    "day": (150, 205, 245),
    "sunset": (250, 175, 130),
    "night": (30, 35, 80),
}
GROUNDS: dict[str, tuple[int, int, int]] = {
    "grass": (150, 210, 100),
    "sand": (235, 215, 160),
    "snow": (245, 248, 252),
}
PROPS = ("none", "tree", "house")
POSITIONS = ("left", "center", "right")
SHOTS = ("wide", "close-up")
SHEET_BACKGROUND = (236, 236, 236)

OUTLINE = (35, 30, 40)
EYE_WHITE = (255, 255, 255)
PUPIL = (20, 20, 25)
TRUNK = (100, 80, 60)
CROWN = (15, 120, 95)
WALL = (160, 160, 172)
ROOF = (80, 95, 120)
DOOR = (60, 60, 75)

# --- geometry (64-unit coordinates) ----------------------------------------------------
HORIZON = {"wide": 36.0, "close-up": 50.0}
FEET = {"wide": 58.0, "close-up": 63.0}
SHEET_FEET = 55.0
SHEET_BODY = 34.0
HAT_HEIGHT = 0.42  # of the body size


def layout(shot: str, positions: tuple[str, ...]) -> list[tuple[float, float]]:
    """Return (centre x, body size) for characters at ``positions`` in a ``shot``."""
    if shot == "wide":
        xs = {"left": 13.0, "center": 32.0, "right": 51.0}
        return [(xs[p], 20.0) for p in positions]
    if len(positions) == 1:
        xs = {"left": 17.0, "center": 32.0, "right": 47.0}
        return [(xs[positions[0]], 28.0)]
    xs = {"left": 15.0, "right": 49.0}
    return [(xs[p], 24.0) for p in positions]


def prop_slots(shot: str, positions: tuple[str, ...]) -> list[float]:
    """Centre x values where a prop may stand without hiding a character."""
    if shot == "wide":
        xs = {"left": 13.0, "center": 32.0, "right": 51.0}
        return [xs[p] for p in POSITIONS if p not in positions]
    if len(positions) == 2:
        return [32.0]
    return {"left": [55.0], "center": [9.0, 55.0], "right": [9.0]}[positions[0]]


# --- data ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Character:
    shape: str = "circle"
    color: str = "red"
    hat: str = "none"
    expression: str = "happy"
    pattern: str = "plain"
    scarf: str = "none"
    look: int = 0  # pupils: -1 left, 0 ahead, 1 right (pose, never captioned)
    tilt: float = 0.0  # degrees, counter-clockwise (pose, never captioned)

    def identity(self) -> tuple[str, str, str, str, str]:
        return (self.shape, self.color, self.hat, self.pattern, self.scarf)


@dataclass(frozen=True)
class Scene:
    kind: str = "scene"  # "scene" or "sheet"
    characters: tuple[Character, ...] = ()
    positions: tuple[str, ...] = ()
    sky: str = "day"
    ground: str = "grass"
    prop: str = "none"
    prop_x: float = 32.0
    shot: str = "wide"
    dx: float = 0.0  # small horizontal jitter of the characters (64 units)


def sample_character(rng: random.Random) -> Character:
    color = rng.choice(list(COLORS))
    hat = "none" if rng.random() < 0.3 else rng.choice([c for c in COLORS if c != color])
    return Character(
        shape=rng.choice(SHAPES),
        color=color,
        hat=hat,
        expression=rng.choice(EXPRESSIONS),
        pattern=rng.choice(PATTERNS),
        scarf=rng.choice(list(SCARVES)),
    )


def sample_scene(rng: random.Random, sheet_fraction: float = 0.15) -> Scene:
    """Sample a scene (or, with probability ``sheet_fraction``, a model sheet)."""
    if rng.random() < sheet_fraction:
        ch = sample_character(rng)
        ch = replace(ch, look=rng.choice((-1, 0, 0, 1)), tilt=rng.choice((0.0, 0.0, -10.0, 10.0)))
        return Scene(kind="sheet", characters=(ch,), positions=("center",))
    two = rng.random() < 0.35
    positions: tuple[str, ...] = ("left", "right") if two else (rng.choice(POSITIONS),)
    chars = tuple(sample_character(rng) for _ in positions)
    chars = tuple(replace(c, look=rng.choice((-1, 0, 1))) for c in chars)
    shot = rng.choice(SHOTS)
    prop = rng.choice(PROPS)
    prop_x = rng.choice(prop_slots(shot, positions))
    return Scene(
        kind="scene",
        characters=chars,
        positions=positions,
        sky=rng.choice(list(SKIES)),
        ground=rng.choice(list(GROUNDS)),
        prop=prop,
        prop_x=prop_x + rng.uniform(-0.5, 0.5),
        shot=shot,
        dx=rng.uniform(-0.5, 0.5),
    )


def scene_rng(seed: int, index: int) -> random.Random:
    """The random generator of scene ``index`` of the data set with ``seed``."""
    digest = hashlib.sha256(f"toyworld:{seed}:{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def sheet_views(ch: Character) -> list[tuple[str, Scene]]:
    """An artist's model sheet: six views (expressions and poses) of one character."""
    views = [
        ("front", replace(ch, expression="happy", look=0, tilt=0.0)),
        ("sad", replace(ch, expression="sad", look=0, tilt=0.0)),
        ("surprised", replace(ch, expression="surprised", look=0, tilt=0.0)),
        ("angry", replace(ch, expression="angry", look=0, tilt=0.0)),
        ("look-left", replace(ch, expression="happy", look=-1, tilt=10.0)),
        ("look-right", replace(ch, expression="happy", look=1, tilt=-10.0)),
    ]
    return [
        (name, Scene(kind="sheet", characters=(c,), positions=("center",))) for name, c in views
    ]


# --- captions --------------------------------------------------------------------------
def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


POSITION_PHRASE = {"left": "on the left", "center": "in the center", "right": "on the right"}
SHOT_PHRASE = {"wide": "wide shot", "close-up": "close-up"}
PROP_PHRASE = {"none": "no props", "tree": "a tree", "house": "a house"}


def describe(ch: Character, *, color: bool = True, shape: bool = True, hat: bool = True) -> str:
    """Noun phrase for a character, e.g. 'a red circle character with a blue hat'."""
    words = [article(ch.color if color else ch.shape if shape else "character")]
    if color:
        words.append(ch.color)
    if shape:
        words.append(ch.shape)
    words.append("character")
    if hat:
        words += (
            ["with", "no", "hat"] if ch.hat == "none" else ["with", article(ch.hat), ch.hat, "hat"]
        )
    return " ".join(words)


def character_clause(
    ch: Character, position: str | None, rng: random.Random | None = None, drop: float = 0.0
) -> str:
    """Character phrase with optional 'looking <expression>' and position, in either order."""

    def keep() -> bool:
        return rng is None or rng.random() >= drop

    parts = [describe(ch, color=keep(), shape=keep(), hat=keep())]
    tail = []
    if keep():
        tail.append(f"looking {ch.expression}")
    if position is not None and keep():
        tail.append(POSITION_PHRASE[position])
    if rng is not None:
        rng.shuffle(tail)
    return " ".join(parts + tail)


def caption(scene: Scene, rng: random.Random | None = None, drop: float = 0.0) -> str:
    """Caption of a scene: comma-separated clauses.

    Without ``rng`` the full caption in canonical order.  With ``rng`` the clause order is
    shuffled and each clause or attribute is dropped with probability ``drop`` (training
    captions: robust to word order and partial prompts).
    """

    def keep() -> bool:
        return rng is None or rng.random() >= drop

    if scene.kind == "sheet":
        clauses = [character_clause(scene.characters[0], None, rng, drop)]
        if keep():
            clauses.insert(0, "model sheet")
        return ", ".join(clauses)
    pairs = zip(scene.characters, scene.positions, strict=False)
    chars = [character_clause(c, p, rng, drop) for c, p in pairs]
    others = [
        SHOT_PHRASE[scene.shot],
        f"{scene.sky} sky",
        scene.ground,
        PROP_PHRASE[scene.prop],
    ]
    others = [o for o in others if keep()]
    clauses = chars + others
    if rng is not None:
        rng.shuffle(clauses)
    return ", ".join(clauses)


def training_caption(scene: Scene, rng: random.Random, empty: float = 0.1) -> str:
    """Caption as seen in training: 10% empty, otherwise shuffled and partly shortened."""
    r = rng.random()
    if r < empty:
        return ""
    if r < empty + 0.35:
        return caption(scene, rng, drop=0.0)
    return caption(scene, rng, drop=rng.choice((0.15, 0.3, 0.5)))


def vocabulary() -> list[str]:
    """Every word a caption can contain (prompts should stay within these)."""
    words = {"a", "an", "character", "with", "no", "hat", "looking", "model", "sheet", ","}
    words |= set(SHAPES) | set(COLORS) | set(EXPRESSIONS) | set(SKIES) | set(GROUNDS)
    for phrase in (*POSITION_PHRASE.values(), *SHOT_PHRASE.values(), *PROP_PHRASE.values(), "sky"):
        words |= set(phrase.replace("-", " - ").split())
    return sorted(words)


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


def draw_character(
    img: Image.Image, ch: Character, cx: float, feet: float, s: float, k: float
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
    color = COLORS[ch.color]
    lw_px = max(1, int(round(0.06 * s * k)))
    # body mask (for clipping pattern and scarf)
    mask = Image.new("L", layer.size, 0)
    ImageDraw.Draw(mask).polygon(poly, fill=255)
    d.polygon(poly, fill=color + (255,))
    deco = Image.new("RGBA", layer.size, (0, 0, 0, 0))
    dd = ImageDraw.Draw(deco)
    dark = _shade(color, 0.55) + (255,)
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
    tri = ch.shape == "triangle"
    scarf = SCARVES[ch.scarf]
    if scarf is not None:
        sy0 = y0 + (0.80 if tri else 0.70) * s
        dd.rectangle([P(x0, sy0), P(x1, sy0 + 0.13 * s)], fill=scarf + (255,))
    layer.paste(
        deco, (0, 0), Image.composite(deco, Image.new("RGBA", layer.size), mask).getchannel("A")
    )
    d.polygon(poly, outline=OUTLINE + (255,), width=lw_px)
    # face
    ey = y0 + (0.55 if tri else 0.36) * s
    my = y0 + (0.70 if tri else 0.57) * s
    ex = (0.12 if tri else 0.17) * s
    er = (0.12 if ch.expression == "surprised" else 0.10) * s
    pr = 0.055 * s
    for sx in (-1, 1):
        ecx = cx + sx * ex
        d.ellipse(
            [P(ecx - er, ey - er), P(ecx + er, ey + er)],
            fill=EYE_WHITE + (255,),
            outline=OUTLINE + (255,),
            width=max(1, lw_px // 2),
        )
        pcx = ecx + ch.look * 0.04 * s
        d.ellipse([P(pcx - pr, ey - pr), P(pcx + pr, ey + pr)], fill=PUPIL + (255,))
        if ch.expression == "angry":
            # eyebrow: inner end low
            d.line(
                [P(ecx - sx * 0.13 * s, ey - 0.22 * s), P(ecx + sx * 0.09 * s, ey - 0.12 * s)],
                fill=OUTLINE + (255,),
                width=lw_px,
            )
    mw = (0.13 if tri else 0.17) * s
    mlw = max(1, int(round(0.05 * s * k)))
    if ch.expression == "happy":
        d.arc(
            [P(cx - mw, my - mw * 0.8), P(cx + mw, my + mw * 0.6)],
            20,
            160,
            fill=OUTLINE + (255,),
            width=mlw,
        )
    elif ch.expression == "sad":
        d.arc(
            [P(cx - mw, my + 0.02 * s), P(cx + mw, my + mw * 1.4)],
            200,
            340,
            fill=OUTLINE + (255,),
            width=mlw,
        )
    elif ch.expression == "surprised":
        r = 0.065 * s
        d.ellipse([P(cx - r, my - r * 0.3), P(cx + r, my + r * 1.7)], fill=OUTLINE + (255,))
    else:  # angry
        d.line(
            [P(cx - mw * 0.8, my + 0.04 * s), P(cx + mw * 0.8, my + 0.04 * s)],
            fill=OUTLINE + (255,),
            width=mlw,
        )
    # hat
    if ch.hat != "none":
        hc = COLORS[ch.hat] + (255,)
        base = y0 + (0.16 if tri else 0.04) * s
        top = base - HAT_HEIGHT * s
        d.rectangle(
            [P(cx - 0.24 * s, top), P(cx + 0.24 * s, base)],
            fill=hc,
            outline=OUTLINE + (255,),
            width=lw_px,
        )
        d.rectangle(
            [P(cx - 0.40 * s, base - 0.08 * s), P(cx + 0.40 * s, base + 0.02 * s)],
            fill=hc,
            outline=OUTLINE + (255,),
            width=lw_px,
        )
    if ch.tilt:
        centre = P(cx, feet - s / 2)
        layer = layer.rotate(ch.tilt, resample=Image.Resampling.BICUBIC, center=centre)
    img.alpha_composite(layer, (int(round(ox * k)), int(round(oy * k))))


def draw_prop(img: Image.Image, prop: str, x: float, base: float, k: float) -> None:
    d = ImageDraw.Draw(img)

    def P(px: float, py: float) -> tuple[float, float]:
        return (px * k, py * k)

    lw = max(1, int(round(0.8 * k)))
    if prop == "tree":
        d.rectangle(
            [P(x - 1.6, base - 9), P(x + 1.6, base)],
            fill=TRUNK + (255,),
            outline=OUTLINE + (255,),
            width=lw,
        )
        d.ellipse(
            [P(x - 6, base - 21), P(x + 6, base - 8)],
            fill=CROWN + (255,),
            outline=OUTLINE + (255,),
            width=lw,
        )
    elif prop == "house":
        d.rectangle(
            [P(x - 6, base - 11), P(x + 6, base)],
            fill=WALL + (255,),
            outline=OUTLINE + (255,),
            width=lw,
        )
        d.polygon(
            [P(x - 7.5, base - 10.5), P(x + 7.5, base - 10.5), P(x, base - 18)],
            fill=ROOF + (255,),
            outline=OUTLINE + (255,),
            width=lw,
        )
        d.rectangle([P(x - 1.6, base - 5.5), P(x + 1.6, base)], fill=DOOR + (255,))


def render(scene: Scene, size: int = SIZE) -> Image.Image:
    """Render ``scene`` as an RGB image of ``size`` x ``size`` pixels."""
    k = size * SUPERSAMPLE / SIZE
    px = size * SUPERSAMPLE
    if scene.kind == "sheet":
        img = Image.new("RGBA", (px, px), SHEET_BACKGROUND + (255,))
        draw_character(img, scene.characters[0], 32.0, SHEET_FEET, SHEET_BODY, k)
    else:
        img = Image.new("RGBA", (px, px), SKIES[scene.sky] + (255,))
        horizon = HORIZON[scene.shot]
        ImageDraw.Draw(img).rectangle([0, horizon * k, px, px], fill=GROUNDS[scene.ground] + (255,))
        if scene.prop != "none":
            draw_prop(img, scene.prop, scene.prop_x, horizon + 2.0, k)
        for ch, (cx, s) in zip(scene.characters, layout(scene.shot, scene.positions), strict=False):
            draw_character(img, ch, cx + scene.dx, FEET[scene.shot], s, k)
    return img.convert("RGB").reduce(SUPERSAMPLE)


def render_dataset(
    seed: int, start: int, count: int, size: int = SIZE, sheet_fraction: float = 0.15
):
    """Render scenes ``start .. start+count`` of the data set ``seed``.

    Returns (uint8 array N x size x size x 3, list of scenes).  Deterministic per index.
    """
    import numpy as np

    arr = np.empty((count, size, size, 3), dtype=np.uint8)
    scenes = []
    for i in range(count):
        sc = sample_scene(scene_rng(seed, start + i), sheet_fraction)
        arr[i] = np.asarray(render(sc, size))
        scenes.append(sc)
    return arr, scenes


def caption_grid(
    images: list[Image.Image], captions: list[str], cols: int = 6, cell: int = 128
) -> Image.Image:
    """A grid of images with their (wrapped) captions written under each."""
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
        grid.paste(im.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST), (x, y))
        for j, line in enumerate(lines):
            d.text((x, y + cell + 3 + 11 * j), line, fill=(0, 0, 0), font=font)
    return grid


# --- example characters ----------------------------------------------------------------
EXAMPLE_CHARACTERS: dict[str, tuple[str, Character]] = {
    "pip": (
        "Pip",
        Character(shape="circle", color="red", hat="blue", pattern="dots", scarf="cyan"),
    ),
    "bo": (
        "Bo",
        Character(shape="square", color="yellow", hat="none", pattern="stripes", scarf="magenta"),
    ),
    "tri": (
        "Tri",
        Character(shape="triangle", color="purple", hat="green", pattern="plain", scarf="black"),
    ),
    "momo": (
        "Momo",
        Character(shape="circle", color="blue", hat="orange", pattern="stripes", scarf="none"),
    ),
}


def write_sheets(folder: Path, size: int = 128) -> list[Path]:
    """Write ``<name>.yaml`` and ``<name>/<view>.png`` for every example character."""
    written = []
    folder.mkdir(parents=True, exist_ok=True)
    for key, (display, ch) in EXAMPLE_CHARACTERS.items():
        (folder / key).mkdir(exist_ok=True)
        images = []
        for view, scene in sheet_views(ch):
            path = folder / key / f"{view}.png"
            render(scene, size).save(path, optimize=True)
            images.append(f"{key}/{view}.png")
            written.append(path)
        details = f"pattern: {ch.pattern}, scarf: {ch.scarf}"
        lines = [
            "# Reference sheet rendered by the toy world "
            f"(python -m toyworld.world --sheets {folder.name}/).",
            f"# Identity details that no caption can name: {details}.",
            f"name: {display}",
            f'description: "{describe(ch)}"',
            "images:",
            *[f"  - {p}" for p in images],
        ]
        (folder / f"{key}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(folder / f"{key}.yaml")
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m toyworld.world", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--sheets", type=Path, help="write the example characters' sheets into this folder"
    )
    ap.add_argument("--size", type=int, default=128, help="sheet image size (a multiple of 64)")
    ap.add_argument(
        "--preview", type=Path, help="write a grid of random scenes with captions to this PNG"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.sheets:
        for p in write_sheets(args.sheets, args.size):
            print(p)
    if args.preview:
        rng = random.Random(args.seed)
        scenes = [sample_scene(rng) for _ in range(24)]
        caption_grid([render(s, 128) for s in scenes], [caption(s) for s in scenes]).save(
            args.preview
        )
        print(args.preview)
    if not args.sheets and not args.preview:
        ap.print_help()


if __name__ == "__main__":
    main()
