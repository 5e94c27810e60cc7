"""The read model's SELECTs: plain functions of a connection and a generation.

Each function is one statement (``histories`` at most two), whatever the number of
deliveries it serves, so a page of deliveries with their histories costs a
constant number of statements (resolvers batch through DataLoaders, see
``query_api.session``).

The generation is ``ACTIVE`` (the served one, read by a subquery inside the
statement's own snapshot) or a number. The statements of the hot paths (by id,
histories) are built once with bound parameters: building and keying a SQLAlchemy
statement per call cost more than running it (0.47 ms against 0.16 ms per
primary-key lookup on SQLite).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    ScalarSelect,
    Select,
    and_,
    bindparam,
    case,
    false,
    func,
    null,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import BigInteger

from query_api.cursors import DeliveryKey, EventKey
from schema.db import IS_ACTIVE
from schema.tables import deliveries, delivery_events, generations

d = deliveries.c
e = delivery_events.c

#: The served generation, as a subquery evaluated in the statement's own snapshot.
ACTIVE: ScalarSelect[int] = select(generations.c.generation).where(IS_ACTIVE).scalar_subquery()
#: The generation a statement reads: ``ACTIVE``, or a number already read in the
#: same snapshot.
Generation = int | ScalarSelect[int]


def _generation_of(column: Any, generation: Generation) -> ColumnElement[bool]:
    """``column`` matches the generation; a number goes in as a bound parameter."""
    if isinstance(generation, int):
        return column == bindparam("generation")  # type: ignore[no-any-return]
    return column == generation  # type: ignore[no-any-return]


def _params(generation: Generation, **params: Any) -> dict[str, Any]:
    if isinstance(generation, int):
        params["generation"] = generation
    return params


@dataclass(frozen=True)
class DeliveryFilterSpec:
    """``DeliveryFilter`` as plain values; None means "any"."""

    states: tuple[str, ...] | None = None
    rider_id: str | None = None
    shop_id: str | None = None
    order_id: str | None = None
    last_event_from: datetime | None = None  # inclusive
    last_event_to: datetime | None = None  # exclusive


@dataclass(frozen=True)
class FoldBound:
    """Which of a delivery's events a time-travel view holds: those that occurred at
    or before ``as_of`` and were applied at or before ``as_of_applied`` (None: no bound
    on that side)."""

    as_of: datetime | None = None
    as_of_applied: datetime | None = None


def _within(bound: FoldBound | None, columns: Any) -> list[ColumnElement[bool]]:
    """The bound as conditions on history columns (``as_of`` and ``as_of_applied`` bound)."""
    conds: list[ColumnElement[bool]] = []
    if bound is not None and bound.as_of is not None:
        conds.append(columns.occurred_at <= bindparam("as_of", type_=columns.occurred_at.type))
    if bound is not None and bound.as_of_applied is not None:
        conds.append(
            columns.applied_at <= bindparam("as_of_applied", type_=columns.applied_at.type)
        )
    return conds


def _bound_params(bound: FoldBound | None) -> dict[str, Any]:
    if bound is None:
        return {}
    params: dict[str, Any] = {}
    if bound.as_of is not None:
        params["as_of"] = bound.as_of
    if bound.as_of_applied is not None:
        params["as_of_applied"] = bound.as_of_applied
    return params


def _bound_shape(bound: FoldBound | None) -> FoldBound | None:
    """The bound with its values replaced by a marker: what a cached statement depends on."""
    if bound is None:
        return None
    marker = datetime.min
    return FoldBound(
        None if bound.as_of is None else marker,
        None if bound.as_of_applied is None else marker,
    )


@dataclass(frozen=True)
class HistoryPage:
    rows: list[RowMapping]
    has_next: bool
    total: int
    #: Bytes of event data the page holds (its rows' ``data`` as stored, JSON text).
    data_bytes: int = 0


class payload_bytes(FunctionElement[int]):  # noqa: N801 - a SQL function, named as one
    """The size in bytes of a JSON column's value as stored (its JSON text): computed in
    the database, so a payload can be measured without being read."""

    type = BigInteger()
    inherit_cache = True


@compiles(payload_bytes)
def _payload_bytes(element: payload_bytes, compiler: SQLCompiler, **kw: Any) -> str:
    return f"length({compiler.process(element.clauses, **kw)})"


@compiles(payload_bytes, "sqlite")
def _payload_bytes_sqlite(element: payload_bytes, compiler: SQLCompiler, **kw: Any) -> str:
    return f"length(CAST({compiler.process(element.clauses, **kw)} AS BLOB))"


@compiles(payload_bytes, "postgresql")
def _payload_bytes_pg(element: payload_bytes, compiler: SQLCompiler, **kw: Any) -> str:
    return f"octet_length(CAST({compiler.process(element.clauses, **kw)} AS TEXT))"


#: No payload bound: what ``histories`` uses when given none.
UNBOUNDED_BYTES = 1 << 62


def _equals(column: Any, value: str) -> ColumnElement[bool]:
    """``column = value``; a value no row can hold (a NUL, which PostgreSQL text refuses
    even as a parameter) matches nothing instead of failing the query."""
    return column == value if "\x00" not in value else false()


def _stored(ids: Sequence[str]) -> list[str]:
    return [i for i in ids if "\x00" not in i]


def _conditions(generation: Generation, spec: DeliveryFilterSpec) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [d.generation == generation]
    if spec.states is not None:
        conds.append(d.state.in_(spec.states))
    if spec.rider_id is not None:
        conds.append(_equals(d.rider_id, spec.rider_id))
    if spec.shop_id is not None:
        conds.append(_equals(d.shop_id, spec.shop_id))
    if spec.order_id is not None:
        conds.append(_equals(d.order_id, spec.order_id))
    if spec.last_event_from is not None:
        conds.append(d.last_event_at >= spec.last_event_from)
    if spec.last_event_to is not None:
        conds.append(d.last_event_at < spec.last_event_to)
    return conds


def delivery_page(
    conn: Connection,
    generation: Generation,
    spec: DeliveryFilterSpec,
    first: int,
    after: DeliveryKey | None,
) -> tuple[list[RowMapping], bool]:
    """Up to ``first`` rows after ``after`` (lastEventAt desc, id asc); and whether more follow."""
    query = select(deliveries).where(*_conditions(generation, spec))
    if after is not None:
        query = query.where(
            or_(
                d.last_event_at < after.last_event_at,
                and_(d.last_event_at == after.last_event_at, d.delivery_id > after.delivery_id),
            )
        )
    query = query.order_by(d.last_event_at.desc(), d.delivery_id.asc()).limit(first + 1)
    rows = list(conn.execute(query).mappings())
    return rows[:first], len(rows) > first


def delivery_count(conn: Connection, generation: Generation, spec: DeliveryFilterSpec) -> int:
    query = select(func.count()).select_from(deliveries).where(*_conditions(generation, spec))
    return int(conn.execute(query).scalar_one())


@cache
def _by_id(active: bool, many: bool) -> Select[Any]:
    generation: Generation = ACTIVE if active else 0
    wanted = (
        d.delivery_id.in_(bindparam("ids", expanding=True))
        if many
        else d.delivery_id == bindparam("id")
    )
    return select(deliveries).where(_generation_of(d.generation, generation), wanted)


def deliveries_by_id(
    conn: Connection, generation: Generation, ids: Sequence[str]
) -> dict[str, RowMapping]:
    stored = _stored(ids)
    if not stored:
        return {}
    active = not isinstance(generation, int)
    if len(stored) == 1:
        result = conn.execute(_by_id(active, False), _params(generation, id=stored[0]))
    else:
        result = conn.execute(_by_id(active, True), _params(generation, ids=stored))
    return {row["delivery_id"]: row for row in result.mappings()}


@cache
def _histories(active: bool, after: bool, bound: FoldBound | None = None) -> Select[Any]:
    """The statement of ``histories``; ``:ids``, ``:first_plus_one``, ``:max_bytes``, the
    cursor and the time-travel bound (``_bound_shape``) bound.

    Each row carries the running total of its payload's size and those before it, in
    result order (``data_running``); its ``data`` is returned only while that total is
    within ``:max_bytes`` (``query_api.limits.payload``): a page of large
    payloads is measured in the database and none of them is sent."""
    generation: Generation = ACTIVE if active else 0
    inner = (
        select(
            delivery_events,
            func.count().over(partition_by=e.delivery_id).label("total"),
        )
        .where(
            _generation_of(e.generation, generation),
            e.delivery_id.in_(bindparam("ids", expanding=True)),
            *_within(bound, e),
        )
        .subquery("counted")
    )
    i = inner.c
    seq = func.coalesce(i.sequence, 0)
    middle = select(
        inner,
        func.row_number()
        .over(partition_by=i.delivery_id, order_by=(i.occurred_at, seq, i.event_id))
        .label("rn"),
    )
    if after:
        at, sequence, event_id = (
            bindparam("after_at", type_=i.occurred_at.type),
            bindparam("after_sequence", type_=i.sequence.type),
            bindparam("after_event_id", type_=i.event_id.type),
        )
        middle = middle.where(
            or_(
                i.occurred_at > at,
                and_(i.occurred_at == at, seq > sequence),
                and_(i.occurred_at == at, seq == sequence, i.event_id > event_id),
            )
        )
    numbered = middle.subquery("numbered")
    n = numbered.c
    # measured after the page's rows are chosen (a window runs after WHERE): a long
    # history's other events are never measured
    running = func.sum(payload_bytes(n.data)).over(order_by=(n.delivery_id, n.rn))
    served = type_coerce(
        case((running <= bindparam("max_bytes", type_=BigInteger()), n.data), else_=null()),
        e.data.type,
    )
    return (
        select(*(c for c in n if c.name != "data"), served.label("data"),
               running.label("data_running"))
        .where(n.rn <= bindparam("first_plus_one"))
        .order_by(n.delivery_id, n.rn)
    )


def histories(
    conn: Connection,
    generation: Generation,
    ids: Sequence[str],
    first: int,
    after: EventKey | None,
    bound: FoldBound | None = None,
    max_bytes: int = UNBOUNDED_BYTES,
) -> dict[str, HistoryPage]:
    """One page of history per delivery, in fold order, in one statement; with
    ``bound``, only the events a time-travel view holds. Payloads are returned only
    while the pages' running total of their sizes is within ``max_bytes``; each page's
    ``data_bytes`` says what it holds (the caller refuses a sum over ``max_bytes``).

    The innermost query counts each delivery's events (``totalCount``) before the
    cursor filters; the middle one numbers the rows after the cursor per delivery.
    """
    params = _params(generation, ids=_stored(ids), first_plus_one=first + 1,
                     max_bytes=max_bytes)
    params.update(_bound_params(bound))
    if after is not None:
        params.update(after_at=after.occurred_at, after_sequence=after.sequence,
                      after_event_id=after.event_id)
    grouped: dict[str, list[RowMapping]] = {}
    totals: dict[str, int] = {}
    sizes: dict[str, int] = {}  # each delivery's last running total, then its own bytes
    statement = _histories(not isinstance(generation, int), after is not None,
                           _bound_shape(bound))
    for row in conn.execute(statement, params).mappings():
        grouped.setdefault(row["delivery_id"], []).append(row)
        totals[row["delivery_id"]] = int(row["total"])
        sizes[row["delivery_id"]] = row["data_running"]
    before = 0
    for delivery_id, running in sizes.items():  # result order: by delivery id
        sizes[delivery_id], before = int(running or 0) - before, int(running or 0)
    missing = [i for i in ids if i not in totals]
    if missing and after is not None:  # every event is before the cursor: count them apart
        totals.update(_event_counts(conn, generation, missing, bound))
    return {
        delivery_id: HistoryPage(
            rows=grouped.get(delivery_id, [])[:first],
            has_next=len(grouped.get(delivery_id, [])) > first,
            total=totals.get(delivery_id, 0),
            data_bytes=sizes.get(delivery_id, 0),
        )
        for delivery_id in ids
    }


def _event_counts(
    conn: Connection, generation: Generation, ids: Sequence[str], bound: FoldBound | None = None
) -> dict[str, int]:
    rows = conn.execute(
        select(e.delivery_id, func.count())
        .where(e.generation == generation, e.delivery_id.in_(_stored(ids)), *_within(bound, e))
        .group_by(e.delivery_id),
        _bound_params(bound),
    ).all()
    return {r[0]: int(r[1]) for r in rows}


def rider_deliveries(
    conn: Connection, generation: Generation, rider_id: str, start: datetime, end: datetime
) -> list[RowMapping]:
    """The rider's deliveries with an assignment, delivery or cancellation in [start, end)."""

    def within(column: Any) -> ColumnElement[bool]:
        return and_(column >= start, column < end)

    query = select(d.assigned_at, d.picked_up_at, d.delivered_at, d.cancelled_at).where(
        d.generation == generation,
        _equals(d.rider_id, rider_id),
        or_(within(d.assigned_at), within(d.delivered_at), within(d.cancelled_at)),
    )
    return list(conn.execute(query).mappings())


