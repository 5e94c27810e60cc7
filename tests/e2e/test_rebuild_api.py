"""Kafka -> projector -> GraphQL over HTTP while a rebuild runs and switches generations.

The API is started once and never restarted: it must answer every query issued
during the rebuild from the old generation, then from the new one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.api_support import live_server, settings_for
from tests.helpers import run_projector, wait_until
from tests.integration._rebuild_support import Stream, assert_serves, simulated

pytestmark = pytest.mark.e2e

QUERY = """
query {
  projectionStatus { generation eventsApplied deadLetters partitions { partition nextOffset lag } }
  deliveries(first: 500) { totalCount edges { node { id state eventCount } } }
}
"""


def test_the_api_keeps_answering_through_a_rebuild_and_then_serves_the_new_generation(
    migrated_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    import httpx

    stream = Stream(kafka_bootstrap, topic_factory(3), migrated_url, [])
    stream.produce(simulated(120, seed=12))
    run_projector(["run", "--until-caught-up"], stream.env)
    assert_serves(stream, 1)
    expected = stream.expected(1)

    settings = settings_for(migrated_url, kafka_bootstrap_servers=kafka_bootstrap,
                            kafka_topic=stream.topic)
    answers: list[dict[str, Any]] = []
    failures: list[str] = []
    stop = threading.Event()

    with live_server(settings) as (address, _app):
        url = f"http://{address}/graphql"

        def ask() -> dict[str, Any]:
            response = httpx.post(url, json={"query": QUERY}, timeout=30)
            if response.status_code != 200:
                failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
                return {}
            body = response.json()
            if body.get("errors"):
                failures.append(json.dumps(body["errors"])[:300])
                return {}
            return body["data"]  # type: ignore[no-any-return]

        def keep_asking() -> None:
            while not stop.is_set():
                data = ask()
                if data:
                    answers.append(data)

        first = ask()
        assert first["projectionStatus"]["generation"] == 1
        assert first["deliveries"]["totalCount"] == len(expected)

        reader = threading.Thread(target=keep_asking)
        reader.start()
        try:
            run_projector(["rebuild", "--batch-size", "25"], stream.env)
            wait_until(lambda: any(a["projectionStatus"]["generation"] == 2 for a in answers[-3:]),
                       timeout=30, message="the API to serve generation 2")
        finally:
            stop.set()
            reader.join(timeout=60)
        after = ask()

    assert not failures, failures[:3]
    generations_seen = [a["projectionStatus"]["generation"] for a in answers]
    assert generations_seen[0] == 1 and generations_seen[-1] == 2
    assert sorted(set(generations_seen)) == [1, 2]
    assert generations_seen == sorted(generations_seen), "once switched, never back"
    for answer in answers:  # every answer, old generation or new, is the whole model
        assert answer["deliveries"]["totalCount"] == len(expected)
    assert after["projectionStatus"]["generation"] == 2
    states = {e["node"]["id"]: e["node"]["state"] for e in after["deliveries"]["edges"]}
    assert states == {d: row["state"] for d, row in expected.items()}
    assert after["projectionStatus"]["eventsApplied"] == first["projectionStatus"]["eventsApplied"]
