"""Infusion training pairs for the face pass: a character's sheet views -> its face crop.

The face pass (``comicgen.faces``) repaints a close crop of each character; with the
character's sheet infused into that repaint, its U-Net must learn to take the identity from
the sheet and the expression and facing from the clause, at the crop's scale. Each pair is
one character's jittered face square (``toyworld.face_crops.crop_box``) cut from a scene of
one of ``buckets`` (frame shapes; default square) rendered at three pixels a unit, its
clause as caption ("a character looking sad facing left on the right"; the identity named
in a quarter of them, as ``toyworld.pairs``), the character's drawn box moved into the
crop, and sheet views with other expressions and facings. Same folder format as ``toyworld.pairs``::

    python -m toyworld.face_pairs --out face-pairs --n 2000 --buckets all
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from comicgen.faces import crop_box as box_in_square
from toyworld import face_crops as F
from toyworld import pairs as P
from toyworld import world as W


def make_face_pair(seed: int, index: int, buckets: tuple[str, ...] = ("square",)):
    """(scene, character index, crop square in 64-units, sheet views, caption, box in the
    crop's fractions) of face pair ``index``; the scene's frame shape drawn from
    ``buckets``."""
    rng = P._rng(seed, index)
    bucket = buckets[0] if len(buckets) == 1 else rng.choice(buckets)  # one: no draw
    scene = W.sample_scene(rng, 0.0, bucket)
    k = rng.randrange(len(scene.characters))
    ch, position = scene.characters[k], scene.positions[k]
    square = F.crop_box(scene, k, rng)
    views = P.other_views(ch, rng)
    who = W.describe(ch) if rng.random() < P.IDENTITY_IN_CAPTION else "a character"
    caption = f"{who} looking {ch.expression} facing {ch.facing} {W.POSITION_PHRASE[position]}"
    x0, y0, x1, _ = square
    box = box_in_square(P.drawn_box(scene, k), (x0, y0, x1 - x0), scene.width, scene.height)
    return scene, k, square, views, caption, box


def write_face_pairs(
    folder: Path, n: int, seed: int = 0, size: int = W.SIZE, buckets: tuple[str, ...] = ("square",)
) -> Path:
    """Write ``n`` face pairs (``size`` pixels) and their ``metadata.jsonl`` under ``folder``,
    cut from scenes of ``buckets``' frame shapes."""
    from PIL import Image

    from toyworld import drawing as D

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    f = F.RENDER_SCALE
    for i in range(n):
        scene, k, (x0, y0, x1, y1), views, caption, box = make_face_pair(seed, i, buckets)
        sub = folder / f"{i:05d}"
        sub.mkdir(exist_ok=True)
        big = D.render(scene, W.SIZE * f)
        crop = big.crop((round(x0 * f), round(y0 * f), round(x1 * f), round(y1 * f)))
        crop.resize((size, size), Image.Resampling.LANCZOS).save(sub / "scene.png")
        character = P.write_character(sub, 0, scene.characters[k], views, box, size)
        item = {"scene": f"{sub.name}/scene.png", "caption": caption, "characters": [character]}
        lines.append(json.dumps(item))
    return P.write_metadata(folder, lines)


BUCKETS_HELP = "frame shapes to cut faces from: 'all' or names from toyworld.world.BUCKETS"


def parse_buckets(text: str) -> tuple[str, ...]:
    """``"all"`` or comma-separated bucket names -> the names (exits on an unknown one)."""
    names = tuple(W.BUCKETS) if text == "all" else tuple(b.strip() for b in text.split(","))
    unknown = [b for b in names if b not in W.BUCKETS]
    if unknown or not names:
        raise SystemExit(f"--buckets: unknown {unknown}; use 'all' or some of {list(W.BUCKETS)}")
    return names


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m toyworld.face_pairs", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=W.SIZE)
    ap.add_argument("--buckets", default="square", help=BUCKETS_HELP)
    args = ap.parse_args(argv)
    buckets = parse_buckets(args.buckets)
    path = write_face_pairs(args.out, args.n, args.seed, args.size, buckets)
    print(f"{args.n} face pairs: {path}")


if __name__ == "__main__":
    main()
