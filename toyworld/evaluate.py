"""Evaluate the bundled model: ``python -m toyworld.evaluate --samples N``.

Paints N square panels from random full captions (clause order shuffled) with the saved
scheduler, 20 steps and the pipeline's default guidance, reads them back with the attribute
reader and prints the per-attribute prompt adherence (shape, body colour, hat, expression,
facing, sky, ground, props, position, shot) and their mean; then, per aspect-ratio bucket
(``--bucket-samples`` panels of each other frame shape), the adherence with each character
counted once (a panel with a second copy of a character scores 0); then the VAE's
reconstruction PSNR on fresh renders and the upscaler's gain when ``toyworld.upscaler`` is
there.  The last line is
``prompt_adherence=X vae_psnr=Y expression=E facing=F buckets=B upscale_gain_db=G``
(``buckets``: the lowest bucket's score, the square one included).
"""

from __future__ import annotations

import argparse
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from comicgen.bundled import TOYWORLD_DIR
from comicgen.faces import FACE_STRENGTH, PASTE
from toyworld import reader as R
from toyworld import world as W
from toyworld.trainkit import vae_psnr

DEFAULT_MODEL = TOYWORLD_DIR
ATTRIBUTES = (
    "shape",
    "color",
    "hat",
    "expression",
    "facing",
    "sky",
    "ground",
    "prop",
    "position",
    "shot",
)
CHARACTER_ATTRIBUTES = ("shape", "color", "hat", "expression", "facing")
SCENE_ATTRIBUTES = ("sky", "ground", "prop", "shot", "position")
DEFAULT_GUIDANCE = 7.5  # StableDiffusionPipeline's default


def load_pipeline(folder: Path | str | None = None, device: str = "cpu"):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        str(folder or DEFAULT_MODEL),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def paint(
    pipe,
    prompts: list[str],
    seeds: list[int],
    steps: int = 20,
    guidance: float = DEFAULT_GUIDANCE,
    batch: int = 16,
    guidance_rescale: float | None = None,
    size: tuple[int, int] | None = None,
):
    """Paint one image per prompt (seeded per image), ``size`` = (width, height) pixels
    (default: the model's native square); ``guidance_rescale`` None is the model's
    recommendation, as in ``comicgen render``."""
    import torch

    from comicgen.painter import recommended_guidance_rescale

    if guidance_rescale is None:
        guidance_rescale = recommended_guidance_rescale(pipe.scheduler.config)

    native = pipe.unet.config.sample_size * pipe.vae_scale_factor
    width, height = size or (native, native)
    out = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i : i + batch]]
        res = pipe(
            prompts[i : i + batch],
            num_inference_steps=steps,
            guidance_scale=guidance,
            guidance_rescale=guidance_rescale,
            generator=gens,
            height=height,
            width=width,
        )
        out += res.images
    return out


def eval_scenes(
    n: int, seed: int, bucket: str = "square", facing: bool = True
) -> list[tuple[W.Scene, str]]:
    """``n`` scenes of ``bucket`` and their full captions (``facing`` False: without the
    "facing ..." words, as the first generation's captions were)."""
    key = f"evaluate:{seed}" if bucket == "square" else f"evaluate:{seed}:{bucket}"
    rng = random.Random(key)
    items = []
    for _ in range(n):
        scene = W.sample_scene(rng, sheet_fraction=0.0, bucket=bucket)
        text = W.caption(scene, rng, drop=0.0)
        if not facing:
            text = re.sub(r" facing \w+", "", text)
        items.append((scene, text))
    return items


