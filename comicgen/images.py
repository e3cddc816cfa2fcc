"""Loading arbitrary image files safely, normalising them, and cutting reference sheets.

Everything here takes files a person dropped in: any of them may be truncated, empty,
not an image at all, animated, CMYK, 16-bit or a decompression bomb. :func:`load_image`
turns each into either a normalised picture or one :class:`ComicgenError` line naming
the file — never a traceback.

A normalised image is ``RGB``, or ``RGBA`` when the file had real transparency (the alpha
channel is the character's mask for Infusion), with the EXIF orientation applied and
the longest side at most :data:`MAX_SIDE`. :func:`flatten` composites it on white;
:func:`character_mask` gives the character's region (the alpha channel, or everything
not connected to the image border through the border's plain colour).

No torch here: masks are computed with numpy.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from comicgen.errors import ComicgenError

MAX_PIXELS = 40_000_000  # refuse files claiming more pixels than this (40 MP)
MAX_SIDE = 2048  # normalised images are scaled down to this longest side
MAX_FILE_BYTES = 200 * 1024 * 1024
BORDER_TOLERANCE = 24  # max per-channel distance (0..255) to the border colour
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class LoadedImage:
    """A normalised image (``RGB`` or ``RGBA``) and what was done to get it."""

    image: Image.Image
    source: str
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EncodedImage:
    """What the library stores of one reference image."""

    png: bytes
    sha256: str
    width: int
    height: int
    mode: str  # RGB or RGBA


# -- loading ------------------------------------------------------------------------------


def load_image(
    path: Path | str,
    *,
    display: str | None = None,
    max_pixels: int = MAX_PIXELS,
    max_side: int | None = MAX_SIDE,
) -> LoadedImage:
    """Open an image file of any kind and normalise it (see :func:`normalise`).

    Raises ComicgenError (one line naming ``display`` or the path) for a missing, empty,
    truncated, unreadable, zero-sized or oversized file. ``max_side=None`` keeps the
    full size (for a sheet that is cut before its views are normalised).
    """
    path = Path(path)
    name = display or str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ComicgenError(f"{name}: no such image file") from None
    except OSError as exc:
        raise ComicgenError(f"{name}: cannot read the image ({exc.strerror or exc})") from None
    if not path.is_file():
        raise ComicgenError(f"{name}: not a file", hint="give the path of an image file")
    if size == 0:
        raise ComicgenError(f"{name}: the file is empty (0 bytes)", hint="use a PNG or JPEG image")
    if size > MAX_FILE_BYTES:
        raise ComicgenError(
            f"{name}: the file is too large ({size // 2**20} MiB)",
            hint=f"use an image under {MAX_FILE_BYTES // 2**20} MiB",
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ComicgenError(f"{name}: cannot read the image ({exc.strerror or exc})") from None
    return decode_image(data, name, max_pixels=max_pixels, max_side=max_side)


def decode_image(
    data: bytes, name: str, *, max_pixels: int = MAX_PIXELS, max_side: int | None = MAX_SIDE
) -> LoadedImage:
    """Decode image ``data`` (from a file called ``name``) and normalise it."""
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            _check_size(img, name, max_pixels)
            if getattr(img, "is_animated", False) or getattr(img, "n_frames", 1) > 1:
                frames = getattr(img, "n_frames", "several")
                notes.append(f"{name}: animated image ({frames} frames); using the first frame")
                img.seek(0)
            img.load()
            img = normalise(img, notes=notes, name=name, max_side=max_side)
    except ComicgenError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_big(name, None, max_pixels) from None
    except Image.UnidentifiedImageError:
        raise ComicgenError(
            f"{name}: not an image Pillow can read", hint="use a PNG, JPEG or WebP file"
        ) from None
    except MemoryError:
        raise _too_big(name, None, max_pixels) from None
    except Exception as exc:  # a malformed file can make any decoder raise anything
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower() or isinstance(exc, EOFError):
            reason = "the file is truncated"
        raise ComicgenError(
            f"{name}: cannot decode the image ({reason})",
            hint="re-export it as PNG or JPEG",
        ) from None
    return LoadedImage(img, name, notes)


def _check_size(img: Image.Image, name: str, max_pixels: int) -> None:
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ComicgenError(f"{name}: the image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise _too_big(name, (w, h), max_pixels)


def _too_big(name: str, size: tuple[int, int] | None, max_pixels: int) -> ComicgenError:
    what = f"{size[0]}x{size[1]} pixels" if size else "too many pixels"
    return ComicgenError(
        f"{name}: refused, the image claims {what} (over {max_pixels // 1_000_000} MP; "
        "possibly a decompression bomb)",
        hint=f"scale it down below {max_pixels // 1_000_000} megapixels",
    )


# -- normalising --------------------------------------------------------------------------


def normalise(
    img: Image.Image,
    *,
    notes: list[str] | None = None,
    name: str = "image",
    max_side: int | None = MAX_SIDE,
) -> Image.Image:
    """An ``RGB`` (or ``RGBA`` with real transparency) copy, upright, at most ``max_side``."""
    notes = notes if notes is not None else []
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not lose the picture
        notes.append(f"{name}: unreadable EXIF orientation ignored")
    img = _to_rgb_or_rgba(img)
    if img.mode == "RGBA":
        alpha = img.getchannel("A")
        lo, _hi = alpha.getextrema()
        if lo >= 255:  # fully opaque: the alpha says nothing
            img = img.convert("RGB")
        elif alpha.getbbox() is None:
            raise ComicgenError(
                f"{name}: the image is fully transparent", hint="use a visible picture"
            )
    if max_side is not None and max(img.size) > max_side:
        old = img.size
        img = ImageOps.contain(img, (max_side, max_side), Image.Resampling.LANCZOS)
        notes.append(f"{name}: scaled down from {old[0]}x{old[1]} to {img.size[0]}x{img.size[1]}")
    img.info.clear()
    return img


def _to_rgb_or_rgba(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("RGB", "RGBA"):
        return img.copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        if mode == "F" and hi <= 1.0:
            arr = arr * 255.0
        elif hi > 255.0:
            arr = arr / 257.0
        grey = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
        return grey.convert("RGB")
    if mode == "CMYK":
        return _cmyk_to_rgb(img)
    if mode in ("LA", "La", "PA", "RGBa") or (mode == "P" and "transparency" in img.info):
        return img.convert("RGBA")
    if mode == "L" and "transparency" in img.info:
        return img.convert("RGBA")
    return img.convert("RGB")


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    profile = img.info.get("icc_profile")
    if profile:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            dst = ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
        except Exception:  # no LittleCMS or a broken profile: the plain conversion
            pass
    return img.convert("RGB")


def flatten(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """``img`` as RGB; a transparent image is composited on ``background`` (white)."""
    if img.mode == "RGB":
        return img.copy()
    if img.mode != "RGBA":
        img = _to_rgb_or_rgba(img)
        if img.mode == "RGB":
            return img
    canvas = Image.new("RGB", img.size, background)
    canvas.paste(img, (0, 0), img.getchannel("A"))
    return canvas


# -- encoding -----------------------------------------------------------------------------


def pixel_sha256(img: Image.Image) -> str:
    """sha256 of the pixels (mode, size and raw bytes): stable across PNG encoders."""
    h = hashlib.sha256()
    h.update(f"{img.mode}:{img.size[0]}x{img.size[1]}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def encode_png(img: Image.Image) -> EncodedImage:
    """PNG bytes (no metadata) and pixel sha256 of a normalised image."""
    if img.mode not in ("RGB", "RGBA"):
        raise ValueError(f"encode_png wants a normalised RGB/RGBA image, got {img.mode}")
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", optimize=False, compress_level=6)
    return EncodedImage(buffer.getvalue(), pixel_sha256(img), img.size[0], img.size[1], img.mode)


def decode_png(png: bytes) -> Image.Image:
    """A stored PNG back into an image (RGB or RGBA), fully loaded."""
    img = Image.open(io.BytesIO(png))
    img.load()
    return img


# -- masks --------------------------------------------------------------------------------


def character_mask(img: Image.Image, tolerance: int = BORDER_TOLERANCE) -> Image.Image:
    """The character's region as an ``L`` mask (255 = character, 0 = background).

    From the alpha channel when the image has transparent pixels; otherwise everything
    not connected to the image border through pixels close to the border's colour. A
    busy border (not mostly one colour) gives the whole image.
    """
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        alpha = img.convert("RGBA").getchannel("A")
        if alpha.getextrema()[0] < 255:
            return alpha
    rgb = np.asarray(flatten(img), dtype=np.int16)
    h, w = rgb.shape[:2]
    if h < 3 or w < 3:
        return Image.new("L", (w, h), 255)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    colour = np.median(border, axis=0)
    near = np.abs(border - colour).max(axis=1) <= tolerance
    if near.mean() < 0.6:
        return Image.new("L", (w, h), 255)
    candidate = np.abs(rgb - colour).max(axis=2) <= tolerance
    background = flood_from_border(candidate)
    return Image.fromarray(np.where(background, 0, 255).astype(np.uint8), "L")


def flood_from_border(candidate: np.ndarray) -> np.ndarray:
    """The pixels of boolean ``candidate`` connected (4-neighbourhood) to the border.

    Alternates whole-run propagation along rows and along columns until nothing
    changes: each pass is linear in the pixel count, and the number of passes is the
    number of turns the background takes, not its length.
    """
    cand = np.ascontiguousarray(candidate, dtype=bool)
    seed = np.zeros_like(cand)
    seed[0, :] = cand[0, :]
    seed[-1, :] = cand[-1, :]
    seed[:, 0] |= cand[:, 0]
    seed[:, -1] |= cand[:, -1]
    while True:
        grown = _spread_runs(seed, cand)
        grown = _spread_runs(grown.T, cand.T).T
        if np.array_equal(grown, seed):
            return grown
        seed = grown


def _spread_runs(seed: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Every horizontal run of ``cand`` that holds a ``seed`` pixel becomes all seed."""
    h, w = cand.shape
    c = np.ascontiguousarray(cand).ravel()
    s = np.ascontiguousarray(seed).ravel()
    starts = c.copy()
    starts[1:] &= ~c[:-1]
    starts.reshape(h, w)[:, 0] = cand[:, 0]  # a row's first pixel starts a new run
    run_id = np.cumsum(starts) * c  # 0 outside runs, 1..K inside
    seeded = np.zeros(int(run_id.max()) + 1, dtype=bool)
    seeded[run_id[s & c]] = True
    seeded[0] = False
    return seeded[run_id].reshape(h, w)


