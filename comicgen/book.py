"""What a rendered story hands to layout and publishing: text and painted panels.

``render`` turns a story plus its painted panel images into a :class:`Book`;
``layout`` turns a book into page geometry; ``publish`` writes HTML, PNG, CBZ, PDF.
Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SpeechKind = Literal["speech", "thought", "shout", "whisper"]
Direction = Literal["ltr", "rtl"]


@dataclass
class Speech:
    text: str
    kind: SpeechKind = "speech"
    speaker: str | None = None
    # Where the speaker stands in the panel image, as fractions (x, y) of its width and
    # height; None when unknown (the balloon then has a short tail or none).
    anchor: tuple[float, float] | None = None
    # The speaker is out of frame: the tail points to the frame's nearest edge.
    offpanel: bool = False
    # A hand-placed balloon centre, as fractions (x, y) of the frame; None = automatic.
    at: tuple[float, float] | None = None
    # Lettered in a caption box, not a balloon (the narrator, a voice-only cast entry).
    caption: bool = False


@dataclass
class SoundEffect:
    """Display lettering on the art: text, centre (fractions of the frame), rotation in
    degrees (clockwise), fill colour and letter height (fraction of the frame's height)."""

    text: str
    at: tuple[float, float] = (0.5, 0.5)
    angle: float = -8.0
    color: str = "#e63222"
    size: float = 0.16


@dataclass
class PanelContent:
    id: str  # "page.panel", 1-based, e.g. "2.1"
    image: Path  # the painted panel (PNG) inside the build folder
    image_size: tuple[int, int]  # (width, height) in pixels
    alt: str  # the prompt, expanded: alt text in HTML
    shape: Literal["auto", "square", "wide", "tall"] | None = None  # None: auto
    caption: str | None = None
    caption_at: Literal["top", "bottom"] = "top"
    dialogue: list[Speech] = field(default_factory=list)
    characters: list[str] = field(default_factory=list)
    sfx: list[SoundEffect] = field(default_factory=list)
    # Centre of interest (fractions of the image) kept in view by cover-cropping.
    focus: tuple[float, float] = (0.5, 0.5)
    # Painted at its frame's aspect (render lays the pages out first): where rounding to
    # the model's size multiple leaves a small miss, the frame meets the painting.
    fitted: bool = False


@dataclass
class PageContent:
    number: int  # 1-based
    panels: list[PanelContent]
    layout: str | list[int] | None = None  # e.g. "2x2", [1, 2, 1]; None = automatic


@dataclass
class Book:
    name: str  # the story's file stem; output goes to build/<name>/
    title: str
    pages: list[PageContent]
    author: str | None = None
    language: str = "en"
    direction: Direction = "ltr"
    characters: list[str] = field(default_factory=list)
    summary: str | None = None
