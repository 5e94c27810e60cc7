# ruff: noqa: F811 - `read_model` is a fixture imported from tests.api_support
"""Time travel and lineage over HTTP (issue #12), SQLite and PostgreSQL.

``delivery(id, asOf)`` is the fold of the events that occurred at or before ``asOf``;
``delivery(id, asOfApplied)`` of those applied at or before it; ``lineage`` and
``transitions`` come from the same fold (``schema.fold``). The read models here are
projected by the real projector one event per commit (``--batch-size 1``), so that
what the read model showed after each event is a moment ``asOfApplied`` can ask for,
and a late event's rewrite of the state path is visible.

Every answer is checked against the pure fold of the stream computed here: for every
prefix of a delivery's events in fold order (all events with ``occurredAt <= t``),
``asOf: t`` is that prefix's fold; the last lineage entry of each field agrees with
the row; the transitions not rewritten are the fold's path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from syrupy.assertion import SnapshotAssertion

from query_api.scalars import serialize_datetime
from query_api.timeline import FOLD_LIMIT, MAX_REFOLD_STEPS
from schema.db import make_engine
from schema.events import Event, EventParseError, parse_message
from schema.fold import DeliveryRow, distinct, fold, steps
from schema.tables import delivery_events
from tests.api_support import (
    BACKENDS,
    STREAMS,
    client_for,
    data_of,
    error_messages,
    gql,
    read_model,  # noqa: F401 - fixture
    settings_for,
)
from tests.helpers import create_pg_database, projector_env, run_projector, write_jsonl
from tests.unit.test_fold import events_of_one_delivery
from tests.unit.test_lineage import expected_value

pytestmark = pytest.mark.integration

STREAM_NAMES = [
    "api_happy.jsonl",
    "api_out_of_order.jsonl",
    "api_ties.jsonl",
    "api_korean_unknown.jsonl",
    "api_malformed.jsonl",
    "api_time_travel.jsonl",
]
ROW_FIELDS = """id orderId shopId riderId state createdAt assignedAt pickedUpAt deliveredAt
  cancelledAt cancelReason estimatedDeliveryAt lastEventAt eventCount"""
TIME_TRAVEL = f"""
query TimeTravel($id: ID!, $asOf: DateTime, $asOfApplied: DateTime) {{
  delivery(id: $id, asOf: $asOf, asOfApplied: $asOfApplied) {{
    {ROW_FIELDS}
    lineage {{ field eventId eventType occurredAt }}
    transitions {{ from to at eventId eventType rewritten rewrittenBy }}
    history(first: 500) {{ totalCount edges {{ node {{ eventId }} }} }}
  }}
}}
"""
GRAPHQL_NAMES = {
    "delivery_id": "id", "order_id": "orderId", "shop_id": "shopId", "rider_id": "riderId",
    "state": "state", "created_at": "createdAt", "assigned_at": "assignedAt",
    "picked_up_at": "pickedUpAt", "delivered_at": "deliveredAt", "cancelled_at": "cancelledAt",
    "cancel_reason": "cancelReason", "estimated_delivery_at": "estimatedDeliveryAt",
    "last_event_at": "lastEventAt", "event_count": "eventCount",
}
SNAKE = {v: k for k, v in GRAPHQL_NAMES.items()}
Projected = Callable[[str, str], str]


def project_one_by_one(url: str, stream: Path, batch_size: int = 1) -> None:
    env = projector_env(url, source=str(stream))
    run_projector(["migrate"], env)
    run_projector(["run", "--until-caught-up", "--batch-size", str(batch_size)], env)


@pytest.fixture(scope="module")
def one_by_one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Projected]:
    """``one_by_one(backend, stream)``: a read model of the stream, one event per commit."""
    cache: dict[tuple[str, str], str] = {}
    drops: list[Callable[[], None]] = []

    def get(backend: str, stream: str) -> str:
        if (backend, stream) not in cache:
            if backend == "sqlite":
                url = f"sqlite:///{tmp_path_factory.mktemp('tt') / 'read_model.db'}"
            else:
                url, drop = create_pg_database()
                drops.append(drop)
            project_one_by_one(url, STREAMS / stream)
            cache[(backend, stream)] = url
        return cache[(backend, stream)]

    yield get
    for drop in drops:
        drop()


# -- the expected answers, from the stream itself -----------------------------------------
def stream_events(path: Path) -> list[Event]:
    """The stream's valid events in arrival order, first copies only (what is applied)."""
    found = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            found.append(parse_message(line))
        except EventParseError:
            continue
    return distinct(found)


