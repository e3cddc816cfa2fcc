"""Each character's reference rows, made once per panel (and cached across panels).

For every character: its reference images fitted into the panel's size and VAE-encoded,
their masks and alignment frames, a fixed noise per image, the description's embedding,
and the cache key that names everything its features depend on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from comicgen.infusion.cache import FeatureCache
from comicgen.infusion.refs import (
    Box,
    CharacterRefs,
    align_views,
    auto_boxes,
    fit_reference,
    image_digest,
    reference_mask,
)

if TYPE_CHECKING:
    import torch

    from comicgen.settings import InfusionSettings


@dataclass
class Character:
    refs: CharacterRefs
    box: Box
    latents: torch.Tensor  # [n, c, h, w], unet dtype
    noise: torch.Tensor  # [n, c, h, w]
    masks: torch.Tensor  # [n, 1, H, W] float, the character's region in the fitted canvas
    frames: list  # per image: where the character is (centre, size, angle), canvas pixels
    aspect: float  # width/height of the character's frame
    embeds: torch.Tensor  # [1, L, D]
    pooled: torch.Tensor | None  # [1, P] (SDXL)
    key: tuple  # cache key prefix
    masks_by_size: dict = field(default_factory=dict)

    def masks_at(self, h: int, w: int):
        """The reference masks area-averaged to h x w (kept per size)."""
        import torch.nn.functional as F

        if (h, w) not in self.masks_by_size:
            self.masks_by_size[(h, w)] = F.adaptive_avg_pool2d(self.masks, (h, w))
        return self.masks_by_size[(h, w)]


def model_key(pipe) -> str:
    # the active LoRAs and embeddings (comicgen.adapters) change what the U-Net computes
    adapters = getattr(pipe, "_comicgen_adapters", "")
    return f"{getattr(pipe, 'name_or_path', '') or ''}#{id(pipe.unet)}#{adapters}"


def scheduler_key(scheduler) -> str:
    config = json.dumps(dict(scheduler.config), sort_keys=True, default=str)
    return type(scheduler).__name__ + ":" + hashlib.sha256(config.encode()).hexdigest()[:16]


def prepare_characters(
    pipe,
    refs: list[CharacterRefs],
    settings: InfusionSettings,
    *,
    height: int,
    width: int,
    steps: int,
    seed: int,
    cache: FeatureCache | None,
    device,
) -> list[Character]:
    """One :class:`Character` per reference set, boxes assigned (``auto_boxes``)."""
    s = settings
    dtype = pipe.unet.dtype
    out = []
    for ref, box in zip(refs, auto_boxes(refs), strict=True):
        desc = ref.description if s.reference_prompt == "description" else ""
        noise_seed = seed if s.reference_seed is None else s.reference_seed
        key = (
            "features",
            model_key(pipe),
            str(dtype),
            ref.identity(),
            desc,
            height,
            width,
            scheduler_key(pipe.scheduler),
            steps,
            noise_seed,
            s.reference_noise,
            s.mode == "seed",
            s.skips,
        )
        # the same character in a later panel: its masks, alignment, latents, noise and
        # description embedding are those of the first (about 60 ms for 4 images)
        prepared = cache.get(("prepared",) + key) if cache is not None else None
        if prepared is None:
            prepared = _prepare_character(
                pipe, ref, settings, desc, noise_seed, height, width, cache, device
            )
            if cache is not None:
                cache.put(("prepared",) + key, prepared)
        latents, noise, masks, frames, aspect, embeds, pooled = prepared
        out.append(
            Character(
                refs=ref,
                box=box,
                latents=latents,
                noise=noise,
                masks=masks,
                frames=frames,
                aspect=aspect,
                embeds=embeds,
                pooled=pooled,
                key=key,
            )
        )
    return out


def _prepare_character(
    pipe, ref: CharacterRefs, settings, desc: str, noise_seed, height, width, cache, device
):
    """(latents, noise, masks, frames, aspect, embeds, pooled) of one character."""
    import numpy as np
    import torch

    dtype = pipe.unet.dtype
    seed_mode = settings.mode == "seed"
    canvases, masks = [], []
    for j, image in enumerate(ref.images):
        given = ref.masks[j] if ref.masks is not None else None
        if given is not None:
            if given.size != image.size:
                raise ValueError(
                    f"character {ref.name!r}: mask {j} is {given.size}, image is {image.size}"
                )
            mask = np.asarray(given.convert("L"), dtype=np.float32) / 255.0
        else:
            mask = reference_mask(image)
        canvas, full = fit_reference(image, mask, height, width)
        if seed_mode:
            full = np.ones_like(full)
        canvases.append(canvas)
        masks.append(full)
    latents = encode_references(pipe, canvases, height, width, cache, device).to(device, dtype)
    embeds, pooled = encode_prompt(pipe, desc, device)
    noise = torch.stack(
        [
            reference_noise(latents.shape[1:], noise_seed, ref.identity(), j)
            for j in range(len(canvases))
        ]
    ).to(device, dtype)
    if seed_mode:
        frames = [(width / 2, height / 2, width, height, 0.0)] * len(canvases)
    else:
        frames = align_views(np.stack(masks))
    aspect = frames[0][2] / max(frames[0][3], 1e-3)
    mask_tensor = torch.from_numpy(np.stack(masks))[:, None].to(device, torch.float32)
    return latents, noise, mask_tensor, frames, aspect, embeds, pooled


def reference_noise(shape, seed: int, identity: str, index: int):
    """The fixed noise of reference image ``index`` (not the panel's: cached features are
    shared by panels of different seeds)."""
    import torch

    digest = hashlib.sha256(f"comicgen-infusion:{seed}:{identity}:{index}".encode()).digest()
    generator = torch.Generator("cpu").manual_seed(int.from_bytes(digest[:8], "little"))
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32)


def encode_references(pipe, canvases, height: int, width: int, cache, device) -> torch.Tensor:
    """VAE latents of the fitted reference canvases (cached by model, pixels, size)."""
    import numpy as np
    import torch

    vae = pipe.vae
    out = []
    for canvas in canvases:
        key = ("latent", f"{id(vae)}", image_digest(canvas), height, width)
        cached = cache.get(key) if cache is not None else None
        if cached is None:
            pixels = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 127.5 - 1.0)
            pixels = pixels.permute(2, 0, 1)[None].to(device)
            upcast = vae.dtype == torch.float16 and vae.config.get("force_upcast", False)
            original = vae.dtype
            with torch.no_grad():
                if upcast:
                    vae.to(torch.float32)
                try:
                    dist = vae.encode(pixels.to(vae.dtype)).latent_dist
                finally:
                    if upcast:
                        vae.to(original)
                latent = dist.mean
                shift = vae.config.get("shift_factor", None)
                if shift is not None:
                    latent = latent - shift
                cached = (latent * vae.config.scaling_factor)[0].float()
            if cache is not None:
                cache.put(key, cached)
        out.append(cached)
    return torch.stack(out)


def encode_prompt(pipe, text: str, device):
    """(embeds [1, L, D], pooled [1, P] or None) of ``text``, without CFG."""
    import torch

    with torch.no_grad():
        result = pipe.encode_prompt(
            prompt=text,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
        )
    embeds = result[0]
    pooled = result[2] if len(result) == 4 else None
    return embeds, pooled
