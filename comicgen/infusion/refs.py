"""Reference images of a character: masks, placement boxes and fitting to the panel size."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

Position = Literal["left", "center", "right"]
Box = tuple[float, float, float, float]

# Where a character stands in a panel, as (x0, y0, x1, y1) fractions of the panel.
# Tall enough for a standing figure of medium shot, feet near the bottom edge.
POSITION_BOXES: dict[str, Box] = {
    "left": (0.02, 0.30, 0.48, 0.98),
    "center": (0.27, 0.30, 0.73, 0.98),
    "right": (0.52, 0.30, 0.98, 0.98),
}


def position_box(position: Position | None) -> Box:
    """The region a character at ``position`` occupies (None: the centre)."""
    if position is None:
        position = "center"
    try:
        return POSITION_BOXES[position]
    except KeyError:
        raise ValueError(f"unknown position {position!r}; expected left, center or right") from None


@dataclass
class CharacterRefs:
    """One character of a panel: its reference images and how to infuse them.

    ``images`` are the reference sheet's pictures (the character alone on a plain or
    transparent background); ``masks`` optionally give the character's region in each
    (white = character), otherwise it comes from the alpha channel or from a flood fill
    of the plain border colour. ``box`` (fractions of the panel) wins over ``position``.
    ``key`` is a stable id of the reference set (e.g. the joined sha256s) for caches;
    empty: computed from the images' pixels.
    """

    name: str
    images: list[Image.Image]
    masks: list[Image.Image | None] | None = None
    description: str = ""
    strength: float = 1.0
    position: Position | None = None
    box: Box | None = None
    key: str = ""
    _digest: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not self.images:
            raise ValueError(f"character {self.name!r} has no reference images")
        if self.masks is not None and len(self.masks) != len(self.images):
            raise ValueError(
                f"character {self.name!r}: {len(self.masks)} masks for {len(self.images)} images"
            )
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
                raise ValueError(f"character {self.name!r}: box {self.box} is not inside (0,0,1,1)")

    def identity(self) -> str:
        """``key`` or, when empty, a digest of the images (and masks) themselves."""
        if self.key:
            return self.key
        if not self._digest:
            h = hashlib.sha256()
            for i, image in enumerate(self.images):
                h.update(image_digest(image).encode())
                if self.masks is not None and self.masks[i] is not None:
                    h.update(image_digest(self.masks[i]).encode())
            self._digest = h.hexdigest()
        return self._digest


def image_digest(image: Image.Image) -> str:
    h = hashlib.sha256()
    h.update(f"{image.mode}:{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def auto_boxes(refs: list[CharacterRefs]) -> list[Box]:
    """Each character's box: its own, its position's, or spread left to right in order."""
    unplaced = [r for r in refs if r.box is None and r.position is None]
    if len(unplaced) == 1:
        spread = {id(unplaced[0]): position_box("center")}
    elif len(unplaced) in (2, 3):
        names = ("left", "right") if len(unplaced) == 2 else ("left", "center", "right")
        spread = {id(r): position_box(p) for r, p in zip(unplaced, names, strict=True)}
    else:
        n = max(len(unplaced), 1)
        spread = {
            id(r): (i / n + 0.01, 0.30, (i + 1) / n - 0.01, 0.98) for i, r in enumerate(unplaced)
        }
    boxes = []
    for r in refs:
        if r.box is not None:
            boxes.append(tuple(r.box))
        elif r.position is not None:
            boxes.append(position_box(r.position))
        else:
            boxes.append(spread[id(r)])
    return boxes


# --- masks -------------------------------------------------------------------------------


def reference_mask(image: Image.Image) -> np.ndarray:
    """The character's region in a reference image, float32 H x W in [0, 1]: the
    library's :func:`comicgen.images.character_mask` (alpha, or what is not connected
    to a plain border), as an array."""
    import numpy as np

    from comicgen.images import character_mask

    return np.asarray(character_mask(image), dtype=np.float32) / 255.0


def fit_reference(
    image: Image.Image, mask: np.ndarray, height: int, width: int
) -> tuple[Image.Image, np.ndarray]:
    """Fit a reference (and its mask) into a ``width`` x ``height`` canvas, centred.

    The empty margin is filled with the reference's background colour (white for a
    transparent one), so the VAE sees a plain background around the character.
    """
    import numpy as np
    from PIL import Image as PILImage

    w0, h0 = image.size
    scale = min(width / w0, height / h0)
    w1, h1 = max(1, round(w0 * scale)), max(1, round(h0 * scale))
    rgba = image.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"))
    if alpha.min() < 250:
        background = (255, 255, 255)
    else:
        rgb = np.asarray(rgba.convert("RGB"), dtype=np.int16)
        border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
        background = tuple(int(v) for v in np.median(border, axis=0))
    canvas = PILImage.new("RGB", (width, height), background)
    resized = rgba.resize((w1, h1), PILImage.Resampling.LANCZOS)
    left, top = (width - w1) // 2, (height - h1) // 2
    canvas.paste(resized, (left, top), resized.getchannel("A"))
    mask_img = PILImage.fromarray((np.clip(mask, 0, 1) * 255).astype(np.uint8))
    mask_img = mask_img.resize((w1, h1), PILImage.Resampling.BILINEAR)
    full = np.zeros((height, width), dtype=np.float32)
    full[top : top + h1, left : left + w1] = np.asarray(mask_img, dtype=np.float32) / 255.0
    return canvas, full


def mask_bbox(mask: np.ndarray, threshold: float = 0.5) -> Box:
    """Bounding box of ``mask > threshold`` as fractions (the whole image when empty)."""
    import numpy as np

    ys, xs = np.nonzero(mask > threshold)
    if len(xs) == 0:
        return (0.0, 0.0, 1.0, 1.0)
    h, w = mask.shape
    return (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)


# --- aligning several views of a character ---------------------------------------------
Frame = tuple[float, float, float, float, float]  # centre x, centre y, width, height (px), angle


def frame_grid(frame: Frame, h: int, w: int, width: int, height: int):
    """grid_sample grid [h, w, 2] reading ``frame`` of a ``width`` x ``height`` canvas."""
    import math

    import torch

    cx, cy, fw, fh, angle = frame
    us = (torch.arange(w, dtype=torch.float32) + 0.5) / w - 0.5
    vs = (torch.arange(h, dtype=torch.float32) + 0.5) / h - 0.5
    dy, dx = torch.meshgrid(vs * fh, us * fw, indexing="ij")
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    x = cx + c * dx - s * dy
    y = cy + s * dx + c * dy
    return torch.stack([x / width * 2 - 1, y / height * 2 - 1], dim=-1)


def align_views(masks: np.ndarray, max_angle: float = 15.0, steps: int = 13) -> list[Frame]:
    """One frame per view so that every view's character lands on the first one's.

    The first view's frame is its mask's bounding box. Every other view is matched to it
    by its mask's centroid (translation), the square root of its mask's area (scale) and
    the rotation in ``[-max_angle, max_angle]`` whose sampled mask overlaps the first's
    best (soft IoU). Views of different poses then average without smearing.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    n, height, width = masks.shape
    ys, xs = np.mgrid[0:height, 0:width] + 0.5

    def stats(m):
        area = float(m.sum())
        if area < 1e-6:
            return width / 2, height / 2, 0.0
        return float((m * xs).sum() / area), float((m * ys).sum() / area), area

    x0, y0, x1, y1 = mask_bbox(masks[0])
    fw, fh = (x1 - x0) * width, (y1 - y0) * height
    bcx, bcy = (x0 + x1) / 2 * width, (y0 + y1) / 2 * height
    gx0, gy0, area0 = stats(masks[0])
    frames: list[Frame] = [(bcx, bcy, fw, fh, 0.0)]
    if n == 1 or area0 == 0.0:
        return frames + [(bcx, bcy, fw, fh, 0.0)] * (n - 1)
    size = 32
    t = torch.from_numpy(masks.astype(np.float32))[:, None]
    ref = F.grid_sample(
        t[:1], frame_grid(frames[0], size, size, width, height)[None], align_corners=False
    )
    offset = (bcx - gx0, bcy - gy0)  # bounding-box centre relative to the centroid
    for j in range(1, n):
        gx, gy, area = stats(masks[j])
        scale = (area / area0) ** 0.5 if area > 0 else 1.0
        best, best_frame = -1.0, frames[0]
        for angle in np.linspace(-max_angle, max_angle, steps):
            a = np.radians(angle)
            ox, oy = offset[0] * scale, offset[1] * scale
            cx = gx + np.cos(a) * ox - np.sin(a) * oy
            cy = gy + np.sin(a) * ox + np.cos(a) * oy
            frame = (float(cx), float(cy), fw * scale, fh * scale, float(angle))
            grid = frame_grid(frame, size, size, width, height)[None]
            sampled = F.grid_sample(t[j : j + 1], grid, align_corners=False)
            iou = float(torch.minimum(sampled, ref).sum() / torch.maximum(sampled, ref).sum())
            if iou > best:
                best, best_frame = iou, frame
        frames.append(best_frame)
    return frames
