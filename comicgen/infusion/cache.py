"""Caches of reference latents and reference block features.

The reference rows of an infused U-Net call never see the panel rows (every layer of a
U-Net works per batch row), so a character's block features at a denoising step depend
only on the model, the reference set, its description, the size, the scheduler and its
steps, the reference noise and the infusion settings that shape them. A
:class:`FeatureCache` keeps them, so every later panel with the same characters runs one
U-Net pass per step, like plain generation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _nbytes(value) -> int:
    import torch

    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 0


def _to(value, device):
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, tuple):
        return tuple(_to(v, device) for v in value)
    if isinstance(value, list):
        return [_to(v, device) for v in value]
    return value


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    spilled: int = 0
    evicted: int = 0


class FeatureCache:
    """An in-memory LRU cache of tensors, kept on their device up to ``device_bytes``.

    Entries beyond ``device_bytes`` (oldest first) are moved to the CPU; beyond
    ``max_bytes`` in all, the oldest are dropped. ``get`` returns a tensor on the device it
    was stored from. Keys are any hashable tuples; :mod:`comicgen.infusion` uses one entry
    per (character, step, block) and one per reference latent.
    """

    def __init__(self, max_bytes: int = 2 * 1024**3, device_bytes: int | None = 512 * 1024**2):
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self.device_bytes = max_bytes if device_bytes is None else min(device_bytes, max_bytes)
        self._entries: OrderedDict[Hashable, tuple[object, object, int, bool]] = OrderedDict()
        self._bytes = 0
        self._device_bytes_used = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self._device_bytes_used = 0

    def get(self, key: Hashable, default=None):
        entry = self._entries.get(key)
        if entry is None:
            self.stats.misses += 1
            return default
        self.stats.hits += 1
        self._entries.move_to_end(key)
        value, device, _, spilled = entry
        return _to(value, device) if spilled else value

    def peek(self, key: Hashable) -> bool:
        """Whether ``key`` is cached, without counting a hit or miss."""
        return key in self._entries

    def put(self, key: Hashable, value: torch.Tensor | tuple) -> None:
        import torch

        size = _nbytes(value)
        if size > self.max_bytes:
            return
        if key in self._entries:
            self._remove(key)
        first = value if isinstance(value, torch.Tensor) else next(iter(value), None)
        device = first.device if isinstance(first, torch.Tensor) else torch.device("cpu")
        on_device = device.type != "cpu"
        self._entries[key] = (value, device, size, False)
        self._bytes += size
        if on_device:
            self._device_bytes_used += size
        self._shrink()

    def _remove(self, key: Hashable) -> None:
        value, device, size, spilled = self._entries.pop(key)
        self._bytes -= size
        if device.type != "cpu" and not spilled:
            self._device_bytes_used -= size

    def _shrink(self) -> None:
        while self._bytes > self.max_bytes and self._entries:
            key = next(iter(self._entries))
            self._remove(key)
            self.stats.evicted += 1
        if self._device_bytes_used <= self.device_bytes:
            return
        for key, (value, device, size, spilled) in self._entries.items():
            if self._device_bytes_used <= self.device_bytes:
                break
            if spilled or device.type == "cpu":
                continue
            self._entries[key] = (_to(value, "cpu"), device, size, True)
            self._device_bytes_used -= size
            self.stats.spilled += 1
