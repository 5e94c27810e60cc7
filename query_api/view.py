"""The strawberry ASGI view at ``/graphql``: context, WebSocket auth, request guards."""

from __future__ import annotations

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

from query_api._middleware import AUTHENTICATED, token_ok
from query_api.context import Context, Services


def nesting_depth(query: str) -> int:
    """The deepest nesting of ``{``, ``(`` and ``[`` outside strings and comments.

    A cheap scan before parsing: graphql-core parses and checks depth recursively,
    so a query nested thousands deep must be refused before either runs.
    """
    depth = deepest = 0
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "})]":
            depth -= 1
        elif c == "#":
            while i < n and query[i] not in "\r\n":
                i += 1
        elif c == '"':
            if query.startswith('"""', i):
                end = query.find('"""', i + 3)
                i = n if end < 0 else end + 2
            else:
                i += 1
                while i < n and query[i] != '"' and query[i] not in "\r\n":
                    i += 2 if query[i] == "\\" else 1
        i += 1
    return deepest


class GraphQLApp(GraphQL[Context, None]):
    def __init__(
        self,
        schema: BaseSchema,
        *,
        services: Callable[[], Services],
        tokens: tuple[str, ...],
        max_nesting: int,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("subscription_protocols", (GRAPHQL_TRANSPORT_WS_PROTOCOL,))
        super().__init__(schema, **kwargs)
        self._services = services
        self._tokens = tokens
        self._max_nesting = max_nesting

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None
    ) -> Context:
        return Context(services=self._services(), request=request, response=response)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """With tokens set, a WebSocket authenticates by header or by ``connection_init``."""
        accepted = cast(UnsetType, UNSET)
        if not self._tokens or context.request.scope.get(AUTHENTICATED):
            return accepted
        params = context.connection_params or {}
        presented = params.get("Authorization") or params.get("authorization")
        if isinstance(presented, str) and token_ok(presented, self._tokens):
            return accepted
        raise ConnectionRejectionError()

    def parse_json(self, data: str | bytes) -> Any:
        """The body as JSON; anything but an object (or a list, refused later) is a 400."""
        try:
            value = super().parse_json(data)
        except RecursionError:
            raise HTTPException(400, "The request body is nested too deeply.") from None
        except ValueError:  # not UTF-8 (JSONDecodeError is handled by strawberry)
            raise HTTPException(400, "Unable to parse request body as JSON") from None
        if not isinstance(value, (dict, list)):
            raise HTTPException(400, "The request body must be a JSON object.")
        return value

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        try:
            data = await super().parse_http_body(request)
        except RecursionError:
            raise HTTPException(400, "The request body is nested too deeply.") from None
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item.query, str) and nesting_depth(item.query) > self._max_nesting:
                raise HTTPException(
                    400, f"The query nests deeper than {self._max_nesting} levels."
                )
        return data
