"""Pure ASGI middleware: bearer tokens, a body size bound, request counting."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable, Mapping, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

AUTHENTICATED = "query_api.authenticated"


def token_ok(presented: str | None, tokens: Iterable[str]) -> bool:
    """Whether ``presented`` ("Bearer <t>") is one of ``tokens``, in constant time.

    Every token is compared, so timing tells neither which one matched nor how much.
    """
    if not presented:
        return False
    value = presented.strip()
    if value[:7].lower() != "bearer ":
        return False  # the scheme is part of the contract: "Authorization: Bearer <token>"
    value = value[7:].strip()
    # surrogatepass: a WebSocket's connection_init is JSON, which can carry an unpaired
    # surrogate; it must compare unequal, not raise.
    candidate = value.encode("utf-8", "surrogatepass")
    ok = False
    for token in tokens:
        ok |= hmac.compare_digest(candidate, token.encode("utf-8"))
    return ok


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def _json(send: Send, status: int, body: Mapping[str, object],
                extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()), *extra],
    })
    await send({"type": "http.response.body", "body": payload})


class BearerAuth:
    """401 without a valid ``Authorization: Bearer`` token, except on ``open_paths``.

    A WebSocket without the header is let through unmarked: browsers cannot set
    headers on a WebSocket, so the GraphQL view then checks the token sent in
    ``connection_init`` instead. A WebSocket with a wrong header is refused.
    """

    def __init__(self, app: ASGIApp, tokens: tuple[str, ...], open_paths: Iterable[str]) -> None:
        self.app = app
        self.tokens = tokens
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.tokens or scope["type"] not in ("http", "websocket") or (
            scope["path"] in self.open_paths
        ):
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization")
        if token_ok(header, self.tokens):
            scope[AUTHENTICATED] = True
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            if header is None:
                await self.app(scope, receive, send)
                return
            await self._deny_websocket(scope, receive, send)
            return
        await _json(send, 401, {"error": "a valid bearer token is required"},
                    [(b"www-authenticate", b'Bearer realm="query-api"')])

    async def _deny_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            payload = b'{"error": "a valid bearer token is required"}'
            await send({"type": "websocket.http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(payload)).encode())]})
            await send({"type": "websocket.http.response.body", "body": payload})
        else:
            await send({"type": "websocket.close", "code": 1008})


class BodyLimit:
    """413 for HTTP bodies over ``max_bytes`` (declared or streamed): a big query costs nothing."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        too_big = {"error": f"the request body is over {self.max_bytes} bytes"}
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _json(send, 413, too_big)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _json(send, 413, too_big)


class _TooLarge(Exception):
    pass


class CountRequests:
    """Counts HTTP requests by route (known paths only), method and status."""

    def __init__(self, app: ASGIApp, count: Callable[[str, str, int], None],
                 paths: Iterable[str]) -> None:
        self.app = app
        self.count = count
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in self.paths else "other"
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            self.count(path, scope["method"], status)
