"""The delivery core's side of the relay: a transactional outbox in PostgreSQL.

A delivery core keeps its own state (``deliveries_core``) and, in the same database
transaction, appends the event that describes the change to ``outbox``. Debezium's
PostgreSQL connector reads committed outbox inserts from the logical log and its
outbox event router publishes them to Kafka (services/connect/outbox-connector.json):
key = ``aggregateid`` (the delivery id), headers ``id`` and ``eventType``, value = the
``payload`` column (the event envelope of the contract, section Events). A transaction that rolls
back never reaches the log, so never reaches Kafka.

``projector simulate --to-outbox URL`` plays that core with the simulated stream.

Event ids: the outbox's ``id`` is a uuid (Debezium's convention), while our event ids
are any string of up to 128 characters. A UUID event id is used as is; any other id
is mapped to a name-based UUID (uuid5 of the id in ``EVENT_ID_NAMESPACE``). The
payload always carries the envelope's own ``eventId``, which the projector prefers to
the ``id`` header, so the idempotency key is the producer's id in every case.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from producer.errors import ProducerError
from schema.events import Event, EventParseError, parse_message
from schema.fold import fold

AGGREGATE_TYPE: Final = "Delivery"
PAYLOAD_TYPES: Final = ("jsonb", "text")
# uuid5 namespace for event ids that are not UUIDs (fixed: the same id always maps to
# the same outbox id)
EVENT_ID_NAMESPACE: Final = uuid.UUID("5b6f4d1e-2a57-4c0e-9a43-7d0f3c1b8e21")

DDL_HEADER: Final = """\
-- The delivery core's tables: its current state and its transactional outbox,
-- relayed to Kafka by Debezium's outbox event router
-- (services/connect/outbox-connector.json). Generated from producer/outbox.py
-- (outbox_ddl); tests/unit/test_outbox.py keeps this file equal to it.
-- payload may also be text: `projector simulate --to-outbox URL --outbox-payload text`.
"""


def outbox_ddl(payload_type: str = "jsonb") -> str:
    """The tables, idempotent; ``payload_type`` is ``jsonb`` or ``text``."""
    if payload_type not in PAYLOAD_TYPES:
        raise ProducerError(f"outbox payload type must be one of {', '.join(PAYLOAD_TYPES)}")
    return DDL_HEADER + f"""
CREATE TABLE IF NOT EXISTS deliveries_core (
    delivery_id   varchar(128) PRIMARY KEY,
    state         varchar(32)  NOT NULL,
    rider_id      varchar(128),
    last_event_id varchar(128) NOT NULL,
    updated_at    timestamptz  NOT NULL
);