def delivery_fingerprint(
    conn: Connection, generation: Generation, delivery_id: str
) -> RowMapping | None:
    """The whole current row of one delivery (a subscription compares it to see a change)."""
    return conn.execute(
        select(deliveries).where(d.generation == generation, _equals(d.delivery_id, delivery_id))
    ).mappings().first()


def changed_since(
    conn: Connection, generation: Generation, since: datetime | None
) -> tuple[list[str], datetime | None]:
    """Ids of deliveries with an event applied at or after ``since``, and the newest
    ``applied_at`` seen (``since`` when none): how a filtered subscription finds
    changes where no notification channel exists (SQLite)."""
    rows = applied_since(conn, generation, since)
    newest = max((at for _, at in rows if at is not None), default=since)
    return [delivery_id for delivery_id, _ in rows], newest


def applied_since(
    conn: Connection, generation: Generation, since: datetime | None
) -> list[tuple[str, datetime | None]]:
    """Each delivery with an event applied at or after ``since``, with its newest
    ``applied_at`` (the SQLite change poll, ``query_api.feed``)."""
    query = select(e.delivery_id, func.max(e.applied_at)).where(e.generation == generation)
    if since is not None:
        query = query.where(e.applied_at >= since)
    rows = conn.execute(query.group_by(e.delivery_id)).all()
    return [(r[0], r[1]) for r in rows]


