"""Layout trees: named layouts, grids and rows, and how a story names them.

Page layouts are trees of splits: a ``row`` puts its children side by side, a
``column`` stacks them. Named layouts (:func:`known_layouts`), grids (``"3x2"``:
3 columns, 2 rows) and rows (``[1, 2, 1]`` or ``"1-2-1"``: panels per row, top to
bottom) all become such trees.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from comicgen.errors import ComicgenError, did_you_mean

# -- layout trees -------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    """One panel."""


@dataclass(frozen=True)
class Split:
    direction: Literal["row", "column"]  # row: side by side; column: stacked
    children: tuple[Node, ...]


Node = Leaf | Split
PANEL = Leaf()


def rows(*counts: int) -> Node:
    """A stack of rows holding ``counts`` panels each."""
    row_nodes = tuple(PANEL if c == 1 else Split("row", (PANEL,) * c) for c in counts)
    return row_nodes[0] if len(row_nodes) == 1 else Split("column", row_nodes)


def _columns_beside(tall_first: bool, stacked: int) -> Node:
    stack = Split("column", (PANEL,) * stacked)
    return Split("row", (PANEL, stack) if tall_first else (stack, PANEL))


NAMED_LAYOUTS: dict[str, Node] = {
    "splash": PANEL,
    "stack-2": rows(1, 1),
    "side-by-side-2": rows(2),
    "stack-3": rows(1, 1, 1),
    "wide-top-3": rows(1, 2),
    "wide-bottom-3": rows(2, 1),
    "tall-left-3": _columns_beside(True, 2),
    "tall-right-3": _columns_beside(False, 2),
    "2x2": rows(2, 2),
    "wide-top-4": rows(1, 3),
    "wide-middle-4": rows(1, 2, 1),
    "tall-left-4": _columns_beside(True, 3),
    "tall-right-4": _columns_beside(False, 3),
    "stack-4": rows(1, 1, 1, 1),
    "wide-top-5": rows(1, 2, 2),
    "wide-middle-5": rows(2, 1, 2),
    "2-3": rows(2, 3),
    "3-2": rows(3, 2),
    "tall-left-5": Split("row", (PANEL, Split("column", (PANEL, rows(2), PANEL)))),
    "2x3": rows(2, 2, 2),
    "3x2": rows(3, 3),
    "wide-top-6": rows(1, 3, 2),
    "1-2-2-1": rows(1, 2, 2, 1),
    "3x3": rows(3, 3, 3),
}
_GRID = re.compile(r"^\s*(\d{1,2})\s*[x×]\s*(\d{1,2})\s*$")
_ROWS = re.compile(r"^\s*\d{1,2}(\s*-\s*\d{1,2})*\s*$")
_MAX_PER_ROW = 8
_MAX_ROWS = 12


def count_panels(node: Node) -> int:
    if isinstance(node, Leaf):
        return 1
    return sum(count_panels(child) for child in node.children)


def known_layouts() -> dict[str, int]:
    """Named layouts and how many panels each holds.

    Besides these names a page may use a grid ``"COLSxROWS"`` (``"3x2"``) or rows
    (``[1, 2, 1]`` or ``"1-2-1"``, panels per row from the top).
    """
    return {name: count_panels(node) for name, node in NAMED_LAYOUTS.items()}


def parse_layout(spec: str | Sequence[int]) -> tuple[str, Node]:
    """A layout named in a story → (its name, its tree). Unknown → ComicgenError."""
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in NAMED_LAYOUTS:
            return text, NAMED_LAYOUTS[text]
        grid = _GRID.match(text)
        if grid:
            cols, nrows = int(grid.group(1)), int(grid.group(2))
            counts = [cols] * nrows
            _check_counts(counts, spec)
            return f"{cols}x{nrows}", rows(*counts)
        if _ROWS.match(text):
            counts = [int(part) for part in text.split("-")]
            _check_counts(counts, spec)
            return "-".join(map(str, counts)), rows(*counts)
        raise _unknown_layout(spec)
    if isinstance(spec, Sequence) and spec and all(_is_int(c) for c in spec):
        counts = [int(c) for c in spec]
        _check_counts(counts, spec)
        return "-".join(map(str, counts)), rows(*counts)
    raise _unknown_layout(spec)


def check_layout(spec: str | Sequence[int] | None, panel_count: int) -> None:
    """Raise ComicgenError when ``spec`` is unknown or holds another number of panels."""
    if spec is None:
        return
    name, node = parse_layout(spec)
    holds = count_panels(node)
    if holds != panel_count:
        fitting = [n for n, c in known_layouts().items() if c == panel_count]
        hint = f"layouts for {panel_count} panels: {', '.join(fitting)}" if fitting else None
        raise ComicgenError(
            f"layout '{name}' holds {holds} panel{'s' * (holds != 1)} "
            f"but the page has {panel_count}",
            hint=hint or "leave 'layout' out to choose one automatically",
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_counts(counts: Sequence[int], spec: object) -> None:
    if not counts or len(counts) > _MAX_ROWS or any(not 1 <= c <= _MAX_PER_ROW for c in counts):
        raise ComicgenError(
            f"layout {spec!r} is out of range",
            hint=f"use 1 to {_MAX_ROWS} rows of 1 to {_MAX_PER_ROW} panels, e.g. [1, 2, 1]",
        )


def _unknown_layout(spec: object) -> ComicgenError:
    names = list(NAMED_LAYOUTS)
    guess = did_you_mean(spec, names) if isinstance(spec, str) else None
    known = ", ".join(names)
    return ComicgenError(
        f"unknown layout {spec!r}",
        hint=(f"{guess} " if guess else "")
        + f"known layouts: {known}; or a grid like '3x2' (columns x rows), "
        "or rows like [1, 2, 1]",
    )