def by_delivery(events: Sequence[Event]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = {}
    for event in events:
        grouped.setdefault(event.delivery_id, []).append(event)
    return grouped


def as_graphql(row: DeliveryRow) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, name in GRAPHQL_NAMES.items():
        value = getattr(row, field)
        if isinstance(value, datetime):
            value = serialize_datetime(value)
        elif field == "state":
            value = value.value
        out[name] = value
    return out


def applied_times(url: str) -> dict[str, datetime]:
    engine = make_engine(url, writer=False)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(delivery_events.c.event_id, delivery_events.c.applied_at))
            return {r.event_id: r.applied_at for r in rows}
    finally:
        engine.dispose()


def check_view(answer: dict[str, Any] | None, events: Sequence[Event]) -> None:
    """``answer`` (a ``TIME_TRAVEL`` result) is the fold of exactly ``events``: the row,
    its history, the last lineage entry of each field, the path of its transitions."""
    row = fold(events)
    if row is None:
        assert answer is None
        return
    assert answer is not None
    assert {k: answer[k] for k in as_graphql(row)} == as_graphql(row)
    ordered = steps(events)
    assert [e["node"]["eventId"] for e in answer["history"]["edges"]] == [
        s.event.event_id for s in ordered
    ]
    assert answer["history"]["totalCount"] == len(ordered)
    by_id = {s.event.event_id: (i, s.event) for i, s in enumerate(ordered)}
    for entry in answer["lineage"]:
        field = SNAKE[entry["field"]]
        index, event = by_id[entry["eventId"]]
        assert entry["eventType"] == event.event_type
        assert entry["occurredAt"] == serialize_datetime(event.occurred_at)
        assert all(field not in s.fields for s in ordered[index + 1:]), field
        if field != "state":
            value = expected_value(field, event.event_type, event.occurred_at,
                                   event.received_data, event.estimated_delivery_at, index + 1,
                                   event.version)
            shown = answer[entry["field"]]
            assert shown == (serialize_datetime(value) if isinstance(value, datetime) else value)
        else:
            assert ordered[index].row.state.value == answer["state"]
    path = [(t["from"], t["to"], t["eventId"]) for t in answer["transitions"]
            if not t["rewritten"]]
    assert path == [(s.before.value, s.row.state.value, s.event.event_id)
                    for s in ordered if s.before is not s.row.state]


def ask(client: Any, delivery_id: str, as_of: datetime | None = None,
        as_of_applied: datetime | None = None) -> dict[str, Any] | None:
    variables = {
        "id": delivery_id,
        "asOf": None if as_of is None else serialize_datetime(as_of),
        "asOfApplied": None if as_of_applied is None else serialize_datetime(as_of_applied),
    }
    answer: dict[str, Any] | None = data_of(gql(client, TIME_TRAVEL, variables))["delivery"]
    return answer


def moments_of(events: Sequence[Event]) -> list[datetime]:
    """Just before the first event, and each distinct occurredAt of the events."""
    times = sorted({e.occurred_at for e in events})
    return [times[0] - timedelta(microseconds=1), *times]


# -- over the fixed streams ---------------------------------------------------------------
@pytest.mark.parametrize("stream", STREAM_NAMES)
def test_as_of_every_event_time_is_the_fold_of_that_prefix_snapshot(
    one_by_one: Projected, stream: str, snapshot: SnapshotAssertion
) -> None:
    """For each delivery, asked now and at each moment its events occurred, on both
    databases: each answer is the fold of the events with occurredAt <= that moment,
    both databases agree, and the whole is the snapshot (``rewrittenAt`` left out: it is
    a wall-clock time)."""
    events = by_delivery(stream_events(STREAMS / stream))
    answers: dict[str, dict[str, Any]] = {}
    for backend in BACKENDS:
        url = one_by_one(backend, stream)
        mine: dict[str, Any] = {}
        with client_for(settings_for(url, STREAMS / stream)) as client:
            for delivery_id, its in sorted(events.items()):
                now = ask(client, delivery_id)
                check_view(now, its)
                mine[f"{delivery_id} now"] = now
                for moment in moments_of(its):
                    answer = ask(client, delivery_id, as_of=moment)
                    check_view(answer, [e for e in its if e.occurred_at <= moment])
                    mine[f"{delivery_id} asOf {serialize_datetime(moment)}"] = answer
        answers[backend] = mine
    assert answers["sqlite"] == answers["postgresql"]
    moments = sum(len(moments_of(its)) for its in events.values())
    print(f"{stream}: {len(events)} deliveries, {moments} asOf moments each checked on "
          f"{len(BACKENDS)} databases")
    assert answers["sqlite"] == snapshot


