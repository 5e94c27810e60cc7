"""A field error in ``lineage`` or ``transitions`` nulls only that field (issue #20).

Both lists are nullable: a delivery whose events arrived too far out of order to
trace (past ``MAX_REFOLD_STEPS``), or that holds more than ``FOLD_LIMIT`` events,
answers with that field null and one error whose path names it, while its row and
every other delivery of the same ``deliveries`` page answer whole. SQLite and
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from query_api.timeline import FOLD_LIMIT, MAX_REFOLD_STEPS
from tests.api_support import BACKENDS, client_for, gql, settings_for
from tests.helpers import create_pg_database, projector_env, run_projector, write_jsonl

pytestmark = pytest.mark.integration

PAGE = """{ deliveries(first: 10) { totalCount edges { node {
  id eventCount riderId lineage { field } transitions { to } } } } }"""


def _project(url: str, stream: Path, batch_size: int) -> None:
    env = projector_env(url, source=str(stream))
    run_projector(["migrate"], env)
    run_projector(["run", "--until-caught-up", "--batch-size", str(batch_size)], env)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fold_error_nulls_only_its_field_inside_a_page(backend: str, tmp_path: Path) -> None:
    drop: Callable[[], None] | None = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'rm.db'}"
    else:
        url, drop = create_pg_database()
    try:
        # 63 events in reverse order, one commit each: 2,016 steps to trace (> 2,000)
        reverse = write_jsonl(tmp_path / "reverse.jsonl", [
            {"eventId": f"rev-{i:03d}", "eventType": "DeliveryRiderAssigned",
             "deliveryId": "D-REVERSED",
             "occurrenceDateTime": f"2026-11-25T11:{i // 60:02d}:{i % 60:02d}Z",
             "data": {"riderId": f"R-{i}"}} for i in reversed(range(63))])
        _project(url, reverse, 1)
        others = write_jsonl(tmp_path / "others.jsonl", [
            *({"eventId": f"big-{i:04d}", "eventType": "DeliveryEtaChanged",
               "deliveryId": "D-BIG",
               "occurrenceDateTime": f"2026-11-25T09:{i // 60:02d}:{i % 60:02d}Z",
               "data": {"estimatedDeliveryAt": "2026-11-25T12:00:00Z"}}
              for i in range(FOLD_LIMIT + 1)),
            {"eventId": "fine-1", "eventType": "DeliveryCreated", "deliveryId": "D-FINE",
             "occurrenceDateTime": "2026-11-25T10:00:00Z",
             "data": {"orderId": "O", "shopId": "S"}},
        ])
        _project(url, others, 2000)
        with client_for(settings_for(url, others)) as client:
            result = gql(client, PAGE)
        page = result["data"]["deliveries"]
        assert page is not None and page["totalCount"] == 3
        nodes = {edge["node"]["id"]: edge["node"] for edge in page["edges"]}
        assert set(nodes) == {"D-REVERSED", "D-BIG", "D-FINE"}
        reversed_ = nodes["D-REVERSED"]
        assert (reversed_["riderId"], reversed_["eventCount"]) == ("R-62", 63)
        assert reversed_["transitions"] is None and {"field": "riderId"} in reversed_["lineage"]
        big = nodes["D-BIG"]
        assert big["eventCount"] == FOLD_LIMIT + 1
        assert big["lineage"] is None and big["transitions"] is None
        fine = nodes["D-FINE"]
        assert fine["lineage"] and fine["transitions"] is not None
        paths = sorted((e["path"][2], e["path"][-1]) for e in result["errors"])
        index = {edge["node"]["id"]: i for i, edge in enumerate(page["edges"])}
        assert paths == sorted([(index["D-REVERSED"], "transitions"),
                                (index["D-BIG"], "lineage"), (index["D-BIG"], "transitions")])
        messages = " ".join(e["message"] for e in result["errors"])
        assert f"more than {MAX_REFOLD_STEPS} fold steps" in messages
        assert f"more than {FOLD_LIMIT} events" in messages
    finally:
        if drop is not None:
            drop()
