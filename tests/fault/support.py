"""What every fault-injection scenario checks at the end: the read model equals the
pure fold of the whole log, computed here, table for table.

``deliveries``: one row per delivery, the fold of its distinct valid events.
``delivery_events``: one row per distinct valid event id, with the values of the
first copy read (its type, delivery, time, sequence and data); where it was read
(topic, partition, offset) and when it was applied depend on the run and are not
compared, except that the stored position must hold a copy of that event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from projector.store import row_to_db
from projector.store.rows import load_json
from schema.db import make_engine
from schema.events import Event, EventParseError, parse_message
from schema.fold import fold
from schema.tables import deliveries, delivery_events


@dataclass(frozen=True)
class LogRecord:
    """One record of the source log as the test published it."""

    value: bytes
    key: bytes | None = None


@dataclass(frozen=True)
class Verified:
    """What a scenario verified: printed by the scenario, kept by the README."""

    records: int
    events: int
    deliveries: int
    invalid: int

    def line(self) -> str:
        return (f"verified: {self.records} records read, {self.events} distinct events, "
                f"{self.deliveries} deliveries, {self.invalid} invalid records; "
                "deliveries and history equal the pure fold of the log")


def fold_of_log(records: Iterable[LogRecord]) -> tuple[dict[str, list[Event]], int, int]:
    """The log's distinct valid events per delivery (first copy of each event id wins),
    how many records were read, and how many could not be parsed."""
    by_delivery: dict[str, list[Event]] = {}
    seen: set[str] = set()
    read = invalid = 0
    for record in records:
        read += 1
        try:
            event = parse_message(record.value, record.key)
        except EventParseError:
            invalid += 1
            continue
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        by_delivery.setdefault(event.delivery_id, []).append(event)
    return by_delivery, read, invalid


def _table(db_url: str, generation: int | None) -> tuple[dict[str, dict[str, Any]],
                                                         dict[str, dict[str, Any]]]:
    engine = make_engine(db_url, writer=False)
    try:
        with engine.connect() as conn:
            rows_q = select(deliveries)
            hist_q = select(delivery_events)
            if generation is not None:
                rows_q = rows_q.where(deliveries.c.generation == generation)
                hist_q = hist_q.where(delivery_events.c.generation == generation)
            rows = {r.delivery_id: dict(r._mapping) for r in conn.execute(rows_q)}
            history = {r.event_id: dict(r._mapping) for r in conn.execute(hist_q)}
    finally:
        engine.dispose()
    return rows, history


def assert_read_model_equals_fold(db_url: str, records: Sequence[LogRecord],
                                  generation: int = 1) -> Verified:
    """Fail with the first differences unless deliveries and history equal the fold."""
    by_delivery, read, invalid = fold_of_log(records)
    rows, history = _table(db_url, generation)

    expected_rows = {}
    for delivery_id, events in by_delivery.items():
        row = fold(events)
        assert row is not None
        expected_rows[delivery_id] = row_to_db(generation, row)
    missing = sorted(expected_rows.keys() - rows.keys())
    extra = sorted(rows.keys() - expected_rows.keys())
    wrong = sorted(d for d in expected_rows.keys() & rows.keys()
                   if rows[d] != expected_rows[d])
    assert not (missing or extra or wrong), (
        f"deliveries differ from the fold: {len(missing)} missing {missing[:5]}, "
        f"{len(extra)} extra {extra[:5]}, {len(wrong)} wrong "
        + "; ".join(f"{d}: table {rows[d]} != fold {expected_rows[d]}" for d in wrong[:3])
    )

    expected_history = {
        e.event_id: e for events in by_delivery.values() for e in events
    }
    missing = sorted(expected_history.keys() - history.keys())
    extra = sorted(history.keys() - expected_history.keys())
    assert not (missing or extra), (
        f"history differs from the log's distinct events: {len(missing)} missing "
        f"{missing[:5]}, {len(extra)} extra {extra[:5]}"
    )
    for event_id, event in expected_history.items():
        stored = history[event_id]
        data = stored["data"]
        if isinstance(data, str):
            data = load_json(data)
        got = (stored["delivery_id"], stored["event_type"], stored["occurred_at"],
               stored["sequence"], data)
        want = (event.delivery_id, event.event_type, event.occurred_at, event.sequence,
                event.data)
        assert got == want, f"history row {event_id}: table {got} != log {want}"

    return Verified(records=read, events=len(expected_history),
                    deliveries=len(expected_rows), invalid=invalid)