CREATE TABLE IF NOT EXISTS outbox (
    id            uuid         PRIMARY KEY,
    aggregatetype varchar(255) NOT NULL,
    aggregateid   varchar(255) NOT NULL,
    type          varchar(255) NOT NULL,
    payload       {payload_type},
    created_at    timestamptz  NOT NULL DEFAULT now()
);
"""


def outbox_id(event_id: str) -> uuid.UUID:
    """The outbox row id of an event id (see the module's docstring)."""
    try:
        return uuid.UUID(event_id)
    except ValueError:
        return uuid.uuid5(EVENT_ID_NAMESPACE, event_id)


def engine_for(url: str) -> Engine:
    """An engine on the core's PostgreSQL; ``postgresql://`` URLs use psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ProducerError(f"--to-outbox {url!r} is not a database URL") from None
    if parsed.get_backend_name() != "postgresql":
        raise ProducerError("--to-outbox needs a PostgreSQL URL (the outbox is relayed "
                             "by Debezium from PostgreSQL's logical log)")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True)


def create_tables(engine: Engine, payload_type: str = "jsonb") -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(outbox_ddl(payload_type))


def payload_column_type(conn: Connection) -> str:
    found = conn.execute(text(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'outbox' "
        "AND column_name = 'payload'"
    )).scalar_one_or_none()
    if found is None:
        raise ProducerError("there is no outbox table (see sql/outbox.sql)")
    return "jsonb" if found == "jsonb" else "text"


def insert_outbox(conn: Connection, event: Mapping[str, Any], payload_type: str) -> uuid.UUID:
    """Append ``event`` (a CONTRACT envelope) to the outbox, in the caller's transaction."""
    row_id = outbox_id(str(event["eventId"]))
    payload = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    value = "CAST(:payload AS jsonb)" if payload_type == "jsonb" else ":payload"
    conn.execute(
        text("INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) "
             f"VALUES (:id, :aggregatetype, :aggregateid, :type, {value})"),
        {"id": row_id, "aggregatetype": AGGREGATE_TYPE,
         "aggregateid": str(event["deliveryId"]), "type": str(event["eventType"]),
         "payload": payload},
    )
    return row_id


@dataclass
class Core:
    """The core's state of each delivery: the fold of its events so far (a late event
    folds the delivery's events again, in the contract's order)."""

    events: dict[str, list[Event]] = field(default_factory=dict)

    def change(self, conn: Connection, event: Event) -> None:
        known = self.events.setdefault(event.delivery_id, [])
        known.append(event)
        row = fold(known)
        assert row is not None
        conn.execute(
            text("INSERT INTO deliveries_core AS d "
                 "(delivery_id, state, rider_id, last_event_id, updated_at) "
                 "VALUES (:id, :state, :rider, :event, now()) "
                 "ON CONFLICT (delivery_id) DO UPDATE SET state = EXCLUDED.state, "
                 "rider_id = EXCLUDED.rider_id, last_event_id = EXCLUDED.last_event_id, "
                 "updated_at = EXCLUDED.updated_at"),
            {"id": row.delivery_id, "state": row.state.value, "rider": row.rider_id,
             "event": event.event_id},
        )


@dataclass(frozen=True)
class OutboxReport:
    written: int  # transactions committed, one event each
    skipped: int  # copies of an event id already written (the core writes an event once)


def write_stream(
    engine: Engine,
    stream: Iterable[Mapping[str, Any]],
    delete_after_insert: bool = False,
    on_commit: Callable[[int], None] | None = None,
) -> OutboxReport:
    """Write each event of ``stream`` as the core would: one transaction that changes
    ``deliveries_core`` and appends the event to ``outbox`` (and, with
    ``delete_after_insert``, deletes the row again: Debezium reads the insert from the
    log, so the table stays empty). Repeated event ids are written once: redelivery is
    the relay's business, not the core's. ``on_commit(n)`` is called after the n-th."""
    core = Core()
    seen: set[str] = set()
    written = skipped = 0
    try:
        with engine.connect() as conn:
            payload_type = payload_column_type(conn)
            conn.rollback()
            for event in stream:
                event_id = str(event["eventId"])
                if event_id in seen:
                    skipped += 1
                    continue
                seen.add(event_id)
                try:
                    parsed = parse_message(json.dumps(event).encode())
                except EventParseError as exc:
                    raise ProducerError(f"event {event_id}: {exc}") from exc
                with conn.begin():
                    core.change(conn, parsed)
                    row_id = insert_outbox(conn, event, payload_type)
                    if delete_after_insert:
                        conn.execute(text("DELETE FROM outbox WHERE id = :id"), {"id": row_id})
                written += 1
                if on_commit is not None:
                    on_commit(written)
    except SQLAlchemyError as exc:
        raise ProducerError(f"writing the outbox failed: {exc.__class__.__name__}: "
                             f"{str(exc).splitlines()[0]}") from exc
    return OutboxReport(written=written, skipped=skipped)


def simulate_to_outbox(url: str, stream: list[dict[str, Any]], deliveries: int,
                       payload_type: str = "jsonb", delete_after_insert: bool = False) -> int:
    """``projector simulate --to-outbox URL``: the tables when missing, then the stream."""
    engine = engine_for(url)
    try:
        try:
            create_tables(engine, payload_type)
        except SQLAlchemyError as exc:
            raise ProducerError(f"cannot create the outbox tables: "
                                 f"{str(exc).splitlines()[0]}") from exc
        report = write_stream(engine, stream, delete_after_insert)
    finally:
        engine.dispose()
    print(f"wrote {report.written} events of {deliveries} deliveries to the outbox at "
          f"{engine.url.render_as_string(hide_password=True)}, one transaction each"
          + (f" ({report.skipped} repeated copies in the stream not written again)"
             if report.skipped else "")
          + ("; rows deleted in the same transaction" if delete_after_insert else ""),
          flush=True)
    return 0
