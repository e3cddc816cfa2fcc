"""The toy world: shape characters in small scenes, a Pillow renderer and captions.

Everything is drawn in a 64x64 coordinate system (the model's native size), supersampled
4x and reduced, so any output size is a multiple of the same picture.

A *character* has a body shape, a body colour, an optional hat (with its colour), eyes and
an expression - all of which captions can name - and two identity details that captions
never mention: a body ``pattern`` and a ``scarf`` colour.  Only a reference image can carry
those (that is what Infusion is for).

A character *faces* left, ahead or right (``look``: its pupils and its whole face turn
that way); captions say "looking sad" and "facing left".

A *scene* has a sky, a ground, an optional prop (tree, house), one character (left, center
or right) or two (left and right) and a shot (wide or close-up), in a frame of one of the
aspect-ratio ``BUCKETS`` (square 64 x 64 units by default; wide, tall and long strips).  A
*model sheet* is one character alone on a plain background, centred (always square).

Geometry and drawing live in ``toyworld.drawing`` (``render`` and friends are re-exported
here).

Regenerate the example characters' reference sheets with::

    python -m toyworld.world --sheets characters/
"""

from __future__ import annotations

import argparse
import hashlib
import random
from dataclasses import dataclass, replace
from pathlib import Path

SIZE = 64  # native size; geometry is in these units
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
FACINGS = ("left", "ahead", "right")  # look -1, 0, 1
# aspect-ratio buckets: frame width x height in 64-units (= pixels at the native scale);
# multiples of 16 (the bundled model's size multiple), the character scale kept
BUCKETS: dict[str, tuple[int, int]] = {
    "square": (64, 64),
    "wide": (96, 64),
    "tall": (64, 96),
    "strip-wide": (128, 64),
    "strip-tall": (64, 128),
}
SHEET_BACKGROUND = (236, 236, 236)

OUTLINE = (35, 30, 40)
EYE_WHITE = (255, 255, 255)
PUPIL = (20, 20, 25)
TRUNK = (100, 80, 60)
CROWN = (15, 120, 95)
WALL = (160, 160, 172)
ROOF = (80, 95, 120)
DOOR = (60, 60, 75)


# --- data ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Character:
    shape: str = "circle"
    color: str = "red"
    hat: str = "none"
    expression: str = "happy"
    pattern: str = "plain"
    scarf: str = "none"
    look: int = 0  # facing: -1 left, 0 ahead, 1 right (pupils and face turn that way)
    tilt: float = 0.0  # degrees, counter-clockwise (pose, never captioned)

    @property
    def facing(self) -> str:
        return FACINGS[self.look + 1]

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
    width: int = SIZE  # frame size in 64-units (see BUCKETS)
    height: int = SIZE

    @property
    def bucket(self) -> str:
        return next(k for k, v in BUCKETS.items() if v == (self.width, self.height))


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


def sample_scene(
    rng: random.Random,
    sheet_fraction: float = 0.15,
    bucket: str = "square",
    close_up: float | None = None,
) -> Scene:
    """Sample a scene (or, with probability ``sheet_fraction``, a model sheet) in the frame
    of ``bucket``; ``close_up``: the share of close-ups (None: an even choice of shot)."""
    from toyworld.drawing import prop_slots

    width, height = BUCKETS[bucket]
    if rng.random() < sheet_fraction:
        ch = sample_character(rng)
        ch = replace(ch, look=rng.choice((-1, 0, 0, 1)), tilt=rng.choice((0.0, 0.0, -10.0, 10.0)))
        return Scene(kind="sheet", characters=(ch,), positions=("center",))
    two = rng.random() < 0.35
    positions: tuple[str, ...] = ("left", "right") if two else (rng.choice(POSITIONS),)
    chars = tuple(sample_character(rng) for _ in positions)
    chars = tuple(replace(c, look=rng.choice((-1, 0, 1))) for c in chars)
    shot = rng.choice(SHOTS) if close_up is None else SHOTS[int(rng.random() < close_up)]
    prop = rng.choice(PROPS)
    prop_x = rng.choice(prop_slots(shot, positions, width))
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
        width=width,
        height=height,
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
    """Character phrase with optional 'looking <expression>', 'facing <left|ahead|right>' and
    position, in any order."""

    def keep() -> bool:
        return rng is None or rng.random() >= drop

    parts = [describe(ch, color=keep(), shape=keep(), hat=keep())]
    tail = []
    if keep():
        tail.append(f"looking {ch.expression}")
    if keep():
        tail.append(f"facing {ch.facing}")
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
    words |= {"facing", *FACINGS}
    words |= set(SHAPES) | set(COLORS) | set(EXPRESSIONS) | set(SKIES) | set(GROUNDS)
    for phrase in (*POSITION_PHRASE.values(), *SHOT_PHRASE.values(), *PROP_PHRASE.values(), "sky"):
        words |= set(phrase.replace("-", " - ").split())
    return sorted(words)


# --- drawing (toyworld.drawing), re-exported lazily (it imports this module) ----------
_DRAWING = {
    "HORIZON",
    "FEET",
    "SHEET_FEET",
    "SHEET_BODY",
    "HAT_HEIGHT",
    "layout",
    "prop_slots",
    "draw_character",
    "draw_prop",
    "render",
    "render_dataset",
    "caption_grid",
    "_body_polygon",
    "part_boxes",
    "cell_mask",
    "placements",
}


def __getattr__(name: str):
    if name in _DRAWING:
        from toyworld import drawing

        return getattr(drawing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    from toyworld.drawing import render

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
        from toyworld.drawing import caption_grid, render

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
