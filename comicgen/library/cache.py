"""The panel cache: painted panels as files, one database row each.

Painted panels live as files under ``<cache_dir>/panels/`` with one row each in the
database: the file is written first (atomically), then the row, so a row always has a
whole file behind it. :class:`PanelCacheStore` is the cache's half of
:class:`comicgen.library.Library`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from comicgen.fsutil import atomic_write_bytes, interrupts_deferred

if TYPE_CHECKING:
    from comicgen.library.database import Database

PANELS_DIR = "panels"


class PanelCacheStore:
    """The panel cache of a library (a mixin of :class:`~comicgen.library.Library`)."""

    db: Database
    cache_dir: Path

    def _cache_relpath(self, key: str) -> str:
        if not isinstance(key, str) or not key or len(key) > 512:
            raise ValueError(f"bad cache key {key!r}")
        stem = key if re.fullmatch(r"[0-9a-f]{16,128}", key) else _sha(key)
        return f"{PANELS_DIR}/{stem[:2]}/{stem}.png"

    def cache_get(self, key: str) -> Path | None:
        """The cached panel's file, or None (no row, or its file is gone)."""
        from comicgen.library.models import PanelCache

        with self.db.read() as session:
            row = session.get(PanelCache, key)
            rel = row.path if row is not None else None
        if rel is None:
            return None
        path = self.cache_dir / rel
        return path if path.is_file() else None

    def cache_put(self, key: str, png: bytes, *, model: str = "", meta: dict | None = None) -> Path:
        """Store a painted panel: the file atomically first, then its row."""
        from comicgen.library import queries
        from comicgen.library.models import PanelCache

        rel = self._cache_relpath(key)
        path = self.cache_dir / rel
        row = PanelCache(
            key=key,
            path=rel,
            model=model,
            size=len(png),
            meta=json.dumps(meta, sort_keys=True, default=str) if meta else None,
        )
        with interrupts_deferred():  # a Ctrl-C here would keep the file but not the row
            atomic_write_bytes(path, png)
            with self.db.write() as session:
                queries.put_cache_row(session, row)
        return path

    def cache_keys(self) -> set[str]:
        """Keys of the cached panels whose files exist."""
        from comicgen.library import queries

        with self.db.read() as session:
            rows = queries.cache_paths(session)
        return {key for key, rel in rows if (self.cache_dir / rel).is_file()}

    def cache_missing(self) -> list[str]:
        """Keys of cache rows whose file is gone."""
        from comicgen.library import queries

        with self.db.read() as session:
            rows = queries.cache_paths(session)
        return sorted(key for key, rel in rows if not (self.cache_dir / rel).is_file())

    def cache_orphans(self) -> list[Path]:
        """Files under the cache's panels folder that no row points at (leftovers)."""
        from comicgen.library import queries

        base = self.cache_dir / PANELS_DIR
        if not base.is_dir():
            return []
        with self.db.read() as session:
            known = {rel for _key, rel in queries.cache_paths(session)}
        return sorted(
            path
            for path in base.rglob("*")
            if path.is_file() and path.relative_to(self.cache_dir).as_posix() not in known
        )


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
