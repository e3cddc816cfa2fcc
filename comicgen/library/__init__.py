"""The character library and the panel cache, in one SQLite file (``comicgen.db``).

::

    with Library.open(ws.db_path, ws.cache_dir) as lib:
        lib.add_character("Pip", "a small round red creature", images=[Path("pip.png")])
        pip = lib.get_character("pip")          # names are unique ignoring case
        pip.images[0].image(), pip.images[0].mask()

Package layout: this module is the entry point (:class:`Library`);
:mod:`.characters` (adding, finding, exporting and importing characters),
:mod:`.cache` (painted panels), :mod:`.models` (tables), :mod:`.migrations` (numbered
schema changes), :mod:`.database` (engine and transactions), :mod:`.queries`,
:mod:`.folders` (character YAML folders).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from comicgen.library.cache import PANELS_DIR, PanelCacheStore
from comicgen.library.characters import (
    MAX_DESCRIPTION_LENGTH,
    MAX_NAME_LENGTH,
    CharacterInfo,
    CharacterStore,
    RefImage,
    clean_name,
)

if TYPE_CHECKING:
    from comicgen.library.database import Database

__all__ = [
    "Library",
    "CharacterInfo",
    "RefImage",
    "clean_name",
    "MAX_NAME_LENGTH",
    "MAX_DESCRIPTION_LENGTH",
    "PANELS_DIR",
]


class Library(CharacterStore, PanelCacheStore):
    """The character library and panel cache of one workspace."""

    def __init__(self, db: Database, cache_dir: Path):
        self.db = db
        self.cache_dir = Path(cache_dir)

    @classmethod
    def open(cls, db_path: Path, cache_dir: Path, display: str | None = None) -> Library:
        """Open (creating or migrating) the database at ``db_path``."""
        from comicgen.library.database import Database

        return cls(Database(Path(db_path), display or Path(db_path).name), cache_dir)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def integrity_check(self) -> list[str]:
        return self.db.integrity_check()

    @staticmethod
    def inspect(db_path: Path) -> tuple[int, list[str]]:
        """(schema version, integrity_check lines) of a library file, opened read-only
        (not created, not migrated): what ``comicgen doctor`` reports."""
        from comicgen.library.database import inspect_file

        return inspect_file(db_path)
