"""Where a character's features land in the panel: its rectangle, sampling grid and window."""

from __future__ import annotations

from comicgen.infusion.refs import Box


def fit_rect(box: Box, aspect: float, width: int, height: int) -> Box:
    """The largest rectangle of pixel ``aspect`` inside ``box``: centred, standing on its bottom."""
    bx0, by0, bx1, by1 = box
    bw, bh = (bx1 - bx0) * width, (by1 - by0) * height
    if bw / bh > aspect:  # box wider than the character
        rw, rh = bh * aspect, bh
    else:
        rw, rh = bw, bw / aspect
    cx = (bx0 + bx1) / 2
    rx0, rx1 = cx - rw / width / 2, cx + rw / width / 2
    return (rx0, by1 - rh / height, rx1, by1)


def place_grid(rect: Box, h: int, w: int):
    """grid_sample grid [h, w, 2] mapping panel cells to canonical coordinates of ``rect``."""
    import torch

    x0, y0, x1, y1 = rect
    us = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    vs = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    gx = (us - x0) / max(x1 - x0, 1e-6) * 2 - 1
    gy = (vs - y0) / max(y1 - y0, 1e-6) * 2 - 1
    gy, gx = torch.meshgrid(gy, gx, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def box_window(box: Box, h: int, w: int, feather: float):
    """Soft window [1, 1, h, w]: 0 outside ``box``, ramping up to 1 over ``feather`` of its
    size inside it (cell centres are sampled, so at low resolution the ramp may be one step).

    Box edges on the frame's edge are not feathered (the box goes on beyond the frame).
    """
    import torch

    x0, y0, x1, y1 = box
    us = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    vs = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    fx = max(feather * (x1 - x0), 1e-3)
    fy = max(feather * (y1 - y0), 1e-3)
    inf_x, inf_y = torch.full_like(us, float("inf")), torch.full_like(vs, float("inf"))
    dx = torch.minimum(us - x0 if x0 > 0 else inf_x, x1 - us if x1 < 1 else inf_x)
    dy = torch.minimum(vs - y0 if y0 > 0 else inf_y, y1 - vs if y1 < 1 else inf_y)
    wx = (dx / fx).clamp(0, 1)
    wy = (dy / fy).clamp(0, 1)
    return (wy[:, None] * wx[None, :])[None, None]
