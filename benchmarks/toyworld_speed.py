"""Speed of the bundled toy-world model on the CPU, per aspect-ratio bucket.

Times one panel of every bucket (square 64x64, wide, tall and the long strips; 20 DDIM
steps with classifier-free guidance, median of several runs) side by side with the 64x64
panel, the per-image time in a batch of 16 at 64x64, the face pass's cost per character
(``comicgen.faces``, where the bundled model ships a face model; plain, and with the
character's sheet through the sheet-trained face U-Net) and the upscale stage's
cost per panel (``comicgen.upscale.load_upscaler("bundled:toyworld-x4")`` where it exists).

    python benchmarks/toyworld_speed.py [--runs 7] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import DDIMScheduler

from toyworld.evaluate import load_pipeline
from toyworld.world import BUCKETS


def median_seconds(call, runs: int) -> float:
    """The median wall time of ``call()`` over ``runs`` calls."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--upscaler", default="bundled:toyworld-x4", help="upscaler spec to time")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_pipeline(device="cpu")
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    prompt = "a red circle character with a blue hat on the left, wide shot, grass, day sky, a tree"

    def panel(n: int = 1, width: int = 64, height: int = 64):
        g = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        out = pipe(
            [prompt] * n,
            num_inference_steps=args.steps,
            guidance_scale=7.5,
            generator=g,
            height=height,
            width=width,
        )
        return time.perf_counter() - t, out.images[0]

    panel()  # warm-up
    print(f"torch threads: {torch.get_num_threads()}")
    base = None
    image = None
    for name, (w, h) in BUCKETS.items():
        runs = [panel(1, w, h) for _ in range(args.runs)]
        times = [t for t, _ in runs]
        med = statistics.median(times)
        base = base or med
        image = image or runs[0][1]
        print(
            f"{name:10s} {w:3d}x{h:<3d} panel, {args.steps} DDIM steps + CFG: median "
            f"{med:.3f}s (min {min(times):.3f}s, max {max(times):.3f}s, {args.runs} runs), "
            f"{med / base:.2f}x the 64x64 panel"
        )
    batch = panel(16)[0] / 16
    print(f"in a batch of 16 (64x64): {batch:.3f}s per panel")
    print(f"ratio to the 1 s target (64x64): {base / 1.0:.2f}")
    faces(args, pipe, image, base)
    try:
        from comicgen.upscale import load_upscaler
    except ImportError:
        print("upscale: not available (comicgen.upscale is not there)")
        return
    up = load_upscaler(args.upscaler, device="cpu")
    if up is None:
        print(f"upscale: {args.upscaler} loads no upscaler")
        return
    big = up.upscale(image)  # warm-up
    med = median_seconds(lambda: up.upscale(image), args.runs)
    print(
        f"upscale {image.width}x{image.height} -> {big.width}x{big.height} ({args.upscaler}): "
        f"median {med:.3f}s per panel ({med / base:.2f}x the 64x64 panel)"
    )


def faces(args, pipe, image, base: float) -> None:
    """The face pass's cost per character (the bundled face model, same steps)."""
    from comicgen.bundled import TOYWORLD_DIR
    from comicgen.faces import Face, FacePainter
    from comicgen.infusion.refs import position_box

    if not (TOYWORLD_DIR / "faces" / "unet").is_dir():
        print("face pass: the bundled model ships no face model")
        return
    painter = FacePainter(pipe, TOYWORLD_DIR / "faces")
    face = Face("a red circle character with a blue hat looking sad", position_box("left"))
    kw = dict(seed=0, steps=args.steps, guidance=7.5)
    painter.repaint(image, [face], **kw)  # warm-up
    med = median_seconds(lambda: painter.repaint(image, [face], **kw), args.runs)
    print(
        f"face pass, one character (strength {painter.strength}, "
        f"{int(args.steps * painter.strength)} steps + CFG): median {med:.3f}s "
        f"({med / base:.2f}x the 64x64 panel)"
    )
    if painter.infusion is None:
        print("face pass with the sheet: the face model has no sheet-trained U-Net")
        return
    from PIL import Image

    from comicgen.infusion import CharacterRefs

    sheet = Image.new("RGB", (64, 64), "white")  # one view of a red circle on white
    sheet.paste((200, 30, 30), (20, 14, 44, 58))
    refs = [CharacterRefs("pip", [sheet], description="a red circle character", key="speed")]
    infused = dict(kw, refs=refs, infusion=painter.infusion)
    painter.repaint(image, [face], **infused)  # warm-up (and the sheet's cached features)
    med = median_seconds(lambda: painter.repaint(image, [face], **infused), args.runs)
    strength = painter.infused_strength or painter.strength
    print(
        f"face pass with the sheet, one character (strength {strength}, "
        f"{int(args.steps * strength)} steps + CFG, the sheet's features cached): median "
        f"{med:.3f}s ({med / base:.2f}x the 64x64 panel)"
    )


if __name__ == "__main__":
    main()
