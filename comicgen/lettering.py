"""Text for balloons and captions: fonts, cleaning, measuring and wrapping.

One font is bundled (Kalam, SIL Open Font License, in ``comicgen/fonts/``): regular for
speech, thoughts and captions, bold for shouts. HTML and PNG both letter with it, and
both draw exactly the lines that :func:`wrap` decides — the browser never re-wraps.

Widths are measured once at a large reference size and scaled linearly, so a line
measures the same at any page scale (hinting never changes a line break).

Kalam covers Latin and Devanagari. For other letters a book letters with a *chain* of
faces (:mod:`comicgen.typefaces`: Kalam, then fallbacks found through fontconfig); a
text is cut into runs (:func:`runs`), each in the first face of the chain that has its
letters. Every measuring function takes the chain (or one face key).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

from comicgen.typefaces import (
    BUNDLED,
    FONT_DIR,
    FONT_FILES,
    Face,
    bundled_face,
    charset,
    coverage,
    face,
    needs_glyph,
)

__all__ = ["BUNDLED", "FONT_DIR", "FONT_FILES", "Face", "bundled_face", "coverage", "face"]

FONT_FAMILY = "Kalam"
FONT_LICENSE = "OFL.txt"

_REFERENCE_SIZE = 200
# C0/C1 controls except newline, and lone surrogates, which no renderer or XML accepts.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u3000]+")
_JOINERS = {"\u200d", "\ufe0e", "\ufe0f"}

# Closing punctuation that must not begin a line (kinsoku shori), CJK and Latin.
_NO_LINE_START = set(
    "、。，．・：；？！）」』】〕〉》ー…‥々ぁぃぅぇぉっゃゅょァィゥェォッャュョ,.!?;:)]}"
)

Faces = str | Sequence[str]  # one face key, or a chain of them (first = lettering face)


def _chain(faces: Faces) -> tuple[str, ...]:
    return (faces,) if isinstance(faces, str) else tuple(faces) or (BUNDLED,)


def _neutral(char: str) -> bool:
    """Spaces and punctuation: they stay in the face of the run they are in."""
    return unicodedata.category(char)[0] in "ZPC"


def _covers(key: str, cluster: str) -> bool:
    chars = charset(key)
    return all(ord(c) in chars for c in cluster if needs_glyph(c))


@functools.lru_cache(maxsize=8192)
def _runs(text: str, chain: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    if len(chain) == 1:
        return ((text, chain[0]),) if text else ()
    out: list[list[str]] = []
    for cluster in _clusters(text):
        current = out[-1][1] if out else None
        if current is not None and all(_neutral(c) for c in cluster) and _covers(current, cluster):
            key = current
        else:
            key = next((k for k in chain if _covers(k, cluster)), chain[0])
        if out and out[-1][1] == key:
            out[-1][0] += cluster
        else:
            out.append([cluster, key])
    return tuple((t, k) for t, k in out)


def runs(text: str, faces: Faces = BUNDLED) -> list[tuple[str, str]]:
    """``text`` cut into (text, face key) runs: each in the first face of the chain
    that has all its letters (spaces and punctuation stay with the run before them).
    A letter no face has stays in the first face (and was warned about)."""
    return list(_runs(text, _chain(faces)))


def main_face(text: str, faces: Faces = BUNDLED) -> str:
    """The face that letters most of ``text``: a block's own font in HTML (the others'
    runs are spans inside it)."""
    counts: dict[str, int] = {}
    for part, key in runs(text, faces):
        counts[key] = counts.get(key, 0) + sum(1 for c in part if not _neutral(c))
    return max(counts, key=lambda k: counts[k]) if counts else _chain(faces)[0]


def missing(text: str, faces: Faces = BUNDLED) -> list[str]:
    """The characters of ``text`` that its runs' faces have no glyph for."""
    return [
        c
        for part, key in runs(text, faces)
        for c in part
        if needs_glyph(c) and ord(c) not in charset(key)
    ]


