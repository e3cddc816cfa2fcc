"""Characters in the library: adding, finding, removing, and character folders.

:class:`CharacterStore` is the characters' half of :class:`comicgen.library.Library`.
Reference images are stored normalised (see :mod:`comicgen.images`) as PNG bytes with
the sha256 of their pixels, their size and where they came from.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from comicgen.errors import ComicgenError, did_you_mean
from comicgen.fsutil import atomic_write_bytes, safe_filename

if TYPE_CHECKING:
    from PIL import Image

    from comicgen.images import EncodedImage
    from comicgen.library.database import Database
    from comicgen.library.folders import CharacterFile
    from comicgen.library.models import Character, ReferenceImage

MAX_NAME_LENGTH = 64
MAX_DESCRIPTION_LENGTH = 2000


class RefImage:
    """One reference image of a character: its stored PNG and what is known about it."""

    def __init__(
        self,
        sha256: str,
        width: int,
        height: int,
        source: str = "",
        png: bytes | None = None,
        *,
        mode: str = "RGB",
        id: int | None = None,
        loader: Callable[[int], bytes] | None = None,
    ):
        self.sha256 = sha256
        self.width = width
        self.height = height
        self.source = source
        self.mode = mode
        self.id = id
        self._png = png
        self._loader = loader
        self._decoded: Image.Image | None = None
        self._mask: Image.Image | None = None

    def __repr__(self) -> str:
        return f"RefImage({self.sha256[:12]}, {self.width}x{self.height}, {self.source!r})"

    @property
    def png(self) -> bytes:
        """The normalised image as PNG (RGB, or RGBA when its alpha is the mask)."""
        if self._png is None:
            if self._loader is None or self.id is None:
                raise RuntimeError("this RefImage holds no PNG bytes")
            self._png = self._loader(self.id)
        return self._png

    @property
    def has_alpha(self) -> bool:
        return self.mode == "RGBA"

    def _image(self) -> Image.Image:
        if self._decoded is None:
            from comicgen.images import decode_png

            self._decoded = decode_png(self.png)
        return self._decoded

    def image(self) -> Image.Image:
        """The picture as RGB (a transparent one composited on white)."""
        from comicgen.images import flatten

        return flatten(self._image())

    def mask(self) -> Image.Image:
        """The character's region as an ``L`` image (255 = character)."""
        if self._mask is None:
            from comicgen.images import character_mask

            self._mask = character_mask(self._image())
        return self._mask.copy()


@dataclass
class CharacterInfo:
    name: str
    description: str
    images: list[RefImage]
    created: datetime | None = None
    notes: list[str] = field(default_factory=list)  # what loading the images changed

    @property
    def image_shas(self) -> list[str]:
        return [image.sha256 for image in self.images]


def clean_name(name: str) -> str:
    """A character name trimmed and NFC-normalised; ComicgenError when unusable."""
    if not isinstance(name, str):
        raise ComicgenError(f"character name must be text, not {type(name).__name__}")
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        raise ComicgenError("character name is empty", hint="give 1 to 64 characters")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise ComicgenError(
            f"character name '{cleaned[:20]}…' is {len(cleaned)} characters long",
            hint=f"use at most {MAX_NAME_LENGTH}",
        )
    for char in cleaned:
        if unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp"):
            raise ComicgenError(
                f"character name {cleaned!r} holds a control character (U+{ord(char):04X})",
                hint="use printable text",
            )
    return cleaned


@dataclass
class _Prepared:
    """A character ready to insert: images decoded and encoded, outside any transaction."""

    name: str
    description: str
    images: list[tuple[EncodedImage, str]]
    notes: list[str]


