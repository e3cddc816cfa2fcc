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


class Problems(ComicgenError):
    """Several errors in one file, one line each, in the order of the file (at most
    ``limit`` shown, then how many more)."""

    limit = 10

    def __init__(self, errors: list[LocatedError]):
        self.errors = sorted(errors, key=lambda e: (e.lineno or 0, e.column or 0))
        lines = [e.line() for e in self.errors[: self.limit]]
        more = len(self.errors) - self.limit
        if more > 0:
            lines.append(f"… and {more} more problem{'s' if more != 1 else ''}")
        super().__init__("\n".join(lines))


def one_or_all(errors: list[LocatedError]) -> ComicgenError:
    """The error to raise for ``errors`` (not empty): itself when alone, else all."""
    return errors[0] if len(errors) == 1 else Problems(errors)


def validation_message(err: dict) -> str:
    """A pydantic error (one of ``ValidationError.errors()``) in plain words: what is
    wrong and what is allowed, without pydantic's own phrasing."""
    kind = err["type"]
    if kind == "literal_error":
        return err["msg"].replace("Input should be", "expected")
    if kind == "too_short":
        return f"needs at least {err.get('ctx', {}).get('min_length', 1)} item(s)"
    if kind.startswith(("greater", "less", "too_", "string_too", "string_pattern")):
        return err["msg"].replace("Input should", "should").replace("Value should", "should")
    if kind == "value_error":
        return err["msg"].removeprefix("Value error, ")
    return _FRIENDLY.get(kind, err["msg"])


_FRIENDLY = {
    "missing": "required field is missing",
    "string_type": "expected text",
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "list_type": "expected a list (lines starting with '- ')",
    "dict_type": "expected a mapping (key: value lines)",
    "model_type": "expected a mapping (key: value lines)",
    "model_attributes_type": "expected a mapping (key: value lines)",
}


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
