"""Small helpers of the pure ASGI middleware: a request header, a JSON answer."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from starlette.types import Receive, Scope, Send


def header(scope: Scope, name: bytes) -> str | None:
    """The first header ``name`` (lower case) of an HTTP or WebSocket scope."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def send_json(send: Send, status: int, body: Mapping[str, object],
                    extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """A whole HTTP response: ``body`` as JSON with ``status``."""
    payload = json.dumps(body).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()), *extra],
    })
    await send({"type": "http.response.body", "body": payload})


async def deny_websocket(scope: Scope, receive: Receive, send: Send,
                         status: int, error: str, close_code: int) -> None:
    """Refuse a WebSocket before it is accepted: an HTTP answer where the server
    supports it (the ``websocket.http.response`` extension), else a close."""
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        payload = json.dumps({"error": error}).encode()
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "websocket.http.response.body", "body": payload})
    else:
        await send({"type": "websocket.close", "code": close_code})
