"""Character folders: ``characters/<name>.yaml`` plus the images it lists.

The format, read by ``characters import`` (and by every render, for characters not in
the library yet) and written by ``characters export``::

    # characters/pip.yaml
    name: Pip
    description: a small round red creature with a blue hat
    images: [pip/front.png, pip/happy.png]   # relative to this file's folder

Without ``images`` (and without ``sheet``), every PNG/JPEG/WebP in ``characters/pip/``
is used, sorted by name. ``sheet: pip/sheet.png`` with ``grid: 2x2`` cuts one reference
sheet instead. Image paths must stay inside the characters folder (no ``..``, absolute
paths or symlinks out) unless ``allow_outside`` is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from comicgen.errors import ComicgenError, LocatedError, did_you_mean
from comicgen.fsutil import atomic_write_text
from comicgen.images import IMAGE_SUFFIXES, parse_grid
from comicgen.yamlfile import parse_yaml, place

KEYS = ("name", "description", "images", "sheet", "grid", "loras")


def _grid_ok(grid: str) -> bool:
    try:
        parse_grid(grid)
    except ComicgenError:
        return False
    return True


MAX_YAML_BYTES = 256 * 1024


@dataclass
class ImageRef:
    path: Path  # resolved
    display: str  # as shown in messages and stored as the image's source


@dataclass
class CharacterFile:
    """One parsed character YAML (images located and checked, not loaded yet)."""

    file: Path
    display: str
    name: str
    description: str = ""
    images: list[ImageRef] = field(default_factory=list)
    sheet: ImageRef | None = None
    grid: str | None = None
    line: int | None = None  # where the name is, for messages
    loras: list = field(default_factory=list)  # settings.LoraSpec, paths made absolute


def character_files(folder: Path) -> list[Path]:
    """The ``*.yaml`` / ``*.yml`` files directly in ``folder``, sorted."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in (".yaml", ".yml") and not p.name.startswith(".")
    )


