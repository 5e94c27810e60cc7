# ruff: noqa: F811 - `read_model` is a fixture imported from tests.api_support
"""The request path under load: reused connections, bounded cost and time, a prompt /healthz."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, event, text

from query_api.database import ReadDatabase
from query_api.errors import Busy, QueryTimeout
from query_api.session import ReadSession
from tests.api_support import (
    client_for,
    data_of,
    error_messages,
    gql,
    live_server,
    project,
    read_model,  # noqa: F401 - fixture
    settings_for,
)
from tests.helpers import write_jsonl

pytestmark = pytest.mark.integration

ReadModel = Callable[[str, str], str]
FIVE_SCALARS = 'query D($id: ID!) { delivery(id: $id) { id state riderId orderId lastEventAt } }'
#: The issue's heavy query: 30 aliases of a 500-delivery page with five events each.
HEAVY = "{ " + " ".join(
    f"a{i}: deliveries(first: 500) {{ edges {{ node {{ id "
    "history(first: 5) { edges { node { eventId } } } } } }"
    for i in range(30)
) + " }"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _selects(engine: Any) -> tuple[list[str], list[int]]:
    """Records the SELECTs run and the connections checked out on ``engine``."""
    statements: list[str] = []
    checkouts: list[int] = []

    @event.listens_for(engine, "before_cursor_execute")
    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    @event.listens_for(engine, "checkout")
    def checkout(*_: Any) -> None:
        checkouts.append(1)

    return statements, checkouts


def test_a_delivery_by_id_costs_one_checkout_and_one_statement(
    read_model: ReadModel, backend: str
) -> None:
    url = read_model(backend, "api_happy.jsonl")
    with client_for(settings_for(url, environment="production")) as client:
        statements, checkouts = _selects(client.app.state.services.engine)
        for delivery_id in ("D-1001", "D-1002", "nope"):
            statements.clear()
            checkouts.clear()
            data = data_of(gql(client, FIVE_SCALARS, {"id": delivery_id}))
            assert (data["delivery"] is None) == (delivery_id == "nope")
            assert (len(checkouts), len(statements)) == (1, 1), statements


def test_connections_are_reused_under_concurrency(read_model: ReadModel, backend: str) -> None:
    """The old path opened connections per request (pool 5 + 10 overflow, 40 threads)."""
    url = read_model(backend, "api_happy.jsonl")
    settings = settings_for(url, db_concurrency=3)
    with live_server(settings) as (address, app):
        connects: list[int] = []
        event.listen(app.state.services.engine, "connect", lambda *_: connects.append(1))

        async def hammer() -> None:
            async with httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as client:
                async def one(i: int) -> None:
                    query = ('{ deliveries(first: 3) { totalCount edges { node { id '
                             'history(first: 2) { totalCount } } } } }' if i % 2 else FIVE_SCALARS)
                    response = await client.post("/graphql", json={
                        "query": query, "variables": {"id": "D-1001"} if i % 2 == 0 else None})
                    assert response.status_code == 200 and "errors" not in response.json()

                await asyncio.gather(*(one(i) for i in range(200)))

        asyncio.run(hammer())
        pool = app.state.services.engine.pool
        assert len(connects) <= 3 + 2, f"{len(connects)} connections opened for 200 requests"
        assert pool.checkedout() == 0


def test_the_heavy_query_of_issue_7_is_refused_before_any_sql(read_model: ReadModel) -> None:
    url = read_model("sqlite", "api_happy.jsonl")
    with client_for(settings_for(url)) as client:
        statements, checkouts = _selects(client.app.state.services.engine)
        result = gql(client, HEAVY)
        assert result["data"] is None
        [message] = error_messages(result)
        assert "15150 rows" in message and "budget of 5000" in message, message
        assert statements == [] and checkouts == []
        # A lower budget from the settings refuses an everyday page too, just as early.
    with client_for(settings_for(url, max_cost=40)) as client:
        messages = error_messages(gql(client, "{ deliveries { totalCount } }"))
        assert messages == [
            "the query may read 50 rows: its pages add up to 50 rows (the `first` of every "
            "list, summed over aliases and fragments), over the budget of 40; ask for smaller "
            "pages (`first`) or fewer aliases"]
        assert data_of(gql(client, "{ deliveries(first: 40) { totalCount } }"))


# -- a statement timeout, on both backends ---------------------------------------------
def _forever(conn: Connection, _generation: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return conn.execute(text("SELECT pg_sleep(30)")).scalar()
    return conn.execute(text(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
        "SELECT count(*) FROM c")).scalar()


def test_a_statement_past_the_timeout_is_stopped_with_a_readable_error(
    read_model: ReadModel, backend: str
) -> None:
    url = read_model(backend, "api_happy.jsonl")
    database = ReadDatabase(settings_for(url, statement_timeout_seconds=0.3))

    async def scenario() -> None:
        session = ReadSession(database)
        started = time.monotonic()
        try:
            with pytest.raises(QueryTimeout, match=r"ran longer than 0\.3s"):
                await session.run(_forever)
        finally:
            await session.aclose()
        assert time.monotonic() - started < 5
        after = ReadSession(database)  # the connection is fine for the next operation
        try:
            assert await after.generation() == 1
        finally:
            await after.aclose()

    try:
        asyncio.run(scenario())
    finally:
        database.dispose()


def test_operations_past_the_concurrency_wait_then_are_told_the_api_is_busy(
    read_model: ReadModel,
) -> None:
    url = read_model("sqlite", "api_happy.jsonl")
    database = ReadDatabase(settings_for(url, db_concurrency=1, queue_timeout_seconds=0.2))

    async def scenario() -> None:
        holder, waiter = ReadSession(database), ReadSession(database)
        assert await holder.generation() == 1  # holds the only slot until it closes
        with pytest.raises(Busy, match="busy"):
            await waiter.generation()
        await holder.aclose()
        assert await waiter.generation() == 1  # the slot came back
        await waiter.aclose()

    try:
        asyncio.run(scenario())
    finally:
        database.dispose()


# -- /healthz while heavy-but-allowed queries run ---------------------------------------
@pytest.fixture(scope="module")
def busy_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    from producer.simulate import SimulationConfig, simulate

    folder = tmp_path_factory.mktemp("busy")
    stream = write_jsonl(folder / "s.jsonl", simulate(SimulationConfig(deliveries=500, seed=3)))
    url = f"sqlite:///{folder / 'rm.db'}"
    project(url, stream)
    yield url, stream


#: Within the default budget (9 x 520 = 4680 rows) and result budget, and slow.
ALLOWED_HEAVY = "{ " + " ".join(
    f"a{i}: deliveries(first: 500) {{ edges {{ node {{ id state riderId lastEventAt "
    "history(first: 20) { totalCount edges { node { eventId eventType occurredAt data } } } "
    "} } }"
    for i in range(9)
) + " }"


def test_healthz_answers_promptly_while_heavy_queries_run(
    busy_model: tuple[str, Path],
) -> None:
    url, stream = busy_model
    settings = settings_for(url, stream, tokens=("t0ken",))
    headers = {"Authorization": "Bearer t0ken"}
    with live_server(settings) as (address, _app):
        base = f"http://{address}"
        in_flight = threading.Semaphore(0)
        finished: list[float] = []
        failures: list[str] = []

        def heavy() -> None:
            with httpx.Client(base_url=base, timeout=120) as client:
                in_flight.release()
                started = time.monotonic()
                response = client.post("/graphql", json={"query": ALLOWED_HEAVY},
                                       headers=headers)
                body = response.json()
                if response.status_code != 200 or "errors" in body:
                    failures.append(response.text[:300])
                else:
                    assert len(body["data"]["a0"]["edges"]) == 500
                finished.append(time.monotonic() - started)

        threads = [threading.Thread(target=heavy) for _ in range(4)]
        for thread in threads:
            thread.start()
        for _ in threads:
            in_flight.acquire(timeout=10)
        waits = []
        with httpx.Client(base_url=base, timeout=30) as probe:
            time.sleep(0.2)  # the heavy queries are in the server now
            while any(t.is_alive() for t in threads) and len(waits) < 200:
                started = time.monotonic()
                assert probe.get("/healthz").status_code == 200
                waits.append(time.monotonic() - started)
                time.sleep(0.05)
        for thread in threads:
            thread.join(timeout=120)
        assert failures == [], f"/healthz waits {waits}"
        assert len(finished) == 4
        assert len(waits) >= 3, f"the heavy queries ended before /healthz was asked: {finished}"
        assert max(waits) < 2.0, f"/healthz waited {max(waits):.2f}s; heavy queries {finished}"
