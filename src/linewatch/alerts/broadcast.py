"""Live alert events for displays: a fan-out from the worker thread to Server-Sent Events clients."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Sequence

from linewatch.domain import AlertEvent


BUSY_RETRY_MS = 30_000  # how long a refused display waits before it tries again


class Broadcaster:
    """Each subscriber gets its own bounded queue; a display that cannot keep up loses old events,
    never the worker's time. At most ``max_clients`` subscribe at once: each holds a connection and
    a queue, and a plant has a few wall boards, not thousands."""

    def __init__(self, queue_size: int = 1000, max_clients: int = 100):
        self.queue_size = queue_size
        self.max_clients = max_clients
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
            full = len(self._subscribers) >= self.max_clients
            if not full:
                self._subscribers.add(entry)
        if full:  # filled up since the request was admitted (``full``): come back later
            yield f"retry: {BUSY_RETRY_MS}\n: too many live clients, retry later\n\n"
            return
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
    def full(self) -> bool:
        """Whether a new client would be one too many (the API answers 503 with Retry-After)."""
        with self._lock:
            return len(self._subscribers) >= self.max_clients

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)


def _offer(queue: asyncio.Queue[str], message: str) -> None:
    if queue.full():
        queue.get_nowait()  # drop the oldest
    queue.put_nowait(message)
