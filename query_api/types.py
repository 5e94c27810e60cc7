"""The GraphQL object types of the contract (section GraphQL API), built from read-model rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from datetime import date, datetime
from typing import Any, Final

import strawberry

from query_api.cursors import EventKey, event_cursor, parse_event_cursor
from query_api.errors import UserInputError
from query_api.limits.pages import check_first
from query_api.reads import DeliveryFilterSpec, FoldBound
from query_api.scalars import JSON, Long, json_value
from query_api.session import ReadSession
from query_api.timeline import DeliveryTimeline, too_long_message, untraced_message
from schema.fold import DeliveryRow
from schema.rows import delivery_from_db
from schema.states import DeliveryState

# The contract's states are defined once, in ``schema.states``; this registers them
# as the GraphQL enum.
strawberry.enum(DeliveryState)


@strawberry.type
class EventSource:
    topic: str
    partition: int
    offset: Long


@strawberry.type
class DeliveryEvent:
    event_id: strawberry.ID
    event_type: str = strawberry.field(description="canonical name; unknown types as received")
    occurred_at: datetime
    sequence: Long | None
    data: JSON
    event_version: int = strawberry.field(
        description="as received; 1 when the message carried none"
    )
    source: EventSource
    applied_at: datetime | None = strawberry.field(
        default=None, description="when the projector applied it to the read model"
    )
    known: bool = strawberry.field(
        default=True, description="false for an event type outside the catalogue"
    )

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> DeliveryEvent:
        return cls(
            event_id=strawberry.ID(row["event_id"]),
            event_type=row["event_type"],
            occurred_at=row["occurred_at"],
            sequence=None if row["sequence"] is None else Long(int(row["sequence"])),
            data=json_value(row["data"] if row["data"] is not None else {}),
            event_version=int(row.get("event_version", 1)),
            source=EventSource(
                topic=row["topic"], partition=int(row["partition"]), offset=Long(int(row["offset"]))
            ),
            applied_at=row.get("applied_at"),
            known=bool(row.get("known", 1)),
        )


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class DeliveryEventEdge:
    cursor: str
    node: DeliveryEvent


@strawberry.type
class DeliveryEventConnection:
    edges: list[DeliveryEventEdge]
    page_info: PageInfo
    total_count: int


def _graphql_name(field: str) -> str:
    """A row field's name in the schema: ``estimated_delivery_at`` -> ``estimatedDeliveryAt``."""
    head, *rest = field.split("_")
    return head + "".join(part.capitalize() for part in rest)


@strawberry.type(description="The event that set a field of the delivery last (fold order).")
class FieldLineage:
    field: str = strawberry.field(description="the Delivery field, e.g. riderId")
    event_id: strawberry.ID
    event_type: str
    occurred_at: datetime


@strawberry.type(
    description="A change of state on the fold's path. rewritten: the read model showed it "
    "after an earlier commit, and a later commit (a late event) took it off the path."
)
class StateTransition:
    from_: DeliveryState = strawberry.field(name="from")
    to: DeliveryState
    at: datetime = strawberry.field(description="occurredAt of the event that made it")
    event_id: strawberry.ID
    event_type: str
    rewritten: bool
    rewritten_by: strawberry.ID | None = strawberry.field(
        description="the event whose commit took it off the path (the first in fold order)"
    )
    rewritten_at: datetime | None = strawberry.field(
        description="when that commit was applied: from then on the read model showed the new path"
    )


