"""What the server may read: files inside a folder of the workspace, never outside.

A request path is refused when it is absolute, holds ``..``, a backslash, a NUL or a
hidden part, or when it resolves (through symlinks) outside the folder or the
workspace.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath


def safe_child(base: Path, relative: str, root: Path | None = None) -> Path | None:
    """The file ``relative`` under ``base`` or None when it is not safely inside."""
    if not relative or "\\" in relative or "\x00" in relative or ":" in relative:
        return None
    parts = relative.split("/")
    if PurePosixPath(relative).is_absolute() or any(
        part in ("..", ".", "") or part.startswith(".") for part in parts
    ):
        return None
    base = Path(base)
    try:
        real_base = base.resolve(strict=True)
        target = (base / Path(*parts)).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(real_base):
        return None
    if root is not None and not target.is_relative_to(Path(root).resolve()):
        return None
    if not target.is_file():
        return None
    return target
