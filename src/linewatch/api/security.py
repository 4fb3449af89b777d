"""Who may change what: a bearer token for writes (acknowledge, resolve, silence), optionally a
separate read token for wall screens and dashboards, compared in constant time; a limit on request
bodies.

With no token configured, writes are refused: an alert acknowledged by anyone on the plant network
is an alert nobody is really handling.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException, Request

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


READ_COOKIE = "linewatch_read"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # orchestrators and load balancers ask these without a token


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else None


def token_matches(presented: str | None, expected: str | None) -> bool:
    return presented is not None and expected is not None and \
        hmac.compare_digest(presented.encode(), expected.encode())


def check_tokens(api_token: str | None, read_token: str | None, protect_reads: bool) -> None:
    """Refuse settings that would silently weaken access: a blank token, or protected reads with no
    token to read with. Raises ValueError naming the variable."""
    for name, value in (("LINEWATCH_API_TOKEN", api_token), ("LINEWATCH_READ_TOKEN", read_token)):
        if value is not None and not value.strip():
            raise ValueError(f"{name} is set but blank; give it a long random value (python3 -c 'import secrets; "
                             "print(secrets.token_urlsafe(24))') or unset it")
    if api_token is not None and read_token is not None and token_matches(api_token, read_token):
        raise ValueError("LINEWATCH_READ_TOKEN must differ from LINEWATCH_API_TOKEN: the read token travels in "
                         "wall screens' URLs, the write token never does")
    if protect_reads and api_token is None and read_token is None:
        raise ValueError("LINEWATCH_PROTECT_READS=true needs LINEWATCH_READ_TOKEN (for wall screens and dashboards) "
                         "or LINEWATCH_API_TOKEN")


class TokenGuard:
    """Who may write and who may read.

    Writes take the write token (LINEWATCH_API_TOKEN) from ``Authorization: Bearer`` only: never from
    a URL, where proxies and browser histories keep it, nor from a cookie, which a browser would send
    on another site's behalf. With LINEWATCH_PROTECT_READS every read but /healthz and /readyz needs
    one of: either token as a bearer header; the read token (LINEWATCH_READ_TOKEN) as ``access_token``
    in the query string (a wall screen's URL, EventSource, which cannot send headers); or the cookie
    a board page opened that way sets, so its scripts, styles, fetches and event stream need no token.
    """

    def __init__(self, token: str | None, protect_reads: bool = False, read_token: str | None = None):
        check_tokens(token, read_token, protect_reads)
        self.token = token
        self.read_token = read_token
        self.protect_reads = protect_reads

    def writer(self, request: Request) -> None:
        if self.token is None:
            raise HTTPException(status_code=403, detail="Changes through the API are disabled: no API token is "
                                                        "configured (set LINEWATCH_API_TOKEN).")
        if not token_matches(_bearer(request), self.token):
            raise HTTPException(status_code=401, detail="A valid API token is needed: send "
                                                        "'Authorization: Bearer <token>' (never in the URL).",
                                headers={"WWW-Authenticate": "Bearer"})

    def may_read(self, request: Request) -> bool:
        if not self.protect_reads:
            return True
        bearer = _bearer(request)
        if token_matches(bearer, self.token) or token_matches(bearer, self.read_token):
            return True
        return self.read_token is not None and (
            token_matches(request.query_params.get("access_token"), self.read_token)
            or token_matches(request.cookies.get(READ_COOKIE), self.read_token))


READ_REFUSED = json.dumps({"detail": "Reading needs a token: 'Authorization: Bearer <token>', or the read token "
                                     "as ?access_token=... (wall screens)."}).encode()


class ReadProtection:
    """Every request but /healthz and /readyz passes ``guard.may_read`` first: the API, /metrics, the
    board and its static files, /docs and /openapi.json alike. A page opened with the read token in
    its URL gets it back as an HttpOnly, same-site cookie for what the page loads next."""

    def __init__(self, app: ASGIApp, guard: TokenGuard):
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http" or not self.guard.protect_reads or scope["path"] in OPEN_PATHS \
                or scope["method"] == "OPTIONS":  # CORS preflight carries no credentials
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if not self.guard.may_read(request):
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                    (b"content-length", str(len(READ_REFUSED)).encode())]})
            await send({"type": "http.response.body", "body": READ_REFUSED})
            return
        presented = request.query_params.get("access_token")
        read_token = self.guard.read_token
        opened_by_url = token_matches(presented, read_token) and not token_matches(request.cookies.get(READ_COOKIE),
                                                                                 read_token)
        if not opened_by_url:
            await self.app(scope, receive, send)
            return
        cookie = f"{READ_COOKIE}={presented}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000".encode()

        async def with_cookie(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, with_cookie)


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
