"""The strawberry ASGI view at ``/graphql``: context, WebSocket auth, request guards."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLRequestData
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from query_api.context import Context, Services
from query_api.limits.auth import connection_allowed
from query_api.limits.clients import Counts
from query_api.limits.shape import NOT_UNICODE, nesting_depth, too_deep, unpaired_surrogate
from query_api.ws import TransportWS

__all__ = ["GraphQLApp", "nesting_depth"]


class _TooDeep(json.JSONDecodeError):
    """JSON nested past the decoder's recursion: not JSON we can read."""


class GraphQLApp(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = TransportWS

    def __init__(
        self,
        schema: BaseSchema,
        *,
        services: Callable[[], Services],
        tokens: tuple[str, ...],
        max_nesting: int,
        operation_counts: Counts | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("subscription_protocols", (GRAPHQL_TRANSPORT_WS_PROTOCOL,))
        super().__init__(schema, **kwargs)
        self._services = services
        self._tokens = tokens
        self.max_nesting = max_nesting
        #: WebSocket operations running, on the server and per client (``query_api.ws``).
        self.operation_counts = operation_counts

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None
    ) -> Context:
        return Context(services=self._services(), request=request, response=response)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """With tokens set, a WebSocket authenticates by header or by ``connection_init``."""
        if connection_allowed(context.request.scope, context.connection_params, self._tokens):
            return cast(UnsetType, UNSET)
        raise ConnectionRejectionError()

    def decode_json(self, data: str | bytes) -> object:
        """JSON too deep for the decoder is not JSON (a WebSocket closes with 4400)."""
        try:
            return super().decode_json(data)
        except RecursionError:
            raise _TooDeep("nested too deeply", "", 0) from None

    def parse_json(self, data: str | bytes) -> Any:
        """The body as JSON; anything but an object (or a list, refused later) is a 400,
        and so is a string that is not valid Unicode anywhere in it."""
        try:
            value = self.decode_json(data)
        except _TooDeep:
            raise HTTPException(400, "The request body is nested too deeply.") from None
        except ValueError:  # not JSON, or not UTF-8
            raise HTTPException(400, "Unable to parse request body as JSON") from None
        if not isinstance(value, (dict, list)):
            raise HTTPException(400, "The request body must be a JSON object.")
        if unpaired_surrogate(value):
            raise HTTPException(400, NOT_UNICODE[0].upper() + NOT_UNICODE[1:] + ".")
        return value

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        try:
            data = await super().parse_http_body(request)
        except RecursionError:
            raise HTTPException(400, "The request body is nested too deeply.") from None
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item.query, str) and nesting_depth(item.query) > self.max_nesting:
                raise HTTPException(400, too_deep(self.max_nesting))
        return data
