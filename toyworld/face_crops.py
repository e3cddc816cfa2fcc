"""Training data for the face pass (``comicgen.faces``): close crops of the toy world's faces.

Each image is one character's face square (:func:`comicgen.faces.face_square` of its
position's box, jittered by a few units and scaled by up to 10%, as the painted character
stands a little off its box), cut from the scene rendered at four pixels a unit and brought
to 64 x 64 pixels; its captions are that character's clause (what the face pass prompts
with).  Scenes come from every frame shape and both shots.
"""

from __future__ import annotations

BUCKET = "face"
RENDER_SCALE = 3  # pixels per 64-unit when rendering the scene the crop is cut from
JITTER = 2.0  # units the crop's centre moves at most
SCALE_JITTER = 0.1


def crop_box(scene, index: int, rng) -> tuple[float, float, float, float]:
    """The jittered face square of character ``index`` of ``scene`` (64-units)."""
    from comicgen.faces import face_square
    from comicgen.infusion.refs import position_box

    x0, y0, x1, y1 = face_square(position_box(scene.positions[index]), scene.width, scene.height)
    s = (x1 - x0) * (1 + rng.uniform(-SCALE_JITTER, SCALE_JITTER))
    cx = (x0 + x1) / 2 + rng.uniform(-JITTER, JITTER)
    cy = (y0 + y1) / 2 + rng.uniform(-JITTER, JITTER)
    return (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)


def face_caption(ch, position: str, rng, empty: float = 0.1) -> str:
    """A training caption of a crop: 10% empty, else the character's clause (shuffled,
    partly shortened, as :func:`toyworld.world.training_caption`)."""
    from toyworld import world as W

    r = rng.random()
    if r < empty:
        return ""
    drop = 0.0 if r < empty + 0.45 else rng.choice((0.15, 0.3))
    return W.character_clause(ch, position, rng, drop)


def face_chunk(seed: int, start: int, count: int, variants: int, size: int = 64, group: int = 1):
    """Crops ``start .. start+count`` (uint8 N x size x size x 3), ``variants`` caption ids
    each (int32 N x variants x MAX_TOKENS) and the face's latent cells (uint8 N x size/4 x
    size/4, bit ``model.FACE``: where the cropped character's face box lies, for
    ``train --face-weight``; bit ``model.MOUTH``: its mouth's, for ``--mouth-weight``);
    deterministic per index.  With ``group`` > 1 the crops come
    in runs of ``group`` (``start`` a multiple of it): one scene and one crop, the
    characters' expression and facing turned on by one per crop (``model.vary_face``;
    ``train --face-groups``)."""
    import math
    import random

    import numpy as np
    from PIL import Image

    from toyworld import drawing as D
    from toyworld import model as M
    from toyworld import world as W

    images = np.empty((count, size, size, 3), dtype=np.uint8)
    ids = np.empty((count, variants, M.MAX_TOKENS), dtype=np.int32)
    cells = size // (W.SIZE // M.LATENT_SIZE)
    masks = np.zeros((count, cells, cells), dtype=np.uint8)
    buckets = list(W.BUCKETS)
    for i in range(count):
        j = start + i
        rng = W.scene_rng(seed, j - j % group)
        scene = W.sample_scene(rng, 0.0, rng.choice(buckets))
        k = rng.randrange(len(scene.characters))
        x0, y0, x1, y1 = crop_box(scene, k, rng)
        if group > 1:
            scene = M.vary_face(scene, j % group)
        img = D.render(scene, W.SIZE * RENDER_SCALE)
        f = RENDER_SCALE
        crop = img.crop((round(x0 * f), round(y0 * f), round(x1 * f), round(y1 * f)))
        images[i] = np.asarray(crop.resize((size, size), Image.Resampling.LANCZOS))
        f_cell = (x1 - x0) / cells  # 64-units per latent cell of the crop
        boxes = D.part_boxes(scene)
        for part, bit in (("face", M.FACE), ("mouth", M.MOUTH)):
            px0, py0, px1, py1 = boxes[part][k]
            c0, c1 = max(0, int((px0 - x0) // f_cell)), min(cells, math.ceil((px1 - x0) / f_cell))
            r0, r1 = max(0, int((py0 - y0) // f_cell)), min(cells, math.ceil((py1 - y0) / f_cell))
            masks[i, r0:r1, c0:c1] |= bit
        crng = random.Random(f"face-captions:{seed}:{start + i}")
        for v in range(variants):
            ids[i, v] = M.caption_ids(face_caption(scene.characters[k], scene.positions[k], crng))
    return images, ids, masks
