"""Per-panel time: plain text-to-image vs infusion (uncached) vs infusion (cached).

Two models, each measured side by side in one run (the variants take turns inside every
repeat, so a slower moment of the machine hits them alike):

(a) the bundled model at its native size (64x64), 20 steps;
(b) a U-Net with Stable Diffusion 1.5's full layer layout (and SD 1.5's VAE and a
    12-layer CLIP text encoder), random weights, 256x256, a few steps.

Infusion uses one character with 1, 2 and 4 reference images. "uncached": every panel
runs the reference rows through the U-Net beside it (no FeatureCache). "cached": the
character's features were stored by an earlier panel, so a panel costs one U-Net pass
per step. Prints the median seconds per panel and the ratios to plain; the last line is
``infused_cached/plain=R1 infused_uncached/plain=R2`` for the bundled model with 4
reference images (the largest set measured).

    python benchmarks/speed.py                   # CPU: about 12 minutes
    python benchmarks/speed.py --device cuda --sd15-steps 20 --repeats 5
    python benchmarks/speed.py --skip-sd15 --levels  # also each level alone, cached
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

from comicgen.infusion import CharacterRefs, FeatureCache, infused
from comicgen.models import inspect_model
from comicgen.settings import InfusionSettings, panel_infusion

ROOT = Path(__file__).resolve().parent.parent


def sd15_pipeline(device: str, dtype):
    """SD 1.5's layer layout at full width, random weights (fixed seed), our tokenizer."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from tests.support import tiny

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
        scaling_factor=0.18215,
    )
    tokenizer = tiny.tiny_tokenizer()
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=tiny.vocab_size(),
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            bos_token_id=tiny.vocab_size() - 2,
            eos_token_id=tiny.vocab_size() - 1,
            pad_token_id=tiny.vocab_size() - 1,
        )
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipe.to(device, dtype)


def bundled_pipeline(device: str, dtype):
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(
        str(ROOT / "comicgen" / "bundled" / "toyworld"),
        torch_dtype=dtype,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).to(device)


def reference_images(count: int) -> tuple[list[Image.Image], str]:
    """``count`` views of an example character (the repo's characters/pip)."""
    folder = ROOT / "characters" / "pip"
    files = sorted(folder.glob("*.png"))[:count]
    if len(files) < count:
        raise SystemExit(f"need {count} images in {folder}")
    return [Image.open(f).convert("RGB") for f in files], "a red circle character"


def run(pipe, size: int, steps: int, seed: int, refs=None, cache=None, settings=None):
    generator = torch.Generator("cpu").manual_seed(seed)
    kwargs = dict(
        prompt="a character on the left, wide shot, grass, day sky",
        height=size,
        width=size,
        num_inference_steps=steps,
        guidance_scale=5.0,
        generator=generator,
    )
    if refs is None:
        return pipe(**kwargs).images[0]
    with infused(
        pipe,
        refs,
        settings,
        height=size,
        width=size,
        num_inference_steps=steps,
        guidance_scale=5.0,
        seed=seed,
        cache=cache,
    ):
        return pipe(**kwargs).images[0]


def timed(*args) -> float:
    """Seconds for one ``run(*args)``."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    run(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(
    name: str,
    pipe,
    size: int,
    steps: int,
    counts: list[int],
    repeats: int,
    warmup: bool = True,
    settings: InfusionSettings | None = None,
    levels: dict[str, InfusionSettings] | None = None,
):
    """Median seconds per panel of every variant; ``levels``: more settings, each measured
    cached with the largest reference set (name -> settings)."""
    settings = settings or InfusionSettings()
    variants: dict[str, object] = {"plain": None}
    refs_of: dict[int, list[CharacterRefs]] = {}
    for n in counts:
        images, description = reference_images(n)
        refs = [
            CharacterRefs(
                name="Pip",
                images=images,
                masks=None,
                description=description,
                position="left",
                key=f"pip-{n}",
            )
        ]
        refs_of[n] = refs
        variants[f"uncached-{n}"] = (refs, None, settings)
        variants[f"cached-{n}"] = (refs, FeatureCache(), settings)
    largest = max(counts)
    for level, level_settings in (levels or {}).items():
        variants[f"level-{level}"] = (refs_of[largest], FeatureCache(), level_settings)
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        # fill the caches of the cached variants (and, with warmup, run the others once)
        for value in variants.values():
            refs, cache, used = value if value else (None, None, None)
            if warmup or cache is not None:
                run(pipe, size, steps, 999, refs, cache, used)
        times: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(repeats):
            for key, value in variants.items():
                refs, cache, used = value if value else (None, None, None)
                times[key].append(timed(pipe, size, steps, r, refs, cache, used))
    medians = {k: statistics.median(v) for k, v in times.items()}
    plain = medians["plain"]
    print(f"\n{name}: {size}x{size}, {steps} steps, guidance 5.0, median of {repeats}")
    print("| variant | refs | s/panel | / plain |\n|---|---|---|---|")
    print(f"| plain | 0 | {plain:.3f} | 1.00 |")
    for n in counts:
        for kind in ("uncached", "cached"):
            m = medians[f"{kind}-{n}"]
            print(f"| infused {kind} | {n} | {m:.3f} | {m / plain:.2f} |")
    for level in levels or {}:
        m = medians[f"level-{level}"]
        print(f"| `{level}` alone, cached | {largest} | {m:.3f} | {m / plain:.2f} |")
    return medians


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--refs", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--bundled-steps", type=int, default=20)
    ap.add_argument("--sd15-steps", type=int, default=2)
    ap.add_argument("--sd15-size", type=int, default=256)
    ap.add_argument("--sd15-repeats", type=int, default=1)
    ap.add_argument("--skip-sd15", action="store_true")
    ap.add_argument(
        "--levels",
        action="store_true",
        help="(a) also measures each infusion level of the bundled model's settings alone, "
        "cached, with the largest reference set: what each level costs",
    )
    ap.add_argument(
        "--infusion",
        default="",
        help='infusion settings as JSON, e.g. \'{"levels": ["attention"]}\' (default: defaults)',
    )
    args = ap.parse_args()
    given = InfusionSettings(**json.loads(args.infusion)) if args.infusion else InfusionSettings()
    # the bundled model's panels are painted with the settings its infusion U-Net came with
    # (comicgen.json), under what --infusion sets: as comicgen render does
    bundled_settings = panel_infusion(inspect_model("bundled:toyworld").infusion, given)
    dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(
        f"device: {args.device} ({device_name}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"bundled:toyworld infusion levels: {', '.join(bundled_settings.levels)}")
    bundled = measure(
        "(a) bundled:toyworld",
        bundled_pipeline(args.device, dtype),
        64,
        args.bundled_steps,
        args.refs,
        args.repeats,
        settings=bundled_settings,
        levels={
            level: bundled_settings.model_copy(update={"levels": [level]})
            for level in bundled_settings.levels
        }
        if args.levels and len(bundled_settings.levels) > 1
        else None,
    )
    if not args.skip_sd15:
        measure(
            "(b) SD 1.5 layout, random weights",
            sd15_pipeline(args.device, dtype),
            args.sd15_size,
            args.sd15_steps,
            args.refs,
            args.sd15_repeats,
            warmup=False,
            settings=given,
        )
    n = max(args.refs)
    print(
        f"infused_cached/plain={bundled[f'cached-{n}'] / bundled['plain']:.2f} "
        f"infused_uncached/plain={bundled[f'uncached-{n}'] / bundled['plain']:.2f}"
    )


if __name__ == "__main__":
    main()