@pytest.mark.parametrize("backend", BACKENDS)
def test_as_of_applied_at_each_commit_is_what_the_read_model_showed(
    one_by_one: Projected, backend: str
) -> None:
    """One event per commit: asOfApplied at each commit's appliedAt is the fold of the
    events applied so far, and the rewritten transitions are those an earlier commit
    showed; with asOf too, both bounds hold."""
    for stream in ("api_time_travel.jsonl", "api_out_of_order.jsonl"):
        url = one_by_one(backend, stream)
        applied = applied_times(url)
        events = by_delivery(stream_events(STREAMS / stream))
        with client_for(settings_for(url, STREAMS / stream)) as client:
            for delivery_id, its in events.items():
                arrival = sorted(its, key=lambda e: applied[e.event_id])
                first = applied[arrival[0].event_id]
                assert ask(client, delivery_id,
                           as_of_applied=first - timedelta(microseconds=1)) is None
                for k, event in enumerate(arrival, start=1):
                    shown = arrival[:k]
                    answer = ask(client, delivery_id, as_of_applied=applied[event.event_id])
                    check_view(answer, shown)
                    middle = sorted(e.occurred_at for e in its)[len(its) // 2]
                    both = ask(client, delivery_id, as_of=middle,
                               as_of_applied=applied[event.event_id])
                    check_view(both, [e for e in shown if e.occurred_at <= middle])


def test_the_cancelled_then_created_delivery_at_three_moments(one_by_one: Projected) -> None:
    """The worked example of docs/api.md: D-5001's cancellation arrived first, its creation and
    assignment later (they occurred before it)."""
    url = one_by_one("sqlite", "api_time_travel.jsonl")
    applied = applied_times(url)
    with client_for(settings_for(url)) as client:
        def at(**bound: datetime) -> dict[str, Any] | None:
            return ask(client, "D-5001", **bound)

        def parse(text: str) -> datetime:
            return datetime.fromisoformat(text)

        before = at(as_of=parse("2026-11-25T09:02:00+00:00"))
        assigned = at(as_of=parse("2026-11-25T09:07:00+00:00"))
        after = at(as_of=parse("2026-11-25T09:30:00+00:00"))
        shown_first = at(as_of_applied=applied["tt-c"])
    assert before is not None and assigned is not None and after is not None
    assert (before["state"], before["riderId"], before["eventCount"]) == ("CREATED", None, 1)
    assert (assigned["state"], assigned["riderId"]) == ("ASSIGNED", "R-51")
    assert (after["state"], after["riderId"], after["pickedUpAt"]) == ("CANCELLED", "R-51", None)
    assert [(t["from"], t["to"], t["rewritten"], t["rewrittenBy"])
            for t in after["transitions"]] == [
        ("UNKNOWN", "CREATED", False, None),
        ("CREATED", "ASSIGNED", False, None),
        ("UNKNOWN", "CANCELLED", True, "tt-a"),
        ("CREATED", "CANCELLED", True, "tt-b"),
        ("ASSIGNED", "CANCELLED", False, None),
    ]
    # what the operator saw after the first commit: a cancellation of an unknown order
    assert shown_first is not None
    assert (shown_first["state"], shown_first["orderId"]) == ("CANCELLED", None)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nothing_is_rewritten_when_the_late_events_came_in_one_commit(
    read_model: Projected, backend: str
) -> None:
    """The same stream projected in one batch: the read model never showed D-2002's
    intermediate paths, so no transition is marked rewritten."""
    url = read_model(backend, "api_out_of_order.jsonl")
    with client_for(settings_for(url)) as client:
        answer = ask(client, "D-2002")
    assert answer is not None
    assert [(t["from"], t["to"], t["rewritten"]) for t in answer["transitions"]] == [
        ("UNKNOWN", "CREATED", False), ("CREATED", "ASSIGNED", False),
        ("ASSIGNED", "CANCELLED", False),
    ]


# -- generated streams ------------------------------------------------------------------------
_examples = count(1)


@pytest.fixture(scope="module", params=BACKENDS)
def scratch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[str, Path]]:
    """An empty read model per backend that generated streams are projected into."""
    base = tmp_path_factory.mktemp("gen")
    if request.param == "sqlite":
        yield f"sqlite:///{base / 'read_model.db'}", base
        return
    url, drop = create_pg_database()
    try:
        yield url, base
    finally:
        drop()


