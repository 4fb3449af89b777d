"""Bounds on what one HTTP connection may hold: a request must arrive within a deadline.

uvicorn closes a connection idle between requests (``timeout_keep_alive``), but that timer restarts on
every byte received, and it is not armed at all on a connection that never sends anything: a client
trickling a request one byte at a time (Slowloris), or a scanner that opens sockets and waits, holds a
connection for as long as it likes. On a small box beside the line a few hundred of those would use up
the file descriptors the wall boards and Grafana need. ASGI middleware cannot help: it runs only once
a request has been read. So the deadline sits in uvicorn's HTTP protocol: from the moment a connection
opens, and again after each response, the next request (its headers and body) must be complete
within ``request_timeout`` seconds, or the connection is closed. A response being sent, such as the
live alert stream, is never cut.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

log = logging.getLogger(__name__)


def with_request_deadline(request_timeout: float, base: type[asyncio.Protocol] = AutoHTTPProtocol) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (httptools or h11, as uvicorn would choose), closing a connection
    whose next request is not complete ``request_timeout`` seconds after it opened or was last answered."""

    class RequestDeadline(base):  # type: ignore[valid-type, misc]
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            if not self.transport.is_closing():
                self._deadline = self.loop.call_later(request_timeout, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            # judged by the state of the request at hand, not by which one it is: httptools starts the
            # cycle of a pipelined request while the previous answer is still being sent
            self._deadline = None
            cycle = self.cycle
            waiting = cycle is None or cycle.response_complete  # for the next request's headers
            body_unfinished = cycle is not None and cycle.more_body and not cycle.response_started
            upgraded = getattr(self.transport, "get_protocol", lambda: self)() is not self  # a websocket
            if (waiting or body_unfinished) and not upgraded and not self.transport.is_closing():
                peer = self.transport.get_extra_info("peername")
                log.info("closing the HTTP connection from %s: no complete request within %.0f s", peer,
                         request_timeout)
                self.transport.close()

    RequestDeadline.__name__ = RequestDeadline.__qualname__ = f"RequestDeadline{base.__name__}"
    return RequestDeadline
