"""Live alert events for displays: a fan-out from the worker thread to Server-Sent Events clients."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Sequence

from linewatch.domain import AlertEvent


class Broadcaster:
    """Each subscriber gets its own bounded queue; a display that cannot keep up loses old events,
    never the worker's time."""

    def __init__(self, queue_size: int = 1000):
        self.queue_size = queue_size
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[str]]] = set()
        self._lock = threading.Lock()

    def publish(self, events: Sequence[AlertEvent]) -> None:
        """Called from any thread."""
        if not events:
            return
        messages = [f"event: alert\ndata: {json.dumps({'event': ev.type.value, 'alert': ev.alert.to_dict()})}\n\n"
                    for ev in events]
        with self._lock:
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            for m in messages:
                try:
                    loop.call_soon_threadsafe(_offer, queue, m)
                except RuntimeError:  # the client's loop is gone
                    self._drop(loop, queue)

    def _drop(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str]) -> None:
        with self._lock:
            self._subscribers.discard((loop, queue))

    async def stream(self, heartbeat: float = 15.0) -> AsyncIterator[str]:
        """Server-Sent Events text for one client: alert events, and a comment now and then so
        proxies keep the connection open and the client notices a dead server."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=self.queue_size)
        entry = (loop, queue)
        with self._lock:
            self._subscribers.add(entry)
        try:
            yield "retry: 2000\n: connected\n\n"
            while True:
                try:
                    yield await asyncio.wait_for(queue.get(), timeout=heartbeat)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
        finally:
            self._drop(loop, queue)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)


def _offer(queue: asyncio.Queue[str], message: str) -> None:
    if queue.full():
        queue.get_nowait()  # drop the oldest
    queue.put_nowait(message)