def to_message(event: Event, prefix: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventId": prefix + event.event_id,
        "eventType": event.event_type,
        "deliveryId": prefix + "D",
        "occurrenceDateTime": event.occurred_at.isoformat(),
        "data": dict(event.received_data),
    }
    if event.sequence is not None:
        body["sequence"] = event.sequence
    if event.version != 1:
        body["eventVersion"] = event.version
    return body


@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data(), events=events_of_one_delivery())
def test_generated_streams_as_of_every_prefix_equals_its_fold(
    scratch: tuple[str, Path], data: st.DataObject, events: list[Event]
) -> None:
    """Generated events of one delivery (ties of time, sequence and id, unknown types,
    Korean aliases), in a random arrival order with duplicates, projected by the real
    projector in random batches: asOf at each event's time is the fold of the events
    with occurredAt <= it, asOfApplied at each commit is the fold of what was applied,
    and the current row is the fold of all."""
    url, base = scratch
    prefix = f"g{next(_examples)}-"
    arrival = data.draw(st.permutations(events))
    arrival += data.draw(st.lists(st.sampled_from(events), max_size=3))
    stream = write_jsonl(base / f"{prefix}events.jsonl",
                         [to_message(e, prefix) for e in arrival])
    project_one_by_one(url, stream, batch_size=data.draw(st.integers(1, 3)))
    parsed = stream_events(stream)
    applied = applied_times(url)
    delivery_id = prefix + "D"
    with client_for(settings_for(url, stream)) as client:
        check_view(ask(client, delivery_id), parsed)
        for moment in moments_of(parsed):
            check_view(ask(client, delivery_id, as_of=moment),
                       [e for e in parsed if e.occurred_at <= moment])
        for moment in sorted({applied[e.event_id] for e in parsed}):
            check_view(ask(client, delivery_id, as_of_applied=moment),
                       [e for e in parsed if applied[e.event_id] <= moment])


