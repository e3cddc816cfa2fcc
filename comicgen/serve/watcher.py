"""Watching the workspace's inputs: stories, characters, comicgen.toml, templates, and
LoRA / embedding files wherever they are kept in the workspace."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

WATCHED_DIRS = ("stories", "characters", "templates")
IGNORED_SUFFIXES = (".tmp", ".swp", ".swx", "~", ".part", ".crdownload")
# adapter files (LoRAs, textual-inversion embeddings) a story or comicgen.toml may name by
# any path in the workspace; the panels that use one repaint when it changes (their keys
# hold its sha256)
ADAPTER_SUFFIXES = (".safetensors", ".pt", ".bin")
UNWATCHED_DIRS = ("build",)  # comicgen's own output


def relevant(root: Path) -> Callable[[object, str], bool]:
    """A watchfiles filter: the files whose change can change a page."""
    root = Path(root)

    def accept(change, path: str) -> bool:
        try:
            parts = Path(path).relative_to(root).parts
        except ValueError:
            return False
        if not parts:
            return False
        name = parts[-1]
        if name.startswith((".#", "#")) or name.endswith(IGNORED_SUFFIXES):
            return False
        if any(p.startswith(".") for p in parts[:-1]):
            return False
        if name.endswith(ADAPTER_SUFFIXES):
            return parts[0] not in UNWATCHED_DIRS
        if len(parts) == 1:
            return name == "comicgen.toml"
        return parts[0] in WATCHED_DIRS and not name.startswith(".")

    return accept


async def watch(
    root: Path,
    on_change: Callable[[set[Path]], Awaitable[None] | None],
    stop: asyncio.Event,
) -> None:
    """Call ``on_change(paths)`` for every batch of relevant changes until ``stop``."""
    from watchfiles import awatch

    async for changes in awatch(
        root,
        watch_filter=relevant(root),
        stop_event=stop,
        debounce=60,
        step=20,
        recursive=True,
        ignore_permission_denied=True,
    ):
        result = on_change({Path(p) for _, p in changes})
        if asyncio.iscoroutine(result):
            await result
