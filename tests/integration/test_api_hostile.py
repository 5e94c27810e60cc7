# ruff: noqa: F811 - `read_model` is a fixture imported from tests.api_support
"""Hostile input the safety tests did not cover (issue #9, holes 1 and 2).

1. Over graphql-transport-ws, an operation the API refuses before running it
   (a syntax error, the token limit, nesting thousands deep, a payload that is not
   a query) gets the protocol's ``error`` message saying why, the socket stays
   open for the client's other operations, and the log gets one line, no
   traceback. Operations over the socket keep the HTTP path's checks: the token,
   the cost budget, the depth and alias limits, production's introspection ban.
2. Input out of the range the read model can hold (a cursor's sequence past 64
   bits, an unpaired surrogate, a NUL in a cursor, a date whose next midnight is
   past year 9999) is the client's mistake: a readable GraphQL error (or a 400),
   found before any SQL runs, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, text
from websockets.sync.client import ClientConnection, connect

from query_api.database import build_engine
from query_api.extensions import MASKED_MESSAGE
from tests.api_support import (
    BACKENDS,
    STREAMS,
    client_for,
    data_of,
    error_messages,
    gql,
    live_server,
    project,
    read_model,  # noqa: F401 - fixture
    settings_for,
)

pytestmark = pytest.mark.integration

ReadModel = Callable[[str, str], str]
TOKEN = "hostile-token"
OK_QUERY = '{ delivery(id: "D-1001") { id state } }'
SUBSCRIPTION = 'subscription { deliveryUpdated(id: "D-1001") { id } }'


def assert_no_leak(text_: str) -> None:
    for secret in ("Traceback", "SELECT", "sqlalchemy", "sqlite3", "psycopg", 'File "',
                   MASKED_MESSAGE, "read-model query failed"):
        assert secret not in text_, text_


def assert_logged_once_without_traceback(caplog: pytest.LogCaptureFixture, needle: str) -> None:
    """The refused operation left one log line naming the reason and no traceback."""
    loud = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR
            or "Traceback" in r.getMessage()]
    assert loud == [], [(r.name, r.getMessage()[:300]) for r in loud]
    lines = [r for r in caplog.records if needle in r.getMessage()]
    assert len(lines) == 1, [(r.name, r.getMessage()[:200]) for r in caplog.records]


# -- 1. graphql-transport-ws ---------------------------------------------------------
@pytest.fixture(scope="module")
def server(read_model: ReadModel) -> Iterator[str]:
    url = read_model("sqlite", "api_happy.jsonl")
    with live_server(settings_for(url, STREAMS / "api_happy.jsonl", tokens=(TOKEN,))) as (
            base, _app):
        yield base


def open_socket(base: str, init: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> ClientConnection:
    ws = connect(f"ws://{base}/graphql", subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                 additional_headers=headers or {}, open_timeout=10, max_size=None)
    if init is not None:
        ws.send(json.dumps({"type": "connection_init", "payload": init}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "connection_ack"}
    return ws


def authorised(base: str) -> ClientConnection:
    return open_socket(base, {"Authorization": f"Bearer {TOKEN}"})


def ask(ws: Any, op: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Send ``subscribe`` and read its messages up to its ``error`` or ``complete``."""
    ws.send(json.dumps({"id": op, "type": "subscribe", "payload": payload}))
    messages = []
    while True:
        message = json.loads(ws.recv(timeout=15))
        messages.append(message)
        if message["type"] in ("error", "complete"):
            return messages


def surrogate_payload(query: str, variables: str) -> str:
    """A subscribe message whose variables hold an unpaired surrogate escape."""
    return ('{"id": "s", "type": "subscribe", "payload": {"query": ' + json.dumps(query)
            + ', "variables": ' + variables + "}}")


