"""The studio's own pages: the story list and the character library.

The character library shows each character's reference views as Infusion gets them
(``RefImage.image()``), the mask it infuses through (``RefImage.mask()``, from the
alpha channel or the plain border) and the mask's bounding box, so a bad sheet cut
shows before it spoils a page.
"""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import quote

from comicgen.serve.studio import Studio

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _render(**context) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("studio.html").render(**context)


def story_list(studio: Studio) -> str:
    stories = [(n, studio.ws.relative(p)) for n, p in studio.story_files().items()]
    return _render(kind="stories", title="Stories", stories=stories)


def _mask_box(mask) -> tuple[float, float, float, float]:
    import numpy as np

    from comicgen.infusion.refs import mask_bbox

    return mask_bbox(np.asarray(mask, dtype=np.float32) / 255.0)


def character_page(studio: Studio) -> str:
    library = studio.library()
    if studio.ws.characters_dir.is_dir():
        try:
            library.import_folder(studio.ws.characters_dir)
        except Exception:  # noqa: BLE001 - a broken character file shows in the story overlay
            pass
    characters = []
    for record in library.list_characters():
        views = []
        for i, image in enumerate(record.images):
            mask = image.mask()
            total = sum(level * n for level, n in enumerate(mask.histogram()))
            coverage = round(100 * total / (255 * mask.width * mask.height))
            box = " ".join(f"{v:.2f}" for v in _mask_box(mask))
            base = f"/_studio/characters/{quote(record.name, safe='')}/{i}"
            views.append(
                {
                    "src": f"{base}-view.png",
                    "mask": f"{base}-mask.png",
                    "width": image.width,
                    "height": image.height,
                    "coverage": coverage,
                    "box": box,
                    "source": image.source,
                }
            )
        characters.append({"name": record.name, "description": record.description, "views": views})
    return _render(kind="characters", title="Characters", characters=characters)


def view_png(studio: Studio, name: str, index: int, kind: str) -> bytes | None:
    """A reference view as infused, or its mask (red) with the mask's box drawn."""
    from PIL import Image, ImageDraw

    if kind not in ("view", "mask"):
        return None
    record = studio.library().find_character(name)
    if record is None or not 0 <= index < len(record.images):
        return None
    ref = record.images[index]
    image = ref.image()
    if kind == "mask":
        mask = ref.mask()
        tint = Image.new("RGB", image.size, (230, 40, 40))
        image = Image.composite(Image.blend(image, tint, 0.55), image, mask)
        x0, y0, x1, y1 = _mask_box(mask)
        w, h = image.size
        draw = ImageDraw.Draw(image)
        draw.rectangle(
            (x0 * w, y0 * h, x1 * w - 1, y1 * h - 1), outline=(20, 90, 230), width=max(1, w // 96)
        )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
