"""The face pass: each character's face repainted in a close crop, so that small faces act.

A panel's characters are a few dozen pixels tall at the model's native size (at 64 pixels a
toy-world face is 2-4 latent cells wide), too small for the model to paint the expression
and the facing its prompt asks for.  The face pass - ADetailer's idea, with the crop taken
from the layout instead of a face detector - cuts a square around each character's face
(:func:`face_square`, from the character's box), enlarges it to the face model's native
size, repaints it at a partial strength (image-to-image) from that character's own clause
of the prompt (:func:`character_clause`), and pastes it back through a soft window.  The
face model is a U-Net (and optionally a text encoder and a VAE) trained on such crops; it
shares the panel model's tokenizer (and its VAE and text encoder where it has none).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

Box = tuple[float, float, float, float]

FACE_SIDE = 0.46  # the crop's side: this share of the panel's shorter side
PASTE = (0.5, 0.9)  # the paste window's (inner, outer), fractions of the half-side: window()
# [render] face_strength's default: chosen with the bundled face model on
# `toyworld.evaluate --samples 48 --bucket-samples 0 --seed 0` (model card)
FACE_STRENGTH = 0.55


def face_square(box: Box, width: float, height: float, side: float = FACE_SIDE) -> Box:
    """The square (x0, y0, x1, y1, in the units of ``width`` and ``height``) that holds the
    face of a character standing in ``box`` (fractions of the panel): ``side`` times the
    panel's shorter side, centred on the box horizontally and standing on its bottom edge,
    kept inside the panel."""
    x0, _, x1, y1 = box
    s = side * min(width, height)
    left = min(max((x0 + x1) / 2 * width - s / 2, 0.0), width - s)
    top = min(max(y1 * height - s, 0.0), height - s)
    return (left, top, left + s, top + s)


def pixel_square(box: Box, width: int, height: int) -> tuple[int, int, int]:
    """(left, top, side) of :func:`face_square` in whole pixels of a ``width`` x
    ``height`` image (at least 8 pixels a side): where a face crop is cut and pasted."""
    x0, y0, x1, _ = face_square(box, width, height)
    return round(x0), round(y0), max(8, round(x1 - x0))


def character_clause(prompt: str, description: str) -> str:
    """The clause of ``prompt`` that speaks of the character described as ``description``:
    from the description to the next comma ("a red circle character looking sad on the
    left"); "" when the prompt does not name it."""
    if not description:
        return ""
    at = prompt.lower().find(description.lower())
    if at < 0:
        return ""
    clause = prompt[at:].split(",", 1)[0]
    return re.sub(r"\s+", " ", clause).strip()


@dataclass(frozen=True)
class Face:
    """One character's face to repaint: its clause of the prompt and its box (fractions),
    and the character's name (whose sheet an infused face pass reads)."""

    clause: str
    box: Box
    name: str = ""


def panel_faces(prompt: str, characters) -> tuple[Face, ...]:
    """The faces of a panel's characters (anything with ``description``, ``box`` and
    ``position``) whose description the prompt names."""
    from comicgen.infusion.refs import position_box

    out = []
    for ch in characters:
        clause = character_clause(prompt, ch.description)
        if clause:
            box = tuple(ch.box) if ch.box else position_box(ch.position)
            out.append(Face(clause, box, getattr(ch, "name", "")))
    return tuple(out)


def crop_box(box: Box, square: tuple[float, float, float], width: float, height: float):
    """``box`` (fractions of a ``width`` x ``height`` panel) as fractions of the square crop
    ``square`` = (left, top, side) in pixels, clipped to the crop; None when it misses it."""
    left, top, side = square
    x0, y0, x1, y1 = box
    out = (
        min(max((x0 * width - left) / side, 0.0), 1.0),
        min(max((y0 * height - top) / side, 0.0), 1.0),
        min(max((x1 * width - left) / side, 0.0), 1.0),
        min(max((y1 * height - top) / side, 0.0), 1.0),
    )
    return out if out[2] - out[0] > 0.05 and out[3] - out[1] > 0.05 else None


def window(side: int, inner: float = PASTE[0], outer: float = PASTE[1]):
    """A soft square mask (PIL "L", ``side`` pixels) for pasting a repainted crop: 255 within
    ``inner`` of the half-side from the centre (the face), falling to 0 at ``outer`` and
    beyond, so the crop's edges - background the face model repaints from the character's
    words alone - keep the painted panel and no seam shows."""
    import numpy as np
    from PIL import Image

    r = np.abs(np.arange(side) + 0.5 - side / 2) / (side / 2)  # 0 centre .. 1 edge
    ramp = np.clip((outer - r) / (outer - inner), 0.0, 1.0)
    return Image.fromarray((np.outer(ramp, ramp) * 255).round().astype(np.uint8), "L")


class FacePainter:
    """Repaints the faces of painted panels with a face model (a folder holding ``unet/`` and
    optionally ``text_encoder/`` and ``vae/``, saved by diffusers / transformers; None: the
    panel pipeline's own) and the panel pipeline's tokenizer and scheduler (and its VAE and
    text encoder where the folder has none), through diffusers' image-to-image pipeline.

    A face model trained to repaint with the character's sheet infused into each crop says
    so in its ``comicgen.json``: ``{"infusion": {...}}``, the settings it paints with, and
    optionally ``"infusion_unet": "unet-infusion"``, the subfolder of the U-Net trained
    that way (absent: its own U-Net was), and ``"strength"``, the strength it repaints a
    crop with its sheet at (absent: the pass's, ``[render] face_strength``), and ``"paste"``,
    the paste window ``[inner, outer]`` of those crops (absent: :data:`PASTE`).
    :attr:`infusion` holds the settings (None for any other face model), and the render
    passes each infused panel's sheets to :meth:`repaint` with them; crops with a sheet
    are then painted by that U-Net."""

    def __init__(
        self,
        pipe,
        folder: Path | None,
        strength: float = FACE_STRENGTH,
        paste: tuple[float, float] = PASTE,
    ):
        import torch
        from diffusers import StableDiffusionImg2ImgPipeline, UNet2DConditionModel

        dtype, device = pipe.unet.dtype, pipe._execution_device
        unet, text_encoder = pipe.unet, pipe.text_encoder
        if folder is not None:
            unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=dtype)
        if folder is not None and (folder / "text_encoder").is_dir():
            from transformers import CLIPTextModel

            text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", torch_dtype=dtype)
        vae = pipe.vae
        if folder is not None and (folder / "vae").is_dir():  # a face model of its own latents
            from diffusers import AutoencoderKL

            vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=dtype).to(device)
        self.pipe = StableDiffusionImg2ImgPipeline(
            vae=vae,
            text_encoder=text_encoder.to(device),
            tokenizer=pipe.tokenizer,
            unet=unet.to(device),
            scheduler=type(pipe.scheduler).from_config(pipe.scheduler.config),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        self.pipe.set_progress_bar_config(disable=True)
        self.strength = strength
        self.paste = paste  # the paste window's (inner, outer): see window()
        self.folder = folder
        self.native = unet.config.sample_size * self.pipe.vae_scale_factor
        self._torch = torch
        self.cache = None  # the infusion's feature cache, made on first use
        trained_with = face_infusion(folder)
        self.infusion = trained_with.settings
        self.infused_strength, self.infused_paste = trained_with.strength, trained_with.paste
        self.infused_pipe = self.pipe  # what paints a crop with its sheet infused
        if trained_with.unet is not None:
            trained = UNet2DConditionModel.from_pretrained(trained_with.unet, torch_dtype=dtype)
            self.infused_pipe = StableDiffusionImg2ImgPipeline(
                **{**self.pipe.components, "unet": trained.to(device)},
                requires_safety_checker=False,
            )
            self.infused_pipe.set_progress_bar_config(disable=True)

    def repaint(
        self,
        image,
        faces,
        *,
        seed: int,
        steps: int,
        guidance: float,
        negative="",
        strength: float | None = None,
        refs=None,
        infusion=None,
        paste: tuple[float, float] | None = None,
    ):
        """``image`` with each face of ``faces`` repainted (a new image; seeded per face) at
        ``strength`` (None: the painter's).

        Without ``refs``, all of a panel's faces go in one batch. With ``refs`` (one
        :class:`~comicgen.infusion.CharacterRefs` or None per face) and ``infusion`` (its
        settings), each face is repainted on its own with its character's sheet infused
        (the character's box moved into the crop), so that the repainted face keeps what
        the sheet shows."""
        from dataclasses import replace

        from PIL import Image

        if not faces:
            return image.copy()
        squares, crops = [], []
        for face in faces:
            left, top, side = pixel_square(face.box, image.width, image.height)
            squares.append((left, top, side))
            crop = image.crop((left, top, left + side, top + side))
            crops.append(crop.resize((self.native, self.native), Image.Resampling.LANCZOS))
        seeds = [seed + 7919 * (i + 1) for i in range(len(faces))]
        strength = self.strength if strength is None else strength
        infuse = infusion is not None and infusion.weight > 0 and refs and any(refs)
        if infuse and self.infused_strength is not None:  # the sheet-trained U-Net's own
            strength = self.infused_strength
        if paste is None:
            paste = self.infused_paste if infuse and self.infused_paste else self.paste
        call = dict(
            strength=strength,
            # the image-to-image pipeline runs int(steps * strength) of them
            num_inference_steps=max(steps, math.ceil(1 / strength)),
            guidance_scale=guidance,
        )
        if not infuse:
            painted = self._paint([f.clause for f in faces], crops, seeds, negative, call)
        else:
            painted = []
            for face, crop, square, ref, s in zip(faces, crops, squares, refs, seeds, strict=True):
                box = ref and crop_box(ref.box or face.box, square, image.width, image.height)
                chars = [replace(ref, box=box, position=None)] if box else []
                painted += self._paint(
                    [face.clause], [crop], [s], negative, call, chars, infusion, seed
                )
        out = image.copy()
        for (left, top, side), face_image in zip(squares, painted, strict=True):
            small = face_image.resize((side, side), Image.Resampling.LANCZOS)
            out.paste(small, (left, top), window(side, *paste))
        return out

    def _paint(self, clauses, crops, seeds, negative, call, chars=(), infusion=None, ref_seed=0):
        from contextlib import nullcontext

        from comicgen.infusion import infused

        torch = self._torch
        context, pipe = nullcontext(), self.infused_pipe if chars else self.pipe
        if chars:
            if self.cache is None:
                from comicgen.infusion import FeatureCache

                self.cache = FeatureCache(max(1, infusion.cache_mb) * 1024**2)
            context = infused(
                pipe,
                list(chars),
                infusion,
                height=self.native,
                width=self.native,
                num_inference_steps=call["num_inference_steps"],
                guidance_scale=call["guidance_scale"],
                seed=ref_seed,
                cache=self.cache,
            )
        with torch.inference_mode(), context:
            return pipe(
                prompt=list(clauses),
                negative_prompt=[negative] * len(clauses) if negative else None,
                image=list(crops),
                generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                **call,
            ).images


class FaceInfusion(NamedTuple):
    """How a face model was trained to repaint with the sheet infused (its folder's
    ``comicgen.json``); all None for any other face model."""

    settings: Any = None  # comicgen.settings.InfusionSettings
    unet: Path | None = None  # the sheet-trained U-Net's folder (None: the face U-Net)
    strength: float | None = None  # its img2img strength (None: the pass's)
    paste: tuple[float, float] | None = None  # its paste window (None: PASTE)


def face_infusion(folder: Path | None) -> FaceInfusion:
    """The :class:`FaceInfusion` of the face model in ``folder`` (see
    :class:`FacePainter`), read and checked."""
    import json

    from comicgen.errors import ModelError
    from comicgen.settings import InfusionSettings

    path = folder / "comicgen.json" if folder is not None else None
    if path is None or not path.is_file():
        return FaceInfusion()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = ("infusion", "infusion_unet", "strength", "paste")
        settings, unet, strength, paste = (data.get(k) for k in keys)
        if settings is None:
            return FaceInfusion()
        settings = InfusionSettings(**settings)
        if strength is not None and not 0 < float(strength) <= 1:
            raise ValueError(f"strength {strength} is not in (0, 1]")
        if paste is not None:
            paste = tuple(float(v) for v in paste)
            if len(paste) != 2 or not 0 <= paste[0] < paste[1] <= 1:
                raise ValueError(
                    f"paste {list(paste)} is not [inner, outer] with 0 <= inner < outer <= 1"
                )
    except (ValueError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(
            f"{path}: not a face model's settings ({first})",
            hint='it holds {"infusion": {...}} (the infusion settings the face model was '
            'trained with) and optionally "infusion_unet" (its U-Net\'s subfolder); fix or '
            "remove the file",
        ) from None
    if unet is not None and not (folder / str(unet) / "config.json").is_file():
        raise ModelError(
            f"{path}: infusion_unet '{unet}' is not a U-Net folder",
            hint="it names a subfolder of the face model holding a diffusers U-Net",
        )
    unet = folder / str(unet) if unet is not None else None
    return FaceInfusion(settings, unet, float(strength) if strength is not None else None, paste)