#: name -> (subscribe payload, words the error must hold)
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "syntax error": ({"query": 'subscription { deliveryUpdated(id: "D-1001") { id '},
                     "Syntax Error"),
    "over the token limit": ({"query": "subscription { deliveryUpdated(id: \"D-1001\") { "
                              + "id " * 2500 + "} }"}, "more than 2000 tokens"),
    "nested 3,000 deep": ({"query": "{a" * 3000 + "}" * 3000}, "nests deeper than 64 levels"),
    "query is not a string": ({"query": 42}, "query must be a string"),
    "query is empty": ({"query": ""}, "query must be a string"),
    "variables not an object": ({"query": OK_QUERY, "variables": [1]},
                                "variables must be an object"),
    "unknown operation name": ({"query": OK_QUERY, "operationName": "Nope"},
                               'Unknown operation named \\"Nope'),
    "a megabyte of query": ({"query": "{ " + "x " * 500_000 + "}"}, "over 65536 bytes"),
    "unknown field": ({"query": '{ delivery(id: "D-1001") { colour } }'},
                      "Cannot query field 'colour'"),
    "mutation": ({"query": "mutation { x }"}, "mutation"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refused_operation_gets_an_error_message_and_one_log_line(
        server: str, case: str, caplog: pytest.LogCaptureFixture) -> None:
    payload, needle = REFUSED[case]
    caplog.set_level(logging.INFO)
    with authorised(server) as ws:
        messages = ask(ws, "bad", payload)
        assert len(messages) == 1, messages
        error = messages[0]
        assert error["type"] == "error" and error["id"] == "bad", error
        assert isinstance(error["payload"], list) and error["payload"], error
        text_ = json.dumps(error)
        assert needle in text_, error
        assert_no_leak(text_)
        # The socket is still open: the client's next operation runs.
        good = ask(ws, "good", {"query": OK_QUERY})
        assert [m["type"] for m in good] == ["next", "complete"], good
        assert good[0]["payload"] == {"data": {"delivery": {"id": "D-1001", "state": "DELIVERED"}}}
    assert_logged_once_without_traceback(caplog, needle.split("'")[0].split("\\")[0])


def test_unparsable_and_invalid_unicode_messages_are_refused_without_a_traceback(
        server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with authorised(server) as ws:
        ws.send(surrogate_payload("query($id: ID!) { delivery(id: $id) { id } }",
                                  '{"id": "\\ud800"}'))
        error = json.loads(ws.recv(timeout=15))
        assert error["type"] == "error" and "not valid Unicode" in json.dumps(error), error
        assert [m["type"] for m in ask(ws, "good", {"query": OK_QUERY})] == ["next", "complete"]
    with authorised(server) as ws:  # JSON nested past the parser's recursion: closed, 4400
        ws.send('{"type": "subscribe", "id": "d", "payload": ' + "[" * 100_000
                + "]" * 100_000 + "}")
        with pytest.raises(Exception) as closed:
            ws.recv(timeout=15)
        assert "4400" in str(closed.value), closed.value
    loud = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert loud == [], [(r.name, r.getMessage()[:300]) for r in loud]


def test_operations_over_a_websocket_keep_the_token_and_the_limits(
        server: str, read_model: ReadModel) -> None:
    # No connection_init: a subscribe is refused by the protocol (4401).
    with open_socket(server) as ws:
        ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}}))
        with pytest.raises(Exception) as closed:
            ws.recv(timeout=10)
        assert "4401" in str(closed.value)
    # A wrong token in connection_init, or none: 4403, nothing runs.
    for init in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                 {"Authorization": "Bearer \ud800"}, {"Authorization": 5}):
        with open_socket(server) as ws:
            ws.send(json.dumps({"type": "connection_init", "payload": init}))
            with pytest.raises(Exception) as closed:
                ws.recv(timeout=10)
            assert "4403" in str(closed.value), init
    with authorised(server) as ws:
        over_budget = "{ " + " ".join(
            f"a{i}: deliveries(first: 500) {{ edges {{ node {{ id }} }} }}" for i in range(11)
        ) + " }"
        for op, query, needle in (
            ("cost", over_budget, "over the budget of 5000"),
            ("depth", "{ deliveries { edges { node { history { edges { node { source { "
                      + "a { " * 6 + "topic" + " }" * 6 + " } } } } } } } }",
             "exceeds maximum operation depth of 12"),
            ("aliases", "{ " + " ".join(f'a{i}: delivery(id: "D-1001") {{ id }}'
                                        for i in range(31)) + " }", "aliases"),
        ):
            messages = ask(ws, op, {"query": query})
            assert messages[0]["type"] == "error", messages
            assert needle in json.dumps(messages[0]), messages
    url = read_model("sqlite", "api_happy.jsonl")
    with live_server(settings_for(url, tokens=(TOKEN,), environment="production")) as (base, _):
        with authorised(base) as ws:
            messages = ask(ws, "i", {"query": "{ __schema { queryType { name } } }"})
            assert messages[0]["type"] == "error" and "introspection" in json.dumps(
                messages[0]).lower(), messages


