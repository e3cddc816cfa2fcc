"""Text for balloons and captions: the bundled font, cleaning, measuring and wrapping.

One font is bundled (Kalam, SIL Open Font License, in ``comicgen/fonts/``): regular for
speech, thoughts and captions, bold for shouts. HTML and PNG both letter with it, and
both draw exactly the lines that :func:`wrap` decides — the browser never re-wraps.

Widths are measured once at a large reference size and scaled linearly, so a line
measures the same at any page scale (hinting never changes a line break).

Kalam covers Latin and Devanagari. A text with letters it lacks (Arabic, Hebrew,
Cyrillic, CJK, ...) is lettered in a *fallback face*: an open-licensed font found on
the machine (DejaVu, Noto, Liberation, Droid Sans Fallback) that covers them; the
build copies it next to the pages so the browser uses the same one. Without such a
font the text still wraps and draws, with the missing glyphs as boxes.
"""

from __future__ import annotations

import functools
import os
import re
import struct
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

FONT_DIR = Path(__file__).parent / "fonts"
FONT_FAMILY = "Kalam"
FONT_FILES = {False: "Kalam-Regular.ttf", True: "Kalam-Bold.ttf"}
FONT_LICENSE = "OFL.txt"

_REFERENCE_SIZE = 200
# C0/C1 controls except newline, and lone surrogates, which no renderer or XML accepts.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u3000]+")
_JOINERS = {"\u200d", "\ufe0e", "\ufe0f"}


BUNDLED = "kalam"
# Open-licensed fonts that may stand in for scripts Kalam lacks, best first:
# (regular file, bold file or None). Only these are ever copied into a build.
FALLBACK_FILES = [
    ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    ("NotoSans-Regular.ttf", "NotoSans-Bold.ttf"),
    ("NotoSansArabic-Regular.ttf", "NotoSansArabic-Bold.ttf"),
    ("NotoSansHebrew-Regular.ttf", "NotoSansHebrew-Bold.ttf"),
    ("NotoSansCJK-Regular.ttc", "NotoSansCJK-Bold.ttc"),
    ("NotoSansCJKjp-Regular.otf", "NotoSansCJKjp-Bold.otf"),
    ("DroidSansFallbackFull.ttf", None),
    ("DroidSansFallback.ttf", None),
    ("LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf"),
    ("FreeSans.ttf", "FreeSansBold.ttf"),
]
_IGNORED_CATEGORIES = {"Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Me"}


@dataclass(frozen=True)
class Face:
    """A font family lettering can use: the bundled Kalam or a fallback."""

    key: str  # CSS family name and asset stem, [A-Za-z0-9-] only
    regular: Path
    bold: Path | None

    def path(self, bold: bool = False) -> Path:
        return self.bold if bold and self.bold is not None else self.regular


def bundled_face() -> Face:
    return Face(BUNDLED, FONT_DIR / FONT_FILES[False], FONT_DIR / FONT_FILES[True])


def font_path(bold: bool = False) -> Path:
    return FONT_DIR / FONT_FILES[bold]


def _font_dirs() -> list[Path]:
    dirs = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts")]
    home = Path.home()
    dirs += [home / ".local/share/fonts", home / ".fonts"]
    if sys.platform == "darwin":
        dirs += [Path("/Library/Fonts"), home / "Library/Fonts"]
    if os.name == "nt":
        dirs.append(Path(os.environ.get("WINDIR", "C:/Windows")) / "Fonts")
    return [d for d in dirs if d.is_dir()]


@functools.lru_cache(maxsize=1)
def fallback_faces() -> tuple[Face, ...]:
    """The fallback faces installed on this machine, best first."""
    found: dict[str, Path] = {}
    wanted = {name for pair in FALLBACK_FILES for name in pair if name}
    for folder in _font_dirs():
        for root, _dirs, files in os.walk(folder):
            for name in files:
                if name in wanted and name not in found:
                    found[name] = Path(root) / name
    faces = []
    for regular, bold in FALLBACK_FILES:
        if regular in found:
            key = "fallback-" + re.sub(r"[^A-Za-z0-9]+", "-", regular.rsplit(".", 1)[0])
            faces.append(Face(key, found[regular], found.get(bold) if bold else None))
    return tuple(faces)


def face(key: str = BUNDLED) -> Face:
    if key == BUNDLED:
        return bundled_face()
    for candidate in fallback_faces():
        if candidate.key == key:
            return candidate
    raise KeyError(key)


def face_for(text: str) -> str:
    """The face to letter ``text`` with: Kalam, unless a fallback covers more of it."""
    needed = {ord(c) for c in text if unicodedata.category(c) not in _IGNORED_CATEGORIES}
    missing = needed - coverage(bundled_face().regular)
    if not missing:
        return BUNDLED
    best, best_count = BUNDLED, 0
    for candidate in fallback_faces():
        count = len(missing & coverage(candidate.regular))
        if count > best_count:
            best, best_count = candidate.key, count
        if count == len(missing):
            break
    return best