@functools.lru_cache(maxsize=64)
def font(size: float, bold: bool = False, face_key: str = BUNDLED):
    """A face at ``size`` pixels (a Pillow ``FreeTypeFont``); Kalam by default."""
    from PIL import ImageFont

    chosen = face(face_key)
    return ImageFont.truetype(str(chosen.path(bold)), size=size, index=chosen.face_index(bold))


@functools.lru_cache(maxsize=16)
def _metrics(bold: bool, face_key: str) -> tuple[float, float]:
    ascent, descent = font(1000, bold, face_key).getmetrics()
    return ascent / 1000, descent / 1000


def baseline_offset(
    size: float, line_height: float, bold: bool = False, face_key: str = BUNDLED
) -> float:
    """Distance from the top of a line box to its baseline, as CSS places it.

    CSS centres the font's ascent + descent in the line box (half-leading on both
    sides); the PNG painter draws each line at the same baseline.
    """
    ascent, descent = _metrics(bold, face_key)
    return (line_height - (ascent + descent) * size) / 2 + ascent * size


def clean_text(text: str) -> str:
    """Text as it is lettered: controls dropped, runs of spaces folded, lines trimmed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = _CONTROL.sub("", text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


@functools.lru_cache(maxsize=8192)
def _reference_width(text: str, bold: bool, face_key: str) -> float:
    return font(_REFERENCE_SIZE, bold, face_key).getlength(text)


def text_width(text: str, size: float, bold: bool = False, faces: Faces = BUNDLED) -> float:
    """Advance width of one line of ``text`` at ``size`` pixels (the sum of its runs)."""
    if not text:
        return 0.0
    total = sum(_reference_width(part, bold, key) for part, key in runs(text, faces))
    return total * size / _REFERENCE_SIZE


def wrap(
    text: str, size: float, max_width: float, bold: bool = False, faces: Faces = BUNDLED
) -> list[str]:
    """Break ``text`` into lines no wider than ``max_width`` (greedy, by words).

    Explicit newlines are kept; a word longer than a line is broken between
    characters (never inside a combining sequence), so no line is ever too wide.
    """
    lines: list[str] = []
    for paragraph in clean_text(text).split("\n"):
        words = paragraph.split(" ")
        current = ""
        for word in words:
            if not word:
                continue
            candidate = f"{current} {word}" if current else word
            if text_width(candidate, size, bold, faces) <= max_width:
                current = candidate
                continue
            if current:
                lines.append(current)
                current = ""
            if text_width(word, size, bold, faces) <= max_width:
                current = word
                continue
            pieces = _break_word(word, size, max_width, bold, faces)
            lines.extend(pieces[:-1])
            current = pieces[-1]
        lines.append(current)
    while len(lines) > 1 and not lines[-1]:
        lines.pop()
    return lines or [""]


def _break_word(word: str, size: float, max_width: float, bold: bool, faces: Faces) -> list[str]:
    clusters = _clusters(word)
    pieces: list[str] = []
    start = 0
    while start < len(clusters):
        # the longest run of clusters from ``start`` that fits (at least one)
        lo, hi = start + 1, len(clusters)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if text_width("".join(clusters[start:mid]), size, bold, faces) <= max_width:
                lo = mid
            else:
                hi = mid - 1
        if lo < len(clusters) and lo - start > 1 and clusters[lo][0] in _NO_LINE_START:
            lo -= 1  # "。" and its kin never begin a line: the character before goes along
        pieces.append("".join(clusters[start:lo]))
        start = lo
    return pieces


def _clusters(word: str) -> list[str]:
    """Rough grapheme clusters: a base character with its marks and joined parts."""
    clusters: list[str] = []
    join_next = False
    for char in word:
        attach = clusters and (
            join_next or unicodedata.combining(char) or char in _JOINERS or _is_modifier(char)
        )
        if attach:
            clusters[-1] += char
        else:
            clusters.append(char)
        join_next = char == "\u200d"
    return clusters


def _is_modifier(char: str) -> bool:
    return "\U0001f3fb" <= char <= "\U0001f3ff" or unicodedata.category(char) == "Mn"