# -- 2. out-of-range input ------------------------------------------------------------
def cursor(*parts: object) -> str:
    raw = json.dumps(list(parts), separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def raw_cursor(text_: str) -> str:
    """A cursor holding exactly this JSON text (to carry escapes json.dumps would not)."""
    return base64.urlsafe_b64encode(text_.encode()).decode().rstrip("=")


AT = "2026-11-25T00:00:00+00:00"
HISTORY = 'query H($a: String) { delivery(id: "D-1001") { history(after: $a) { totalCount } } }'
PAGE = "query P($a: String) { deliveries(after: $a) { edges { cursor } } }"
BAD_CURSOR = "the cursor is not one this API issued"

#: name -> (query, variables, words the error must hold)
OUT_OF_RANGE: dict[str, tuple[str, dict[str, Any] | None, str]] = {
    "history sequence 2^70": (HISTORY, {"a": cursor("history", AT, 2**70, "e")}, BAD_CURSOR),
    "history sequence -2^63-1": (HISTORY, {"a": cursor("history", AT, -(2**63) - 1, "e")},
                                 BAD_CURSOR),
    "history event id with NUL": (HISTORY, {"a": cursor("history", AT, 1, "e\x00")}, BAD_CURSOR),
    "history event id unpaired surrogate": (
        HISTORY, {"a": raw_cursor(f'["history","{AT}",1,"\\ud800"]')}, BAD_CURSOR),
    "deliveries id with NUL": (PAGE, {"a": cursor("deliveries", AT, "D\x00")}, BAD_CURSOR),
    "deliveries id unpaired surrogate": (
        PAGE, {"a": raw_cursor(f'["deliveries","{AT}","\\udc00"]')}, BAD_CURSOR),
    "stats on 9999-12-31": (
        '{ riderDailyStats(riderId: "R-7", from: "9999-12-31", to: "9999-12-31") '
        "{ completed } }", None, "outside the instants this API can represent"),
    "stats up to 9999-12-31": (
        '{ riderDailyStats(riderId: "R-7", from: "9999-12-01", to: "9999-12-31") '
        "{ completed } }", None, "outside the instants this API can represent"),
}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _statements(engine: Any) -> list[str]:
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    return seen


def test_out_of_range_input_is_a_readable_error_before_any_sql(
        read_model: ReadModel, backend: str, caplog: pytest.LogCaptureFixture) -> None:
    url = read_model(backend, "api_happy.jsonl")
    caplog.set_level(logging.INFO)
    with client_for(settings_for(url)) as client:
        statements = _statements(client.app.state.services.engine)
        for name, (query, variables, needle) in OUT_OF_RANGE.items():
            statements.clear()
            response = client.post("/graphql", json={"query": query, "variables": variables})
            assert response.status_code == 200, (name, response.text)
            messages = error_messages(response.json())
            assert any(needle in m for m in messages), (name, messages)
            assert_no_leak(response.text)
            touched = [s for s in statements if "delivery_events" in s or "rider_id =" in s
                       or "last_event_at <" in s]
            assert touched == [], (name, touched)
        # The edges of the range still work: the first day, and the last whole one.
        days = data_of(gql(client, '{ riderDailyStats(riderId: "R-7", from: "0001-01-01", '
                                   'to: "0001-01-02") { completed } }'))["riderDailyStats"]
        assert days == [{"completed": 0}, {"completed": 0}]
        last = data_of(gql(client, '{ riderDailyStats(riderId: "R-7", from: "9999-12-30", '
                                   'to: "9999-12-30") { completed } }'))["riderDailyStats"]
        assert last == [{"completed": 0}]
    loud = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert loud == [], [(r.name, r.getMessage()[:300]) for r in loud]


def test_a_business_time_zone_ahead_of_utc_makes_year_one_out_of_range(
        read_model: ReadModel) -> None:
    url = read_model("sqlite", "api_happy.jsonl")
    with client_for(settings_for(url, business_timezone="Asia/Tokyo")) as client:
        messages = error_messages(gql(client, '{ riderDailyStats(riderId: "R-7", '
                                              'from: "0001-01-01", to: "0001-01-01") { date } }'))
        assert any("outside the instants this API can represent" in m for m in messages), messages


@pytest.mark.parametrize("body", [
    '{"query": "query($id: ID!) { delivery(id: $id) { id } }", "variables": {"id": "\\ud800"}}',
    '{"query": "query($f: DeliveryFilter) { deliveries(filter: $f) { totalCount } }", '
    '"variables": {"f": {"orderId": "a\\udfffb"}}}',
    '{"query": "{ __typename }", "operationName": "\\ud800"}',
    '{"query": "{ __typename }", "variables": {"\\udc00": 1}}',
])
def test_unpaired_surrogates_anywhere_in_a_request_are_a_400(
        read_model: ReadModel, backend: str, body: str,
        caplog: pytest.LogCaptureFixture) -> None:
    url = read_model(backend, "api_happy.jsonl")
    caplog.set_level(logging.INFO)
    with client_for(settings_for(url)) as client:
        statements = _statements(client.app.state.services.engine)
        response = client.post("/graphql", content=body.encode(),
                               headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        assert "not valid Unicode" in response.text
        assert statements == []
        # A valid surrogate pair (an emoji) is fine.
        ok = client.post("/graphql", content=b'{"query": "query($id: ID!) { delivery(id: $id) '
                         b'{ id } }", "variables": {"id": "\\ud83d\\ude00"}}',
                         headers={"content-type": "application/json"})
        assert ok.status_code == 200 and ok.json() == {"data": {"delivery": None}}
    loud = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert loud == [], [(r.name, r.getMessage()[:300]) for r in loud]


def test_the_apis_connections_cannot_write_whatever_the_role(db_url: str) -> None:
    """The database URL here is the tables' owner: only the engine's guard stands (its own
    database: were the guard gone, the writes would land)."""
    project(db_url, STREAMS / "api_happy.jsonl")
    engine = build_engine(settings_for(db_url))
    refusal = "read-only transaction" if db_url.startswith("postgresql") else "readonly database"
    try:
        for options in ({}, {"isolation_level": "AUTOCOMMIT"}):
            for statement in ("DELETE FROM deliveries", "CREATE TABLE probe (x int)"):
                with engine.connect() as conn, pytest.raises(Exception, match=refusal):
                    conn.execution_options(**options).execute(text(statement))
                    conn.commit()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM deliveries")).scalar_one() == 7
    finally:
        engine.dispose()
