"""The upscale stage: painted panels made crisp by a super-resolution model.

An upscaler is named like a model (``[render] upscale``):

- ``bundled:NAME`` — one shipped inside comicgen (``bundled:toyworld-x4``), works offline;
- a path (relative to the workspace, or absolute) to any single-image super-resolution
  weights file that `spandrel <https://github.com/chaiNNer-org/spandrel>`_ loads
  (ESRGAN, Real-ESRGAN and its compact network, SwinIR, DAT, … as ``.pth`` / ``.safetensors``);
- ``none`` — no upscaling (panels are resized when the page is composed, as before).

Upscaling runs between painting and lettering; the render stage caches its output by the
painted panel's key plus :attr:`Upscaler.fingerprint`, so a changed upscaler only re-upscales.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comicgen.bundled import BUNDLED_DIR
from comicgen.errors import ModelError

__all__ = [
    "BUNDLED_UPSCALER",
    "WEIGHT_SUFFIXES",
    "Upscaler",
    "default_upscaler",
    "load_upscaler",
    "resolve_upscaler",
    "upscale_panels",
    "upscaled_key",
]

BUNDLED_UPSCALER = "bundled:toyworld-x4"

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")
TILE = 256  # input pixels per tile side; panels up to this size run whole
TILE_PAD = 8  # input pixels of context around each tile


def default_upscaler(model_name: str) -> str:
    """The upscaler used when ``[render] upscale`` is empty: the bundled one for the
    bundled model (it paints 64-pixel panels), none for any other model."""
    return BUNDLED_UPSCALER if model_name.strip() == "bundled:toyworld" else "none"


def _bundled_upscalers() -> list[str]:
    return sorted(
        p.name
        for p in BUNDLED_DIR.glob("*")
        if p.is_dir()
        and any(f.suffix in WEIGHT_SUFFIXES for f in p.iterdir())
        and not (p / "model_index.json").is_file()
    )


def _weights_in(folder: Path, spec: str) -> Path:
    files = sorted(f for f in folder.iterdir() if f.suffix in WEIGHT_SUFFIXES and f.is_file())
    if len(files) != 1:
        raise ModelError(
            f"upscaler '{spec}' is a folder with {len(files)} weights files, not one",
            hint="point render.upscale at the .pth or .safetensors file itself",
        )
    return files[0]


def resolve_upscaler(spec: str, base: Path | None = None) -> Path | None:
    """The weights file ``spec`` names, or None for ``"none"`` (no loading)."""
    spec = spec.strip()
    if spec.lower() in ("", "none"):
        return None
    if spec.startswith("bundled:"):
        name = spec.split(":", 1)[1]
        if name not in _bundled_upscalers():
            raise ModelError(
                f"no bundled upscaler '{name}'",
                hint=f"bundled upscalers: {', '.join(_bundled_upscalers()) or 'none installed'}"
                ', or "none"',
            )
        return _weights_in(BUNDLED_DIR / name, spec)
    path = Path(spec).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if path.is_dir():
        return _weights_in(path, spec)
    if not path.is_file():
        raise ModelError(
            f"upscaler file '{spec}' does not exist",
            hint="set render.upscale to a super-resolution .pth/.safetensors file, "
            '"bundled:toyworld-x4" or "none"',
        )
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Upscaler:
    """A loaded super-resolution model: ``upscale(image)`` returns it ``scale`` times larger."""

    spec: str
    path: Path
    descriptor: Any  # spandrel.ImageModelDescriptor
    arch: str
    device: str
    dtype: Any  # torch.dtype
    fingerprint: str

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    def upscale(self, image):
        """Upscale a PIL image; returns an RGB PIL image ``scale`` times the size."""
        import numpy as np
        import torch
        from PIL import Image

        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        x = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
        with torch.no_grad():
            y = self._run(x.to(self.device, self.dtype)).float().clamp(0, 1)
        out = (y[0].permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
        return Image.fromarray(out, "RGB")

    def _run(self, x):
        """The model on ``x`` (1x3xHxW), whole when small, else in overlapping tiles."""
        import torch

        _, _, h, w = x.shape
        if h <= TILE and w <= TILE:
            return self.descriptor(x)
        s = self.scale
        out = torch.zeros((1, 3, h * s, w * s), dtype=x.dtype, device=x.device)
        for top in range(0, h, TILE):
            for left in range(0, w, TILE):
                t0, l0 = max(0, top - TILE_PAD), max(0, left - TILE_PAD)
                t1, l1 = min(h, top + TILE + TILE_PAD), min(w, left + TILE + TILE_PAD)
                tile = self.descriptor(x[:, :, t0:t1, l0:l1])
                bottom, right = min(h, top + TILE), min(w, left + TILE)
                out[:, :, top * s : bottom * s, left * s : right * s] = tile[
                    :, :, (top - t0) * s : (bottom - t0) * s, (left - l0) * s : (right - l0) * s
                ]
        return out


def load_upscaler(spec: str, device: str = "cpu", base: Path | None = None) -> Upscaler | None:
    """Load the upscaler ``spec`` names (see the module doc), or None for ``"none"``.

    Raises :class:`ModelError` (one line) for a missing file, a file spandrel cannot read,
    or a model that is not a 3-channel super-resolution model."""
    path = resolve_upscaler(spec, base)
    if path is None:
        return None
    import torch

    try:
        from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError
    except ImportError as exc:  # pragma: no cover - spandrel is a dependency
        raise ModelError(
            "upscaling needs the 'spandrel' package", hint="pip install spandrel"
        ) from exc
    try:
        descriptor = ModelLoader().load_from_file(path)
    except UnsupportedModelError as exc:
        raise ModelError(
            f"upscaler '{spec}' is not a model architecture spandrel knows",
            hint="use an ESRGAN/Real-ESRGAN/SwinIR/DAT/… super-resolution file, or "
            'render.upscale = "none"',
        ) from exc
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file fails many ways
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"upscaler '{spec}' cannot be read as model weights ({reason})",
            hint="point render.upscale at a .pth or .safetensors super-resolution model, "
            'or set it to "none"',
        ) from exc
    arch = descriptor.architecture.id
    if (
        not isinstance(descriptor, ImageModelDescriptor)
        or descriptor.scale < 2
        or descriptor.input_channels != 3
        or descriptor.output_channels != 3
    ):
        raise ModelError(
            f"upscaler '{spec}' is a {descriptor.architecture.name} model "
            f"(scale {getattr(descriptor, 'scale', '?')}, "
            f"{getattr(descriptor, 'input_channels', '?')} channels), "
            "not an RGB super-resolution model",
            hint='use an x2/x3/x4 RGB upscaler, or render.upscale = "none"',
        )
    dtype = torch.float32
    if device.startswith("cuda") and descriptor.supports_half:
        dtype = torch.float16
    descriptor.to(device)
    descriptor.model.to(dtype)
    descriptor.eval()
    fingerprint = hashlib.sha256(f"{_sha256(path)}:{arch}".encode()).hexdigest()[:16]
    return Upscaler(spec, path, descriptor, arch, device, dtype, fingerprint)


# -- the render stage ----------------------------------------------------------------------


def upscaled_key(painted_key: str, fingerprint: str) -> str:
    """The panel cache key of a painted panel upscaled by the upscaler ``fingerprint``."""
    return hashlib.sha256(f"upscale:1:{painted_key}:{fingerprint}".encode()).hexdigest()


def upscale_panels(keys, library, upscaler: Upscaler, on_message=None) -> dict[str, str]:
    """Upscale the painted panels ``keys`` that are in the cache and not upscaled yet.

    Returns painted key -> upscaled key for every painted panel that has an upscaled copy
    (panels not painted yet are left out). Upscaled panels live in the same cache as painted
    ones, so changing the upscaler re-upscales and never repaints."""
    from PIL import Image

    done: dict[str, str] = {}
    todo: list[tuple[str, str, Path]] = []
    for key in dict.fromkeys(keys):
        painted = library.cache_get(key)
        if painted is None:
            continue
        target = upscaled_key(key, upscaler.fingerprint)
        if library.cache_get(target) is not None:
            done[key] = target
        else:
            todo.append((key, target, painted))
    if todo and on_message is not None:
        plural = "s" if len(todo) != 1 else ""
        on_message(f"upscaling {len(todo)} panel{plural} with {upscaler.spec} …")
    for key, target, painted in todo:
        with Image.open(painted) as image:
            big = upscaler.upscale(image)
        library.cache_put(
            target,
            _png(big),
            model=upscaler.spec,
            meta={"upscaled_from": key, "upscaler": upscaler.fingerprint},
        )
        done[key] = target
    return done


def _png(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
