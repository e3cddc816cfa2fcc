"""Does the U-Net listen to a word?  ``python -m toyworld.probe [--model FOLDER]``.

Two measures that need no sampling, so they show a word being learned long before the
painted panels do:

- **sensitivity**: how far the U-Net's prediction moves (relative L2 norm, on fixed noisy
  latents at timesteps 900 / 600 / 300) when one word of a caption changes — an
  expression, the facing, the body colour, the shape, the hat. A word the model ignores
  moves it by ~0;
- **word distances**: how far the text encoder's output for the caption moves when its
  expression word is swapped for each other one (relative L2 norm), a 4 x 4 table: two
  expressions the text encoder barely tells apart are two the U-Net cannot follow,
  however it is trained (the face model's happy / sad: model card);
- **denoiser as classifier**: for fresh one-character scenes, the caption with each
  possible expression (and facing) is tried on the scene's own noised latent (8
  timesteps, the same noise for every candidate); the candidate with the lowest
  denoising error is the model's reading. Chance is 1/4 for expression and 1/3 for
  facing; a model that binds the words reads its own training captions far above it.

``--checkpoint`` takes a ``toyworld.train`` checkpoint's EMA weights instead of the
folder's U-Net and text encoder (to watch a run).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

BASE = (
    "a red circle character with no hat looking happy facing ahead in the center, close-up, "
    "day sky, grass, no props"
)
CHANGES = {
    "expression": ("looking happy", "looking sad"),
    "facing": ("facing ahead", "facing left"),
    "colour": ("red circle", "blue circle"),
    "shape": ("circle character", "square character"),
    "hat": ("no hat", "a green hat"),
}


def load(model: Path | None, checkpoint: Path | None = None):
    import torch

    from toyworld.evaluate import load_pipeline

    pipe = load_pipeline(model)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        pipe.unet.load_state_dict(state["models"]["ema_unet"])
        pipe.text_encoder.load_state_dict(state["models"]["ema_text"])
    return pipe


def _embed(pipe, captions: list[str]):
    ids = pipe.tokenizer(
        captions,
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    return pipe.text_encoder(ids)[0]


def sensitivity(pipe, timesteps=(900, 600, 300), seed: int = 0) -> dict[str, dict[int, float]]:
    """{word kind: {timestep: |Δ prediction| / |prediction|}} for one changed word."""
    import torch

    channels, size = pipe.unet.config.in_channels, pipe.unet.config.sample_size
    x = torch.randn(4, channels, size, size, generator=torch.Generator().manual_seed(seed))
    out: dict[str, dict[int, float]] = {k: {} for k in CHANGES}
    with torch.no_grad():
        base = _embed(pipe, [BASE]).expand(4, -1, -1)
        for t in timesteps:
            ts = torch.full((4,), t)
            p0 = pipe.unet(x, ts, base).sample
            for kind, (old, new) in CHANGES.items():
                e = _embed(pipe, [BASE.replace(old, new)]).expand(4, -1, -1)
                p = pipe.unet(x, ts, e).sample
                out[kind][t] = float((p - p0).norm() / p0.norm())
    return out


def word_distances(pipe) -> dict[tuple[str, str], float]:
    """{(expression a, expression b): |E(caption with b) - E(caption with a)| / |E(caption
    with a)|} of the text encoder's output ``E``, for the :data:`BASE` caption."""
    import torch

    from toyworld import world as W

    with torch.no_grad():
        emb = {e: _embed(pipe, [BASE.replace("happy", e)])[0] for e in W.EXPRESSIONS}
    return {
        (a, b): float((emb[b] - emb[a]).norm() / emb[a].norm())
        for a in W.EXPRESSIONS
        for b in W.EXPRESSIONS
    }


def classify(pipe, n: int = 60, seed: int = 11) -> dict[str, float]:
    """The denoiser-as-classifier reading of expression and facing on ``n`` fresh scenes."""
    import numpy as np
    import torch
    from diffusers import DDPMScheduler

    from toyworld import world as W
    from toyworld.evaluate import eval_scenes

    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    items = [(s, c) for s, c in eval_scenes(4 * n, seed) if len(s.characters) == 1][:n]
    pixels = np.stack([np.asarray(W.render(s)) for s, _ in items])
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    gen = torch.Generator().manual_seed(seed)
    ts = torch.linspace(100, 700, 8).long()
    hits: dict[str, list[bool]] = {"expression": [], "facing": []}
    options = {
        "expression": (r"looking \w+", "looking {}", W.EXPRESSIONS),
        "facing": (r"facing \w+", "facing {}", W.FACINGS),
    }
    with torch.no_grad():
        latents = pipe.vae.encode(x).latent_dist.mode() * pipe.vae.config.scaling_factor
        for (scene, caption), lat in zip(items, latents, strict=True):
            lat = lat[None].expand(len(ts), -1, -1, -1)
            noise = torch.randn(lat.shape, generator=gen)
            noisy = sched.add_noise(lat, noise, ts)
            if sched.config.prediction_type == "v_prediction":
                target = sched.get_velocity(lat, noise, ts)
            else:
                target = noise
            want = scene.characters[0]
            for kind, (pattern, form, values) in options.items():
                errors = []
                for value in values:
                    text = re.sub(pattern, form.format(value), caption)
                    e = _embed(pipe, [text]).expand(len(ts), -1, -1)
                    errors.append(float(((pipe.unet(noisy, ts, e).sample - target) ** 2).mean()))
                best = values[int(np.argmin(errors))]
                hits[kind].append(best == getattr(want, kind))
    return {k: float(np.mean(v)) for k, v in hits.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m toyworld.probe", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--model", type=Path, default=None, help="pipeline folder (default: bundled)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="a toyworld.train checkpoint")
    ap.add_argument("--scenes", type=int, default=60, help="scenes for the classifier")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load(args.model, args.checkpoint)
    for kind, by_t in sensitivity(pipe).items():
        print(f"  {kind:10s} " + "  ".join(f"t={t}: {v:.4f}" for t, v in by_t.items()))
    from toyworld import world as W

    dist = word_distances(pipe)
    print("  text encoder, expression words apart: " + " ".join(f"{e:>9s}" for e in W.EXPRESSIONS))
    for a in W.EXPRESSIONS:
        row = " ".join(f"{dist[a, b]:9.3f}" for b in W.EXPRESSIONS)
        print(f"  {a:>38s} {row}")
    acc = classify(pipe, args.scenes)
    print(
        f"classifier: expression {acc['expression']:.3f} (chance 0.25), "
        f"facing {acc['facing']:.3f} (chance 0.33) on {args.scenes} scenes"
    )


if __name__ == "__main__":
    main()