def adherence(
    pipe,
    n: int,
    seed: int = 0,
    steps: int = 20,
    guidance: float = DEFAULT_GUIDANCE,
    batch: int = 16,
    guidance_rescale: float | None = None,
    bucket: str = "square",
    facing: bool = True,
    faces=None,
):
    """Per-attribute accuracy of painted panels read back (and ``once``: the share of panels
    where each character stands once); also the mean score by number of characters, the
    score with each character counted once (a panel with a second copy scores 0), the
    misread panels (image, caption and reading) and the hat errors by kind
    (:func:`hat_error`)."""
    items = eval_scenes(n, seed, bucket, facing)
    seeds = [seed * 100000 + i for i in range(n)]
    size = tuple(
        v * pipe.vae_scale_factor * pipe.unet.config.sample_size // W.SIZE
        for v in W.BUCKETS[bucket]
    )
    images = paint(
        pipe, [c for _, c in items], seeds, steps, guidance, batch, guidance_rescale, size
    )
    hits: dict[str, list[bool]] = {a: [] for a in (*ATTRIBUTES, "once")}
    by_count: dict[int, list[float]] = {1: [], 2: []}
    counted_once: list[float] = []
    misread = []
    hat_errors: Counter[str] = Counter()
    if faces is not None:  # the face pass, as comicgen render runs it
        images = [
            repaint_faces(faces, img, scene, cap, s, steps, guidance)
            for (scene, cap), img, s in zip(items, images, seeds, strict=True)
        ]
    for (scene, cap), img in zip(items, images, strict=False):
        got, want = R.read(img), R.truth(scene)
        row = []
        for a in SCENE_ATTRIBUTES:
            ok = getattr(got, a) == getattr(want, a)
            hits[a].append(ok)
            row.append(ok)
        for wc, gc, ok in R.character_matches(got, want, CHARACTER_ATTRIBUTES):
            for a in CHARACTER_ATTRIBUTES:
                hits[a].append(ok[a])
                row.append(ok[a])
            if not ok["hat"]:
                hat_errors[hat_error(wc, gc, want)] += 1
        once = got.figures == want.figures
        hits["once"].append(once)
        by_count[len(scene.characters)].append(float(np.mean(row)))
        counted_once.append(float(np.mean(row)) if once else 0.0)
        if not all(row) or not once:
            seen = ", ".join(
                f"{c.color} {c.shape} hat {c.hat} {c.expression} {c.facing} {c.position}"
                for c in got.characters
            )
            misread.append(
                (
                    img,
                    f"{cap} || READ ({got.figures} figures): {got.shot}, {got.sky}, "
                    f"{got.ground}, {got.prop}; {seen}",
                )
            )
    acc = {a: float(np.mean(v)) for a, v in hits.items()}
    counts = {k: float(np.mean(v)) if v else float("nan") for k, v in by_count.items()}
    counts["once"] = float(np.mean(counted_once))
    return acc, counts, misread, hat_errors


@dataclass(frozen=True)
class _Cast:  # what comicgen.faces.panel_faces reads of a panel's character
    description: str
    position: str
    box: None = None


def repaint_faces(faces, image, scene: W.Scene, caption: str, seed, steps, guidance):
    """``image`` after the face pass (:class:`comicgen.faces.FacePainter` ``faces``), each
    character's face found from its position and prompted with its clause of ``caption``."""
    from comicgen.faces import panel_faces

    cast = [_Cast(W.describe(c), p) for c, p in zip(scene.characters, scene.positions, strict=True)]
    if isinstance(faces, TruthFaces):
        return faces.paste(image, panel_faces(caption, cast), scene)
    return faces.repaint(
        image, panel_faces(caption, cast), seed=seed, steps=steps, guidance=guidance
    )


class TruthFaces:
    """``--faces truth`` / ``truth-vae``: the face pass's ceiling. Each face square is cut
    from the toy world's own render of the scene (three pixels a unit, as the face model's
    training crops; ``vae``: through the panel model's VAE, as anything a face model paints)
    and pasted through the pass's window: what a perfect face model would reach."""

    RENDER_SCALE = 3

    def __init__(self, pipe, vae: bool, paste: tuple[float, float]):
        self.pipe, self.vae, self.window = pipe, vae, paste
        self.folder, self.strength = ("truth-vae" if vae else "truth"), 1.0

    def paste(self, image, faces, scene: W.Scene):
        from PIL import Image

        from comicgen.faces import pixel_square, window
        from toyworld import drawing as D
        from toyworld.trainkit import round_trip

        f = self.RENDER_SCALE
        big, out = D.render(scene, W.SIZE * f), image.copy()
        k = f * scene.height / image.height  # render pixels per panel pixel
        for face in faces:
            left, top, side = pixel_square(face.box, image.width, image.height)
            crop = big.crop(tuple(round(v * k) for v in (left, top, left + side, top + side)))
            crop = crop.resize((64, 64), Image.Resampling.LANCZOS)
            if self.vae:
                pixels = np.asarray(crop).transpose(2, 0, 1)[None]
                crop = Image.fromarray(
                    round_trip(self.pipe.vae, pixels)[0].permute(1, 2, 0).numpy()
                )
            small = crop.resize((side, side), Image.Resampling.LANCZOS)
            out.paste(small, (left, top), window(side, *self.window))
        return out


