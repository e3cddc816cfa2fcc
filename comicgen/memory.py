"""Memory plans for GPUs with little memory: ``[model] memory = "auto" | "low" | "lowest"``.

A :class:`MemoryPlan` says how a pipeline is placed and trimmed: float16 weights, VAE
tiling, attention slicing, model CPU offload (only the component in use on the GPU) or
sequential CPU offload (only the layer in use), and how much of the reference-feature
cache Infusion may keep on the GPU. :func:`plan_memory` is a pure function of the device,
its memory and the model's size (parameter counts and layer layout, :class:`ModelSize`);
:func:`apply_plan` applies a plan to a loaded pipeline.

Peak memory is *estimated* (:func:`estimate_peak`): the weights the plan keeps on the
device plus the largest activations of one denoising call (the U-Net's skip features and
its working tensors at the busiest level; with both guidance halves) and of the VAE's
decoding. ``python -m comicgen.memory --table`` prints the estimates for SD 1.5, SD 2.1
and SDXL (docs/memory.md); they were computed, not measured on a GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from comicgen.modelsize import FAMILIES, ModelSize, family_size, model_size, size_of_pipeline

SETTINGS = ("auto", "low", "lowest")
# the plan levels, from the fastest to the leanest
LEVELS = ("full", "tiled", "offload", "sequential")
LEVEL_CACHE_MB = {"full": 512, "tiled": 256, "offload": 128, "sequential": 0, "cpu": 512}
VAE_TILE = 512  # pixels: the tile side the memory plans decode in (diffusers: the VAE's own)
USABLE = 0.85  # of the device's memory a plan may fill ...
RESERVED = 0.5 * 1024**3  # ... less this (CUDA context, allocator slack, the desktop)
GIB = 1024**3


@dataclass(frozen=True)
class MemoryPlan:
    setting: str  # auto | low | lowest
    level: str  # cpu | full | tiled | offload | sequential
    device: str
    dtype: str  # what dtype = "auto" means on this device
    attention_slicing: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False
    vae_tile: int | None = None  # tile side in pixels; None: the VAE's own sample size
    offload: str = "none"  # none | model | sequential
    cache_gpu_mb: int = 512  # Infusion's reference features kept on the GPU, at most
    total_bytes: int | None = None  # the device's memory
    peak_bytes: int | None = None  # the estimate for this plan
    side: int | None = None  # the panel side the estimate is for
    note: str = ""

    @property
    def cache_gpu_bytes(self) -> int:
        return self.cache_gpu_mb * 1024**2

    def describe(self) -> str:
        """One line: what the plan turns on, and its estimate."""
        if self.level == "cpu" and not (self.vae_tiling or self.attention_slicing):
            parts = [f"{self.dtype}, nothing changed on the CPU"]
        else:
            parts = [self.dtype]
            if self.offload != "none":
                parts.append(f"{self.offload} CPU offload")
            if self.vae_tiling:
                parts.append(f"VAE tiles of {self.vae_tile or 'its own'} px")
            if self.vae_slicing:
                parts.append("VAE slicing")
            if self.attention_slicing:
                parts.append("attention slicing")
            if self.device != "cpu":
                parts.append(f"feature cache ≤ {self.cache_gpu_mb} MiB on the GPU")
        text = f"memory = {self.setting} → {self.level}: " + ", ".join(parts)
        if self.peak_bytes is not None and self.side:
            text += f"; estimated peak {human(self.peak_bytes)} at {self.side} px"
            if self.total_bytes and self.device != "cpu":
                text += f" (budget {human(budget(self.total_bytes))})"
        return text + (f"; {self.note}" if self.note else "")


def human(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / 1024**2:.0f} MiB"


def budget(total_bytes: int) -> int:
    return max(0, int(total_bytes * USABLE - RESERVED))


# -- planning (pure) ------------------------------------------------------------------------


def plan_memory(
    setting: str,
    device: str,
    total_bytes: int | None,
    size: ModelSize | None,
    *,
    side: int | None = None,
    dtype_bytes: int = 2,
) -> MemoryPlan:
    """The plan for ``setting`` on ``device`` (``cpu``, ``cuda[:N]``, ``mps``) with
    ``total_bytes`` of memory, for a model of ``size`` painting ``side``-pixel panels
    (None: the model's native size). ``auto`` on the CPU changes nothing; on a GPU it
    takes the fastest level whose estimated peak fits the budget; ``low`` is model CPU
    offload, ``lowest`` sequential offload (both need CUDA: elsewhere, VAE tiling)."""
    if setting not in SETTINGS:
        raise ValueError(f"memory = {setting!r}; expected one of {', '.join(SETTINGS)}")
    kind = device.split(":")[0]
    side = side or (size.native_size if size is not None else None)
    dtype = "float32" if kind == "cpu" else "float16"
    base = MemoryPlan(setting, "cpu", device, dtype, total_bytes=total_bytes, side=side)
    if kind == "cpu":
        if setting == "auto":
            return _with_estimate(base, size, side, 4)
        return _with_estimate(
            replace(base, vae_tiling=True, vae_tile=VAE_TILE, note="offload needs a CUDA GPU"),
            size,
            side,
            4,
        )
    if kind != "cuda":  # mps: one memory for CPU and GPU, offload would gain nothing
        levels = ["full", "tiled"]
    else:
        levels = list(LEVELS)
    if setting == "low":
        levels = [lv for lv in levels if LEVELS.index(lv) >= 2] or levels[-1:]
    elif setting == "lowest":
        levels = levels[-1:]
    plans = [_with_estimate(level_plan(base, lv, kind), size, side, dtype_bytes) for lv in levels]
    if setting != "auto":
        return plans[0]
    if size is None or total_bytes is None:
        return replace(plans[0], note="model size unknown: nothing trimmed")
    for plan in plans:
        if plan.peak_bytes is not None and plan.peak_bytes <= budget(total_bytes):
            return plan
    return replace(plans[-1], note="may still not fit: try a smaller [render] size")


def level_plan(base: MemoryPlan, level: str, kind: str) -> MemoryPlan:
    rank = LEVELS.index(level)
    return replace(
        base,
        level=level,
        vae_tiling=rank >= 1,
        vae_tile=VAE_TILE if rank >= 1 else None,
        # SDPA attention (torch 2 on CUDA) never holds the score matrix; slicing would make
        # it hold a slice of it, so it only helps where attention is computed plainly (MPS)
        attention_slicing=rank >= 1 and kind == "mps",
        offload={2: "model", 3: "sequential"}.get(rank, "none"),
        cache_gpu_mb=LEVEL_CACHE_MB[level],
    )


def _with_estimate(plan: MemoryPlan, size, side, dtype_bytes) -> MemoryPlan:
    if size is None or not side:
        return plan
    return replace(plan, peak_bytes=estimate_peak(size, plan, side, dtype_bytes))


def merge_explicit(plan: MemoryPlan, settings: Any) -> MemoryPlan:
    """The plan with ``[model]``'s own switches on top (each only adds)."""
    offload = plan.offload
    if getattr(settings, "cpu_offload", False) and offload == "none":
        offload = "model"
    cache = getattr(settings, "feature_cache_gpu_mb", None)
    return replace(
        plan,
        attention_slicing=plan.attention_slicing or settings.attention_slicing,
        vae_slicing=plan.vae_slicing or settings.vae_slicing,
        vae_tiling=plan.vae_tiling or settings.vae_tiling,
        offload=offload,
        cache_gpu_mb=plan.cache_gpu_mb if cache is None else cache,
    )


# -- estimates ------------------------------------------------------------------------------


def estimate_peak(
    size: ModelSize, plan: MemoryPlan, side: int, dtype_bytes: int = 2, references: int = 0
) -> int:
    """Estimated peak bytes on the device for one panel of ``side`` x ``side`` pixels
    (``references``: Infusion's uncached reference rows in the same U-Net call)."""
    b = dtype_bytes
    mps = plan.device.startswith("mps")
    batch = 2 + references  # both classifier-free-guidance halves
    unet_act = unet_activations(size.unet, side // size.vae_scale, batch, plan, mps) * b
    tile = (plan.vae_tile or size.vae.get("sample_size", side)) if plan.vae_tiling else side
    vae_b = 4 if size.vae_upcast else b
    vae_act = vae_activations(size.vae, min(side, tile)) * vae_b
    vae_w = size.params.get("vae", 0) * vae_b
    text_w = sum(n for name, n in size.params.items() if name.startswith("text_encoder"))
    if plan.offload == "sequential":
        weights = size.largest_layer * b
        return int(max(weights + unet_act, weights + vae_act))
    if plan.offload == "model":
        unet_w = size.params.get("unet", 0) * b
        return int(max(unet_w + unet_act, vae_w + vae_act, text_w * b))
    weights = size.total * b
    upcast = size.params.get("vae", 0) * (vae_b - b)  # the VAE's float32 copy while decoding
    return int(weights + max(unet_act, vae_act + upcast))


def unet_activations(config: dict, latent: int, batch: int, plan: MemoryPlan, mps: bool) -> int:
    """Elements alive at the U-Net's busiest moment: the skip features the down path
    keeps for the up path, plus the working tensors of the busiest block (a transformer
    block: residual, norms, the GEGLU feed-forward's 8C projection, its gate and product,
    about 22 values per channel and token — fitted to the SD 1.5 and SDXL U-Nets measured
    on the CPU, benchmarks/memory_activations.py; a resnet with its skip concatenated:
    about 6), plus, where attention is computed plainly, the score matrix."""
    channels = list(config.get("block_out_channels", (320, 640, 1280, 1280)))
    down = list(config.get("down_block_types", ()))
    heads = config.get("attention_head_dim", 8)
    heads = list(heads) if isinstance(heads, list | tuple) else [heads] * len(channels)
    layers = config.get("layers_per_block", 2)
    layers = layers[0] if isinstance(layers, list | tuple) else layers
    skips = channels[0] * latent * latent  # conv_in
    work = 0
    scores = 0
    for i, c in enumerate(channels):
        s = latent // 2**i
        tokens = s * s
        last = i == len(channels) - 1
        skips += c * tokens * layers + (0 if last else c * (s // 2) ** 2)
        attends = i < len(down) and "CrossAttn" in down[i]
        work = max(work, (22 if attends else 6) * c * tokens)
        if attends and (plan.attention_slicing or mps):
            rows = max(1, heads[i] // 2) if plan.attention_slicing else batch * heads[i]
            scores = max(scores, 2 * rows * tokens * tokens)
    return batch * (skips + work) + scores


def vae_activations(config: dict, side: int) -> int:
    """Elements alive while the VAE decodes ``side`` pixels: the busiest up level holds
    the upsampled input and its convolution (2 x the incoming channels) and a resnet's
    tensors (2 x its own), at its resolution."""
    channels = list(reversed(config.get("block_out_channels", (128, 256, 512, 512))))
    levels = len(channels)
    peak = 0
    for j, c in enumerate(channels):
        s = side // 2 ** (levels - 1 - j)
        incoming = channels[j - 1] if j else c
        peak = max(peak, s * s * (2 * incoming + 2 * c))
    return peak


def doctor_line(settings, base=None) -> tuple[bool, str]:
    """(fits, detail) for ``comicgen doctor``: the device's memory, the model's size and
    what ``settings.memory`` chooses there."""
    from comicgen.painter import pick_device

    device = pick_device(settings.device)
    total = device_memory(device)
    size = model_size(settings.name, base)
    plan = merge_explicit(plan_memory(settings.memory, device, total, size), settings)
    if settings.dtype != "auto":
        plan = replace(plan, dtype=settings.dtype)
    if size is not None:
        plan = _with_estimate(plan, size, plan.side, 4 if plan.dtype == "float32" else 2)
    what = "RAM" if device == "cpu" else "memory"
    head = f"{device}: {human(total)} {what}" if total else f"{device}: memory unknown"
    if size is not None:
        count = f"{size.total / 1e9:.2f} B" if size.total >= 1e9 else f"{size.total / 1e6:.0f} M"
        head += f"; model {count} parameters ({size.family})"
    fits = plan.peak_bytes is None or not total or plan.peak_bytes <= budget(total)
    return fits, f"{head}; {plan.describe()}"


# -- the device -----------------------------------------------------------------------------


def device_memory(device: str) -> int | None:
    """Total memory of ``device`` in bytes (the machine's RAM for ``cpu``), or None."""
    import torch

    kind = device.split(":")[0]
    try:
        if kind == "cuda":
            return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
        if kind == "mps":
            return int(torch.mps.recommended_max_memory())
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, RuntimeError, ValueError):
        return None


# -- applying a plan ------------------------------------------------------------------------


def apply_plan(pipe, plan: MemoryPlan, device: str) -> None:
    """Place ``pipe`` on ``device`` as ``plan`` says: offloaded (diffusers'
    ``enable_model_cpu_offload`` / ``enable_sequential_cpu_offload``, through Accelerate)
    or moved there whole; then attention slicing and VAE slicing and tiling."""
    if plan.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif plan.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if plan.attention_slicing:
        pipe.enable_attention_slicing()
    vae = getattr(pipe, "vae", None)
    if vae is None:
        return
    if plan.vae_slicing:
        vae.enable_slicing()
    if plan.vae_tiling:
        vae.enable_tiling()
        if plan.vae_tile and plan.vae_tile < getattr(vae, "tile_sample_min_size", 0):
            scale = 2 ** (len(vae.config.block_out_channels) - 1)
            vae.tile_sample_min_size = plan.vae_tile
            vae.tile_latent_min_size = plan.vae_tile // scale


def place(pipe, settings, device: str, side: int | None = None) -> MemoryPlan:
    """Plan for the loaded ``pipe`` by ``settings.memory`` (with ``[model]``'s own
    switches on top) and apply the plan; the painter's one call."""
    from comicgen.errors import ModelError

    total = device_memory(device) if not device.startswith("cpu") else None
    dtype = pipe.unet.dtype
    size = size_of_pipeline(pipe)
    plan = plan_memory(settings.memory, device, total, size, side=side, dtype_bytes=dtype.itemsize)
    plan = replace(merge_explicit(plan, settings), dtype=str(dtype).removeprefix("torch."))
    plan = _with_estimate(plan, size, plan.side, dtype.itemsize)
    if plan.offload != "none" and not device.startswith("cuda"):
        raise ModelError(
            f"model.cpu_offload needs a CUDA GPU, but the device is {device}",
            hint="set model.cpu_offload = false, or use --device cuda",
        )
    apply_plan(pipe, plan, device)
    return plan


# -- the table of docs/memory.md ------------------------------------------------------------

CARDS_GIB = (4, 6, 8, 12, 16, 24)


def table(references: int = 4) -> str:
    """Markdown: estimated peak memory per family and plan level, and what ``auto``
    chooses on cards of common sizes."""
    rows = [
        "| model | native size | parameters (U-Net / VAE / text) | fp32, all on GPU | "
        + " | ".join(f"fp16 {lv}" for lv in LEVELS)
        + f" | activations: U-Net step plain / infused ({references} views uncached) / VAE "
        "decode |",
        "|---|---|---|---|" + "---|" * (len(LEVELS) + 1),
    ]
    auto = [
        "| model | " + " | ".join(f"{g} GiB" for g in CARDS_GIB) + " |",
        "|---|" + "---|" * len(CARDS_GIB),
    ]
    for family, (title, _unet, _vae, _texts) in FAMILIES.items():
        size = family_size(family)
        side = size.native_size
        base = MemoryPlan("auto", "full", "cuda", "float16", side=side)
        cells = [_gib(estimate_peak(size, base, side, 4))]
        for level in LEVELS:
            cells.append(_gib(estimate_peak(size, level_plan(base, level, "cuda"), side)))
        latent = side // size.vae_scale
        acts = [
            unet_activations(size.unet, latent, 2 + r, base, False) * 2 for r in (0, references)
        ]
        acts.append(vae_activations(size.vae, side) * (4 if size.vae_upcast else 2))
        cells.append(" / ".join(_gib(a) for a in acts))
        text = sum(n for k, n in size.params.items() if k.startswith("text_encoder"))
        counts = f"{size.params['unet'] / 1e6:.0f} M / {size.params['vae'] / 1e6:.0f} M / "
        counts += f"{text / 1e6:.0f} M"
        rows.append(f"| {title} | {side} | {counts} | " + " | ".join(cells) + " |")
        chosen = [plan_memory("auto", "cuda", g * GIB, size).level for g in CARDS_GIB]
        auto.append(f"| {title} | " + " | ".join(chosen) + " |")
    return "\n".join(rows) + '\n\n`memory = "auto"` chooses:\n\n' + "\n".join(auto)


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m comicgen.memory",
        description="Estimated peak GPU memory per model family and memory plan "
        "(computed from parameter counts and activation sizes, not measured).",
    )
    parser.add_argument("--table", action="store_true", help="print the table of docs/memory.md")
    parser.add_argument("--references", type=int, default=4, help="reference views, infused")
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.references))
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