def matching_deliveries(
    conn: Connection,
    generation: Generation,
    spec: DeliveryFilterSpec,
    ids: Sequence[str],
    limit: int,
) -> list[RowMapping]:
    """The rows among ``ids`` that match ``spec``, newest first, at most ``limit``."""
    stored = _stored(ids)
    if not stored:
        return []
    query = (
        select(deliveries)
        .where(*_conditions(generation, spec), d.delivery_id.in_(stored))
        .order_by(d.last_event_at.desc(), d.delivery_id.asc())
        .limit(limit)
    )
    return list(conn.execute(query).mappings())


def newest_applied(conn: Connection, generation: Generation) -> datetime | None:
    """When the newest event of the generation was applied (None when it is empty)."""
    value: datetime | None = conn.execute(
        select(func.max(e.applied_at)).where(e.generation == generation)
    ).scalar_one()
    return value


def applied_histories(
    conn: Connection,
    generation: Generation,
    ids: Sequence[str],
    bound: FoldBound | None,
    limit: int,
) -> dict[str, list[RowMapping]]:
    """Each delivery's events within ``bound``, in the order they were applied
    (``applied_at``, then source position), at most ``limit + 1`` each (one more
    than a time-travel fold takes, so that the caller sees there were more)."""
    stored = _stored(ids)
    if not stored:
        return {}
    applied = (e.applied_at, e.topic, e.partition, e.offset)
    numbered = (
        select(
            delivery_events,
            func.row_number().over(partition_by=e.delivery_id, order_by=applied).label("rn"),
        )
        .where(e.generation == generation, e.delivery_id.in_(stored), *_within(bound, e))
        .subquery("numbered")
    )
    n = numbered.c
    query = (
        select(numbered)
        .where(n.rn <= limit + 1)
        .order_by(n.delivery_id, n.rn)
    )
    found: dict[str, list[RowMapping]] = {}
    for row in conn.execute(query, _bound_params(bound)).mappings():
        found.setdefault(row["delivery_id"], []).append(row)
    return found