def face_painter(
    pipe, spec: str, model: Path | str | None = None, strength: float = FACE_STRENGTH, paste=None
):
    """The face pass for ``--faces``, resolved as ``[render] faces`` is
    (:func:`comicgen.models.resolve_faces`: "auto" is the face model the ``model`` folder's
    comicgen.json names, "own" the model itself, a missing folder an error); None: off."""
    from comicgen.errors import ModelError
    from comicgen.faces import FacePainter
    from comicgen.models import inspect_model, resolve_faces

    if spec in ("truth", "truth-vae"):
        return TruthFaces(pipe, spec == "truth-vae", paste or PASTE)
    try:
        folder = resolve_faces(spec, inspect_model(str(model or DEFAULT_MODEL)), Path.cwd())
    except ModelError as exc:
        raise SystemExit(f"--faces: {exc.message} ({exc.hint})") from None
    if folder is None:
        return None
    return FacePainter(pipe, None if folder == "own" else folder, strength, paste or PASTE)


def hat_error(want: R.CharacterReading, got: R.CharacterReading | None, scene: R.Reading) -> str:
    """What went wrong with a misread hat: 'no character' read there, 'missing' (asked for,
    read none), 'unasked' (a hat where none was asked), 'body colour' (the hat took the
    body's colour), 'other character's' (took the other character's hat colour) or 'wrong
    colour'."""
    if got is None:
        return "no character"
    if got.hat == "none":
        return "missing"
    if want.hat == "none":
        return "unasked"
    if got.hat == want.color:
        return "body colour"
    if any(c.hat == got.hat for c in scene.characters if c.position != want.position):
        return "other character's"
    return "wrong colour"


def upscale_gain_db() -> float:
    """The upscaler's PSNR gain over Lanczos (``toyworld.upscaler``; nan where it is not
    there)."""
    try:
        from toyworld.upscaler import upscale_gain_db as gain
    except ImportError:
        return float("nan")
    return float(gain())


def sample_captions() -> list[str]:
    """Captions for the samples grid: scenes, partial prompts, sheets, the example characters."""
    pip, bo, tri, momo = (W.describe(c) for _, c in W.EXAMPLE_CHARACTERS.values())
    return [
        f"{pip} on the left, wide shot, grass, day sky, a tree",
        f"{bo} looking sad facing left in the center, close-up, sand, sunset sky, no props",
        f"{tri} on the right, wide shot, snow, night sky, a house",
        f"{pip} on the left, {bo} on the right, wide shot, grass, day sky, a house",
        f"{momo} looking surprised facing right on the left, {tri} looking angry facing left "
        "on the right, close-up, snow, sunset sky",
        f"model sheet, {pip} looking happy",
        f"model sheet, {tri} looking sad facing right",
        "a green triangle character on the right, night sky, grass",
        "a character in the center, wide shot",
        "close-up, a pink square character with a yellow hat, day sky, snow, a tree",
        "an orange circle character with no hat on the left, sunset sky, sand, wide shot, a house",
        "",
    ]