def read_character_file(
    path: Path, root: Path, *, allow_outside: bool = False, display: str | None = None
) -> CharacterFile:
    """Parse ``path`` (a character YAML inside ``root``) and locate its images."""
    root = root.resolve()
    shown = display or str(path)
    if not allow_outside and not path.resolve().is_relative_to(root):
        raise LocatedError(
            "the character file is a link to outside the characters folder",
            file=shown,
            hint="copy it in, or pass --allow-outside",
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LocatedError(f"cannot read the file ({exc.strerror or exc})", file=shown) from None
    if len(raw) > MAX_YAML_BYTES:
        raise LocatedError(f"too large for a character file ({len(raw)} bytes)", file=shown)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LocatedError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})",
            file=shown,
            hint="save the file as UTF-8",
        ) from None
    data, marks, key_marks = parse_yaml(text, shown)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise LocatedError(
            "a character file must be a mapping with name, description and images",
            file=shown,
            line=place(marks, ())[0],
        )
    for key in data:
        if key not in KEYS:
            line, column = key_marks.get((key,), (None, None))
            raise LocatedError(
                f"unknown field '{key}'",
                file=shown,
                line=line,
                column=column,
                hint=did_you_mean(str(key), KEYS) or f"known fields: {', '.join(KEYS)}",
            )

    def where(key: str) -> dict[str, Any]:
        line, column = key_marks.get((key,), (None, None))
        return {"file": shown, "line": line, "column": column, "field": key}

    name = data.get("name", path.stem)
    if not isinstance(name, str):
        raise LocatedError("must be text", hint="put the name in quotes", **where("name"))
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise LocatedError("must be text", hint="put it in quotes", **where("description"))
    base = path.parent
    result = CharacterFile(
        file=path,
        display=shown,
        name=name,
        description=description.strip(),
        line=where("name")["line"],
    )

    def locate(value: Any, field_name: str, loc: tuple) -> ImageRef:
        line, column = place(marks, loc)
        if not isinstance(value, str) or not value.strip():
            raise LocatedError(
                "must be an image path (text)",
                file=shown,
                line=line,
                column=column,
                field=field_name,
            )
        return _resolve(value, base, root, allow_outside, shown, line, column, field_name)

    if data.get("loras") is not None:
        result.loras = _loras(data["loras"], base, shown, marks)
    images = data.get("images")
    sheet = data.get("sheet")
    if images is not None:
        items = images if isinstance(images, list) else [images]
        result.images = [
            locate(v, f"images[{i}]", ("images", i) if isinstance(images, list) else ("images",))
            for i, v in enumerate(items)
        ]
    if sheet is not None:
        result.sheet = locate(sheet, "sheet", ("sheet",))
        grid = data.get("grid", "2x2")
        if not isinstance(grid, str) or not _grid_ok(grid):
            raise LocatedError("must be COLUMNSxROWS, e.g. 2x2", **where("grid"))
        result.grid = grid
    elif "grid" in data:
        raise LocatedError("needs a sheet: entry beside it", **where("grid"))
    if images is None and sheet is None:
        folder = base / path.stem
        if not folder.is_dir():
            raise LocatedError(
                f"no images: list them under images:, or put them in {path.stem}/",
                file=shown,
                line=1,
            )
        found = sorted(
            p
            for p in folder.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not found:
            raise LocatedError(f"no PNG, JPEG or WebP images in {path.stem}/", file=shown, line=1)
        result.images = [
            _resolve(f"{path.stem}/{p.name}", base, root, allow_outside, shown, 1, None, "images")
            for p in found
        ]
    if not result.images and result.sheet is None:
        raise LocatedError("lists no images", **where("images"))
    return result


def _loras(value: Any, base: Path, shown: str, marks) -> list:
    """A character's own LoRAs (``loras: [{path: style.safetensors, weight: 0.8}]``),
    paths relative to its YAML file; checked as the story's are."""
    from pydantic import TypeAdapter, ValidationError

    from comicgen.settings import LoraSpec

    try:
        specs = TypeAdapter(list[LoraSpec]).validate_python(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = ("loras", *error["loc"])
        line, column = place(marks, loc)
        field_name = "loras" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        raise LocatedError(
            error["msg"], file=shown, line=line, column=column, field=field_name
        ) from None
    return [spec.model_copy(update={"path": str(base / spec.path)}) for spec in specs]


def _resolve(
    raw: str,
    base: Path,
    root: Path,
    allow_outside: bool,
    shown: str,
    line: int | None,
    column: int | None,
    field_name: str,
) -> ImageRef:
    here = {"file": shown, "line": line, "column": column, "field": field_name}
    if "\x00" in raw:
        raise LocatedError("the path holds a NUL character", **here)
    given = Path(raw.strip()).expanduser() if allow_outside else Path(raw.strip())
    if given.is_absolute() and not allow_outside:
        raise LocatedError(
            f"'{raw}' is an absolute path, outside the characters folder",
            hint="use a path relative to the YAML file, or pass --allow-outside",
            **here,
        )
    resolved = (base / given).resolve()
    if not allow_outside and not resolved.is_relative_to(root):
        raise LocatedError(
            f"'{raw}' points outside the characters folder",
            hint="keep images inside it, or pass --allow-outside",
            **here,
        )
    if not resolved.is_file():
        raise LocatedError(f"no such image file '{raw}'", **here)
    try:
        display = str(resolved.relative_to(root.parent))
    except ValueError:
        display = str(resolved)
    return ImageRef(resolved, display)


# -- writing -------------------------------------------------------------------------------

HEADER = "# A comicgen character. Load it with: comicgen characters import\n"


def read_name(path: Path) -> str | None:
    """The ``name:`` of an existing character file, or None when unreadable."""
    try:
        data, _marks, _keys = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError, ComicgenError):
        return None
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        return data["name"]
    return None


def write_character_file(path: Path, name: str, description: str, image_paths: list[str]) -> None:
    body = yaml.safe_dump(
        {"name": name, "description": description, "images": image_paths},
        allow_unicode=True,
        sort_keys=False,
        width=100,
    )
    atomic_write_text(path, HEADER + body)


EXPORTED_IMAGE = re.compile(r"^\d{2,}\.png$")


def check_is_folder(folder: Path, what: str = "folder") -> None:
    if not folder.exists():
        raise ComicgenError(f"{folder}: no such {what}")
    if not folder.is_dir():
        raise ComicgenError(f"{folder}: not a folder")