# -- reference sheets ---------------------------------------------------------------------

_GRID = re.compile(r"^\s*(\d{1,2})\s*[xX×*]\s*(\d{1,2})\s*$")


def parse_grid(grid: str) -> tuple[int, int]:
    """``'3x2'`` → (3 columns, 2 rows)."""
    match = _GRID.match(grid or "")
    if not match:
        raise ComicgenError(f"--grid '{grid}' is not COLUMNSxROWS", hint="write e.g. 2x2 or 4x1")
    cols, rows = int(match.group(1)), int(match.group(2))
    if not (1 <= cols <= 16 and 1 <= rows <= 16):
        raise ComicgenError(f"--grid '{grid}': use 1 to 16 columns and rows")
    return cols, rows


def cut_sheet(
    img: Image.Image, grid: str = "2x2", *, trim: bool = True, notes: list[str] | None = None
) -> list[Image.Image]:
    """Cut a reference sheet into its views, left to right, then top to bottom.

    ``grid`` is COLUMNSxROWS. With ``trim``, each cell's plain border is trimmed (keeping
    a small margin of it, so the character's mask still finds a background), and cells
    that hold nothing but background are dropped.
    """
    cols, rows = parse_grid(grid)
    w, h = img.size
    if w < cols * 4 or h < rows * 4:
        raise ComicgenError(f"the sheet ({w}x{h}) is too small for a {cols}x{rows} grid")
    cells: list[Image.Image] = []
    empty: list[int] = []
    for r in range(rows):
        for c in range(cols):
            box = (
                round(c * w / cols),
                round(r * h / rows),
                round((c + 1) * w / cols),
                round((r + 1) * h / rows),
            )
            cell = img.crop(box)
            if trim:
                trimmed = trim_border(cell)
                if trimmed is None:
                    empty.append(r * cols + c + 1)
                    continue
                cell = trimmed
            cells.append(cell)
    if not cells:
        raise ComicgenError("every cell of the sheet is empty", hint="check --grid")
    if len(empty) > cols * rows / 2:  # the grid cuts one picture into fragments
        raise ComicgenError(
            f"--grid {grid}: {len(empty)} of the {cols * rows} cells are empty, so the sheet "
            "is not drawn in that grid",
            hint="give the grid its views are drawn in (e.g. --grid 2x2), or add a single "
            "picture with --image",
        )
    if notes is not None:
        notes += [f"sheet cell {number} is empty; skipped" for number in empty]
    return cells


