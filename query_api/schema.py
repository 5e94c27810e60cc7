"""The contract's GraphQL schema (section GraphQL API): queries, subscription, safety net.

``schema`` (module level, development settings) is what
``strawberry export-schema query_api.schema:schema`` prints into
``query_api/schema.graphql``; the app builds its own with ``build_schema(settings)``,
which differs only in its extensions (introspection off in production, limits).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import aclosing
from datetime import date, datetime
from typing import Annotated, Any

import strawberry
from graphql import DocumentNode, GraphQLError
from strawberry.extensions.parser_cache import _get_parse_cache
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StreamResult
from strawberry.types import ExecutionContext, Info
from strawberry.types.graphql import OperationType
from strawberry.utils.logging import StrawberryLogger

from query_api import reads
from query_api.context import Context
from query_api.cursors import DeliveryKey, delivery_cursor, parse_delivery_cursor
from query_api.errors import UserInputError
from query_api.extensions import extensions_for, should_mask
from query_api.limits.budget import CostBudget, budget_for
from query_api.limits.lanes import HeavyLane, LaneChoice
from query_api.limits.pages import check_first
from query_api.reads import DeliveryFilterSpec, FoldBound
from query_api.scalars import SCALARS
from query_api.settings import Settings
from query_api.stats import check_range, daily_stats, utc_bounds
from query_api.status import projection_status
from query_api.timeline import too_long_message
from query_api.types import (
    Delivery,
    DeliveryConnection,
    DeliveryEdge,
    DeliveryFilter,
    PageInfo,
    ProjectionStatus,
    RiderDailyStats,
)

CtxInfo = Info[Context, None]
StreamItem = Any  # one element of a StreamResult


def time_travel_bound(as_of: datetime | None, as_of_applied: datetime | None) -> FoldBound | None:
    """``asOf``/``asOfApplied`` as a bound; None (the current row) when neither is given.
    An explicit null means "no bound on that side", as an absent argument does."""
    as_of = None if as_of is strawberry.UNSET else as_of
    as_of_applied = None if as_of_applied is strawberry.UNSET else as_of_applied
    if as_of is None and as_of_applied is None:
        return None
    return FoldBound(as_of, as_of_applied)

client_errors = logging.getLogger("query_api.client_errors")


@strawberry.type
class Query:
    @strawberry.field(  # type: ignore[untyped-decorator]
        description="A delivery by id; null when it was never seen. With asOf: the fold of "
        "its events that occurred at or before asOf (what had happened); with asOfApplied: "
        "of those applied at or before it (what the read model showed then); with both, "
        "both bounds; null when no event qualifies."
    )
    async def delivery(
        self,
        info: CtxInfo,
        id: strawberry.ID,
        as_of: datetime | None = strawberry.UNSET,
        as_of_applied: datetime | None = strawberry.UNSET,
    ) -> Delivery | None:
        session = info.context.session
        bound = time_travel_bound(as_of, as_of_applied)
        if bound is None:
            row = await session.deliveries.load(str(id))
            return None if row is None else Delivery.from_row(row, session)
        folded = await session.timelines.load((str(id), bound))
        if folded.too_long:
            raise UserInputError(too_long_message(str(id)))
        if folded.row is None:
            return None
        return Delivery.from_row(folded.row, session, bound)

    @strawberry.field(description="Ordered by lastEventAt descending, then id ascending.")  # type: ignore[untyped-decorator]
    async def deliveries(
        self,
        info: CtxInfo,
        filter: DeliveryFilter | None = strawberry.UNSET,  # noqa: A002 - the contract's name
        first: int | None = 50,
        after: str | None = strawberry.UNSET,
    ) -> DeliveryConnection:
        first = check_first(first)
        spec = filter.to_spec() if filter else DeliveryFilterSpec()
        key = parse_delivery_cursor(after) if after else None
        session = info.context.session
        session.spend(first)
        rows, has_next = await session.run(reads.delivery_page, spec, first, key)
        edges = []
        for row in rows:
            node = Delivery.from_row(row, session)
            session.deliveries.prime(str(node.id), row)
            edges.append(
                DeliveryEdge(
                    cursor=delivery_cursor(DeliveryKey(row["last_event_at"], row["delivery_id"])),
                    node=node,
                )
            )
        return DeliveryConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None
            ),
            spec=spec,
            session=session,
        )

    @strawberry.field(description="One row per day of the inclusive range, zeros included.")  # type: ignore[untyped-decorator]
    async def rider_daily_stats(
        self,
        info: CtxInfo,
        rider_id: strawberry.ID,
        from_: Annotated[date, strawberry.argument(name="from")],
        to: date,
    ) -> list[RiderDailyStats]:
        check_range(from_, to)
        tz = info.context.services.settings.business_tz
        low, high = utc_bounds(from_, to, tz)
        info.context.session.spend((to - from_).days + 1)
        rows = await info.context.session.run(reads.rider_deliveries, str(rider_id), low, high)
        return [
            RiderDailyStats(
                rider_id=rider_id,
                day=day.day,
                assigned=day.assigned,
                completed=day.completed,
                cancelled=day.cancelled,
                avg_delivery_seconds=day.avg_delivery_seconds,
            )
            for day in daily_stats(rows, from_, to, tz)
        ]

    @strawberry.field
    async def projection_status(self, info: CtxInfo) -> ProjectionStatus:
        return await projection_status(info.context)


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Pushed after each commit that changes the delivery.")  # type: ignore[untyped-decorator]
    async def delivery_updated(
        self, info: CtxInfo, id: strawberry.ID
    ) -> AsyncGenerator[Delivery, None]:
        async for row, session in info.context.services.feed.updates(str(id)):
            yield Delivery.from_row(row, session)

    @strawberry.subscription(  # type: ignore[untyped-decorator]
        description="Each delivery that changes after subscribing and then matches `filter` "
        "(all of them without one), pushed after the commit that changed it."
    )
    async def deliveries_updated(
        self,
        info: CtxInfo,
        filter: DeliveryFilter | None = strawberry.UNSET,  # noqa: A002 - as in `deliveries`
    ) -> AsyncGenerator[Delivery, None]:
        spec = filter.to_spec() if filter else DeliveryFilterSpec()
        async for row, session in info.context.services.feed.changes(spec):
            yield Delivery.from_row(row, session)


def build_schema(
    settings: Settings | None = None,
    observe: Callable[[str, str, str, float], None] | None = None,
) -> strawberry.Schema:
    """The schema with the extensions ``settings`` ask for; ``observe`` receives metrics."""
    settings = settings or Settings()
    budget = budget_for(settings)
    built = _Schema(
        query=Query,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map=SCALARS),
        extensions=extensions_for(settings, observe, budget),
    )
    built.route_heavy(settings, budget)
    return built


class _Schema(strawberry.Schema):
    """Logs what clients got wrong in one line, and only real failures with a traceback.

    Strawberry logs every error at ERROR with its stack, so a client sending a bad
    `first` in a loop would flood the log.
    """

    lanes: LaneChoice | None = None

    def route_heavy(self, settings: Settings, budget: CostBudget) -> None:
        """Operations estimated over ``settings.heavy_cost`` run on the heavy lane."""
        # ParserCache's own cache: the document is parsed once for both uses.
        parse: Callable[..., DocumentNode] = _get_parse_cache(settings.document_cache_size)
        max_tokens = settings.max_tokens
        self.lanes = LaneChoice(
            budget, settings.heavy_cost, lambda text: parse(text, max_tokens=max_tokens)
        )

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Plain HTTP runs queries only: a subscription gets a 400 that says so, not a
        masked null (subscriptions are served over a WebSocket, graphql-transport-ws).
        A heavy operation runs on the heavy lane (``query_api.limits.lanes``)."""
        allowed = kwargs.get("allowed_operation_types")
        if allowed is not None:
            kwargs["allowed_operation_types"] = set(allowed) - {OperationType.SUBSCRIPTION}
        lane = self._lane_for(*args, **kwargs)
        if lane is not None:
            return await lane.run(lambda: super(_Schema, self).execute(*args, **kwargs))
        return await super().execute(*args, **kwargs)

    async def stream(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
    ) -> StreamResult:
        """A WebSocket's operations: a heavy query runs on the heavy lane, as over HTTP
        (``execute``); its one result is handed back to the socket's loop. Every
        subscription runs on the lane, its pushes resolved there and handed back one at
        a time (``HeavyLane.stream``)."""
        args = (query, variable_values, context_value, root_value, operation_name,
                operation_extensions, allowed_operation_types)
        running = self._running_lane(context_value)
        if (running is not None and self.lanes is not None
                and self.lanes.subscribes(query, operation_name)):
            return running.stream(lambda: super(_Schema, self).stream(*args))
        lane = self._lane_for(query, variable_values, context_value, operation_name=operation_name)
        if lane is None:
            return await super().stream(*args)

        async def run() -> list[StreamItem]:
            source = await super(_Schema, self).stream(*args)
            async with aclosing(source):
                return [result async for result in source]

        return _replayed(await lane.run(run))

    def _lane_for(
        self,
        query: str | None = None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any = None,
        *_: Any,
        operation_name: str | None = None,
        **__: Any,
    ) -> HeavyLane | None:
        if self.lanes is None:
            return None
        lane = self._running_lane(context_value)
        return self.lanes.lane_for(lane, self._schema, query, operation_name, variable_values)

    @staticmethod
    def _running_lane(context_value: Any) -> HeavyLane | None:
        services = getattr(context_value, "services", None)
        lane: HeavyLane | None = getattr(services, "heavy", None)
        return lane if lane is not None and lane.loop is not None else None

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            if not should_mask(error):  # worded for clients: their mistake, not ours
                client_errors.info("client error: %s", error.message)
            else:
                StrawberryLogger.error(error, execution_context)


async def _replayed(results: list[StreamItem]) -> StreamResult:
    for result in results:
        yield result


schema = build_schema()
