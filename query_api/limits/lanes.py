"""A second event loop, in its own thread, for operations estimated to be heavy.

graphql-core completes a resolved subtree synchronously: when the histories of
4,500 deliveries arrive, completing them holds the event loop for seconds, and
every other request on that loop (``/healthz``, a ``delivery(id)``) waits. The
cost estimate (``query_api.limits.cost``) is known before execution, so an operation
over ``QUERY_API_HEAVY_COST`` runs on this lane's loop instead: heavy operations then
share one thread among themselves while the main loop keeps answering (the GIL
is handed over at least every few milliseconds). Light operations, the common
case, stay on the main loop and pay nothing for it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from graphql import DocumentNode, GraphQLSchema, OperationDefinitionNode, OperationType

from query_api.limits.budget import CostBudget

T = TypeVar("T")


class HeavyLane:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=loop.run_forever, name="query-api-heavy-lane", daemon=True
        )
        self._loop = loop
        self._thread.start()

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """``await work()`` on the lane's loop; cancelling the caller cancels it there."""
        assert self._loop is not None, "the lane is started by the app's lifespan"

        async def call() -> T:
            return await work()

        future = asyncio.run_coroutine_threadsafe(call(), self._loop)
        return await asyncio.wrap_future(future)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return

        def shutdown() -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.stop()

        loop.call_soon_threadsafe(shutdown)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()


class LaneChoice:
    """Which lane an operation runs on, from its estimated cost, before strawberry runs it.

    Light operations, unparsable ones and those the budget is about to refuse stay
    on the main loop: only work that will really run is worth moving. So do
    subscriptions: their source (``query_api.feed``) lives on the main loop; a
    query sent over a WebSocket moves as it would over HTTP.
    """

    def __init__(
        self, budget: CostBudget, heavy_cost: int, parse: Callable[[str], DocumentNode]
    ) -> None:
        self.budget = budget
        self.heavy_cost = heavy_cost
        self._parse = parse

    def lane_for(
        self,
        lane: HeavyLane | None,
        schema: GraphQLSchema,
        query: str | None,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
    ) -> HeavyLane | None:
        """``lane`` when the operation is heavy and the lane runs; else None (the main loop)."""
        if lane is None or lane.loop is None or not query:
            return None
        cost = self.budget.peek(schema, query, operation_name, variables, self._parse)
        if cost is None or not self.heavy_cost < cost.rows <= self.budget.max_cost:
            return None  # light, unparsable, or about to be refused: no need to move
        if self._subscribes(query, operation_name):
            return None
        return lane

    def _subscribes(self, query: str, operation_name: str | None) -> bool:
        document = self._parse(query)  # cached: the budget has just parsed it
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        chosen = (
            operations[0] if operation_name is None and len(operations) == 1
            else next((o for o in operations
                       if o.name is not None and o.name.value == operation_name), None)
        )
        return chosen is not None and chosen.operation is OperationType.SUBSCRIPTION
