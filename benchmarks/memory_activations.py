"""The activation terms of comicgen.memory's estimate against a measurement on the CPU.

Builds a family's U-Net or VAE with random weights (float32, on the CPU), runs one U-Net
call (batch 2: both guidance halves) or one VAE decode, and measures the peak of the
memory PyTorch allocates during it with ``torch.profiler`` (each operator's own
allocations less its frees, summed in order; a temporary freed inside one operator is
not seen). Attention is forced to the flash kernel, which (like CUDA's efficient kernels)
never holds the score matrix. No GPU needed; the weights need RAM (SD 1.5's U-Net 3.4
GB, SDXL's 10.3 GB)::

    python benchmarks/memory_activations.py --part unet --family sd15 --sides 256,512
    python benchmarks/memory_activations.py --part vae --sides 128,256,512
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def peak_of(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.events() if e.self_cpu_memory_usage != 0),
        key=lambda e: e.time_range.start,
    )
    live = peak = 0
    for event in events:
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("unet", "vae"), default="unet")
    ap.add_argument("--family", choices=("sd15", "sd21", "sdxl"), default="sd15")
    ap.add_argument("--sides", default="256,512", help="panel sides in pixels")
    args = ap.parse_args(argv)

    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from comicgen.memory import MemoryPlan, unet_activations, vae_activations
    from comicgen.modelsize import _VAE, FAMILIES

    torch.set_num_threads(1)
    torch.manual_seed(0)
    plan = MemoryPlan("auto", "full", "cuda", "float32")
    title, unet_config, vae_side, _texts = FAMILIES[args.family]
    if args.part == "unet":
        model = UNet2DConditionModel(**unet_config).eval()
    else:
        title = "SD VAE"
        model = AutoencoderKL(**{**_VAE, "sample_size": vae_side}).eval()
    config = dict(model.config)
    for side in (int(s) for s in args.sides.split(",")):
        latent = side // 8
        if args.part == "unet":
            x = torch.randn(2, 4, latent, latent)
            context = torch.randn(2, 77, config["cross_attention_dim"])
            kw = {}
            if config.get("addition_embed_type") == "text_time":
                kw["added_cond_kwargs"] = {
                    "text_embeds": torch.randn(2, 1280),
                    "time_ids": torch.randn(2, 6),
                }

            def call(x=x, context=context, kw=kw):
                return model(x, torch.tensor([500, 500]), context, **kw)

            estimate = unet_activations(config, latent, 2, plan, False) * 4
        else:
            z = torch.randn(1, 4, latent, latent)

            def call(z=z):
                return model.decode(z)

            estimate = vae_activations(config, side) * 4
        begin = time.perf_counter()
        with torch.inference_mode(), sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            measured = peak_of(call)
        print(
            f"{title} {'U-Net step' if args.part == 'unet' else 'decode'} at {side} px, "
            f"float32: measured {measured / 2**20:.1f} MiB, "
            f"estimated {estimate / 2**20:.1f} MiB ({time.perf_counter() - begin:.0f} s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
