"""Infusion training pairs from the toy world: a character's sheet views -> a scene with it.

Each pair is a scene (one, two or three characters) and, per character, sheet views that show it
with *other* expressions and facings than the scene, so that a model trained on the pairs
learns to take the identity from the sheet and the expression, facing, place and size from
the caption. Captions leave the character's identity out most of the time (it must come
from the sheet) and keep it sometimes (so the text still binds).

Written in the folder format ``comicgen.infusion.training`` reads (any checkpoint's data
can be put in it)::

    metadata.jsonl   one pair per line:
        {"scene": "00000/scene.png", "caption": "...",
         "characters": [{"sheets": ["00000/c0-0.png", ...], "description": "...",
                          "box": [x0, y0, x1, y1]}]}

    python -m toyworld.pairs --out pairs --n 2000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from dataclasses import replace
from pathlib import Path

from toyworld import world as W

VIEWS_PER_CHARACTER = 3
IDENTITY_IN_CAPTION = 0.25  # fraction of captions that also name the characters' identity
THREE = 0.0  # default share of three-character scenes (wide shot, left / center / right)


def _rng(seed: int, index: int) -> random.Random:
    digest = hashlib.sha256(f"toyworld-pairs:{seed}:{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def character_box(shot: str, positions: tuple[str, ...], index: int) -> list[float]:
    """Where the toy world draws character ``index`` (body and hat), panel fractions."""
    cx, s = W.layout(shot, positions)[index]
    return body_box(cx, W.FEET[shot], s, W.SIZE, W.SIZE)


def drawn_box(scene: W.Scene, index: int) -> list[float]:
    """:func:`character_box` of character ``index`` of ``scene``, as the drawing places it
    (its shift included), for a frame of any shape: fractions of its width and height."""
    from toyworld import drawing as D

    _, cx, feet, s = D.placements(scene)[index]
    return body_box(cx, feet, s, scene.width, scene.height)


def body_box(cx: float, feet: float, s: float, width: float, height: float) -> list[float]:
    """The box of a body of size ``s`` centred at ``cx`` standing at ``feet`` (its hat
    included), as fractions of a ``width`` x ``height`` frame."""
    top = feet - s * (1.0 + W.HAT_HEIGHT)
    x0, x1 = (cx - 0.55 * s) / width, (cx + 0.55 * s) / width
    return [max(0.0, x0), max(0.0, top / height), min(1.0, x1), min(1.0, feet / height)]


def other_views(ch: W.Character, rng: random.Random) -> list[W.Character]:
    """Sheet views of ``ch`` whose expression and facing differ from ``ch``'s."""
    views = [v.characters[0] for _, v in W.sheet_views(ch)]
    others = [
        v for v in views if v.expression != ch.expression and (ch.look == 0 or v.look != ch.look)
    ]
    rng.shuffle(others)
    return others[:VIEWS_PER_CHARACTER]


def make_pair(
    seed: int, index: int, three: float = THREE, facing: bool = True
) -> tuple[W.Scene, list[list[W.Character]], str]:
    """(scene, per character its sheet views, caption) of pair ``index``; ``three``: the
    share of scenes with three characters (a wide shot without a prop, as the consistency
    benchmark asks them); ``facing``: the captions name each character's facing ("facing
    left"), as the toy world's own captions do (the pairs before 2026-12-04 did not)."""
    rng = _rng(seed, index)
    scene = W.sample_scene(rng, sheet_fraction=0.0)
    if three and rng.random() < three:
        positions = ("left", "center", "right")
        scene = replace(
            scene,
            characters=tuple(W.sample_character(rng) for _ in positions),
            positions=positions,
            shot="wide",
            prop="none",
        )
    chars = tuple(replace(c, look=rng.choice((-1, 0, 1))) for c in scene.characters)
    scene = replace(scene, characters=chars)
    views = [other_views(c, rng) for c in chars]
    named = rng.random() < IDENTITY_IN_CAPTION
    clauses = []
    for c, p in zip(chars, scene.positions, strict=True):
        who = W.describe(c) if named else "a character"
        turn = f" facing {c.facing}" if facing else ""
        clauses.append(f"{who} looking {c.expression}{turn} {W.POSITION_PHRASE[p]}")
    clauses += [
        W.SHOT_PHRASE[scene.shot],
        f"{scene.sky} sky",
        scene.ground,
        W.PROP_PHRASE[scene.prop],
    ]
    return scene, views, ", ".join(clauses)


def write_character(
    sub: Path, k: int, ch: W.Character, views: list[W.Character], box, size: int
) -> dict:
    """Character ``k`` of a pair in ``sub``: its sheet ``views`` rendered there, its
    description and ``box`` (the ``characters`` entry of ``metadata.jsonl``)."""
    sheets = []
    for j, v in enumerate(views):
        sheet = W.Scene(kind="sheet", characters=(v,), positions=("center",))
        W.render(sheet, size).save(sub / f"c{k}-{j}.png")
        sheets.append(f"{sub.name}/c{k}-{j}.png")
    description = W.describe(ch, color=False, shape=False, hat=False)
    return {"sheets": sheets, "description": description, "box": list(box)}


def write_metadata(folder: Path, lines: list[str]) -> Path:
    """``folder/metadata.jsonl`` with one pair a line, written whole or not at all."""
    tmp = folder / "metadata.jsonl.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(folder / "metadata.jsonl")
    return folder / "metadata.jsonl"


def write_pairs(
    folder: Path,
    n: int,
    seed: int = 0,
    size: int = W.SIZE,
    three: float = THREE,
    facing: bool = True,
) -> Path:
    """Write ``n`` pairs (``size`` pixels) and their ``metadata.jsonl`` under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        scene, views, caption = make_pair(seed, i, three, facing)
        sub = folder / f"{i:05d}"
        sub.mkdir(exist_ok=True)
        W.render(scene, size).save(sub / "scene.png")
        characters = [
            write_character(sub, k, ch, vs, character_box(scene.shot, scene.positions, k), size)
            for k, (ch, vs) in enumerate(zip(scene.characters, views, strict=True))
        ]
        item = {"scene": f"{sub.name}/scene.png", "caption": caption, "characters": characters}
        lines.append(json.dumps(item))
    return write_metadata(folder, lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m toyworld.pairs", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=W.SIZE)
    ap.add_argument(
        "--three", type=float, default=THREE, help="share of scenes with three characters"
    )
    ap.add_argument(
        "--no-facing",
        action="store_true",
        help="leave the facing out of the captions (the pairs the shipped infusion U-Net "
        "was trained on)",
    )
    args = ap.parse_args(argv)
    path = write_pairs(args.out, args.n, args.seed, args.size, args.three, not args.no_facing)
    print(f"{args.n} pairs: {path}")


if __name__ == "__main__":
    main()