@functools.lru_cache(maxsize=16)
def coverage(path: Path) -> frozenset[int]:
    """The code points a TrueType/OpenType font maps to a glyph (its cmap)."""
    try:
        return frozenset(_read_cmap(Path(path).read_bytes()))
    except (OSError, struct.error, ValueError):
        return frozenset()


def _read_cmap(data: bytes) -> set[int]:
    base = struct.unpack(">I", data[12:16])[0] if data[:4] == b"ttcf" else 0
    (tables,) = struct.unpack(">H", data[base + 4 : base + 6])
    cmap = None
    for i in range(tables):
        record = base + 12 + 16 * i
        if data[record : record + 4] == b"cmap":
            (cmap,) = struct.unpack(">I", data[record + 8 : record + 12])
    if cmap is None:
        return set()
    (count,) = struct.unpack(">H", data[cmap + 2 : cmap + 4])
    subtables = {}
    for i in range(count):
        pid, eid, offset = struct.unpack(">HHI", data[cmap + 4 + 8 * i : cmap + 12 + 8 * i])
        (fmt,) = struct.unpack(">H", data[cmap + offset : cmap + offset + 2])
        if pid in (0, 3):
            subtables.setdefault(fmt, cmap + offset)
    points: set[int] = set()
    if 12 in subtables:
        at = subtables[12]
        (groups,) = struct.unpack(">I", data[at + 12 : at + 16])
        for g in range(groups):
            start, end, glyph = struct.unpack(">III", data[at + 16 + 12 * g : at + 28 + 12 * g])
            points.update(range(start if glyph else start + 1, end + 1))
    elif 4 in subtables:
        at = subtables[4]
        (seg2,) = struct.unpack(">H", data[at + 6 : at + 8])
        ends = struct.unpack(f">{seg2 // 2}H", data[at + 14 : at + 14 + seg2])
        starts_at = at + 16 + seg2
        starts = struct.unpack(f">{seg2 // 2}H", data[starts_at : starts_at + seg2])
        deltas = struct.unpack(f">{seg2 // 2}h", data[starts_at + seg2 : starts_at + 2 * seg2])
        ranges_at = starts_at + 2 * seg2
        offsets = struct.unpack(f">{seg2 // 2}H", data[ranges_at : ranges_at + seg2])
        for i, (start, end, delta, offset) in enumerate(
            zip(starts, ends, deltas, offsets, strict=True)
        ):
            for code in range(start, min(end, 0xFFFE) + 1):
                if offset == 0:
                    glyph = (code + delta) & 0xFFFF
                else:
                    where = ranges_at + 2 * i + offset + 2 * (code - start)
                    (glyph,) = struct.unpack(">H", data[where : where + 2])
                    glyph = (glyph + delta) & 0xFFFF if glyph else 0
                if glyph:
                    points.add(code)
    return points


@functools.lru_cache(maxsize=64)
def font(size: float, bold: bool = False, face_key: str = BUNDLED):
    """A face at ``size`` pixels (a Pillow ``FreeTypeFont``); Kalam by default."""
    from PIL import ImageFont

    return ImageFont.truetype(str(face(face_key).path(bold)), size=size)


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


def text_width(text: str, size: float, bold: bool = False, face_key: str = BUNDLED) -> float:
    """Advance width of one line of ``text`` at ``size`` pixels."""
    if not text:
        return 0.0
    return _reference_width(text, bold, face_key) * size / _REFERENCE_SIZE


def wrap(
    text: str, size: float, max_width: float, bold: bool = False, face_key: str = BUNDLED
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
            if text_width(candidate, size, bold, face_key) <= max_width:
                current = candidate
                continue
            if current:
                lines.append(current)
                current = ""
            if text_width(word, size, bold, face_key) <= max_width:
                current = word
                continue
            pieces = _break_word(word, size, max_width, bold, face_key)
            lines.extend(pieces[:-1])
            current = pieces[-1]
        lines.append(current)
    while len(lines) > 1 and not lines[-1]:
        lines.pop()
    return lines or [""]


def _break_word(word: str, size: float, max_width: float, bold: bool, face_key: str) -> list[str]:
    clusters = _clusters(word)
    pieces: list[str] = []
    start = 0
    while start < len(clusters):
        # the longest run of clusters from ``start`` that fits (at least one)
        lo, hi = start + 1, len(clusters)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if text_width("".join(clusters[start:mid]), size, bold, face_key) <= max_width:
                lo = mid
            else:
                hi = mid - 1
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
