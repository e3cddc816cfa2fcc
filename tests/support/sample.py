"""A small book with Pillow-drawn panels, for tests, benchmarks and layout previews.

It needs no diffusion model: each panel is a flat little scene (sky, ground, one or
two round characters) whose characters' positions are the speakers' anchors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from comicgen.book import Book, PageContent, PanelContent, Speech

SIZES = {"square": (256, 256), "wide": (384, 256), "tall": (256, 384)}
SKIES = ["#9fd3ff", "#ffd59f", "#c7b8ff", "#a8f0c8", "#ffb3c1", "#b8e1ff"]
BODIES = {"Alice": "#e4572e", "Bob": "#2e86ab", "Cat": "#8e44ad"}

LINES = [
    ("Alice", "speech", "Did you see that? The lighthouse just blinked twice!"),
    ("Bob", "thought", "Not again..."),
    ("Alice", "shout", "BOB! WAKE UP!"),
    ("Bob", "speech", "I'm up, I'm up. Which way is the harbour?"),
    ("Alice", "speech", "Follow the gulls. They always know."),
    ("Cat", "thought", "Fish. Fish would be nice."),
]


def draw_panel(path: Path, shape: str, index: int, positions: Sequence[tuple[str, float]]):
    """Draw a panel: sky, ground and a character at each (name, x fraction)."""
    from PIL import Image, ImageDraw

    from comicgen.fsutil import atomic_save_image

    w, h = SIZES[shape]
    image = Image.new("RGB", (w, h), SKIES[index % len(SKIES)])
    draw = ImageDraw.Draw(image)
    ground = int(h * 0.72)
    draw.rectangle((0, ground, w, h), fill="#6b8e4e")
    draw.ellipse((w * 0.7, h * 0.08, w * 0.85, h * 0.08 + w * 0.15), fill="#fff6a8")
    for name, x in positions:
        colour = BODIES.get(name, "#444444")
        cx, r = x * w, h * 0.11
        draw.ellipse((cx - r, ground - 3.2 * r, cx + r, ground - 1.2 * r), fill="#f2d3b1")
        draw.rounded_rectangle(
            (cx - r, ground - 1.4 * r, cx + r, ground + 0.4 * r), r / 2, fill=colour
        )
        draw.ellipse(
            (cx - r * 0.45, ground - 2.4 * r, cx - r * 0.2, ground - 2.1 * r), fill="#222222"
        )
        draw.ellipse(
            (cx + r * 0.2, ground - 2.4 * r, cx + r * 0.45, ground - 2.1 * r), fill="#222222"
        )
    atomic_save_image(image, path)
    return (w, h)


def sample_book(
    out_dir: Path,
    pages: Sequence[int] = (4, 3),
    *,
    name: str = "sample",
    title: str = "The Lighthouse",
    direction: str = "ltr",
    dialogue: Sequence[tuple[str, str, str]] | None = None,
    captions: bool = True,
) -> Book:
    """A book of ``len(pages)`` pages with ``pages[i]`` panels each, drawn into
    ``out_dir/panels/``. Dialogue cycles through ``dialogue`` (speaker, kind, text).
    """
    out_dir = Path(out_dir)
    lines = list(dialogue) if dialogue is not None else LINES
    shapes = ["wide", "square", "square", "tall", "square", "wide"]
    book_pages = []
    counter = 0
    for page_number, count in enumerate(pages, start=1):
        panels = []
        for panel_number in range(1, count + 1):
            shape = shapes[counter % len(shapes)]
            speaker, kind, text = lines[counter % len(lines)] if lines else ("", "speech", "")
            other = "Bob" if speaker != "Bob" else "Alice"
            cast = [(speaker, 0.3), (other, 0.72)] if speaker else []
            path = out_dir / "panels" / f"p{page_number:02d}-{panel_number}.png"
            size = draw_panel(path, shape, counter, cast)
            dialogue_here = [Speech(text, kind, speaker, (0.3, 0.55))] if text else []
            if counter % 3 == 1 and lines:
                reply = lines[(counter + 1) % len(lines)]
                dialogue_here.append(Speech(reply[2], reply[1], other, (0.72, 0.55)))
            caption = None
            if captions and panel_number == 1:
                caption = f"Page {page_number}. Meanwhile, at the old lighthouse..."
            panels.append(
                PanelContent(
                    id=f"{page_number}.{panel_number}",
                    image=path,
                    image_size=size,
                    alt=f"{speaker or 'nobody'} and {other} by the sea, {shape} shot",
                    shape=shape,
                    caption=caption,
                    dialogue=dialogue_here,
                    characters=[n for n, _ in cast],
                )
            )
            counter += 1
        book_pages.append(PageContent(number=page_number, panels=panels))
    return Book(
        name=name,
        title=title,
        pages=book_pages,
        author="Sample Writer",
        language="en",
        direction=direction,  # type: ignore[arg-type]
        characters=["Alice", "Bob"],
        summary="Two friends follow a blinking lighthouse.",
    )
