# ruff: noqa: F811 - `read_model` is a fixture imported from tests.api_support
"""Safety: tokens, limits, masking, production mode, caches, no N+1, a read-only role."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from query_api import reads
from query_api.extensions import MASKED_MESSAGE
from tests.api_support import (
    STREAMS,
    client_for,
    data_of,
    error_messages,
    gql,
    project,
    read_model,  # noqa: F401 - fixture
    settings_for,
)
from tests.helpers import make_event, write_jsonl

pytestmark = pytest.mark.integration

ReadModel = Callable[[str, str], str]
TOKEN = "s3cret-token"
OK_QUERY = '{ delivery(id: "D-1001") { id } }'


@pytest.fixture
def happy(read_model: ReadModel) -> str:
    return read_model("sqlite", "api_happy.jsonl")


@pytest.fixture
def client(happy: str) -> Any:
    with client_for(settings_for(happy, STREAMS / "api_happy.jsonl")) as c:
        yield c


def assert_no_leak(text_: str) -> None:
    for secret in ("Traceback", "SELECT", "sqlalchemy", "sqlite3", "psycopg", 'File "'):
        assert secret not in text_, text_


# -- tokens -----------------------------------------------------------------------
def test_without_a_valid_token_the_api_answers_401(happy: str) -> None:
    with client_for(settings_for(happy, tokens=(TOKEN, "other"))) as c:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN + "x"},
                        {"Authorization": "Basic " + TOKEN}):
            response = c.post("/graphql", json={"query": OK_QUERY}, headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/metrics").status_code == 401
        ok = c.post("/graphql", json={"query": OK_QUERY},
                    headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and data_of(ok.json()) == {"delivery": {"id": "D-1001"}}
        assert c.post("/graphql", json={"query": OK_QUERY},
                      headers={"Authorization": "Bearer other"}).status_code == 200
        assert c.get("/healthz").status_code == 200  # probes stay open
        assert c.get("/readyz").status_code == 200


def _ws_handshake(c: TestClient, headers: dict[str, str],
                  payload: dict[str, Any]) -> dict[str, Any]:
    with c.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"],
                             headers=headers) as ws:
        ws.send_json({"type": "connection_init", "payload": payload})
        message: dict[str, Any] = ws.receive_json()
        return message


def test_websockets_need_a_token_too(happy: str) -> None:
    with client_for(settings_for(happy, tokens=(TOKEN,))) as c:
        assert _ws_handshake(c, {"Authorization": f"Bearer {TOKEN}"}, {}) == {
            "type": "connection_ack"}
        assert _ws_handshake(c, {}, {"Authorization": f"Bearer {TOKEN}"}) == {
            "type": "connection_ack"}
        with pytest.raises(WebSocketDisconnect) as closed:
            _ws_handshake(c, {}, {})
        assert closed.value.code == 4403
        with pytest.raises(WebSocketDisconnect) as closed:
            _ws_handshake(c, {}, {"Authorization": "Bearer nope"})
        assert closed.value.code == 4403
        with pytest.raises(Exception) as denied:  # refused at the handshake: HTTP 401
            _ws_handshake(c, {"Authorization": "Bearer nope"}, {})
        assert "401" in repr(denied.value) or getattr(denied.value, "status_code", None) == 401


# -- malformed and hostile requests --------------------------------------------------------
def test_malformed_json_body_is_a_400(client: TestClient) -> None:
    for body in (b"{not json", b"", b"[1, 2", b'"just a string"', b"null", b"42", b"\xff\xfe{"):
        response = client.post("/graphql", content=body,
                               headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, (body, response.status_code)
        assert_no_leak(response.text)


def test_unknown_fields_are_graphql_errors(client: TestClient) -> None:
    result = gql(client, "{ delivery(id: \"D-1001\") { id colour } }")
    assert error_messages(result) == [
        "Cannot query field 'colour' on type 'Delivery'."]
    result = gql(client, "{ deliveries(filter: {colour: \"red\"}) { totalCount } }")
    assert "colour" in error_messages(result)[0]


def test_wrong_variable_types_are_graphql_errors(client: TestClient) -> None:
    q = "query Q($n: Int, $f: DeliveryFilter) { deliveries(first: $n, filter: $f) { totalCount } }"
    for variables, needle in (
        ({"n": "fifty"}, "Int cannot represent non-integer value"),
        ({"n": 2**40}, "Int cannot represent non 32-bit signed integer"),
        ({"f": {"states": ["FLYING"]}}, "FLYING"),
        ({"f": {"lastEventFrom": "yesterday"}}, "DateTime 'yesterday' is not ISO-8601"),
        ({"f": {"lastEventFrom": "2026-11-25T10:00:00"}}, "has no offset"),
        ({"f": "not an object"}, "DeliveryFilter"),
    ):
        messages = error_messages(gql(client, q, variables))
        assert any(needle in m for m in messages), (variables, messages)


def test_a_query_fifty_levels_deep_is_refused(client: TestClient) -> None:
    deep = "{ deliveries { edges { node { history { edges { node { source { " + \
        "a { " * 43 + "topic" + " }" * 43 + " } } } } } } } }"
    assert deep.count("{") == 51
    result = gql(client, deep)
    assert any("exceeds maximum operation depth of 12" in m for m in error_messages(result))


def test_a_query_nested_thousands_deep_is_refused_before_parsing(client: TestClient) -> None:
    response = client.post("/graphql", json={"query": "{a" * 5000 + "}" * 5000})
    assert response.status_code == 400
    assert "nests deeper than" in response.text


def test_a_thousand_aliases_are_refused(client: TestClient) -> None:
    query = "{ " + " ".join(f'a{i}: delivery(id: "D-1001") {{ id }}' for i in range(1000)) + " }"
    response = client.post("/graphql", json={"query": query})
    assert response.status_code in (200, 400, 413)
    if response.status_code == 200:
        assert response.json()["data"] is None
        assert error_messages(response.json())
    # Under the body limit, the alias limit itself answers.
    query = "{ " + " ".join(f'a{i}: delivery(id: "D-1001") {{ id }}' for i in range(31)) + " }"
    messages = error_messages(gql(client, query))
    assert any("30" in m and "alias" in m.lower() for m in messages), messages


def test_a_long_query_is_refused_by_the_token_limit(client: TestClient) -> None:
    query = "{ " + "delivery(id: \"D-1001\") { id } " * 400 + "}"
    messages = error_messages(gql(client, query))
    assert any("token" in m.lower() for m in messages), messages


def test_a_one_megabyte_query_is_a_413(client: TestClient) -> None:
    query = "{ " + "x " * 500_000 + "}"
    response = client.post("/graphql", json={"query": query})
    assert response.status_code == 413
    response = client.get("/graphql", params={"query": "{ " + "x " * 20_000 + "}"})
    assert response.status_code in (200, 400)
    assert any("token" in m.lower() for m in error_messages(response.json()))


def test_deeply_nested_variables_are_not_a_500(client: TestClient) -> None:
    body = '{"query": "{ __typename }", "variables": {"a": ' + "[" * 20_000 + "]" * 20_000 + "}}"
    response = client.post("/graphql", content=body.encode(),
                           headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500
    assert_no_leak(response.text)


def test_batched_requests_are_refused(client: TestClient) -> None:
    response = client.post("/graphql", json=[{"query": OK_QUERY}, {"query": OK_QUERY}])
    assert 400 <= response.status_code < 500


def test_mutations_do_not_exist(client: TestClient) -> None:
    assert error_messages(gql(client, "mutation { x }"))


# -- masking ------------------------------------------------------------------------
def test_unexpected_errors_are_masked(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any) -> Any:
        raise RuntimeError("SELECT secret FROM deliveries -- at /srv/app.py line 3")

    monkeypatch.setattr(reads, "delivery_page", boom)
    response = client.post("/graphql", json={"query": "{ deliveries { totalCount } }"})
    assert response.status_code == 200
    assert error_messages(response.json()) == [MASKED_MESSAGE]
    assert_no_leak(response.text)
    assert "secret" not in response.text


def test_database_errors_are_readable_without_sql(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rm.db'}"
    project(url, STREAMS / "api_happy.jsonl")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE delivery_events"))
    engine.dispose()
    with client_for(settings_for(url)) as c:
        response = c.post("/graphql", json={
            "query": '{ delivery(id: "D-1001") { id history { totalCount } } }'})
        assert response.status_code == 200
        assert error_messages(response.json()) == ["the read-model query failed"]
        assert_no_leak(response.text)
        assert "delivery_events" not in response.text
        assert c.get("/healthz").status_code == 200


def test_readyz_reports_an_unmigrated_database(tmp_path: Path) -> None:
    with client_for(settings_for(f"sqlite:///{tmp_path / 'empty.db'}")) as c:
        response = c.get("/readyz")
        assert response.status_code == 503
        assert "not migrated" in response.json()["reason"]
        assert c.get("/healthz").status_code == 200
        result = gql(c, OK_QUERY)
        assert error_messages(result) == [
            "the read model is unavailable (unreachable or not migrated; see /readyz)"]


# -- production mode --------------------------------------------------------------------
INTROSPECTION = "{ __schema { queryType { name } } }"


def test_introspection_and_graphiql_only_in_development(happy: str) -> None:
    with client_for(settings_for(happy)) as dev:
        assert data_of(gql(dev, INTROSPECTION))["__schema"]["queryType"]["name"] == "Query"
        page = dev.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()
    with client_for(settings_for(happy, environment="production")) as prod:
        messages = error_messages(gql(prod, INTROSPECTION))
        assert any("introspection" in m.lower() for m in messages), messages
        page = prod.get("/graphql", headers={"accept": "text/html"})
        assert "graphiql" not in page.text.lower()
        assert data_of(gql(prod, OK_QUERY)) == {"delivery": {"id": "D-1001"}}


# -- caches ----------------------------------------------------------------------------
def test_repeated_queries_hit_the_parser_and_validation_caches(client: TestClient) -> None:
    from strawberry.extensions.parser_cache import _get_parse_cache
    from strawberry.extensions.validation_cache import _get_validate_cache

    from query_api.settings import Settings

    size = Settings().document_cache_size
    parse, validate = _get_parse_cache(size), _get_validate_cache(size)
    query = '{ delivery(id: "D-1002") { id state eventCount } }  # cache test'
    gql(client, query)
    before = (parse.cache_info().hits, validate.cache_info().hits)
    for _ in range(5):
        assert data_of(gql(client, query))["delivery"]["id"] == "D-1002"
    after = (parse.cache_info().hits, validate.cache_info().hits)
    assert after[0] - before[0] >= 5 and after[1] - before[1] >= 5
    assert parse.cache_info().maxsize == validate.cache_info().maxsize == size


# -- no N+1 --------------------------------------------------------------------------------
def _many_deliveries(path: Path, n: int) -> Path:
    events = []
    for i in range(n):
        d = f"N-{i:03d}"
        events += [
            make_event("DeliveryCreated", d, f"2026-11-25T10:{i % 60:02d}:00Z", event_id=f"{d}-1",
                       data={"orderId": f"O-{i}", "shopId": "S-1"}),
            make_event("DeliveryRiderAssigned", d, f"2026-11-25T11:{i % 60:02d}:00Z",
                       event_id=f"{d}-2", data={"riderId": f"R-{i % 4}"}),
            make_event("DeliveryPickedUp", d, f"2026-11-25T12:{i % 60:02d}:00Z", event_id=f"{d}-3"),
        ]
    return write_jsonl(path, events)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_page_with_histories_costs_a_constant_number_of_statements(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'rm.db'}" if backend == "sqlite" else request.getfixturevalue(
        "pg_url")
    project(url, _many_deliveries(tmp_path / "many.jsonl", 60))
    q = """query P($n: Int) { deliveries(first: $n) { totalCount edges { node { id riderId
             history(first: 10) { totalCount edges { node { eventId data source { offset } } } }
           } } } }"""
    with client_for(settings_for(url)) as c:
        statements: list[str] = []

        @event.listens_for(c.app.state.services.engine, "before_cursor_execute")
        def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        costs = {}
        for n in (1, 5, 50):
            statements.clear()
            page = data_of(gql(c, q, {"n": n}))["deliveries"]
            assert len(page["edges"]) == n and page["totalCount"] == 60
            assert all(len(e["node"]["history"]["edges"]) == 3 for e in page["edges"])
            costs[n] = len([s for s in statements if "SELECT" in s.upper()])
    assert costs[1] == costs[5] == costs[50] <= 4, costs


# -- a read-only PostgreSQL role ----------------------------------------------------------
def test_the_api_works_with_a_select_only_role(pg_url: str) -> None:
    """The read-only role of docs/api.md: CONNECT, USAGE, SELECT; nothing else."""
    project(pg_url, STREAMS / "api_happy.jsonl")
    admin = create_engine(os.environ.get("TEST_DATABASE_ADMIN_URL")
                          or os.environ["TEST_DATABASE_URL"], isolation_level="AUTOCOMMIT")
    owner = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    role = f"qa_reader_{uuid.uuid4().hex[:8]}"
    database = make_url(pg_url).database
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'reader-pw'"))
    try:
        with owner.connect() as conn:  # the tables' owner grants, as in docs/api.md
            conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO {role}'))
            conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
            conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
        reader_url = make_url(pg_url).set(username=role, password="reader-pw").render_as_string(
            hide_password=False)
        with client_for(settings_for(reader_url, STREAMS / "api_happy.jsonl")) as c:
            assert c.get("/readyz").json()["status"] == "ready"
            data = data_of(gql(c, "{ deliveries(first: 2) { totalCount edges { node { id history "
                                  "{ totalCount } } } } projectionStatus { eventsApplied } "
                                  'riderDailyStats(riderId: "R-7", from: "2026-11-25", '
                                  'to: "2026-11-25") { completed } }'))
            assert data["deliveries"]["totalCount"] == 7
            assert data["projectionStatus"]["eventsApplied"] == 23
            assert data["riderDailyStats"] == [{"completed": 2}]
        reader = create_engine(reader_url)
        with pytest.raises(Exception, match="permission denied"):
            with reader.begin() as conn:
                conn.execute(text("DELETE FROM deliveries"))
        reader.dispose()
    finally:
        owner.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def test_metrics_count_operations_by_name(client: TestClient) -> None:
    gql(client, "query BackOfficeList { deliveries(first: 1) { totalCount } }")
    gql(client, "query BackOfficeList { deliveries(first: 0) { totalCount } }")
    text_ = client.get("/metrics").text
    assert ('query_api_graphql_operations_total{operation="BackOfficeList",outcome="ok",'
            'type="query"} 1.0') in text_
    assert ('query_api_graphql_operations_total{operation="BackOfficeList",outcome="error",'
            'type="query"} 1.0') in text_
    assert 'query_api_graphql_operation_duration_seconds_count{operation="BackOfficeList"' in text_
    assert 'projection_lag_messages{partition="0"' in text_
    assert 'query_api_http_requests_total{method="POST",path="/graphql",status="200"}' in text_



def test_a_query_asking_for_millions_of_results_is_refused_before_it_runs(
        tmp_path: Path) -> None:
    """Within the depth, alias and token limits, 30 x 500 x 500 events is still too much."""
    from producer.simulate import SimulationConfig, simulate

    stream = write_jsonl(tmp_path / "s.jsonl", simulate(SimulationConfig(deliveries=300, seed=2)))
    url = f"sqlite:///{tmp_path / 'rm.db'}"
    project(url, stream)
    big = " ".join(
        f"a{i}: deliveries(first: 500, filter: {{lastEventFrom: \"2026-11-24T00:{i:02d}:00Z\"}}) "
        "{ edges { node { history(first: 500) { edges { node { eventId } } } } } }"
        for i in range(30)
    )
    with client_for(settings_for(url, stream)) as client:
        result = gql(client, "{ " + big + " }")
        assert result["data"] is None or all(v is None for v in result["data"].values())
        assert any("more than 100000 results" in m for m in error_messages(result))
        # Through a variable and a fragment, too.
        q = """query($n: Int) { deliveries(first: $n) { edges { node { ...H } } } }
               fragment H on Delivery { history(first: 500) { edges { node { eventId } } } }"""
        assert any("more than" in m for m in error_messages(gql(client, q, {"n": 500})))
        # The back office's usual page passes.
        usual = "{ deliveries(first: 50) { edges { node { id history { totalCount } } } } }"
        assert len(data_of(gql(client, usual))["deliveries"]["edges"]) == 50


def test_client_errors_are_logged_in_one_line_not_as_failures(
        client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        error_messages(gql(client, "{ deliveries(first: 0) { totalCount } }"))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage()[:200] for r in errors]
    infos = [r for r in caplog.records if r.name == "query_api.client_errors"]
    assert len(infos) == 3 and all(r.exc_info is None for r in infos)


def test_a_subscription_over_plain_http_is_told_to_use_a_websocket(client: TestClient) -> None:
    response = client.post("/graphql", json={
        "query": 'subscription { deliveryUpdated(id: "D-1001") { id } }'})
    assert response.status_code == 400
    assert "subscriptions are not allowed" in response.text
