"""From reference rows to one feature map per character, and into the panel's features.

- :func:`canonical`: a character's reference rows read through each view's frame onto one
  canonical grid and averaged, weighted by the masks (``mode: seed``: the plain mean);
- :func:`placed`: the canonical map drawn into the character's box at the panel's size;
- :func:`block_weights`: which U-Net blocks are infused, and how strongly;
- :func:`combine`: the panel's features moved toward the placed ones (``blend``, ``adain``,
  ``add``), or the seed method's plain addition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from comicgen.infusion.geometry import box_window, fit_rect, place_grid
from comicgen.infusion.refs import Box, frame_grid

if TYPE_CHECKING:
    from comicgen.infusion.prepare import Character
    from comicgen.settings import InfusionSettings


def canonical(ch: Character, rows, *, seed_mode: bool, width: int, height: int) -> tuple:
    """(canonical features [C,h,w], canonical mask [1,h,w]) from ``ch``'s reference rows."""
    import torch
    import torch.nn.functional as F

    feats = rows.float()
    n, c, h, w = feats.shape
    if seed_mode:
        mean = feats.mean(0)
        return (
            mean.to(rows.dtype),
            torch.ones((1, h, w), device=rows.device, dtype=rows.dtype),
        )
    masks = ch.masks_at(h, w).to(feats.device)
    grids = torch.stack([frame_grid(f, h, w, width, height) for f in ch.frames]).to(feats.device)
    crops = F.grid_sample(feats, grids, mode="bilinear", padding_mode="border", align_corners=False)
    mcrops = F.grid_sample(masks, grids, mode="bilinear", padding_mode="zeros", align_corners=False)
    total = mcrops.sum(0)
    mean = (crops * mcrops).sum(0) / total.clamp_min(1e-4)
    return (mean.to(rows.dtype), (total / n).to(rows.dtype))


def placed(
    canon, cmask, box: Box, aspect: float, h: int, w: int, *, width: int, height: int, feather
):
    """(features [1,C,h,w], mask [1,1,h,w]): the canonical map drawn into ``box``."""
    import torch.nn.functional as F

    # Plain bilinear sampling, no averaging when shrinking: averaged latents and
    # features lose the saturated colours that make the character (measured: identity
    # 0.56 -> 0.41-0.42 with area averaging, mask-weighted or not).
    rect = fit_rect(box, aspect, width, height)
    grid = place_grid(rect, h, w).to(canon.device)[None]
    feats = F.grid_sample(
        canon[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    mask = F.grid_sample(
        cmask[None].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    window = box_window(box, h, w, feather).to(canon.device)
    return feats, (mask * window).clamp(0.0, 1.0)


def union_box(boxes: list[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def mean_canonical(feats: list[tuple], strengths: list[float]) -> tuple:
    """``mode: mean``: the characters' canonical maps averaged, weighted by strength."""
    total = sum(st * f[1].float() for st, f in zip(strengths, feats, strict=True))
    canon = sum(st * f[1].float() * f[0].float() for st, f in zip(strengths, feats, strict=True))
    return canon / total.clamp_min(1e-4), total / sum(strengths)


def seed_delta(target, feats: list[tuple], strengths: list[float], weight: float):
    """``mode: seed``: the whole frames' mean features added as they are."""
    delta = sum(st * f[0].float() for st, f in zip(strengths, feats, strict=True))
    return target + weight * (delta / len(feats))[None]


def combine(kind: str, target, placements: list[tuple], amounts: list[float], weight: float):
    """``target`` [b,C,h,w] moved toward each placed (features, mask), by ``kind``."""
    if kind == "blend":
        ks = [weight * a * m for a, (_, m) in zip(amounts, placements, strict=True)]
        norm = sum(ks).clamp_min(1.0)
        change = sum(k / norm * (p - target) for k, (p, _) in zip(ks, placements, strict=True))
        return target + change
    if kind == "adain":
        # move the panel's per-channel mean and spread inside the mask to the
        # reference's: its colours and textures, not its noise or layout
        ks, styled = [], []
        for a, (p, m) in zip(amounts, placements, strict=True):
            area = m.sum((2, 3), keepdim=True).clamp_min(1e-4)
            mu_r = (p * m).sum((2, 3), keepdim=True) / area
            sd_r = (((p - mu_r) ** 2 * m).sum((2, 3), keepdim=True) / area).sqrt()
            mu_p = (target * m).sum((2, 3), keepdim=True) / area
            sd_p = (((target - mu_p) ** 2 * m).sum((2, 3), keepdim=True) / area).sqrt()
            styled.append((target - mu_p) / sd_p.clamp_min(1e-5) * sd_r + mu_r)
            ks.append(weight * a * m)
        norm = sum(ks).clamp_min(1.0)
        change = sum(k / norm * (t - target) for k, t in zip(ks, styled, strict=True))
        return target + change
    # add, magnitude-matched per channel inside the character's mask
    change = 0
    for a, (p, m) in zip(amounts, placements, strict=True):
        area = m.sum().clamp_min(1e-4)
        rms_panel = ((target**2 * m).sum((2, 3), keepdim=True) / area).sqrt()
        rms_ref = ((p**2 * m).sum((2, 3), keepdim=True) / area).sqrt()
        gain = rms_panel / rms_ref.clamp_min(1e-6)
        change = change + weight * a * m * gain * p
    return target + change


def _level(values: list[float], i: int) -> float:
    if not values:
        return 0.0
    return float(values[min(i, len(values) - 1)])


def block_weights(unet, settings: InfusionSettings) -> dict[str, float]:
    """The weight of every U-Net block (0 = not hooked), by the settings' levels."""
    weights: dict[str, float] = {}
    blocks = "blocks" in settings.levels
    for i in range(len(unet.down_blocks)):
        weights[f"down.{i}"] = _level(settings.layers.down, i) if blocks else 0.0
    if getattr(unet, "mid_block", None) is not None:
        weights["mid"] = float(settings.layers.mid) if blocks else 0.0
    for i in range(len(unet.up_blocks)):
        weights[f"up.{i}"] = _level(settings.layers.up, i) if blocks else 0.0
    if settings.mode != "seed" and "out" in settings.levels:
        weights["out"] = float(settings.layers.out)
    return weights
