"""The API's bound on the bytes of event data one query reads (issue #20):
``QUERY_API_MAX_PAYLOAD_BYTES``. A history page of large payloads is measured in
the database and refused, with its size, before any payload leaves it; smaller pages
of the same delivery, and the rest of the answer, are served."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from query_api import reads
from schema.db import make_engine
from tests.api_support import client_for, data_of, error_messages, gql, project, settings_for
from tests.helpers import make_event, write_jsonl

pytestmark = pytest.mark.integration

NOTE = 100_000  # bytes of each big event's data
EVENTS = 20
BOUND = 1_000_000  # ten big events


@pytest.fixture(params=["sqlite", "postgresql"])
def big_model(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    url = (f"sqlite:///{tmp_path / 'rm.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    events = [make_event("DeliveryCreated", "D-BIG", "2026-11-25T10:00:00Z", event_id="big-0")]
    events += [make_event("DeliveryNoteAdded", "D-BIG", f"2026-11-25T10:{i:02d}:00Z",
                          event_id=f"big-{i}", data={"note": "x" * NOTE})
               for i in range(1, EVENTS)]
    events.append(make_event("DeliveryCreated", "D-SMALL", "2026-11-25T10:00:00Z",
                             event_id="small-0"))
    stream = write_jsonl(tmp_path / "big.jsonl", events)
    project(url, stream)
    return url, stream


def _history(first: int, alias: str = "history") -> str:
    return f"{alias}: history(first: {first}) {{ totalCount edges {{ node {{ eventId data }} }} }}"


def test_a_page_of_large_payloads_is_refused_before_it_is_read(
    big_model: tuple[str, Path],
) -> None:
    url, stream = big_model
    with client_for(settings_for(url, stream, max_payload_bytes=BOUND)) as client:
        small = data_of(gql(client, '{ delivery(id: "D-BIG") { id ' + _history(5) + " } }"))
        assert len(small["delivery"]["history"]["edges"]) == 5

        result = gql(client, '{ big: delivery(id: "D-BIG") { id ' + _history(EVENTS) + " }"
                     ' small: delivery(id: "D-SMALL") { id ' + _history(5) + " } }")
        [message] = error_messages(result)
        assert message.startswith("the history asked for holds ")
        assert "bytes of event data, more than the 1000000 this query may still read" in message
        assert "QUERY_API_MAX_PAYLOAD_BYTES" in message and "none of it was read" in message
        held = int(message.split("holds ")[1].split(" ")[0])
        assert (EVENTS - 1) * NOTE < held < EVENTS * (NOTE + 200)
        assert result["data"]["small"]["history"]["totalCount"] == 1  # the rest answers

        # one query's pages add up: 6 + 5 big events are more than the bound
        result = gql(client, '{ delivery(id: "D-BIG") { id ' + _history(6, "a") + " "
                     + _history(5, "b") + " } }")
        [message] = error_messages(result)
        assert "this query may still read" in message


def test_the_statement_returns_no_payload_past_the_bound(big_model: tuple[str, Path]) -> None:
    url, _ = big_model
    engine = make_engine(url)
    read: Callable[..., dict[str, reads.HistoryPage]] = reads.histories
    try:
        with engine.connect() as conn:
            page = read(conn, reads.ACTIVE, ["D-BIG"], EVENTS, None, None, BOUND)["D-BIG"]
            whole = read(conn, reads.ACTIVE, ["D-BIG"], EVENTS, None)["D-BIG"]
    finally:
        engine.dispose()
    served = [row["data"] for row in page.rows if row["data"] is not None]
    assert 1 <= len(served) <= BOUND // NOTE  # the small first event, and what fits
    assert all(row["data"] is None for row in page.rows[len(served):])
    assert page.data_bytes == whole.data_bytes > BOUND
    assert [row["data"] for row in whole.rows] == [
        {"orderId": "O-1", "shopId": "S-1"}] + [{"note": "x" * NOTE}] * (EVENTS - 1)
