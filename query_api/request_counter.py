"""Counting HTTP requests by route, method and status (``query_api.metrics``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
