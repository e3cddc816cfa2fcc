"""Evaluate the bundled model: ``python -m toyworld.evaluate --samples N``.

Paints N panels from random full captions (clause order shuffled) with the saved scheduler,
20 steps and the pipeline's default guidance, reads them back with the attribute reader and
prints the per-attribute prompt adherence (shape, body colour, hat, sky, ground, props,
position, shot) and their mean, then the VAE's reconstruction PSNR on fresh renders.
The last line is ``prompt_adherence=X vae_psnr=Y``.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np

from comicgen.bundled import TOYWORLD_DIR
from toyworld import reader as R
from toyworld import world as W

DEFAULT_MODEL = TOYWORLD_DIR
ATTRIBUTES = ("shape", "color", "hat", "sky", "ground", "prop", "position", "shot")
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
):
    """Paint one 64x64 image per prompt (seeded per image); ``guidance_rescale`` None is
    the model's recommendation, as in ``comicgen render``."""
    import torch

    from comicgen.painter import recommended_guidance_rescale

    if guidance_rescale is None:
        guidance_rescale = recommended_guidance_rescale(pipe.scheduler.config)

    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    out = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i : i + batch]]
        res = pipe(
            prompts[i : i + batch],
            num_inference_steps=steps,
            guidance_scale=guidance,
            guidance_rescale=guidance_rescale,
            generator=gens,
            height=size,
            width=size,
        )
        out += res.images
    return out


def eval_scenes(n: int, seed: int) -> list[tuple[W.Scene, str]]:
    rng = random.Random(f"evaluate:{seed}")
    items = []
    for _ in range(n):
        scene = W.sample_scene(rng, sheet_fraction=0.0)
        items.append((scene, W.caption(scene, rng, drop=0.0)))
    return items


def adherence(
    pipe,
    n: int,
    seed: int = 0,
    steps: int = 20,
    guidance: float = DEFAULT_GUIDANCE,
    batch: int = 16,
    guidance_rescale: float | None = None,
):
    """Per-attribute accuracy of painted panels read back; also the mean score by number of
    characters, the misread panels (image, caption and reading) and the hat errors by kind
    (:func:`hat_error`)."""
    items = eval_scenes(n, seed)
    seeds = [seed * 100000 + i for i in range(n)]
    images = paint(pipe, [c for _, c in items], seeds, steps, guidance, batch, guidance_rescale)
    hits: dict[str, list[bool]] = {a: [] for a in ATTRIBUTES}
    by_count: dict[int, list[float]] = {1: [], 2: []}
    misread = []
    hat_errors: Counter[str] = Counter()
    for (scene, cap), img in zip(items, images, strict=False):
        got, want = R.read(img), R.truth(scene)
        row = []
        for a in ("sky", "ground", "prop", "shot", "position"):
            ok = getattr(got, a) == getattr(want, a)
            hits[a].append(ok)
            row.append(ok)
        for wc in want.characters:
            gc = got.character(wc.position)
            for a in ("shape", "color", "hat"):
                ok = gc is not None and getattr(gc, a) == getattr(wc, a)
                hits[a].append(ok)
                row.append(ok)
            if gc is None or gc.hat != wc.hat:
                hat_errors[hat_error(wc, gc, want)] += 1
        by_count[len(scene.characters)].append(float(np.mean(row)))
        if not all(row):
            seen = ", ".join(
                f"{c.color} {c.shape} hat {c.hat} {c.position}" for c in got.characters
            )
            misread.append(
                (img, f"{cap} || READ: {got.shot}, {got.sky}, {got.ground}, {got.prop}; {seen}")
            )
    acc = {a: float(np.mean(v)) for a, v in hits.items()}
    counts = {k: float(np.mean(v)) if v else float("nan") for k, v in by_count.items()}
    return acc, counts, misread, hat_errors


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


def vae_psnr(vae, n: int = 256, seed: int = 999) -> float:
    """Reconstruction PSNR (dB) of ``vae`` on ``n`` fresh renders (scenes and sheets)."""
    import torch

    imgs = np.stack([np.asarray(W.render(W.sample_scene(W.scene_rng(seed, i)))) for i in range(n)])
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    dtype = next(vae.parameters()).dtype
    recs = []
    with torch.no_grad():
        for i in range(0, n, 64):
            xb = x[i : i + 64].to(vae.device, dtype)
            recs.append(vae.decode(vae.encode(xb).latent_dist.mode()).sample.float().cpu())
    rec = torch.cat(recs).clamp(-1, 1)
    rec8 = ((rec + 1) * 127.5).round()
    mse = float(((rec8 - (x + 1) * 127.5) ** 2).mean())
    return 10 * math.log10(255.0**2 / max(mse, 1e-12))


def sample_captions() -> list[str]:
    """Captions for the samples grid: scenes, partial prompts, sheets, the example characters."""
    pip, bo, tri, momo = (W.describe(c) for _, c in W.EXAMPLE_CHARACTERS.values())
    return [
        f"{pip} on the left, wide shot, grass, day sky, a tree",
        f"{bo} looking sad in the center, close-up, sand, sunset sky, no props",
        f"{tri} on the right, wide shot, snow, night sky, a house",
        f"{pip} on the left, {bo} on the right, wide shot, grass, day sky, a house",
        f"{momo} looking surprised on the left, {tri} looking angry on the right, "
        "close-up, snow, sunset sky",
        f"model sheet, {pip} looking happy",
        f"model sheet, {tri} looking sad",
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
        "--samples", type=int, default=200, help="number of panels to paint and read back"
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
    ap.add_argument("--grid", type=Path, default=None, help="also write the samples grid PNG here")
    ap.add_argument(
        "--failures", type=Path, default=None, help="write a grid of the first misread panels here"
    )
    args = ap.parse_args(argv)

    t = time.time()
    pipe = load_pipeline(args.model, args.device)
    if args.guidance_rescale is None:
        from comicgen.painter import recommended_guidance_rescale

        args.guidance_rescale = recommended_guidance_rescale(pipe.scheduler.config)
    acc, by_count, misread, hat_errors = adherence(
        pipe, args.samples, args.seed, args.steps, args.guidance, args.batch, args.guidance_rescale
    )
    dt = time.time() - t
    print(
        f"painted and read {args.samples} panels ({args.steps} steps, "
        f"guidance {args.guidance}, rescale {args.guidance_rescale}) in {dt:.1f}s"
    )
    for a in ATTRIBUTES:
        print(f"  {a:9s} {acc[a]:.3f}")
    mean = float(np.mean([acc[a] for a in ATTRIBUTES]))
    print(
        f"  {'mean':9s} {mean:.3f}   (one character {by_count[1]:.3f}, "
        f"two characters {by_count[2]:.3f})"
    )
    if hat_errors:
        print("  hat errors: " + ", ".join(f"{k} {v}" for k, v in hat_errors.most_common()))
    if args.failures and misread:
        W.caption_grid(
            [m[0] for m in misread[:24]], [m[1] for m in misread[:24]], cols=4, cell=192
        ).save(args.failures)
    if args.grid:
        sample_grid(pipe, args.seed, args.steps, args.guidance, args.guidance_rescale).save(
            args.grid
        )
        print(f"samples grid: {args.grid}")
    p = vae_psnr(pipe.vae, args.vae_samples)
    print(f"  vae reconstruction psnr {p:.2f} dB on {args.vae_samples} fresh renders")
    print(f"prompt_adherence={mean:.3f} vae_psnr={p:.2f}")


if __name__ == "__main__":
    main()
