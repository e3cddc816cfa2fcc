"""Writing files so that an interruption never leaves a half-written one behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

TEMP_SUFFIX = ".tmp"
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_open(path: Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it is renamed over ``path``.

    On any error (Ctrl-C included) the temporary file is removed and ``path`` is
    untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=path.parent
    )
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Remove temporary files left in ``folder`` (recursively) by a process that was
    killed (SIGKILL, power loss) before it could rename or remove them. Files of
    processes still running are kept."""
    removed = []
    if not Path(folder).is_dir():
        return removed
    for path in Path(folder).rglob(f".*{TEMP_SUFFIX}"):
        parts = path.name.rsplit(".", 3)  # '', name..., pid, random+suffix
        try:
            pid = int(parts[-2])
        except (ValueError, IndexError):
            continue
        if pid != os.getpid() and not _alive(pid):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover - Windows and others: assume alive
        return True
    return True


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back until the block is done, then deliver them.

    For short steps that must happen together or not at all, such as a painted
    panel's file and its database row: an interruption in between would keep the
    file but lose the row, and the panel would be painted again. Outside the main
    thread (where handlers cannot be set) the block simply runs.
    """
    import signal
    import threading

    watched = [signal.SIGINT, signal.SIGTERM]
    previous = {sig: signal.getsignal(sig) for sig in watched}
    if threading.current_thread() is not threading.main_thread() or None in previous.values():
        yield  # handlers cannot be set here, or could not be put back
        return
    pending: list[int] = []
    for sig in watched:
        signal.signal(sig, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(pending):
            signal.raise_signal(sig)  # now handled as it would have been


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def atomic_save_image(image, path: Path, format: str | None = None, **params) -> None:
    """Save a PIL image atomically (format from the suffix unless given)."""
    fmt = format or Path(path).suffix.lstrip(".").upper().replace("JPG", "JPEG")
    with atomic_open(path, "wb") as handle:
        image.save(handle, format=fmt, **params)


def safe_filename(name: str, default: str = "untitled") -> str:
    """A file-name-safe form of ``name`` (letters, digits, '-', '_'; never empty)."""
    keep = [c if (c.isalnum() and c.isascii()) or c in "-_" else "-" for c in name.strip()]
    cleaned = "".join(keep).strip("-_")
    while "--" in cleaned:
        cleaned = cleaned.replace("--", "-")
    return cleaned[:80] or default


def shown_path(path: Path | str) -> str:
    """``path`` as the person should read it, relative to where they stand: below the
    current directory, or up to two folders above it (``../build/…``); else absolute."""
    full = Path(path).resolve()
    try:
        relative = os.path.relpath(full, Path.cwd().resolve())
    except (ValueError, OSError):  # another drive (Windows), or no current directory
        return str(full)
    if relative.split(os.sep)[:3].count("..") > 2:
        return str(full)
    return relative
