"""Server-sent events: every open page holds one stream; any thread may publish."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

KEEPALIVE_S = 15.0
MAX_QUEUED = 2000  # per client; a client that falls this far behind loses events


@dataclass(eq=False)
class Client:
    story: str | None
    page: int | None
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(MAX_QUEUED))


class Hub:
    """Fans events out to the connected pages. ``publish`` is safe from any thread."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.clients: set[Client] = set()
        self.closed = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def publish(self, event: str, data: dict, story: str | None = None) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        message = f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
        try:
            loop.call_soon_threadsafe(self._fan_out, message, story)
        except RuntimeError:  # the loop is closing
            pass

    def _fan_out(self, message: str, story: str | None) -> None:
        for client in list(self.clients):
            if story is None or client.story in (None, story):
                try:
                    client.queue.put_nowait(message)
                except asyncio.QueueFull:
                    pass

    def viewed_pages(self, story: str) -> set[int]:
        return {c.page for c in self.clients if c.story == story and c.page is not None}

    def close(self) -> None:
        self.closed = True
        for client in list(self.clients):
            try:
                client.queue.put_nowait(None)
            except asyncio.QueueFull:
                pass

    async def stream(self, client: Client, first: list[str]) -> AsyncIterator[str]:
        """The text of one event stream: ``first`` (the current state), then events."""
        self.clients.add(client)
        try:
            yield "retry: 1000\n\n"
            for message in first:
                yield message
            while not self.closed:
                try:
                    message = await asyncio.wait_for(client.queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if message is None:
                    break
                yield message
        finally:
            self.clients.discard(client)


def event_text(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
