"""A second event loop, in its own thread, for operations estimated to be heavy.

graphql-core completes a resolved subtree synchronously: when the histories of
4,500 deliveries arrive, completing them holds the event loop for seconds, and
every other request on that loop (``/healthz``, a ``delivery(id)``) waits. The
cost estimate (``query_api.limits.cost``) is known before execution, so an operation
over ``QUERY_API_HEAVY_COST`` runs on this lane's loop instead: heavy operations then
share one thread among themselves while the main loop keeps answering (the GIL
is handed over at least every few milliseconds). Light operations, the common
case, stay on the main loop and pay nothing for it.

Subscriptions run on the lane whatever their cost (``HeavyLane.stream``): their
source, the change feed (``query_api.feed``), lives on the lane's loop, and so does
the resolution of every push. A flood of subscriptions then queues for the
lane's database slots, never in front of the main loop's light queries: measured
(tests/fault/test_ws_flood.py, docs/api-limits.md), 2,000 subscriptions arriving
at once had held plain HTTP queries for up to 6 s when they ran on the main loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import Any, TypeVar

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
)

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

    async def stream(
        self, open_source: Callable[[], Awaitable[AsyncIterator[T]]]
    ) -> AsyncGenerator[T, None]:
        """The items of ``await open_source()``, opened, iterated and closed on the lane's
        loop, handed to the caller's loop one at a time (the lane waits until each is
        taken). Closing or cancelling the caller's iterator cancels the lane's task, which
        closes the source there, on the loop it belongs to."""
        lane = self._loop
        assert lane is not None, "the lane is started by the app's lifespan"
        here = asyncio.get_running_loop()
        handed: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue(maxsize=1)

        async def hand(item: tuple[bool, Any]) -> None:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(handed.put(item), here))

        async def pump() -> None:
            try:
                source = await open_source()
                async with aclosing(source):  # type: ignore[type-var]
                    async for item in source:
                        await hand((True, item))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - raised again on the caller's side
                await hand((False, exc))
            else:
                await hand((False, None))

        pumping = asyncio.run_coroutine_threadsafe(pump(), lane)
        try:
            while True:
                more, value = await handed.get()
                if more:
                    yield value
                elif value is None:
                    return
                else:
                    raise value
        finally:
            pumping.cancel()

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
    on the main loop: only work that will really run is worth moving. A query sent
    over a WebSocket moves as it would over HTTP. Subscriptions are not chosen
    here: every one runs on the lane (``subscribes``, ``HeavyLane.stream``).
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
        if self.subscribes(query, operation_name):
            return None
        return lane

    def subscribes(self, query: str | None, operation_name: str | None) -> bool:
        """Whether the chosen operation of ``query`` is a subscription (False when the
        text does not parse: strawberry's own errors say why)."""
        if not query:
            return False
        try:
            document = self._parse(query)  # cached: parsed once for every use
        except (GraphQLError, TypeError, ValueError, RecursionError):
            return False
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        chosen = (
            operations[0] if operation_name is None and len(operations) == 1
            else next((o for o in operations
                       if o.name is not None and o.name.value == operation_name), None)
        )
        return chosen is not None and chosen.operation is OperationType.SUBSCRIPTION