# -- limits -------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_folds_are_charged_to_the_budget_and_bounded(
    read_model: Projected, backend: str, tmp_path: Path
) -> None:
    """Each fold is charged as a page of FOLD_LIMIT events: many aliases are refused before
    any SQL, a page of deliveries' lineage is charged per delivery, and a delivery with
    more than FOLD_LIMIT events gets a readable error on these fields only."""
    url = read_model(backend, "api_happy.jsonl")
    with client_for(settings_for(url)) as client:
        aliases = " ".join(
            f'a{i}: delivery(id: "D-1001", asOf: "2026-11-25T01:00:00Z") '
            "{ lineage { field } transitions { from } }" for i in range(4)
        )
        refused = error_messages(gql(client, f"{{ {aliases} }}"))
        assert "over the budget" in refused[0], refused
    # 7 deliveries: their lineage is charged 7 x FOLD_LIMIT results, 5 of them 5 x FOLD_LIMIT
    with client_for(settings_for(url, max_nodes=6 * FOLD_LIMIT)) as client:
        page = gql(client, "{ deliveries(first: 500) { edges { node { lineage { field } } } } }")
        assert f"more than {6 * FOLD_LIMIT} results" in error_messages(page)[0]
        fine = data_of(gql(client, "{ deliveries(first: 5) { edges { node { id "
                                    "lineage { field } } } } }"))
        assert len(fine["deliveries"]["edges"]) == 5
        assert all(edge["node"]["lineage"] for edge in fine["deliveries"]["edges"])

    if backend == "sqlite":
        big = f"sqlite:///{tmp_path / 'big.db'}"
    else:
        big, drop = create_pg_database()
    try:
        items = [{"eventId": f"big-{i:04d}", "eventType": "DeliveryEtaChanged",
                  "deliveryId": "D-BIG",
                  "occurrenceDateTime": f"2026-11-25T10:{i // 60:02d}:{i % 60:02d}Z",
                  "data": {"estimatedDeliveryAt": "2026-11-25T12:00:00Z"}}
                 for i in range(FOLD_LIMIT + 1)]
        items.append({"eventId": "small-1", "eventType": "DeliveryCreated",
                      "deliveryId": "D-SMALL", "occurrenceDateTime": "2026-11-25T10:00:00Z",
                      "data": {"orderId": "O", "shopId": "S"}})
        stream = write_jsonl(tmp_path / "big.jsonl", items)
        project_one_by_one(big, stream, batch_size=2000)
        with client_for(settings_for(big, stream)) as client:
            result = gql(client, '{ big: delivery(id: "D-BIG") { eventCount lineage { field } }'
                                 ' small: delivery(id: "D-SMALL") { lineage { field } } }')
            messages = error_messages(result)
            assert any(f"more than {FOLD_LIMIT} events" in m for m in messages), messages
            assert result["data"]["small"]["lineage"]
            as_of = gql(client, '{ delivery(id: "D-BIG", asOf: "2026-11-25T11:00:00Z") { id } }')
            assert f"more than {FOLD_LIMIT} events" in error_messages(as_of)[0]
            few = data_of(gql(client, '{ delivery(id: "D-BIG", asOf: "2026-11-25T10:00:09Z")'
                                      " { eventCount } }"))
            assert few == {"delivery": {"eventCount": 10}}
        # 63 events arriving in reverse order, one commit each: 2,016 steps to trace
        reverse = write_jsonl(tmp_path / "reverse.jsonl", [
            {"eventId": f"rev-{i:03d}", "eventType": "DeliveryRiderAssigned",
             "deliveryId": "D-REVERSED",
             "occurrenceDateTime": f"2026-11-25T11:{i // 60:02d}:{i % 60:02d}Z",
             "data": {"riderId": f"R-{i}"}} for i in reversed(range(63))])
        project_one_by_one(big, reverse)
        with client_for(settings_for(big, reverse)) as client:
            result = gql(client, '{ row: delivery(id: "D-REVERSED") { riderId eventCount '
                                 "lineage { field eventId } } "
                                 'path: delivery(id: "D-REVERSED") { transitions { to } } }')
            assert f"more than {MAX_REFOLD_STEPS} fold steps" in error_messages(result)[0]
            assert result["data"]["path"] == {"transitions": None}  # only the field
            served = result["data"]["row"]
            assert (served["riderId"], served["eventCount"]) == ("R-62", 63)
            assert {"field": "riderId", "eventId": "rev-062"} in served["lineage"]
    finally:
        if backend != "sqlite":
            drop()


def test_as_of_rejects_a_time_without_offset(read_model: Projected) -> None:
    url = read_model("sqlite", "api_happy.jsonl")
    with client_for(settings_for(url)) as client:
        result = gql(client, '{ delivery(id: "D-1001", asOf: "2026-11-25T10:00:00") { id } }')
    assert "has no offset" in json.dumps(error_messages(result))


def test_the_static_cost_of_time_travel() -> None:
    """Before any SQL: each fold costs a page of FOLD_LIMIT rows and one statement; an
    asOf given as a variable counts whatever its value (the estimate is cached per
    document and integer variables); a literal null is the current row."""
    from graphql import parse

    from query_api.limits.cost import estimate
    from query_api.schema import schema

    def cost(query: str) -> tuple[int, int]:
        found = estimate(schema._schema, parse(query))
        return found.rows, found.reads

    assert cost('{ delivery(id: "D") { id } }') == (0, 1)
    assert cost('{ delivery(id: "D", asOf: null) { id } }') == (0, 1)
    assert cost('{ delivery(id: "D", asOf: "2026-11-25T00:00:00Z") { id } }') == (FOLD_LIMIT, 1)
    assert cost('query($t: DateTime) { delivery(id: "D", asOfApplied: $t) { id } }') == (
        FOLD_LIMIT, 1)
    assert cost('{ delivery(id: "D") { lineage { field } transitions { to } } }') == (
        2 * FOLD_LIMIT, 3)
    assert cost("{ deliveries(first: 50) { edges { node { lineage { field } } } } }") == (
        50 + FOLD_LIMIT, 2)
