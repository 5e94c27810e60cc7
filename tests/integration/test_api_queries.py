# ruff: noqa: F811 - `read_model` is a fixture imported from tests.api_support
"""The contract's queries (section GraphQL API) over small projected streams, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion

from tests.api_support import (
    BACKENDS,
    STREAMS,
    client_for,
    data_of,
    error_messages,
    gql,
    normalise_topics,
    read_model,  # noqa: F401 - fixture
    settings_for,
)

pytestmark = pytest.mark.integration

ReadModel = Callable[[str, str], str]

DELIVERY_FIELDS = """
  id orderId shopId riderId state createdAt assignedAt pickedUpAt deliveredAt cancelledAt
  cancelReason estimatedDeliveryAt lastEventAt eventCount
"""
FULL_QUERY = f"""
query Everything {{
  deliveries(first: 500) {{
    totalCount
    pageInfo {{ hasNextPage }}
    edges {{ node {{ {DELIVERY_FIELDS}
      history(first: 500) {{
        totalCount pageInfo {{ hasNextPage }}
        edges {{ node {{ eventId eventType occurredAt sequence data eventVersion
                        source {{ topic partition offset }} }} }}
      }}
    }} }}
  }}
  projectionStatus {{
    partitions {{ topic partition nextOffset endOffset lag }}
    eventsApplied unknownEvents deadLetters lastEventAt generation messagesRead duplicates
  }}
}}
"""
STREAM_NAMES = [
    "api_happy.jsonl",
    "api_out_of_order.jsonl",
    "api_ties.jsonl",
    "api_korean_unknown.jsonl",
    "api_malformed.jsonl",
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def query(read_model: ReadModel, backend: str, stream: str, q: str,
          variables: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    url = read_model(backend, stream)
    with client_for(settings_for(url, STREAMS / stream, **settings)) as client:
        return gql(client, q, variables)


def ids(result: dict[str, Any], field: str = "deliveries") -> list[str]:
    return [edge["node"]["id"] for edge in data_of(result)[field]["edges"]]


# -- snapshots ------------------------------------------------------------------
@pytest.mark.parametrize("stream", STREAM_NAMES)
def test_snapshot_of_every_field(read_model: ReadModel, stream: str,
                                 snapshot: SnapshotAssertion) -> None:
    """One snapshot per stream, and both databases must give exactly that answer."""
    answers = [query(read_model, b, stream, FULL_QUERY) for b in BACKENDS]
    assert answers[0] == answers[1]
    data = data_of(answers[0])
    assert data["deliveries"]["totalCount"] == len(data["deliveries"]["edges"]) > 0
    assert normalise_topics(data) == snapshot


def test_snapshot_of_rider_daily_stats(read_model: ReadModel, snapshot: SnapshotAssertion) -> None:
    q = """query Stats($r: ID!) { riderDailyStats(riderId: $r, from: "2026-11-23", to: "2026-11-26")
           { riderId date assigned completed cancelled avgDeliverySeconds } }"""
    answers = {
        (backend, tz, rider): data_of(query(read_model, backend, "api_happy.jsonl", q,
                                            {"r": rider}, business_timezone=tz))
        for backend in BACKENDS for tz in ("UTC", "Asia/Seoul") for rider in ("R-7", "R-8")
    }
    for (_backend, tz, rider), answer in answers.items():
        assert answer == answers[("sqlite", tz, rider)]
    assert {f"{tz} {rider}": answers[("sqlite", tz, rider)]
            for tz in ("UTC", "Asia/Seoul") for rider in ("R-7", "R-8")} == snapshot


# -- single rules -----------------------------------------------------------------
def test_unknown_delivery_is_null_not_an_error(read_model: ReadModel, backend: str) -> None:
    result = query(read_model, backend, "api_happy.jsonl",
                   '{ a: delivery(id: "D-404") { id } b: delivery(id: "D-1001") { id state } }')
    assert data_of(result) == {"a": None, "b": {"id": "D-1001", "state": "DELIVERED"}}


def test_deliveries_are_ordered_by_last_event_desc_then_id(read_model: ReadModel,
                                                           backend: str) -> None:
    result = query(read_model, backend, "api_ties.jsonl",
                   "{ deliveries(first: 500) { edges { node { id lastEventAt } } } }")
    nodes = [e["node"] for e in data_of(result)["deliveries"]["edges"]]
    keys = [(-datetime.fromisoformat(n["lastEventAt"]).timestamp(), n["id"]) for n in nodes]
    assert keys == sorted(keys)
    assert [n["id"] for n in nodes] == [
        "T-00-late", "T-01", "T-02", "T-03", "T-04", "T-05", "T-06", "T-07", "T-99-early"
    ]


@pytest.mark.parametrize("page_size", [1, 2, 3, 4])
def test_paging_across_ties_visits_each_delivery_once(read_model: ReadModel, backend: str,
                                                      page_size: int) -> None:
    url = read_model(backend, "api_ties.jsonl")
    q = """query Page($first: Int, $after: String) { deliveries(first: $first, after: $after) {
             totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id } } } }"""
    with client_for(settings_for(url)) as client:
        everything = ids(gql(client, q, {"first": 500}))
        seen: list[str] = []
        after = None
        for _ in range(20):
            page = data_of(gql(client, q, {"first": page_size, "after": after}))["deliveries"]
            assert page["totalCount"] == 9
            assert len(page["edges"]) <= page_size
            seen += [e["node"]["id"] for e in page["edges"]]
            assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert seen == everything and len(everything) == 9


def test_history_is_in_fold_order_and_pages_across_ties(read_model: ReadModel,
                                                        backend: str) -> None:
    url = read_model(backend, "api_ties.jsonl")
    q = """query H($first: Int, $after: String) { delivery(id: "T-01") {
             history(first: $first, after: $after) {
               totalCount pageInfo { hasNextPage endCursor } edges { node { eventId } } } } }"""
    expected = ["t-h-0", "t-h-B", "t-h-a", "t-h-b", "t-h-c", "t-h-1", "t-001"]
    with client_for(settings_for(url)) as client:
        whole = data_of(gql(client, q, {"first": 100}))["delivery"]["history"]
        assert [e["node"]["eventId"] for e in whole["edges"]] == expected
        assert whole["totalCount"] == 7 and whole["pageInfo"]["hasNextPage"] is False
        seen: list[str] = []
        after = None
        while True:
            page = data_of(gql(client, q, {"first": 2, "after": after}))["delivery"]["history"]
            assert page["totalCount"] == 7
            seen += [e["node"]["eventId"] for e in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert seen == expected
        after = page["pageInfo"]["endCursor"]
        last = data_of(gql(client, q, {"first": 2, "after": after}))["delivery"]["history"]
        assert last == {"totalCount": 7, "edges": [],
                        "pageInfo": {"hasNextPage": False, "endCursor": None}}


FILTERS = [
    ({"states": ["DELIVERED"]}, ["D-1007", "D-1002", "D-1001", "D-1004"]),
    ({"states": ["CANCELLED", "CREATED"]}, ["D-1005", "D-1003", "D-1006"]),
    ({"states": []}, []),
    ({"riderId": "R-8"}, ["D-1007", "D-1003"]),
    ({"shopId": "S-2"}, ["D-1005", "D-1003", "D-1006"]),
    ({"orderId": "O-3"}, ["D-1003"]),
    ({"orderId": "O-404"}, []),
    ({"lastEventFrom": "2026-11-25T02:30:00Z"}, ["D-1005", "D-1007", "D-1003"]),
    ({"lastEventTo": "2026-11-25T02:30:00Z"}, ["D-1006", "D-1002", "D-1001", "D-1004"]),
    ({"lastEventFrom": "2026-11-25T11:30:00+09:00", "lastEventTo": "2026-11-25T02:50:00.000001Z"},
     ["D-1007", "D-1003"]),
    ({"states": ["DELIVERED"], "riderId": "R-7", "shopId": "S-1"},
     ["D-1002", "D-1001", "D-1004"]),
    ({"states": ["DELIVERED"], "riderId": "R-8", "lastEventTo": "2026-11-25T02:50:00Z"}, []),
]


@pytest.mark.parametrize(("flt", "expected"), FILTERS, ids=[str(f) for f, _ in FILTERS])
def test_filters_alone_and_combined(read_model: ReadModel, backend: str,
                                    flt: dict[str, Any], expected: list[str]) -> None:
    result = query(read_model, backend, "api_happy.jsonl",
                   """query F($f: DeliveryFilter) { deliveries(filter: $f, first: 500) {
                        totalCount edges { node { id } } } }""", {"f": flt})
    assert ids(result) == expected
    assert data_of(result)["deliveries"]["totalCount"] == len(expected)


def test_filter_paging_keeps_the_filter(read_model: ReadModel, backend: str) -> None:
    url = read_model(backend, "api_happy.jsonl")
    q = """query F($after: String) { deliveries(filter: {states: [DELIVERED]}, first: 3,
             after: $after) { pageInfo { hasNextPage endCursor } edges { node { id } } } }"""
    with client_for(settings_for(url)) as client:
        first = data_of(gql(client, q))["deliveries"]
        second = data_of(gql(client, q, {"after": first["pageInfo"]["endCursor"]}))["deliveries"]
    assert [e["node"]["id"] for e in first["edges"]] == ["D-1007", "D-1002", "D-1001"]
    assert first["pageInfo"]["hasNextPage"] is True
    assert [e["node"]["id"] for e in second["edges"]] == ["D-1004"]
    assert second["pageInfo"]["hasNextPage"] is False


@pytest.mark.parametrize("first", [0, -1, 501, 10_000, None])
def test_first_out_of_range_is_a_graphql_error(read_model: ReadModel, backend: str,
                                               first: int | None) -> None:
    url = read_model(backend, "api_happy.jsonl")
    with client_for(settings_for(url)) as client:
        for q in ("query Q($n: Int) { deliveries(first: $n) { totalCount } }",
                  'query Q($n: Int) { delivery(id: "D-1001") '
                  "{ history(first: $n) { totalCount } } }"):
            result = gql(client, q, {"n": first})
            assert error_messages(result) == [
                f"`first` must be between 1 and 500, got {'null' if first is None else first}"
            ]


@pytest.mark.parametrize("first", [1, 500])
def test_first_at_the_bounds_is_fine(read_model: ReadModel, backend: str, first: int) -> None:
    result = query(read_model, backend, "api_happy.jsonl",
                   """query Q($n: Int) { deliveries(first: $n) { edges { node {
                        history(first: $n) { edges { node { eventId } } } } } } }""", {"n": first})
    assert len(data_of(result)["deliveries"]["edges"]) == min(first, 7)


@pytest.mark.parametrize("cursor", ["garbage", "", "WyJoaXN0b3J5IiwxXQ", "x" * 5000])
def test_a_cursor_we_did_not_issue_is_a_readable_error(read_model: ReadModel,
                                                       cursor: str) -> None:
    url = read_model("sqlite", "api_happy.jsonl")
    with client_for(settings_for(url)) as client:
        history_cursor = data_of(gql(client, '{ delivery(id: "D-1001") { history(first: 1) '
                                             "{ pageInfo { endCursor } } } }"))
        wrong_kind = history_cursor["delivery"]["history"]["pageInfo"]["endCursor"]
        for bad in ([cursor] if cursor else []) + [wrong_kind]:
            result = gql(client, "query Q($c: String) { deliveries(after: $c) { totalCount } }",
                         {"c": bad})
            assert result["data"] is None
            assert error_messages(result)[0].startswith("the cursor is not one this API issued")


def test_date_times_are_utc_with_an_offset(read_model: ReadModel, backend: str) -> None:
    result = query(read_model, backend, "api_korean_unknown.jsonl",
                   '{ delivery(id: "D-3001") { createdAt assignedAt lastEventAt '
                   "history { edges { node { occurredAt } } } } }")
    delivery = data_of(result)["delivery"]
    # 09:00 without an offset is read in SOURCE_TIMEZONE (UTC); 09:01+09:00 is 00:01Z.
    assert delivery["assignedAt"] == "2026-11-25T00:01:00+00:00"
    assert delivery["lastEventAt"] == "2026-11-25T09:30:00+00:00"
    assert delivery["createdAt"] is None  # created after DELIVERED: terminal, history only
    stamps = [e["node"]["occurredAt"] for e in delivery["history"]["edges"]]
    assert stamps and all(s.endswith("+00:00") for s in stamps + [delivery["lastEventAt"]])


def test_aliases_show_canonical_names_and_unknown_types_as_received(read_model: ReadModel,
                                                                    backend: str) -> None:
    result = query(read_model, backend, "api_korean_unknown.jsonl",
                   '{ delivery(id: "D-3001") { state history { edges { node { eventType } } } } '
                   "projectionStatus { eventsApplied unknownEvents } }")
    data = data_of(result)
    types = [e["node"]["eventType"] for e in data["delivery"]["history"]["edges"]]
    assert types == ["DeliveryRiderAssigned", "DeliveryPickedUp", "DeliveryCompleted",
                     "배달평가", "DeliveryCreated", "DeliveryRated"]
    assert data["projectionStatus"] == {"eventsApplied": 7, "unknownEvents": 3}


def test_projection_status_counts_lines_of_a_file_source(read_model: ReadModel,
                                                         backend: str) -> None:
    result = query(read_model, backend, "api_malformed.jsonl",
                   "{ projectionStatus { partitions { topic partition nextOffset endOffset lag } "
                   "eventsApplied deadLetters generation } }")
    status = data_of(result)["projectionStatus"]
    assert status["partitions"] == [{
        "topic": str((STREAMS / "api_malformed.jsonl").resolve()), "partition": 0,
        "nextOffset": 7, "endOffset": 7, "lag": 0,
    }]
    assert status["eventsApplied"] == 2 and status["deadLetters"] == 4
    assert status["generation"] == 1


def test_projection_status_with_an_unreachable_broker_has_null_lag(read_model: ReadModel) -> None:
    url = read_model("sqlite", "api_happy.jsonl")
    settings = settings_for(url, None, kafka_bootstrap_servers="127.0.0.1:9",
                            end_offsets_timeout_seconds=1.0)
    with client_for(settings) as client:
        status = data_of(gql(client, "{ projectionStatus { partitions { nextOffset endOffset "
                                     "lag } } }"))["projectionStatus"]
    assert status["partitions"] == [{"nextOffset": 23, "endOffset": None, "lag": None}]


# -- riderDailyStats ------------------------------------------------------------------
STATS = """query S($r: ID!, $from: Date!, $to: Date!) { riderDailyStats(riderId: $r, from: $from,
  to: $to) { riderId date assigned completed cancelled avgDeliverySeconds } }"""


def test_stats_have_one_row_per_day_zeros_included(read_model: ReadModel, backend: str) -> None:
    rows = data_of(query(read_model, backend, "api_happy.jsonl", STATS,
                         {"r": "R-8", "from": "2026-11-20", "to": "2026-11-26"}))["riderDailyStats"]
    assert [r["date"] for r in rows] == [f"2026-11-{d}" for d in range(20, 27)]
    assert rows[5] == {"riderId": "R-8", "date": "2026-11-25", "assigned": 2, "completed": 1,
                       "cancelled": 1, "avgDeliverySeconds": None}  # D-1007 was never picked up
    assert all(r["assigned"] == r["completed"] == r["cancelled"] == 0
               and r["avgDeliverySeconds"] is None for i, r in enumerate(rows) if i != 5)


def test_stats_days_follow_business_timezone(read_model: ReadModel, backend: str) -> None:
    variables = {"r": "R-7", "from": "2026-11-24", "to": "2026-11-25"}
    utc = data_of(query(read_model, backend, "api_happy.jsonl", STATS, variables))
    seoul = data_of(query(read_model, backend, "api_happy.jsonl", STATS, variables,
                          business_timezone="Asia/Seoul"))
    # D-1004: assigned 23:55 and delivered 00:35 Seoul time (14:55Z and 15:35Z on the 24th).
    assert [(r["assigned"], r["completed"]) for r in utc["riderDailyStats"]] == [(1, 1), (2, 2)]
    assert [(r["assigned"], r["completed"]) for r in seoul["riderDailyStats"]] == [(1, 0), (2, 3)]
    average = seoul["riderDailyStats"][1]["avgDeliverySeconds"]
    assert average == pytest.approx((25 + 30 + 30) * 60 / 3)


def test_stats_of_an_unknown_rider_are_all_zero(read_model: ReadModel, backend: str) -> None:
    variables = {"r": "R-404", "from": "2026-01-01", "to": "2026-12-31"}
    rows = data_of(query(read_model, backend, "api_happy.jsonl", STATS,
                         variables))["riderDailyStats"]
    assert len(rows) == 365 and not any(r["assigned"] or r["completed"] for r in rows)


@pytest.mark.parametrize(("start", "end", "message"), [
    ("2026-01-01", "2027-01-02", "the range holds 367 days; at most 366 are allowed"),
    ("2020-01-01", "2026-01-01", "the range holds 2193 days; at most 366 are allowed"),
    ("2026-11-25", "2026-11-24", "`to` (2026-11-24) is before `from` (2026-11-25)"),
])
def test_stats_ranges_out_of_bounds_are_errors(read_model: ReadModel, start: str, end: str,
                                               message: str) -> None:
    result = query(read_model, "sqlite", "api_happy.jsonl", STATS,
                   {"r": "R-7", "from": start, "to": end})
    assert error_messages(result) == [message] and result["data"] is None


def test_stats_of_exactly_366_days_are_allowed(read_model: ReadModel) -> None:
    rows = data_of(query(read_model, "sqlite", "api_happy.jsonl", STATS,
                         {"r": "R-7", "from": "2027-01-01", "to": "2028-01-01"}))["riderDailyStats"]
    assert len(rows) == 366


@pytest.mark.parametrize("bad", ["2026-13-01", "25/11/2026", "2026-11-25T00:00:00Z", ""])
def test_a_bad_date_is_a_readable_error(read_model: ReadModel, bad: str) -> None:
    result = query(read_model, "sqlite", "api_happy.jsonl", STATS,
                   {"r": "R-7", "from": bad, "to": "2026-11-25"})
    assert any("is not YYYY-MM-DD" in m for m in error_messages(result))


def test_ids_no_row_can_hold_are_null_or_empty_not_errors(read_model: ReadModel,
                                                          backend: str) -> None:
    """A NUL cannot be stored (PostgreSQL text refuses it): such an id was never seen."""
    result = query(read_model, backend, "api_happy.jsonl", """
      query($id: ID!) { delivery(id: $id) { id }
        deliveries(filter: {riderId: $id, shopId: $id, orderId: "O\\u0000"}) { totalCount }
        riderDailyStats(riderId: $id, from: "2026-11-25", to: "2026-11-25") { assigned } }""",
                   {"id": "D-1001\x00"})
    assert data_of(result) == {"delivery": None, "deliveries": {"totalCount": 0},
                               "riderDailyStats": [{"assigned": 0}]}


def test_datetime_input_reads_lower_case_and_refuses_out_of_range_clearly(
        read_model: ReadModel, backend: str) -> None:
    q = "query($t: DateTime!) { deliveries(filter: {lastEventFrom: $t}) { totalCount } }"
    upper = query(read_model, backend, "api_happy.jsonl", q, {"t": "2026-11-25T02:00:00Z"})
    lower = query(read_model, backend, "api_happy.jsonl", q, {"t": "2026-11-25t02:00:00z"})
    assert data_of(lower) == data_of(upper)
    for value in ("0001-01-01T00:00:00+09:00", "9999-12-31T23:59:59-05:00"):
        messages = error_messages(query(read_model, backend, "api_happy.jsonl", q, {"t": value}))
        assert any("out of range" in m for m in messages), messages


def test_a_date_must_be_written_yyyy_mm_dd(read_model: ReadModel, backend: str) -> None:
    result = query(read_model, backend, "api_happy.jsonl",
                   '{ riderDailyStats(riderId: "R-1", from: "2026-W01-1", to: "2026-W01-2") { date } }')
    assert any("YYYY-MM-DD" in m for m in error_messages(result))


def test_a_nul_in_fields_we_do_not_read_is_stored_and_served(read_model: ReadModel,
                                                             backend: str) -> None:
    """Issue #9 hole 4: an unknown data field or top-level field holding \\u0000 is no dead
    letter. SQLite keeps the NUL as received; PostgreSQL's jsonb cannot hold one, so there
    it is stored as U+FFFD. A NUL in a field we read (orderId) stays a dead letter."""
    result = query(read_model, backend, "api_nul_unknown.jsonl", """
      { delivery(id: "D-NUL") { orderId shopId state eventCount
          history { totalCount edges { node { eventId eventType data } } } }
        unread: delivery(id: "D-READ") { id }
        projectionStatus { eventsApplied unknownEvents deadLetters } }""")
    nul = "\x00" if backend == "sqlite" else "\ufffd"
    data = data_of(result)
    assert data["projectionStatus"] == {"eventsApplied": 2, "unknownEvents": 1, "deadLetters": 1}
    assert data["unread"] is None
    delivery = data["delivery"]
    assert (delivery["orderId"], delivery["shopId"], delivery["state"],
            delivery["eventCount"]) == ("O-1", "S-1", "CREATED", 2)
    assert delivery["history"]["totalCount"] == 2
    assert [e["node"] for e in delivery["history"]["edges"]] == [
        {"eventId": "n1", "eventType": "DeliveryCreated",
         "data": {"orderId": "O-1", "shopId": "S-1", "note": f"a{nul}b",
                  f"x{nul}": [nul, {"y": nul}]}},
        {"eventId": "n2", "eventType": "DeliveryRiderCheered",
         "data": {"orderId": nul, "cheer": f"go{nul}go"}},
    ]
