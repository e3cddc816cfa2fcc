"""Speed of the bundled toy-world model on the CPU.

Times one 64x64 panel with 20 DDIM steps and classifier-free guidance (median of several
runs) and, for reference, the per-image time in a batch of 16. Target: under 1 s per panel.

    python benchmarks/toyworld_speed.py [--runs 7] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import DDIMScheduler

from toyworld.evaluate import load_pipeline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_pipeline(device="cpu")
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    prompt = "a red circle character with a blue hat on the left, wide shot, grass, day sky, a tree"

    def panel(n: int = 1) -> float:
        g = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        pipe(
            [prompt] * n,
            num_inference_steps=args.steps,
            guidance_scale=7.5,
            generator=g,
            height=64,
            width=64,
        )
        return time.perf_counter() - t

    panel()  # warm-up
    times = [panel() for _ in range(args.runs)]
    med = statistics.median(times)
    batch = panel(16) / 16
    print(f"torch threads: {torch.get_num_threads()}")
    print(
        f"one 64x64 panel, {args.steps} DDIM steps + CFG: median {med:.3f}s "
        f"(min {min(times):.3f}s, max {max(times):.3f}s, {args.runs} runs)"
    )
    print(f"in a batch of 16: {batch:.3f}s per panel")
    print(f"ratio to the 1 s target: {med / 1.0:.2f}")


if __name__ == "__main__":
    main()
