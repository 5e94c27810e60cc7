"""One response, one snapshot: while the projector commits, every answer agrees with itself."""

from __future__ import annotations

import threading

import pytest

from projector.sources.base import SourceMessage, TopicPartition
from projector.store import Claim, SqlStore
from schema.db import make_engine
from tests.api_support import client_for, data_of, gql, settings_for
from tests.helpers import encode, make_event, prepared

pytestmark = pytest.mark.integration

QUERY = """{ delivery(id: "D-1") { eventCount history(first: 500) { totalCount edges { cursor } } }
             deliveries(first: 500) { totalCount edges { cursor } } }"""


def test_a_response_never_mixes_two_moments_of_the_read_model(migrated_url: str) -> None:
    tp = TopicPartition("consistency", 0)
    engine = make_engine(migrated_url)
    store = SqlStore(engine)
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        claim = store.claim(1, tp)
        for n in range(400):
            if stop.is_set():
                return
            events = [make_event("DeliveryNoted", "D-1", f"2026-11-25T10:{n // 60:02d}:{n % 60:02d}Z",
                                 event_id=f"c-{n:04d}"),
                      make_event("DeliveryCreated", f"D-x{n:04d}", "2026-11-25T09:00:00Z",
                                 event_id=f"x-{n:04d}")]
            messages = [SourceMessage(tp.topic, 0, 2 * n + i, None, encode(e)) for i, e in enumerate(events)]
            store.apply_batch(1, prepared(messages), {tp: claim})
            claim = Claim(claim.epoch, 2 * n + 2)
            written.append(n)

    thread = threading.Thread(target=writer)
    thread.start()
    answers = 0
    try:
        with client_for(settings_for(migrated_url)) as client:
            while thread.is_alive() or answers < 5:
                data = data_of(gql(client, QUERY))
                answers += 1
                delivery = data["delivery"]
                if delivery is not None:
                    assert delivery["eventCount"] == delivery["history"]["totalCount"] \
                        == len(delivery["history"]["edges"])
                page = data["deliveries"]
                assert page["totalCount"] == len(page["edges"])
                if answers > 2000:
                    break
    finally:
        stop.set()
        thread.join(timeout=60)
        engine.dispose()
    assert len(written) == 400, "the writer did not finish"
    assert answers >= 5
