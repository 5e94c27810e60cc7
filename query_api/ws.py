"""graphql-transport-ws at our edge: every refused operation gets an ``error`` message.

Strawberry's handler (0.341) had three ways to lose a client's mistake:

- a parse error raised in the parser cache's hook escaped ``Schema.stream``: the
  client got a bare ``complete`` and the log a traceback (``strawberry.ws.task``);
  ``query_api.extensions.DocumentCache`` now lets strawberry report it, and the
  stream below is a net for anything else that escapes;
- a syntax error or an unknown operation name closed the whole socket (4400),
  ending the client's other subscriptions with it: here it is that operation's
  ``error`` message, as for validation errors
  (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md#error);
- a payload that is not a query (a number, a megabyte, nesting thousands deep,
  an unpaired surrogate) reached the parser or failed with a ``TypeError``: here
  ``query_api.limits.shape`` refuses it first, with the HTTP path's words.

Messages that break the protocol itself (not an object, no type, an id that is not
a string) close the socket with 4400, as the protocol says.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from graphql import GraphQLError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)

from query_api.context import Context
from query_api.extensions import MASKED_MESSAGE, should_mask
from query_api.limits.clients import Counts, client_key
from query_api.limits.operations import per_socket_refusal
from query_api.limits.shape import MAX_NESTING, operation_refusal

if TYPE_CHECKING:
    from strawberry.schema.schema import StreamResult
    from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
        Message,
        SubscribeMessage,
    )

log = logging.getLogger(__name__)
client_errors = logging.getLogger("query_api.client_errors")


class TransportWS(BaseGraphQLTransportWSHandler[Context, None]):
    async def handle_message(self, message: Message) -> None:
        raw: Any = message
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            await self.handle_invalid_message("a message must be an object with a string type")
            return
        if raw["type"] in ("subscribe", "complete") and not isinstance(raw.get("id"), str):
            await self.handle_invalid_message(f"a {raw['type']} message needs a string id")
            return
        await super().handle_message(message)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if not self.connection_acknowledged or message["id"] in self.operations:
            await super().handle_subscribe(message)  # closes the socket, as the protocol says
            return
        refusal = operation_refusal(
            cast(Any, message).get("payload"), self._max_bytes(), self._max_nesting()
        )
        counts: Counts | None = getattr(self.view, "operation_counts", None)
        if refusal is None:
            refusal = per_socket_refusal(len(self.operations), self._max_per_socket())
            if refusal is not None and counts is not None:
                counts.refused["socket"] += 1
        client = client_key(self.context.request.scope, self.context.connection_params)
        if refusal is None and counts is not None:
            refusal = counts.enter(client)
        if refusal is not None:
            self._log_refusal(refusal)
            await self.send_message(
                {"id": message["id"], "type": "error",
                 "payload": [GraphQLError(refusal).formatted]}
            )
            return
        await super().handle_subscribe(message)
        if counts is None:
            return
        operation = self.operations.get(message["id"])
        if operation is None or operation.task is None:
            counts.leave(client)
        else:  # however it ends: completed, cancelled, failed, or the socket closed
            operation.task.add_done_callback(lambda _: counts.leave(client))

    def _log_refusal(self, refusal: str) -> None:
        """The first refusal of a socket in the log; the rest at DEBUG: a client flooding
        the bounds must not flood the log too (the metric counts every one)."""
        if getattr(self, "_refusal_logged", False):
            client_errors.debug("client error: %s", refusal)
            return
        self._refusal_logged = True
        client_errors.info("client error: %s (further refusals on this socket: logged at"
                           " DEBUG, counted by query_api_websocket_refusals_total)", refusal)

    @staticmethod
    def _get_pre_execution_close_reason(error: GraphQLError) -> str | None:
        return None  # the operation's own ``error`` message; the socket stays open

    async def _send_result_stream(
        self, operation: Operation[Context, None], result_source: StreamResult
    ) -> None:
        try:
            await super()._send_result_stream(operation, result_source)
        except Exception as exc:
            if operation.completed or operation.id not in self.operations:
                raise  # the socket was closed, or the operation already ended
            error = exc if isinstance(exc, GraphQLError) else GraphQLError(
                str(exc), original_error=exc)
            if should_mask(error):
                log.error("a WebSocket operation failed", exc_info=exc)
                error = GraphQLError(MASKED_MESSAGE)
            else:
                client_errors.info("client error: %s", error.message)
            await operation.send_initial_errors([error])

    def _max_bytes(self) -> int:
        services = getattr(self.context, "services", None)
        return int(services.settings.max_body_bytes) if services is not None else 64 * 1024

    def _max_per_socket(self) -> int:
        bound = self.max_subscriptions_per_connection
        return bound if bound is not None else 1 << 62

    def _max_nesting(self) -> int:
        return int(getattr(self.view, "max_nesting", MAX_NESTING))
