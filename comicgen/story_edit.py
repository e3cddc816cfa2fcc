"""Edits of a person's story YAML that keep everything else in the file as it was.

The file is parsed with ruamel.yaml's round-trip composer, which knows where every
node starts and ends; the edit is then made in the text at exactly that place, so
comments, quoting, blank lines, flow style and line breaks stay byte for byte (a
re-dump, even a round-trip one, re-indents and re-wraps). The result is parsed again
and compared with the original data before it is written (temporary file + rename).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from comicgen.errors import ComicgenError
from comicgen.story import MAX_SEED

_BOM = "\ufeff"
_PANEL_REF = re.compile(r"^[A-Za-z0-9._-]{1,32}$")


def set_panel_seed(path: Path, panel_ref: str, seed: int) -> str:
    """Set ``seed:`` of one panel (``'2.1'``: page 2, panel 1, or the panel's ``id``)
    in the story file at ``path``; returns the new text. Only that one value (or one
    inserted line) changes."""
    path = Path(path)
    if not 0 <= seed <= MAX_SEED:
        raise ComicgenError(f"seed {seed} is out of range", hint=f"use 0 to {MAX_SEED}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ComicgenError(f"{path}: cannot read the story ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ComicgenError(f"{path}: the story is not UTF-8 text") from None
    bom = _BOM if text.startswith(_BOM) else ""
    new = bom + seed_edit(text[len(bom) :], panel_ref, seed, shown=str(path))
    _write_like(path, new.encode("utf-8"))
    return new


def seed_edit(text: str, panel_ref: str, seed: int, shown: str = "story") -> str:
    """``text`` with the seed of panel ``panel_ref`` set to ``seed`` (see set_panel_seed)."""
    root = _compose(text, shown)
    node, panel_id = _find_panel(root, panel_ref, shown)
    pairs = node.value
    newline = "\r\n" if "\r\n" in text else "\n"
    existing = [v for k, v in pairs if _scalar(k) == "seed"]
    if existing:
        value = existing[0]
        if value.tag.endswith(":map") or value.tag.endswith(":seq") or not _is_scalar(value):
            raise ComicgenError(f"{shown}: panel {panel_id}: 'seed' is not a number")
        start, end = value.start_mark.index, value.end_mark.index
        new = text[:start] + str(seed) + text[end:]
    elif node.flow_style:
        last = pairs[-1][1]
        at = last.end_mark.index
        new = text[:at] + f", seed: {seed}" + text[at:]
    else:
        new = _insert_block(text, pairs, seed, newline)
        if new is None:
            raise ComicgenError(
                f"{shown}: panel {panel_id}: found no place for a seed line",
                hint=f"add 'seed: {seed}' to the panel by hand",
            )
    _check(text, new, panel_id, seed, shown)
    return new


# -- finding the panel ---------------------------------------------------------------------


def _compose(text: str, shown: str):
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        root = YAML(typ="rt").compose(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ComicgenError(f"{place}: {problem}", hint="fix the YAML first") from None
    if root is None or not root.tag.endswith(":map"):
        raise ComicgenError(f"{shown}: the story is not a YAML mapping")
    return root


def _scalar(node) -> str | None:
    return node.value if _is_scalar(node) else None


def _is_scalar(node) -> bool:
    return type(node).__name__ == "ScalarNode"


def _get(node, key: str):
    for k, v in node.value:
        if _scalar(k) == key:
            return v
    return None


def _find_panel(root, panel_ref: str, shown: str):
    if not _PANEL_REF.match(panel_ref or ""):
        raise ComicgenError(f"'{panel_ref}' is not a panel id", hint="write e.g. 2.1")
    pages = _get(root, "pages")
    ids: list[str] = []
    found = by_place = None
    if pages is not None and type(pages).__name__ == "SequenceNode":
        for p, page in enumerate(pages.value, start=1):
            panels = _get(page, "panels") if type(page).__name__ == "MappingNode" else None
            if panels is None or type(panels).__name__ != "SequenceNode":
                continue
            for n, panel in enumerate(panels.value, start=1):
                if type(panel).__name__ != "MappingNode":
                    continue
                explicit = _get(panel, "id")
                panel_id = str(_scalar(explicit) if explicit is not None else f"{p}.{n}")
                ids.append(panel_id)
                if panel_id == panel_ref and found is None:
                    found = (panel, panel_id)
                if f"{p}.{n}" == panel_ref:  # page.panel also names a panel with an id
                    by_place = (panel, panel_id)
    found = found or by_place
    if found is None:
        from comicgen.errors import did_you_mean

        raise ComicgenError(
            f"{shown}: no panel '{panel_ref}'",
            hint=did_you_mean(panel_ref, ids) or f"panel ids: {', '.join(ids[:12])}",
        )
    if found[0].anchor is not None:
        raise ComicgenError(
            f"{shown}: panel {panel_ref} carries a YAML anchor (&{found[0].anchor})",
            hint="set its seed by hand, since aliases of it would change too",
        )
    return found


# -- inserting a line ----------------------------------------------------------------------


def _insert_block(text: str, pairs, seed: int, newline: str) -> str | None:
    """Insert ``seed: N`` as its own line after the last key whose value sits on one
    line and is followed by nothing else on that line but a comment."""
    indent = pairs[0][0].start_mark.column
    for i in range(len(pairs) - 1, -1, -1):
        key, value = pairs[i]
        if value.start_mark.line != value.end_mark.line or key.start_mark.line != (
            value.start_mark.line
        ):
            continue
        if i + 1 < len(pairs) and pairs[i + 1][0].start_mark.line <= value.end_mark.line:
            continue
        end = text.find("\n", value.end_mark.index)
        line = " " * indent + f"seed: {seed}"
        if end == -1:  # the last line of a file without a final newline
            return text + newline + line
        return text[: end + 1] + line + newline + text[end + 1 :]
    return None


def _check(old: str, new: str, panel_id: str, seed: int, shown: str) -> None:
    """The edited text must hold the same data except this panel's seed."""
    from ruamel.yaml import YAML

    loader = YAML(typ="safe", pure=True)
    before, after = loader.load(old), loader.load(new)
    for data in (before, after):
        for p, page in enumerate(data.get("pages") or [], start=1):
            for n, panel in enumerate((page or {}).get("panels") or [], start=1):
                if isinstance(panel, dict) and str(panel.get("id", f"{p}.{n}")) == panel_id:
                    if data is after:
                        got = panel.pop("seed", None)
                        if got != seed:
                            raise AssertionError(f"seed edit of {shown} gave {got!r}")
                    else:
                        panel.pop("seed", None)
    if before != after:  # pragma: no cover - a bug in the edit above, never write it
        raise AssertionError(f"seed edit of {shown} changed more than the seed")


def _write_like(path: Path, data: bytes) -> None:
    """Write atomically, keeping the file's permission bits."""
    from comicgen.fsutil import atomic_write_bytes

    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        mode = None
    target = path.resolve()  # through a symlink: edit the file it points at
    atomic_write_bytes(target, data)
    if mode is not None:
        os.chmod(target, mode)
