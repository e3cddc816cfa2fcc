"""What a rendered story hands to layout and publishing: text and painted panels.

``render`` turns a story plus its painted panel images into a :class:`Book`;
``layout`` turns a book into page geometry; ``publish`` writes HTML, PNG, CBZ, PDF.
Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SpeechKind = Literal["speech", "thought", "shout"]
Direction = Literal["ltr", "rtl"]


@dataclass
class Speech:
    text: str
    kind: SpeechKind = "speech"
    speaker: str | None = None
    # Where the speaker stands in the panel image, as fractions (x, y) of its width and
    # height; None when unknown (the balloon then has a short tail or none).
    anchor: tuple[float, float] | None = None


@dataclass
class PanelContent:
    id: str  # "page.panel", 1-based, e.g. "2.1"
    image: Path  # the painted panel (PNG) inside the build folder
    image_size: tuple[int, int]  # (width, height) in pixels
    alt: str  # the prompt, expanded: alt text in HTML
    shape: Literal["square", "wide", "tall"] | None = None
    caption: str | None = None
    caption_at: Literal["top", "bottom"] = "top"
    dialogue: list[Speech] = field(default_factory=list)
    characters: list[str] = field(default_factory=list)
    # Centre of interest (fractions of the image) kept in view by cover-cropping.
    focus: tuple[float, float] = (0.5, 0.5)


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
