"""The SQLite engine: WAL, a 30 s busy timeout, foreign keys, short transactions.

Two comicgen processes may write the same database at once (two renders, a
``characters add`` during a render). SQLite serialises writers; what matters is that
none gives up with "database is locked":

- the journal is WAL, so readers never block the writer nor the writer the readers;
- every connection waits up to :data:`~comicgen.library.migrations.BUSY_TIMEOUT_S`
  for a lock;
- a writing transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock
  first (waiting for it), so it never has to upgrade a read lock later — the upgrade
  is the case where SQLite fails at once instead of waiting;
- transactions are short: slow work (decoding images, painting) happens outside them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, create_engine

from comicgen.library.migrations import BUSY_TIMEOUT_S, database_error, migrate


class Database:
    """One SQLite file, migrated on open; ``read()`` and ``write()`` give sessions."""

    def __init__(self, path: Path, display: str | None = None):
        self.path = Path(path)
        self.display = display or str(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.migration = migrate(self.path, self.display)
        self.engine = make_engine(self.path)
        self._writer = self.engine.execution_options(sqlite_begin="BEGIN IMMEDIATE")

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session in a read transaction (a consistent snapshot), rolled back after."""
        with self._errors(), Session(self.engine, expire_on_commit=False) as session:
            with session.begin():
                yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one ``BEGIN IMMEDIATE`` transaction, committed when the block ends."""
        with self._errors(), Session(self._writer, expire_on_commit=False) as session:
            with session.begin():
                yield session

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            error = database_error(self.display, exc.orig or exc)
            if error is None:
                raise
            raise error from None

    def integrity_check(self) -> list[str]:
        """``PRAGMA integrity_check`` lines: ``['ok']`` when the file is sound."""
        with self.engine.connect() as conn:
            return [row[0] for row in conn.exec_driver_sql("PRAGMA integrity_check")]

    def close(self) -> None:
        self.engine.dispose()


def inspect_file(path: Path) -> tuple[int, list[str]]:
    """(schema version, ``PRAGMA integrity_check`` lines) of the database at ``path``,
    read-only: nothing is created or migrated. ComicgenError when it is not SQLite."""
    from comicgen.errors import ComicgenError

    try:
        conn = sqlite3.connect(
            f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S
        )
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise ComicgenError(f"cannot be read as SQLite ({exc})") from None
    return version, integrity


def make_engine(path: Path) -> Engine:
    # Pooled connections hold no lock between transactions: SQLite releases every lock
    # at COMMIT/ROLLBACK.
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record) -> None:
        # Take transaction control away from the sqlite3 module, so that "begin" below
        # decides how each transaction starts.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: commits stay atomic
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))

    return engine
