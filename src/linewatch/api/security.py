"""Who may change what: a bearer token for writes (acknowledge, resolve, silence), optionally for reads,
compared in constant time; a limit on request bodies.

With no token configured, writes are refused: an alert acknowledged by anyone on the plant network
is an alert nobody is really handling.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException, Request

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def _presented(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    # EventSource cannot send headers: a wall board passes the token in the query string
    return request.query_params.get("access_token")


def token_matches(presented: str | None, expected: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


class TokenGuard:
    """FastAPI dependencies for write and read endpoints."""

    def __init__(self, token: str | None, protect_reads: bool = False):
        self.token = token or None
        self.protect_reads = protect_reads

    def writer(self, request: Request) -> None:
        if self.token is None:
            raise HTTPException(status_code=403, detail="Changes through the API are disabled: no API token is "
                                                        "configured (set LINEWATCH_API_TOKEN).")
        self._check(request)

    def reader(self, request: Request) -> None:
        if self.protect_reads and self.token is not None:
            self._check(request)

    def _check(self, request: Request) -> None:
        assert self.token is not None
        if not token_matches(_presented(request), self.token):
            raise HTTPException(status_code=401, detail="A valid API token is needed: send "
                                                        "'Authorization: Bearer <token>'.",
                                headers={"WWW-Authenticate": "Bearer"})


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, whether or not they declare their length."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        seen = 0
        refused = False

        async def limited() -> dict:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes and not refused:
                    # answer now; the application sees the client go away and whatever it sends is dropped
                    refused = True
                    await _too_large(send, self.max_bytes)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited, guarded_send)


async def _too_large(send: Callable[[dict], Awaitable[None]], limit: int) -> None:
    body = f'{{"detail": "Request body larger than {limit} bytes."}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
