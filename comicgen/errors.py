"""Errors a person can cause, reported as one clear line.

Anything raised as :class:`ComicgenError` is printed by the CLI as a single line and
ends the command with ``exit_code`` (2 unless a subclass says otherwise). Programming
errors are ordinary exceptions and still raise with a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class ComicgenError(Exception):
    """A problem the person can fix: bad input, missing file, unreachable model."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        if self.hint:
            return f"{self.message} — {self.hint}"
        return self.message


class LocatedError(ComicgenError):
    """An error at a place in a file: ``file:line:column: field: message``."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ):
        self.file = str(file) if file is not None else None
        self.lineno = line
        self.column = column
        self.field = field
        super().__init__(message, hint=hint)

    def line(self) -> str:  # noqa: D401 - keeps the base signature
        place = ""
        if self.file:
            place = self.file
            if self.lineno is not None:
                place += f":{self.lineno}"
                if self.column is not None:
                    place += f":{self.column}"
            place += ": "
        field = f"{self.field}: " if self.field else ""
        return place + field + super().line()


class ModelError(ComicgenError):
    """The model cannot be loaded or run (offline, not a diffusers folder, out of memory)."""


class Interrupted(ComicgenError):
    """The person pressed Ctrl-C; the message says what was kept."""

    exit_code = 130


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """Return ``"did you mean 'x'?"`` for the closest of ``choices``, or None."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    if match:
        return f"did you mean '{lowered[match[0]]}'?"
    return None