def trim_border(
    img: Image.Image, tolerance: int = BORDER_TOLERANCE, margin: float = 0.06
) -> Image.Image | None:
    """Crop a plain (or transparent) border down to its content plus a margin.

    Returns None when the image holds nothing but its border colour.
    """
    if img.mode == "RGBA" and img.getchannel("A").getextrema()[0] < 255:
        content = np.asarray(img.getchannel("A")) > 8
    else:
        rgb = np.asarray(flatten(img), dtype=np.int16)
        border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
        colour = np.median(border, axis=0)
        if (np.abs(border - colour).max(axis=1) <= tolerance).mean() < 0.6:
            return img  # a busy border: nothing to trim
        content = np.abs(rgb - colour).max(axis=2) > tolerance
    ys, xs = np.nonzero(content)
    if len(xs) == 0:
        return None
    w, h = img.size
    pad = max(2, round(margin * max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)))
    box = (
        max(0, int(xs.min()) - pad),
        max(0, int(ys.min()) - pad),
        min(w, int(xs.max()) + 1 + pad),
        min(h, int(ys.max()) + 1 + pad),
    )
    return img.crop(box)


def contact_sheet(views: list[Image.Image], masks: list[Image.Image], cell: int = 160):
    """The views of a character side by side, each above its mask (the character in
    its colours on grey): what infusion will take from each reference."""
    pad = 8
    sheet = Image.new("RGB", (pad + len(views) * (cell + pad), pad + 2 * (cell + pad)), "white")
    for i, (view, mask) in enumerate(zip(views, masks, strict=True)):
        scale = cell / max(view.size)
        size = (max(1, round(view.width * scale)), max(1, round(view.height * scale)))
        shown = flatten(view).resize(size, Image.Resampling.NEAREST)
        region = mask.convert("L").resize(size, Image.Resampling.NEAREST)
        masked = Image.composite(shown, Image.new("RGB", size, (128, 128, 128)), region)
        x = pad + i * (cell + pad) + (cell - size[0]) // 2
        y = pad + (cell - size[1]) // 2
        sheet.paste(shown, (x, y))
        sheet.paste(masked, (x, y + cell + pad))
    return sheet