@strawberry.type
class Delivery:
    id: strawberry.ID
    order_id: str | None
    shop_id: str | None
    rider_id: str | None
    state: DeliveryState
    created_at: datetime | None
    assigned_at: datetime | None
    picked_up_at: datetime | None
    delivered_at: datetime | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    estimated_delivery_at: datetime | None
    last_event_at: datetime
    event_count: int
    #: The session this row was read in: its history comes from the same generation.
    session: strawberry.Private[ReadSession]
    #: A time-travel view (``delivery(asOf, asOfApplied)``): the events it holds.
    bound: strawberry.Private[FoldBound | None] = None

    @strawberry.field(description="fold order")  # type: ignore[untyped-decorator]
    async def history(
        self, first: int | None = 100, after: str | None = strawberry.UNSET
    ) -> DeliveryEventConnection:
        first = check_first(first)
        if after is not None and after is not strawberry.UNSET:
            parse_event_cursor(after)  # a bad cursor is this field's error, not the batch's
        else:
            after = None
        page = await self.session.histories.load((str(self.id), first, after, self.bound))
        edges = [
            DeliveryEventEdge(
                cursor=event_cursor(
                    EventKey(row["occurred_at"], int(row["sequence"] or 0), row["event_id"])
                ),
                node=DeliveryEvent.from_row(row),
            )
            for row in page.rows
        ]
        return DeliveryEventConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next, end_cursor=edges[-1].cursor if edges else None
            ),
            total_count=page.total,
        )

    @strawberry.field(description="Per field of this row that an event set, the event that "
                      "set it last (fold order); computed by the fold itself. Null with an "
                      "error when it cannot be folded: the rest of the row still answers")  # type: ignore[untyped-decorator]
    async def lineage(self) -> list[FieldLineage] | None:
        folded = await self._timeline()
        return [
            FieldLineage(
                field=_graphql_name(name),
                event_id=strawberry.ID(step.event.event_id),
                event_type=step.event.event_type,
                occurred_at=step.event.occurred_at,
            )
            for name, step in folded.lineage.items()
        ]

    @strawberry.field(description="The state path the fold took, in fold order, with the "
                      "transitions later commits rewrote. Null with an error when it cannot be "
                      "traced: the rest of the row still answers")  # type: ignore[untyped-decorator]
    async def transitions(self) -> list[StateTransition] | None:
        folded = await self._timeline()
        if folded.untraced:
            raise UserInputError(untraced_message(str(self.id)))
        return [
            StateTransition(
                from_=t.source,
                to=t.target,
                at=t.event.occurred_at,
                event_id=strawberry.ID(t.event.event_id),
                event_type=t.event.event_type,
                rewritten=t.rewritten_by is not None,
                rewritten_by=None if t.rewritten_by is None
                else strawberry.ID(t.rewritten_by.event_id),
                rewritten_at=None if t.rewritten_by is None
                else folded.applied_at.get(t.rewritten_by.event_id),
            )
            for t in folded.transitions
        ]

    async def _timeline(self) -> DeliveryTimeline:
        folded = await self.session.timelines.load((str(self.id), self.bound))
        if folded.too_long:
            raise UserInputError(too_long_message(str(self.id)))
        return folded

    @classmethod
    def from_row(
        cls,
        row: Mapping[Any, Any] | DeliveryRow,
        session: ReadSession,
        bound: FoldBound | None = None,
    ) -> Delivery:
        """A row of ``deliveries`` (or one folded on demand) as the GraphQL type."""
        found = row if isinstance(row, DeliveryRow) else delivery_from_db(row)
        return cls(
            id=strawberry.ID(found.delivery_id),
            state=DeliveryState(found.state.value),
            session=session,
            bound=bound,
            **{name: getattr(found, name) for name in _ROW_FIELDS},
        )


#: The ``DeliveryRow`` fields the type shows as they are (the id and state are converted;
#: the fold key is the projector's own).
_ROW_FIELDS: Final = tuple(
    f.name for f in fields(DeliveryRow) if f.name not in ("delivery_id", "state", "fold_key")
)


@strawberry.type
class DeliveryEdge:
    cursor: str
    node: Delivery


@strawberry.type
class DeliveryConnection:
    edges: list[DeliveryEdge]
    page_info: PageInfo
    spec: strawberry.Private[DeliveryFilterSpec]
    session: strawberry.Private[ReadSession]

    @strawberry.field
    async def total_count(self) -> int:
        """Counted only when asked for: a page alone costs no COUNT."""
        from query_api.reads import delivery_count

        return await self.session.run(delivery_count, self.spec)


@strawberry.input
class DeliveryFilter:
    states: list[DeliveryState] | None = strawberry.UNSET
    rider_id: strawberry.ID | None = strawberry.UNSET
    shop_id: strawberry.ID | None = strawberry.UNSET
    order_id: str | None = strawberry.UNSET
    last_event_from: datetime | None = strawberry.field(
        default=strawberry.UNSET, description="inclusive"
    )
    last_event_to: datetime | None = strawberry.field(
        default=strawberry.UNSET, description="exclusive"
    )

    def to_spec(self) -> DeliveryFilterSpec:
        def given(value: Any) -> Any:
            return None if value is strawberry.UNSET else value

        states = given(self.states)
        return DeliveryFilterSpec(
            states=None if states is None else tuple(s.value for s in states),
            rider_id=given(self.rider_id),
            shop_id=given(self.shop_id),
            order_id=given(self.order_id),
            last_event_from=given(self.last_event_from),
            last_event_to=given(self.last_event_to),
        )


@strawberry.type
class RiderDailyStats:
    rider_id: strawberry.ID
    day: date = strawberry.field(name="date", description="a day in BUSINESS_TIMEZONE")
    assigned: int
    completed: int
    cancelled: int
    avg_delivery_seconds: float | None


@strawberry.type
class PartitionStatus:
    topic: str
    partition: int
    next_offset: Long = strawberry.field(description="the next offset the projection will read")
    end_offset: Long | None = strawberry.field(
        description="the source's end, when it can be asked"
    )
    lag: Long | None = strawberry.field(description="endOffset - nextOffset")


@strawberry.type
class ProjectionStatus:
    partitions: list[PartitionStatus]
    events_applied: Long
    unknown_events: Long
    dead_letters: Long
    last_event_at: datetime | None
    generation: int
    messages_read: Long = strawberry.field(
        description="messages read once each: eventsApplied + duplicates + deadLetters"
    )
    duplicates: Long = strawberry.field(
        description="later copies of an event id already applied (changed nothing)"
    )
