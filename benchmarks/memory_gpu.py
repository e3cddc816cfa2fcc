"""Measured peak GPU memory per memory plan, beside comicgen.memory's estimate.

Needs a CUDA GPU (nothing here has been run on one yet). For each ``[model] memory``
level it loads the model with that plan, paints one plain panel and one infused panel
(4 sheet views, uncached), and prints ``torch.cuda.max_memory_allocated`` against the
estimate::

    python benchmarks/memory_gpu.py --model stable-diffusion-v1-5/stable-diffusion-v1-5
    python benchmarks/memory_gpu.py --model stabilityai/stable-diffusion-xl-base-1.0 --size 1024
"""

from __future__ import annotations

import argparse
import gc
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def sheet():
    from PIL import Image

    image = Image.new("RGB", (256, 256), (240, 240, 240))
    image.paste((200, 40, 40), (80, 40, 176, 232))
    return image


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, help="panel side (default: the model's native size)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--levels", default="full,tiled,offload,sequential")
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("memory_gpu: needs a CUDA GPU; none here", file=sys.stderr)
        return 2
    from comicgen.infusion import CharacterRefs
    from comicgen.memory import GIB, apply_plan, estimate_peak, level_plan
    from comicgen.models import inspect_model
    from comicgen.modelsize import size_of_pipeline
    from comicgen.painter import Painter, PaintJob, _load_pipeline
    from comicgen.settings import InfusionSettings

    info = inspect_model(args.model)
    side = args.size or info.native_size
    refs = [CharacterRefs("c", [sheet()] * 4, None, "a character", position="center")]
    print(f"{args.model}, {side} px, {args.steps} steps, float16")
    print("level        measured plain / infused    estimated plain / infused")
    for level in args.levels.split(","):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        pipe = _load_pipeline(info.source, torch.float16)
        painter = Painter(pipe, info, "cuda", torch.float16)
        size = size_of_pipeline(pipe)
        plan = level_plan(_base(side), level, "cuda")
        apply_plan(pipe, plan, "cuda")
        painter.memory = plan
        pipe.set_progress_bar_config(disable=True)
        measured = []
        for characters in ([], refs):
            torch.cuda.reset_peak_memory_stats()
            job = PaintJob("a character, a tree", side, side, args.steps, 5.0, seed=1)
            painter.paint(replace(job, characters=characters, infusion=InfusionSettings()))
            measured.append(torch.cuda.max_memory_allocated() / GIB)
        estimated = [estimate_peak(size, plan, side, references=r) / GIB for r in (0, 4)]
        print(
            f"{level:<12} {measured[0]:6.2f} / {measured[1]:6.2f} GiB"
            f"          {estimated[0]:6.2f} / {estimated[1]:6.2f} GiB"
        )
        del painter, pipe
        gc.collect()
    return 0


def _base(side: int):
    from comicgen.memory import MemoryPlan

    return MemoryPlan("auto", "full", "cuda", "float16", side=side)


if __name__ == "__main__":
    sys.exit(main())
