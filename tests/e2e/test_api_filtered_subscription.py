"""``deliveriesUpdated(filter)`` over graphql-transport-ws against a real uvicorn: SQLite
(the history's applied_at, polled) and PostgreSQL (the notifications' ids).

It is what keeps the back-office list live: each change that matches the filter is
pushed once, a new delivery included; a change that does not match is not pushed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.api_support import copy_stream, live_server, project, settings_for
from tests.helpers import make_event, projector_env, run_projector, wait_until

pytestmark = pytest.mark.e2e

SUBSCRIPTION = """subscription Rows($filter: DeliveryFilter) {
  deliveriesUpdated(filter: $filter) { id state eventCount history(first: 10) { totalCount } } }"""


def append(path: Path, *events: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        for e in events:
            fh.write(json.dumps(e, ensure_ascii=False) + "\n")


def subscribe(base: str, variables: dict[str, Any]) -> ClientConnection:
    ws = connect(f"ws://{base}/graphql", subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                 open_timeout=10)
    ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    assert json.loads(ws.recv(timeout=10)) == {"type": "connection_ack"}
    ws.send(json.dumps({"id": "rows", "type": "subscribe", "payload": {
        "query": SUBSCRIPTION, "variables": variables}}))
    return ws


def pushed(ws: ClientConnection, timeout: float = 30) -> dict[str, Any]:
    message = json.loads(ws.recv(timeout=timeout))
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    data: dict[str, Any] = message["payload"]["data"]["deliveriesUpdated"]
    return data


def test_changes_that_match_the_filter_are_pushed_once(db_url: str, tmp_path: Path) -> None:
    stream = copy_stream("api_happy.jsonl", tmp_path)
    project(db_url, stream)
    env = projector_env(db_url, source=str(stream))
    with live_server(settings_for(db_url, stream)) as (base, app):
        feed = app.state.services.feed
        ws = subscribe(base, {"filter": {"states": ["PICKED_UP"]}})
        try:
            wait_until(lambda: feed.subscriber_count == 1, timeout=10, message="the subscription")
            if db_url.startswith("postgresql"):
                wait_until(lambda: feed.listening, timeout=10, message="LISTEN")
            # Not in the filter: a new delivery that is only created.
            append(stream, make_event("DeliveryCreated", "D-F1", "2026-11-26T10:00:00Z",
                                      event_id="f-001", sequence=1))
            run_projector(["run", "--until-caught-up"], env)
            # In it: a new delivery created and picked up in one batch.
            append(stream,
                   make_event("DeliveryCreated", "D-F2", "2026-11-26T10:01:00Z",
                              event_id="f-002", sequence=1),
                   make_event("DeliveryPickedUp", "D-F2", "2026-11-26T10:05:00Z",
                              event_id="f-003", sequence=2))
            run_projector(["run", "--until-caught-up"], env)
            first = pushed(ws)
            assert first == {"id": "D-F2", "state": "PICKED_UP", "eventCount": 2,
                             "history": {"totalCount": 2}}
            # Leaves the filter (not pushed), then another one enters it (pushed).
            append(stream, make_event("DeliveryCompleted", "D-F2", "2026-11-26T10:20:00Z",
                                      event_id="f-004", sequence=3))
            run_projector(["run", "--until-caught-up"], env)
            append(stream, make_event("DeliveryPickedUp", "D-F1", "2026-11-26T10:30:00Z",
                                      event_id="f-005", sequence=2))
            run_projector(["run", "--until-caught-up"], env)
            second = pushed(ws)
            assert (second["id"], second["state"], second["eventCount"]) == \
                ("D-F1", "PICKED_UP", 2)
            # Nothing else arrives: each change once, and only the matching ones.
            with pytest.raises(TimeoutError):
                ws.recv(timeout=2)
            ws.send(json.dumps({"id": "rows", "type": "complete"}))
            wait_until(lambda: feed.subscriber_count == 0, timeout=10, message="unsubscribe")
        finally:
            ws.close()