class CharacterStore:
    """The characters of a library (a mixin of :class:`~comicgen.library.Library`)."""

    db: Database

    def add_character(
        self,
        name: str,
        description: str = "",
        images: Sequence[Path] = (),
        sheet: Path | None = None,
        grid: str | None = None,
        replace: bool = False,
    ) -> CharacterInfo:
        """Add a character with its images in one transaction (all or nothing).

        An existing character of the same name (ignoring case) is an error unless
        ``replace``. ``sheet`` is cut into views by ``grid`` (COLUMNSxROWS, default 2x2).
        """
        from comicgen.library import queries

        if grid is not None and sheet is None:
            raise ComicgenError("--grid needs --sheet", hint="give the sheet image to cut")
        name = clean_name(name)
        description = _clean_description(description, name)
        with self.db.read() as session:  # fail early, before decoding any image
            existing = queries.find_character(session, name)
        if existing is not None and not replace:
            raise _exists(existing.name)
        sources = [(Path(p), str(p), _source(p)) for p in images]
        sheet_ref = (Path(sheet), str(sheet), _source(sheet)) if sheet is not None else None
        prepared = self._prepare(name, description, sources, sheet_ref, grid)
        with self.db.write() as session:
            existing = queries.find_character(session, name)
            if existing is not None:
                if not replace:
                    raise _exists(existing.name)
                queries.delete_character(session, existing)
            character = queries.insert_character(session, name, description, self._rows(prepared))
            info = self._info(character, queries.images_of(session, [character.id])[character.id])
        info.notes = prepared.notes
        return info

    def _prepare(
        self,
        name: str,
        description: str,
        images: Sequence[tuple[Path, str, str]],
        sheet: tuple[Path, str, str] | None,
        grid: str | None,
    ) -> _Prepared:
        """Load, normalise and encode the images; (path, name in messages, stored source)."""
        from comicgen.images import cut_sheet, encode_png, load_image, normalise, parse_grid

        notes: list[str] = []
        encoded: list[tuple[EncodedImage, str]] = []
        for path, shown, source in images:
            loaded = load_image(path, display=shown)
            notes.extend(loaded.notes)
            encoded.append((encode_png(loaded.image), source))
        if sheet is not None:
            path, shown, source = sheet
            grid = grid or "2x2"
            parse_grid(grid)  # a bad grid fails before the sheet is decoded
            loaded = load_image(path, display=shown, max_side=None)
            notes.extend(loaded.notes)
            cut_notes: list[str] = []
            views = cut_sheet(loaded.image, grid, notes=cut_notes)
            notes.extend(f"{shown}: {note}" for note in cut_notes)
            for number, view in enumerate(views, start=1):
                image = normalise(view, notes=notes, name=f"{shown} view {number}")
                encoded.append((encode_png(image), f"{source} [{grid} view {number}]"))
        if not encoded:
            raise ComicgenError(
                f"character '{name}' has no images",
                hint="give at least one --image, or --sheet with --grid",
            )
        return _Prepared(name, description, encoded, notes)

    @staticmethod
    def _rows(prepared: _Prepared) -> list[ReferenceImage]:
        from comicgen.library.models import ReferenceImage

        return [
            ReferenceImage(
                character_id=0,
                position=0,
                png=image.png,
                sha256=image.sha256,
                width=image.width,
                height=image.height,
                mode=image.mode,
                source=source,
            )
            for image, source in prepared.images
        ]

    def _info(self, character: Character, rows: Sequence[ReferenceImage]) -> CharacterInfo:
        images = []
        for row in rows:
            loaded = "png" in row.__dict__  # not deferred
            images.append(
                RefImage(
                    row.sha256,
                    row.width,
                    row.height,
                    row.source,
                    row.png if loaded else None,
                    mode=row.mode,
                    id=row.id,
                    loader=self._load_png,
                )
            )
        return CharacterInfo(character.name, character.description, images, character.created)

    def _load_png(self, image_id: int) -> bytes:
        from comicgen.library import queries

        with self.db.read() as session:
            png = queries.image_png(session, image_id)
        if png is None:
            raise ComicgenError(
                "a reference image was removed while in use", hint="run the command again"
            )
        return png

    def find_character(self, name: str) -> CharacterInfo | None:
        """The character called ``name`` (any case), with its image bytes; None if unknown."""
        from comicgen.library import queries

        if not isinstance(name, str) or not name.strip():
            return None
        with self.db.read() as session:
            character = queries.find_character(session, name)
            if character is None:
                return None
            rows = queries.images_of(session, [character.id])[character.id]
            return self._info(character, rows)

    def get_character(self, name: str) -> CharacterInfo:
        """Like :meth:`find_character`, but an unknown name is a ComicgenError."""
        info = self.find_character(name)
        if info is None:
            known = self.character_names()
            hint = did_you_mean(name, known) or (
                "see 'comicgen characters list'"
                if known
                else "the library is empty; add one with 'comicgen characters add'"
            )
            raise ComicgenError(f"unknown character '{name}'", hint=hint)
        return info

    def list_characters(self) -> list[CharacterInfo]:
        """Every character, sorted by name; image bytes are read when first used."""
        from comicgen.library import queries

        with self.db.read() as session:
            characters = queries.list_characters(session)
            rows = queries.images_of(session, [c.id for c in characters], with_png=False)
            return [self._info(c, rows[c.id]) for c in characters]

    def character_names(self) -> list[str]:
        from comicgen.library import queries

        with self.db.read() as session:
            return queries.character_names(session)

    def remove_character(self, name: str) -> None:
        from comicgen.library import queries

        with self.db.write() as session:
            character = queries.find_character(session, name)
            if character is not None:
                queries.delete_character(session, character)
                return
        self.get_character(name)  # raises with a did-you-mean
        raise ComicgenError(f"unknown character '{name}'")  # pragma: no cover - raced

    # -- character folders --------------------------------------------------------------

    def export_character(self, name: str, folder: Path, *, overwrite: bool = False) -> Path:
        """Write ``folder/<safe name>.yaml`` and ``folder/<safe name>/01.png``….

        Another character's file of the same safe name gets a ``-2``, ``-3`` suffix; the
        same character's earlier export is replaced only with ``overwrite``.
        """
        from comicgen.library import folders, queries

        info = self.get_character(name)
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise ComicgenError(f"{folder}: not a folder")
        stem = safe_filename(info.name, "character")
        key = queries.name_key(info.name)
        for number in itertools.count(1):
            candidate = stem if number == 1 else f"{stem}-{number}"
            target = folder / f"{candidate}.yaml"
            if not target.exists():
                break
            other = folders.read_name(target)
            if other is not None and queries.name_key(other) == key:
                if overwrite:
                    break
                raise ComicgenError(f"{target} already exists", hint="pass --force to overwrite it")
        image_dir = folder / candidate
        rel = []
        for number, image in enumerate(info.images, start=1):
            file_name = f"{number:02d}.png"
            atomic_write_bytes(image_dir / file_name, image.png)
            rel.append(f"{candidate}/{file_name}")
        keep = {Path(r).name for r in rel}
        for stale in image_dir.iterdir() if image_dir.is_dir() else ():  # an earlier export
            if folders.EXPORTED_IMAGE.match(stale.name) and stale.name not in keep:
                stale.unlink()
        folders.write_character_file(target, info.name, info.description, rel)
        return target

    def import_folder(
        self, folder: Path, update: bool = False, allow_outside: bool = False
    ) -> list[str]:
        """Import ``folder/*.yaml`` characters; returns the names imported (or updated).

        Characters already in the library are skipped without reading their images
        (cheap enough for every render) unless ``update``, which replaces those whose
        description or images changed. Everything is checked and loaded first, then
        written in one transaction: a bad file imports nothing.
        """
        from comicgen.library import folders, queries

        folder = Path(folder)
        folders.check_is_folder(folder, "characters folder")
        files = folders.character_files(folder)
        if not files:
            return []
        root = folder.resolve()
        parsed: list[CharacterFile] = []
        seen: dict[str, CharacterFile] = {}
        for path in files:
            display = f"{folder.name or '.'}/{path.name}"
            spec = folders.read_character_file(
                path, root, allow_outside=allow_outside, display=display
            )
            spec.name = _located(lambda s=spec: clean_name(s.name), spec)
            key = queries.name_key(spec.name)
            if key in seen:
                raise ComicgenError(
                    f"{display}: character '{spec.name}' is also defined in {seen[key].display}",
                    hint="keep one file per character",
                )
            seen[key] = spec
            parsed.append(spec)
        with self.db.read() as session:
            present = queries.character_keys(session)
        todo = [s for s in parsed if update or queries.name_key(s.name) not in present]
        if not todo:
            return []
        prepared = []
        for spec in todo:
            description = _located(lambda s=spec: _clean_description(s.description, s.name), spec)
            prepared.append(
                self._prepare(
                    spec.name,
                    description,
                    [(ref.path, ref.display, ref.display) for ref in spec.images],
                    (spec.sheet.path, spec.sheet.display, spec.sheet.display)
                    if spec.sheet
                    else None,
                    spec.grid,
                )
            )
        imported: list[str] = []
        with self.db.write() as session:
            for item in prepared:
                existing = queries.find_character(session, item.name)
                if existing is not None:
                    if not update:
                        continue  # another process imported it meanwhile
                    old = queries.images_of(session, [existing.id], with_png=False)[existing.id]
                    same = existing.description == item.description and [r.sha256 for r in old] == [
                        image.sha256 for image, _ in item.images
                    ]
                    if same:
                        continue
                    queries.delete_character(session, existing)
                queries.insert_character(session, item.name, item.description, self._rows(item))
                imported.append(item.name)
        return imported

    def image_problems(self) -> list[str]:
        """Characters without images, and images that no longer decode or match their sha."""
        from comicgen.images import decode_png, pixel_sha256

        problems = []
        for info in self.list_characters():
            if not info.images:
                problems.append(f"character '{info.name}' has no images")
            for number, image in enumerate(info.images, start=1):
                try:
                    decoded = decode_png(image.png)
                except Exception as exc:  # damaged bytes: report, don't crash
                    problems.append(f"'{info.name}' image {number} does not decode ({exc})")
                    continue
                if pixel_sha256(decoded) != image.sha256:
                    problems.append(f"'{info.name}' image {number} does not match its sha256")
        return problems


def _clean_description(description: str | None, name: str) -> str:
    description = (description or "").strip()
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise ComicgenError(
            f"the description of '{name}' is {len(description)} characters long",
            hint=f"keep it under {MAX_DESCRIPTION_LENGTH}",
        )
    return description


def _located(func: Callable[[], str], spec: CharacterFile) -> str:
    """Run ``func``; a ComicgenError gets the character file's place in front."""
    from comicgen.errors import LocatedError

    try:
        return func()
    except ComicgenError as exc:
        raise LocatedError(exc.message, file=spec.display, line=spec.line, hint=exc.hint) from None


def _exists(name: str) -> ComicgenError:
    return ComicgenError(
        f"character '{name}' already exists",
        hint="pass --replace to replace it, or pick another name",
    )


def _source(path: Path | str) -> str:
    """Where an added image came from, as stored (absolute, for later reference)."""
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError):
        return str(path)
