"""How many WebSockets may be open: on the whole server and per client.

Checked at the upgrade, before the socket is accepted, so a refused socket costs
no handler, no task and no ``connection_init`` wait: the client gets a 429 (per
client) or 503 (the server) where the server can answer a WebSocket upgrade with
HTTP, else a close with 1013 (try again later).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from query_api._asgi import deny_websocket
from query_api.limits.clients import Counts, client_key

TRY_AGAIN_LATER = 1013


def socket_counts(max_total: int, max_per_client: int) -> Counts:
    return Counts("WebSockets", max_total, max_per_client,
                  "QUERY_API_WS_MAX_SOCKETS", "QUERY_API_WS_MAX_SOCKETS_PER_CLIENT")


class SocketLimit:
    """Pure ASGI middleware: counts the WebSockets it lets through until each closes."""

    def __init__(self, app: ASGIApp, counts: Counts) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        client = client_key(scope)
        refusal = self.counts.enter(client)
        if refusal is not None:
            server_wide = self.counts.total >= self.counts.max_total
            await deny_websocket(scope, receive, send, 503 if server_wide else 429,
                                 refusal, TRY_AGAIN_LATER)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.counts.leave(client)
