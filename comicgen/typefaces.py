"""Fonts for every script: the bundled lettering face and the fallbacks found on the system.

Kalam (bundled) covers Latin and Devanagari. For the letters it lacks, fallback faces are
found through fontconfig (``fc-match``/``fc-query``, the system's own font matcher), in
the order fontconfig prefers for the story's language, after the families a workspace
names in ``[page] fonts``. A book uses a *chain* of faces (Kalam first); each piece of
text is split into runs, each run lettered in the first face of the chain whose
character map has it (see :func:`comicgen.lettering.runs`). HTML and PNG letter the same
runs in the same files, so the two agree.

Where no face has a letter, the layout warns once per script and names the package that
brings a font for it. Colour-bitmap fonts (emoji) are not used: Pillow cannot scale them,
and a page must look the same in PNG and HTML.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import struct
import subprocess
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

FONT_DIR = Path(__file__).parent / "fonts"
BUNDLED = "kalam"
FONT_FILES = {False: "Kalam-Regular.ttf", True: "Kalam-Bold.ttf"}

# Families whose licence lets a build copy them next to its pages (SIL OFL, Apache,
# Bitstream Vera/DejaVu, GPL with font exception). Others are referenced with local().
OPEN_FAMILIES = re.compile(
    r"^(Noto|DejaVu|Liberation|Droid|Free(Sans|Serif|Mono)|Source Han|WenQuanYi|IPA|"
    r"Vazirmatn|Lohit|Kalam|Symbola|Open ?Sans|Roboto)",
    re.IGNORECASE,
)
# Without fontconfig (Windows, macOS without Homebrew's fontconfig): these files are
# looked for in the usual font folders, best first.
FALLBACK_FILES = [
    ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    ("NotoSans-Regular.ttf", "NotoSans-Bold.ttf"),
    ("NotoSansArabic-Regular.ttf", "NotoSansArabic-Bold.ttf"),
    ("NotoSansHebrew-Regular.ttf", "NotoSansHebrew-Bold.ttf"),
    ("NotoSansCJK-Regular.ttc", "NotoSansCJK-Bold.ttc"),
    ("NotoSansCJKjp-Regular.otf", "NotoSansCJKjp-Bold.otf"),
    ("DroidSansFallbackFull.ttf", None),
    ("LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf"),
    ("FreeSans.ttf", "FreeSansBold.ttf"),
]
# Characters no font needs to have: spaces, controls, joiners and combining marks
# (these are drawn with their base letter).
IGNORED_CATEGORIES = {"Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Me"}

# (first, last, script, Debian package) for the warning when no face has a letter.
_SCRIPTS = [
    (0x0370, 0x03FF, "Greek", "fonts-dejavu-core"),
    (0x0400, 0x052F, "Cyrillic", "fonts-dejavu-core"),
    (0x0530, 0x058F, "Armenian", "fonts-noto-core"),
    (0x0590, 0x05FF, "Hebrew", "fonts-noto-core"),
    (0x0600, 0x06FF, "Arabic", "fonts-noto-core"),
    (0x0750, 0x077F, "Arabic", "fonts-noto-core"),
    (0x0E00, 0x0E7F, "Thai", "fonts-noto-core"),
    (0x10A0, 0x10FF, "Georgian", "fonts-noto-core"),
    (0x1100, 0x11FF, "Korean (Hangul)", "fonts-noto-cjk"),
    (0x2E80, 0x2FFF, "Chinese/Japanese (CJK)", "fonts-noto-cjk"),
    (0x3000, 0x303F, "Chinese/Japanese (CJK)", "fonts-noto-cjk"),
    (0x3040, 0x30FF, "Japanese (kana)", "fonts-noto-cjk"),
    (0x3100, 0x31FF, "Chinese/Japanese (CJK)", "fonts-noto-cjk"),
    (0x3400, 0x4DBF, "Chinese/Japanese (CJK)", "fonts-noto-cjk"),
    (0x4E00, 0x9FFF, "Chinese/Japanese (CJK)", "fonts-noto-cjk"),
    (0xAC00, 0xD7AF, "Korean (Hangul)", "fonts-noto-cjk"),
    (0xE000, 0xF8FF, "private-use", "the font the text was written for"),
    (0xF900, 0xFAFF, "Chinese/Japanese (CJK)", "fonts-noto-cjk"),
    (0xFB1D, 0xFB4F, "Hebrew", "fonts-noto-core"),
    (0xFB50, 0xFDFF, "Arabic", "fonts-noto-core"),
    (0xFE70, 0xFEFF, "Arabic", "fonts-noto-core"),
    (0xFF00, 0xFFEF, "Chinese/Japanese (CJK)", "fonts-noto-cjk"),
    (0x2600, 0x27BF, "symbols and emoji", "fonts-symbola"),
    (0x1F000, 0x1FAFF, "emoji", "fonts-symbola"),
    (0x20000, 0x3FFFF, "Chinese/Japanese (CJK)", "fonts-noto-cjk"),
]


@dataclass(frozen=True)
class Face:
    """A font family lettering can use: the bundled Kalam or a fallback."""

    key: str  # CSS family name and asset stem, [A-Za-z0-9-] only
    regular: Path
    bold: Path | None
    family: str = "Kalam"
    index: int = 0  # face index inside a font collection (.ttc)
    bold_index: int = 0
    copyable: bool = True  # may be copied into a build (open licence)

    def path(self, bold: bool = False) -> Path:
        return self.bold if bold and self.bold is not None else self.regular

    def face_index(self, bold: bool = False) -> int:
        return self.bold_index if bold and self.bold is not None else self.index


def bundled_face() -> Face:
    return Face(BUNDLED, FONT_DIR / FONT_FILES[False], FONT_DIR / FONT_FILES[True])


# -- the registry of faces this process knows (keys stay stable across runs) --------------

_FACES: dict[str, Face] = {}
_CHARSETS: dict[str, frozenset[int]] = {}


def _register(face: Face, charset: frozenset[int]) -> Face:
    _FACES[face.key] = face
    _CHARSETS[face.key] = charset
    return face


def face(key: str = BUNDLED) -> Face:
    if key == BUNDLED:
        return bundled_face()
    if key not in _FACES:  # chosen by another process, or for another language
        system_faces()
        if key not in _FACES:
            _every_face()
    return _FACES[key]


def charset(key: str) -> frozenset[int]:
    """The code points face ``key`` maps to a glyph."""
    if key == BUNDLED:
        return coverage(bundled_face().regular)
    face(key)
    return _CHARSETS[key]


def _key(family: str) -> str:
    return "fb-" + re.sub(r"[^A-Za-z0-9]+", "-", family).strip("-")


# -- fontconfig -----------------------------------------------------------------------------

_FORMAT = r"%{file}\t%{index}\t%{family[0]}\t%{weight}\t%{slant}\t%{color}\t%{charset}\n"


def _fc(*args: str) -> str | None:
    exe = shutil.which(args[0])
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, *args[1:]], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _parse_charset(text: str) -> frozenset[int]:
    points: set[int] = set()
    for part in text.split():
        first, _, last = part.partition("-")
        try:
            points.update(range(int(first, 16), int(last or first, 16) + 1))
        except ValueError:
            continue
    return frozenset(points)


def _records(output: str) -> Iterable[tuple[str, int, str, int, int, bool, str]]:
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) != 7:
            continue
        file, index, family, weight, slant, color, chars = parts
        try:
            yield file, int(index), family, int(weight), int(slant), color == "True", chars
        except ValueError:
            continue


@functools.lru_cache(maxsize=8)
def _fontconfig_faces(language: str, names: tuple[str, ...]) -> tuple[Face, ...] | None:
    """Regular, upright, monochrome faces: ``names`` first, then fontconfig's order for
    ``language``. None when fontconfig is not installed."""
    patterns = [*names, f"sans-serif:lang={language}" if language else "sans-serif"]
    found: list[Face] = []
    seen: set[str] = set()
    any_output = False
    for number, pattern in enumerate(patterns):
        named = number < len(names)
        if named and Path(pattern).is_file():
            out = _fc("fc-query", "--format", _FORMAT, pattern)
        else:
            out = _fc("fc-match", "-s", "--format", _FORMAT, _escape(pattern))
        if out is None:
            continue
        any_output = True
        for file, index, family, weight, slant, color, chars in _records(out):
            if color or slant != 0 or not 50 <= weight <= 105 or family in seen:
                continue
            if family.lower() == "kalam":
                continue
            if named and not Path(pattern).is_file() and family.lower() != pattern.lower():
                break  # fontconfig substituted another family: the named one is absent
            seen.add(family)
            found.append(_register_found(file, index, family, chars, named))
            if named:
                break
    return tuple(found) if any_output else None


def _register_found(file: str, index: int, family: str, chars: str, named: bool) -> Face:
    bold = _bold_of(family, file)
    entry = Face(
        key=_key(family),
        regular=Path(file),
        bold=Path(bold[0]) if bold else None,
        family=family,
        index=index,
        bold_index=bold[1] if bold else 0,
        copyable=named or bool(OPEN_FAMILIES.match(family)),
    )
    return _register(entry, _parse_charset(chars))


@functools.lru_cache(maxsize=1)
def _every_face() -> None:
    """Register every regular face fontconfig knows (to find a face by its key)."""
    for file, index, family, weight, slant, color, chars in _records(
        _fc("fc-list", "--format", _FORMAT) or ""
    ):
        if color or slant != 0 or not 50 <= weight <= 105 or _key(family) in _FACES:
            continue
        _register_found(file, index, family, chars, False)


def _escape(pattern: str) -> str:
    # a family name is a fontconfig pattern: '-', ':' and ',' are special in it
    if ":" in pattern and pattern.startswith("sans-serif"):
        return pattern
    return re.sub(r"([-:,\\])", r"\\\1", pattern)


@functools.lru_cache(maxsize=64)
def _bold_of(family: str, regular_file: str) -> tuple[str, int] | None:
    out = _fc("fc-match", "--format", _FORMAT, _escape(family) + ":weight=200:slant=0")
    for file, index, got, weight, _slant, _color, _chars in _records(out or ""):
        if got == family and weight >= 180 and file != regular_file:
            return file, index
    return None


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
def _walked_faces() -> tuple[Face, ...]:
    """Without fontconfig: the known open fonts found in the usual folders."""
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
            family = regular.rsplit(".", 1)[0]
            entry = Face(_key(family), found[regular], found.get(bold) if bold else None, family)
            faces.append(_register(entry, coverage(found[regular])))
    return tuple(faces)


def system_faces(language: str = "", names: Sequence[str] = ()) -> tuple[Face, ...]:
    """Fallback faces on this machine, best first (``names`` first of all)."""
    faces = _fontconfig_faces(language, tuple(names))
    return faces if faces is not None else _walked_faces()


# -- choosing a book's chain --------------------------------------------------------------


def needs_glyph(char: str) -> bool:
    return unicodedata.category(char) not in IGNORED_CATEGORIES


def choose_chain(
    texts: Iterable[str], language: str = "", names: Sequence[str] = ()
) -> tuple[tuple[str, ...], list[str]]:
    """The face chain for ``texts`` (Kalam first) and one warning per uncovered script."""
    needed = {ord(c) for text in texts for c in text if needs_glyph(c)}
    missing = needed - charset(BUNDLED)
    chain = [BUNDLED]
    if missing:
        for candidate in system_faces(language, names):
            covered = missing & charset(candidate.key)
            if covered:
                chain.append(candidate.key)
                missing -= covered
            if not missing:
                break
    warnings = missing_warnings(missing)
    if names:
        families = {f.family.lower() for f in system_faces(language, names)}
        files = {str(f.regular) for f in system_faces(language, names)}
        for name in names:
            if name.lower() not in families and name not in files:
                warnings.append(
                    f"[page] fonts: {name!r} is not an installed font family or font file "
                    "(fc-list : family lists the families) — it is not used"
                )
    return tuple(chain), warnings


def missing_warnings(missing: Iterable[int]) -> list[str]:
    by_script: dict[tuple[str, str], list[str]] = {}
    for code in sorted(missing):
        script, package = script_of(code)
        by_script.setdefault((script, package), []).append(chr(code))
    warnings = []
    for (script, package), chars in by_script.items():
        sample = "".join(chars[:8]) + ("…" if len(chars) > 8 else "")
        warnings.append(
            f"no installed font has the {script} characters {sample!r}: they would show as "
            f"empty boxes — install a font for them ({_install(package)}) "
            "or name one in [page] fonts"
        )
    return warnings


def _install(package: str) -> str:
    return f"Debian/Ubuntu: apt install {package}" if package.startswith("fonts-") else package


def script_of(code: int) -> tuple[str, str]:
    for first, last, script, package in _SCRIPTS:
        if first <= code <= last:
            return script, package
    try:
        name = unicodedata.name(chr(code)).split()[0].title()
    except ValueError:
        name = "unnamed"
    return name, "fonts-noto"


# -- reading a font's character map (the bundled font, and for checking) ---------------------


@functools.lru_cache(maxsize=16)
def coverage(path: Path, index: int = 0) -> frozenset[int]:
    """The code points a TrueType/OpenType font (``index`` in a collection) maps to a glyph."""
    try:
        return frozenset(_read_cmap(Path(path).read_bytes(), index))
    except (OSError, struct.error, ValueError, IndexError):
        return frozenset()


def _read_cmap(data: bytes, index: int = 0) -> set[int]:
    base = 0
    if data[:4] == b"ttcf":
        (base,) = struct.unpack(">I", data[12 + 4 * index : 16 + 4 * index])
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
        pid, _eid, offset = struct.unpack(">HHI", data[cmap + 4 + 8 * i : cmap + 12 + 8 * i])
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
        points = _format4(data, subtables[4])
    return points


def _format4(data: bytes, at: int) -> set[int]:
    points: set[int] = set()
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
