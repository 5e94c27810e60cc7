"""Who may ask: bearer tokens on HTTP and WebSocket requests.

HTTP requests and WebSockets that carry a header are checked by ``BearerAuth``
before anything else runs. A WebSocket without the header is let through
unmarked: browsers cannot set headers on a WebSocket, so ``connection_allowed``
checks the token sent in ``connection_init`` instead.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from query_api._asgi import deny_websocket, header, send_json

AUTHENTICATED = "query_api.authenticated"
_REQUIRED = "a valid bearer token is required"


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


def connection_allowed(
    scope: Scope, params: Mapping[str, Any] | None, tokens: tuple[str, ...]
) -> bool:
    """Whether a WebSocket may start: no tokens set, a valid header (marked by
    ``BearerAuth``), or a valid ``Authorization`` in its ``connection_init``."""
    if not tokens or scope.get(AUTHENTICATED):
        return True
    params = params or {}
    presented = params.get("Authorization") or params.get("authorization")
    return isinstance(presented, str) and token_ok(presented, tokens)


class BearerAuth:
    """401 without a valid ``Authorization: Bearer`` token, except on ``open_paths``.

    A WebSocket without the header is let through unmarked (see the module); a
    WebSocket with a wrong header is refused.
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
        presented = header(scope, b"authorization")
        if token_ok(presented, self.tokens):
            scope[AUTHENTICATED] = True
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            if presented is None:
                await self.app(scope, receive, send)
                return
            await deny_websocket(scope, receive, send, 401, _REQUIRED, 1008)
            return
        await send_json(send, 401, {"error": _REQUIRED},
                        [(b"www-authenticate", b'Bearer realm="query-api"')])