def sample_grid(
    pipe,
    seed: int = 0,
    steps: int = 20,
    guidance: float = DEFAULT_GUIDANCE,
    guidance_rescale: float | None = None,
):
    """A grid of painted samples with their captions under them (two seeds per caption)."""
    pipe.set_progress_bar_config(disable=True)
    caps = sample_captions()
    prompts = [c for c in caps for _ in range(2)]
    seeds = [seed * 1000 + i for i in range(len(prompts))]
    images = paint(pipe, prompts, seeds, steps, guidance, guidance_rescale=guidance_rescale)
    return W.caption_grid(images, prompts, cols=6)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m toyworld.evaluate", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--samples", type=int, default=200, help="number of square panels to paint and read back"
    )
    ap.add_argument(
        "--bucket-samples",
        type=int,
        default=None,
        help="panels per other aspect-ratio bucket (default: a quarter of --samples; 0: none)",
    )
    ap.add_argument(
        "--model", type=Path, default=None, help="pipeline folder (default: the bundled model)"
    )
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    ap.add_argument(
        "--guidance-rescale",
        type=float,
        default=None,
        help="classifier-free-guidance rescale (diffusers' guidance_rescale); default as "
        "comicgen render: 0.7 for a zero-terminal-SNR model such as this one, else 0",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--vae-samples", type=int, default=256)
    ap.add_argument(
        "--without-facing",
        action="store_true",
        help="captions without the 'facing ...' words (the first generation's captions; a "
        "model that does not know the word reads it as an end token)",
    )
    ap.add_argument(
        "--faces",
        default="auto",
        help="the face pass (comicgen render's [render] faces): auto (the default, as the "
        "render: the model's faces/ folder, if it has one), none, own (the model itself), "
        "a folder, or truth / truth-vae (the pass's ceiling: the world's own faces, raw or "
        "through the VAE, pasted as the pass pastes)",
    )
    ap.add_argument(
        "--face-strength",
        type=float,
        default=FACE_STRENGTH,
        help="the face pass's image-to-image strength (comicgen's [render] face_strength)",
    )
    ap.add_argument(
        "--face-window",
        type=lambda v: tuple(float(x) for x in v.split(",")),
        default=None,
        help="the face pass's paste window INNER,OUTER (fractions of the crop's half-side)",
    )
    ap.add_argument("--grid", type=Path, default=None, help="also write the samples grid PNG here")
    ap.add_argument(
        "--failures", type=Path, default=None, help="write a grid of the first misread panels here"
    )
    args = ap.parse_args(argv)
    if args.bucket_samples is None:
        args.bucket_samples = max(1, args.samples // 4)

    t = time.time()
    pipe = load_pipeline(args.model, args.device)
    if args.guidance_rescale is None:
        from comicgen.painter import recommended_guidance_rescale

        args.guidance_rescale = recommended_guidance_rescale(pipe.scheduler.config)
    run = (args.seed, args.steps, args.guidance, args.batch, args.guidance_rescale)
    facing = not args.without_facing
    faces = face_painter(pipe, args.faces, args.model, args.face_strength, args.face_window)
    print(f"face pass: {'none' if faces is None else f'{faces.folder}, strength {faces.strength}'}")
    acc, by_count, misread, hat_errors = adherence(
        pipe, args.samples, *run, facing=facing, faces=faces
    )
    dt = time.time() - t
    print(
        f"painted and read {args.samples} panels ({args.steps} steps, "
        f"guidance {args.guidance}, rescale {args.guidance_rescale}) in {dt:.1f}s"
    )
    for a in ATTRIBUTES:
        print(f"  {a:10s} {acc[a]:.3f}")
    mean = float(np.mean([acc[a] for a in ATTRIBUTES]))
    print(
        f"  {'mean':10s} {mean:.3f}   (one character {by_count[1]:.3f}, "
        f"two characters {by_count[2]:.3f})"
    )
    if hat_errors:
        print("  hat errors: " + ", ".join(f"{k} {v}" for k, v in hat_errors.most_common()))
    buckets = {"square": (by_count["once"], acc["once"], args.samples)}
    for name in W.BUCKETS:
        if name == "square" or args.bucket_samples <= 0:
            continue
        t = time.time()
        b_acc, b_count, b_misread, _ = adherence(
            pipe, args.bucket_samples, *run, bucket=name, facing=facing, faces=faces
        )
        buckets[name] = (b_count["once"], b_acc["once"], args.bucket_samples)
        misread += b_misread
        print(
            f"  bucket {name:10s} {'x'.join(map(str, W.BUCKETS[name]))}: adherence "
            f"{float(np.mean([b_acc[a] for a in ATTRIBUTES])):.3f}, "
            f"expression {b_acc['expression']:.3f}, facing {b_acc['facing']:.3f}, "
            f"each character once {b_acc['once']:.3f} ({args.bucket_samples} panels, "
            f"{time.time() - t:.1f}s)"
        )
    print(
        "  per bucket, each character counted once: "
        + ", ".join(f"{k} {v[0]:.3f}" for k, v in buckets.items())
    )
    lowest = min(v[0] for v in buckets.values())
    if args.failures and misread:
        W.caption_grid(
            [m[0] for m in misread[:24]], [m[1] for m in misread[:24]], cols=4, cell=192
        ).save(args.failures)
    if args.grid:
        sample_grid(pipe, args.seed, args.steps, args.guidance, args.guidance_rescale).save(
            args.grid
        )
        print(f"samples grid: {args.grid}")
    p = vae_psnr(pipe.vae, n=args.vae_samples)
    print(f"  vae reconstruction psnr {p:.2f} dB on {args.vae_samples} fresh renders")
    gain = upscale_gain_db()
    print(
        f"prompt_adherence={mean:.3f} vae_psnr={p:.2f} expression={acc['expression']:.3f} "
        f"facing={acc['facing']:.3f} buckets={lowest:.3f} upscale_gain_db={gain:.2f}"
    )


if __name__ == "__main__":
    main()
