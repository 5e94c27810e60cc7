"""``deliveryUpdated`` over graphql-transport-ws against a real uvicorn, and GraphQL over
HTTP after producing to Kafka: SQLite (polling) and PostgreSQL (LISTEN/NOTIFY)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.api_support import copy_stream, live_server, project, settings_for
from tests.helpers import make_event, projector_env, run_projector, unique, wait_until

pytestmark = pytest.mark.e2e

TOKEN = "sub-token"
SUBSCRIPTION = """subscription Watch($id: ID!) { deliveryUpdated(id: $id) {
  id state riderId eventCount lastEventAt history(first: 10) { totalCount } } }"""


def append(path: Path, *events: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        for e in events:
            fh.write(json.dumps(e, ensure_ascii=False) + "\n")


def open_subscription(base: str, delivery_id: str) -> ClientConnection:
    ws = connect(f"ws://{base}/graphql", subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                 additional_headers={"Authorization": f"Bearer {TOKEN}"}, open_timeout=10)
    ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    assert json.loads(ws.recv(timeout=10)) == {"type": "connection_ack"}
    ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
        "query": SUBSCRIPTION, "variables": {"id": delivery_id}}}))
    return ws


def next_payload(ws: ClientConnection, timeout: float = 30) -> dict[str, Any]:
    message = json.loads(ws.recv(timeout=timeout))
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    data: dict[str, Any] = message["payload"]["data"]["deliveryUpdated"]
    return data


def test_a_subscriber_receives_each_committed_change(db_url: str, tmp_path: Path) -> None:
    stream = copy_stream("api_happy.jsonl", tmp_path)
    project(db_url, stream)
    env = projector_env(db_url, source=str(stream))
    settings = settings_for(db_url, stream, tokens=(TOKEN,))
    with live_server(settings) as (base, app):
        feed = app.state.services.feed
        ws = open_subscription(base, "D-1005")
        try:
            wait_until(lambda: feed.subscriber_count == 1, timeout=10, message="the subscription")
            if db_url.startswith("postgresql"):
                wait_until(lambda: feed.listening, timeout=10, message="LISTEN")
            # a change to another delivery must not wake D-1005's subscriber with a push
            append(stream, make_event("DeliveryEtaChanged", "D-1001", "2026-11-25T13:00:00Z",
                                      event_id="s-000"))
            run_projector(["run", "--until-caught-up"], env)
            append(stream, make_event("DeliveryRiderAssigned", "D-1005", "2026-11-25T03:05:00Z",
                                      event_id="s-001", data={"riderId": "R-9"}))
            run_projector(["run", "--until-caught-up"], env)
            first = next_payload(ws)
            assert first == {"id": "D-1005", "state": "ASSIGNED", "riderId": "R-9",
                             "eventCount": 2, "lastEventAt": "2026-11-25T03:05:00+00:00",
                             "history": {"totalCount": 2}}
            append(stream, make_event("DeliveryPickedUp", "D-1005", "2026-11-25T03:20:00Z",
                                      event_id="s-002"))
            run_projector(["run", "--until-caught-up"], env)
            second = next_payload(ws)
            assert (second["state"], second["eventCount"]) == ("PICKED_UP", 3)
            ws.send(json.dumps({"id": "1", "type": "complete"}))
            wait_until(lambda: feed.subscriber_count == 0, timeout=10, message="unsubscribe")
        finally:
            ws.close()


def test_a_subscription_to_an_unseen_delivery_fires_when_it_appears(db_url: str,
                                                                    tmp_path: Path) -> None:
    stream = copy_stream("api_happy.jsonl", tmp_path)
    project(db_url, stream)
    env = projector_env(db_url, source=str(stream))
    with live_server(settings_for(db_url, stream, tokens=(TOKEN,))) as (base, app):
        ws = open_subscription(base, "D-NEW")
        try:
            wait_until(lambda: app.state.services.feed.subscriber_count == 1, timeout=10)
            append(stream, make_event("배달생성", "D-NEW", "2026-11-25T04:00:00Z",
                                      event_id="s-new", data={"orderId": "O-N", "shopId": "S-N"}))
            run_projector(["run", "--until-caught-up"], env)
            assert next_payload(ws)["state"] == "CREATED"
        finally:
            ws.close()


def test_a_websocket_without_a_token_is_closed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rm.db'}"
    project(url, copy_stream("api_happy.jsonl", tmp_path))
    with live_server(settings_for(url, tokens=(TOKEN,))) as (base, _app):
        with connect(f"ws://{base}/graphql", subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                     open_timeout=10) as ws:
            ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            with pytest.raises(Exception) as closed:
                ws.recv(timeout=10)
            assert "4403" in str(closed.value)


def test_kafka_to_graphql_over_http(pg_url: str, kafka_bootstrap: str,
                                    topic_factory: Any) -> None:
    """Produce to Kafka, project, query over HTTP with a token; lag comes from the broker."""
    from kafka import KafkaProducer

    topic = topic_factory(3)
    lines = (Path(__file__).parent.parent / "streams" / "api_happy.jsonl").read_text().splitlines()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for line in lines:
        producer.send(topic, key=json.loads(line)["deliveryId"].encode(), value=line.encode())
    producer.flush(timeout=30)
    producer.close()
    env = projector_env(pg_url, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_TOPIC=topic,
                        KAFKA_GROUP_ID=unique("qa-group"))
    run_projector(["migrate"], env)
    run_projector(["run", "--until-caught-up"], env)
    settings = settings_for(pg_url, "kafka", kafka_bootstrap_servers=kafka_bootstrap,
                            kafka_topic=topic, tokens=(TOKEN,), end_offsets_timeout_seconds=5.0)
    with live_server(settings) as (base, _app):
        query = {"query": "{ deliveries(first: 2) { totalCount edges { node { id } } } "
                          "projectionStatus { partitions { topic partition nextOffset endOffset "
                          "lag } eventsApplied } }"}
        assert httpx.post(f"http://{base}/graphql", json=query, timeout=30).status_code == 401
        response = httpx.post(f"http://{base}/graphql", json=query, timeout=30,
                              headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        data = response.json()["data"]
    assert data["deliveries"]["totalCount"] == 7
    assert [e["node"]["id"] for e in data["deliveries"]["edges"]] == ["D-1005", "D-1007"]
    status = data["projectionStatus"]
    assert status["eventsApplied"] == 23
    partitions = status["partitions"]
    assert [p["partition"] for p in partitions] == [0, 1, 2]
    assert all(p["topic"] == topic and p["lag"] == 0 for p in partitions), partitions
    assert sum(p["endOffset"] for p in partitions) == 23


def test_queries_on_one_websocket_each_read_the_model_as_it_is_now(db_url: str,
                                                                   tmp_path: Path) -> None:
    """Each operation on a long-lived socket gets its own session: no stale rows or generation."""
    stream = copy_stream("api_happy.jsonl", tmp_path)
    project(db_url, stream)
    env = projector_env(db_url, source=str(stream))
    settings = settings_for(db_url, stream, tokens=(TOKEN,))
    query = '{ delivery(id: "NEW-1") { state eventCount } projectionStatus { eventsApplied } }'
    with live_server(settings) as (base, _app):
        ws = connect(f"ws://{base}/graphql", subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                     additional_headers={"Authorization": f"Bearer {TOKEN}"}, open_timeout=10)
        try:
            ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(ws.recv(timeout=10)) == {"type": "connection_ack"}

            def ask(op: str) -> dict[str, Any]:
                ws.send(json.dumps({"id": op, "type": "subscribe", "payload": {"query": query}}))
                message = json.loads(ws.recv(timeout=30))
                assert message["type"] == "next" and "errors" not in message["payload"], message
                assert json.loads(ws.recv(timeout=30)) == {"id": op, "type": "complete"}
                return message["payload"]["data"]  # type: ignore[no-any-return]

            before = ask("q1")
            assert before["delivery"] is None
            append(stream, make_event("DeliveryCreated", "NEW-1", "2026-11-25T05:00:00Z",
                                      event_id="ws-1"))
            run_projector(["run", "--until-caught-up"], env)
            after = ask("q2")
            assert after["delivery"] == {"state": "CREATED", "eventCount": 1}
            assert after["projectionStatus"]["eventsApplied"] == \
                before["projectionStatus"]["eventsApplied"] + 1
        finally:
            ws.close()
