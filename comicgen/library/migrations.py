"""Numbered schema migrations of the library database.

The schema version is SQLite's ``PRAGMA user_version``: 0 for a new file, then the
number of the last migration applied. Opening a database runs every migration above its
version, all in one ``BEGIN IMMEDIATE`` transaction (so two processes never migrate
twice and an interruption leaves the old schema intact), after copying an existing
database to ``comicgen.db.bak-v<N>``. A database written by a newer comicgen (a version
above :data:`SCHEMA_VERSION`) is refused.

To change the schema, append ``m00N_what(conn)`` below and register it; never edit a
migration that has shipped. Migrations are plain SQL, independent of the model classes.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from comicgen.errors import ComicgenError

BUSY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[sqlite3.Connection], None]


MIGRATIONS: list[Migration] = []


def migration(func: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    """Register ``m<NNN>_<what>`` as migration number NNN (they must come in order)."""
    number = int(func.__name__[1:4])
    expected = len(MIGRATIONS) + 1
    if not func.__name__.startswith("m") or number != expected:
        raise RuntimeError(f"migration {func.__name__} should be numbered {expected:03d}")
    MIGRATIONS.append(Migration(number, func.__name__, func))
    return func


# -- the migrations ---------------------------------------------------------------------


@migration
def m001_initial(conn: sqlite3.Connection) -> None:
    """Characters, their reference images, and the panel cache."""
    conn.execute(
        """
        CREATE TABLE character (
            id INTEGER NOT NULL PRIMARY KEY,
            name VARCHAR(64) NOT NULL,
            name_key VARCHAR NOT NULL UNIQUE,
            description VARCHAR NOT NULL DEFAULT '',
            created DATETIME NOT NULL
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE reference_image (
            id INTEGER NOT NULL PRIMARY KEY,
            character_id INTEGER NOT NULL REFERENCES character (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            png BLOB NOT NULL,
            sha256 VARCHAR NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            source VARCHAR NOT NULL DEFAULT '',
            UNIQUE (character_id, position)
        )
        """
    )
    conn.execute("CREATE INDEX ix_reference_image_character_id ON reference_image (character_id)")
    conn.execute(
        """
        CREATE TABLE panel_cache (
            key VARCHAR NOT NULL PRIMARY KEY,
            path VARCHAR NOT NULL,
            model VARCHAR NOT NULL DEFAULT '',
            size INTEGER NOT NULL,
            created DATETIME NOT NULL
        )
        """
    )


@migration
def m002_image_mode_cache_meta(conn: sqlite3.Connection) -> None:
    """Remember whether a reference image carries an alpha mask; free-form cache metadata."""
    conn.execute("ALTER TABLE reference_image ADD COLUMN mode VARCHAR NOT NULL DEFAULT 'RGB'")
    # PNG colour type is byte 26 of the file (IHDR); 6 means RGBA.
    conn.execute(
        "UPDATE reference_image SET mode = "
        "CASE WHEN substr(png, 26, 1) = X'06' THEN 'RGBA' ELSE 'RGB' END"
    )
    conn.execute("ALTER TABLE panel_cache ADD COLUMN meta VARCHAR")
    conn.execute("CREATE INDEX ix_reference_image_sha256 ON reference_image (sha256)")


SCHEMA_VERSION = len(MIGRATIONS)


# -- running them ----------------------------------------------------------------------


@dataclass
class MigrationReport:
    from_version: int
    to_version: int
    backup: Path | None = None

    @property
    def migrated(self) -> bool:
        return self.from_version != self.to_version


def connect(db_path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection in autocommit mode with the busy timeout set."""
    conn = sqlite3.connect(str(db_path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def use_wal(conn: sqlite3.Connection) -> None:
    """Switch the database to WAL (persistent: readers never block writers), retrying
    while another connection holds a lock: SQLite answers this switch "database is
    locked" at once, without its busy handler (two first opens of a new database at the
    same moment - a studio's builder and painter - met it about once in ten)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = "locked" in str(exc).lower() or "busy" in str(exc).lower()
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def backup_path(db_path: Path, version: int) -> Path:
    return db_path.with_name(f"{db_path.name}.bak-v{version}")


def migrate(db_path: Path, display: str | None = None) -> MigrationReport:
    """Bring ``db_path`` to :data:`SCHEMA_VERSION` (creating it when missing)."""
    name = display or str(db_path)
    try:
        conn = connect(db_path)
    except sqlite3.Error as exc:
        raise ComicgenError(f"{name}: cannot open the database ({exc})") from None
    try:
        try:
            return _migrate(conn, db_path, name)
        except sqlite3.DatabaseError as exc:
            error = database_error(name, exc)
            if error is None:
                raise
            raise error from None
    finally:
        conn.close()


def _migrate(conn: sqlite3.Connection, db_path: Path, name: str) -> MigrationReport:
    version = schema_version(conn)  # also fails at once for a file that is not SQLite
    check_not_newer(version, name)
    use_wal(conn)
    if version == SCHEMA_VERSION:
        return MigrationReport(version, version)
    conn.execute("PRAGMA foreign_keys = OFF")  # migrations may rebuild tables
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(conn)  # another process may have migrated meanwhile
        check_not_newer(version, name)
        backup = None
        if version == 0:
            foreign = [
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
                )
            ]
            if foreign:
                raise ComicgenError(
                    f"{name}: not a comicgen database (it holds tables such as "
                    f"'{foreign[0]}' but no comicgen schema version)",
                    hint="move it away; comicgen creates a new one",
                )
        elif version < SCHEMA_VERSION:
            backup = backup_path(db_path, version)
            _backup(db_path, backup)
        for step in MIGRATIONS[version:]:
            step.apply(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        problems = conn.execute("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise ComicgenError(
                f"{name}: migration to schema {SCHEMA_VERSION} found broken references "
                f"in table {problems[0][0]}",
                hint="run 'comicgen doctor'",
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return MigrationReport(version, SCHEMA_VERSION, backup)


def _backup(db_path: Path, target: Path) -> None:
    """A consistent copy of the database, written to a temporary file then renamed.

    Called while the migrating connection holds the write lock but has written nothing:
    a second connection reads the committed state, which nobody can change meanwhile.
    (The migrating connection itself cannot be the backup's source: SQLite reports it
    as locked while it holds a write transaction.)
    """
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    source = connect(db_path)
    dest = sqlite3.connect(str(tmp))
    try:
        source.backup(dest)
    finally:
        dest.close()
        source.close()
    os.replace(tmp, target)


def check_not_newer(version: int, name: str) -> None:
    if version > SCHEMA_VERSION:
        raise ComicgenError(
            f"{name}: the database has schema version {version}, newer than this comicgen "
            f"knows ({SCHEMA_VERSION})",
            hint="upgrade comicgen (pip install -U comicgen) or use the comicgen that wrote it",
        )


def database_error(name: str, exc: BaseException) -> ComicgenError | None:
    """One line for an sqlite error a person can do something about (else None)."""
    text = str(exc)
    lowered = text.lower()
    if "not a database" in lowered or "malformed" in lowered:
        return ComicgenError(
            f"{name}: not a comicgen database or damaged ({text})",
            hint="run 'comicgen doctor', or move the file away to start a new library",
        )
    if "locked" in lowered or "busy" in lowered:
        return ComicgenError(
            f"{name}: the database stayed busy for over {BUSY_TIMEOUT_S:.0f} s ({text})",
            hint="another comicgen holds it; try again when it has finished",
        )
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return ComicgenError(
            f"{name}: cannot write the database ({text})", hint="check permissions"
        )
    if "disk" in lowered and ("full" in lowered or "i/o" in lowered):
        return ComicgenError(f"{name}: cannot write the database ({text})", hint="free disk space")
    return None
