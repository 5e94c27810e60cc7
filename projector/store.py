"""The SQL adapter of the read model: one batch, one transaction.

``SqlStore.apply_batch`` writes the offsets, the history rows, the current rows
and the dead letters of one batch in a single database transaction, and only if
this process still owns every partition in it (its ``owner_epoch`` is current)
and the generation it writes is still the one it was started for. Anything less
is rolled back whole, so a crash or a lost partition never leaves half a batch.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, and_, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from projector.errors import Fenced, GenerationChanged, StoreUnavailable
from projector.fold import DeliveryRow, State, apply, fold
from projector.sources.base import SourceMessage, TopicPartition
from schema.db import redacted
from schema.events import Event, EventParseError, make_event, parse_message
from schema.tables import (
    dead_letters,
    deliveries,
    delivery_events,
    generations,
    projection_offsets,
)

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "delivery_updated"


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Claim:
    """This process's hold on one partition of one generation."""

    epoch: int
    next_offset: int


@dataclass
class BatchResult:
    messages: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    refolded: int = 0
    changed: set[str] = field(default_factory=set)
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)


class ReadModelStore(Protocol):
    """What the projector loop needs from the read model."""

    def claim(self, generation: int, tp: TopicPartition, start: int = 0) -> Claim: ...

    def apply_batch(
        self,
        generation: int,
        messages: Sequence[SourceMessage],
        claims: Mapping[TopicPartition, Claim],
        *,
        require_status: str = "active",
    ) -> BatchResult: ...

    def offsets(self, generation: int) -> dict[TopicPartition, int]: ...

    def advance(
        self,
        generation: int,
        tp: TopicPartition,
        claim: Claim,
        offset: int,
        *,
        require_status: str = "active",
    ) -> None: ...

    def active_generation(self) -> int: ...


class SqlStore:
    def __init__(self, engine: Engine, source_tz: tzinfo = UTC) -> None:
        self.engine = engine
        self.source_tz = source_tz
        self.owner = owner_name()
        self._pg = engine.dialect.name == "postgresql"

    # -- generations ------------------------------------------------------------
    def active_generation(self) -> int:
        with self._connect() as conn:
            value = conn.execute(
                select(generations.c.generation).where(generations.c.status == "active")
            ).scalar()
        if value is None:
            raise StoreUnavailable("no active read-model generation; run `projector migrate`")
        return int(value)

    # -- offsets ----------------------------------------------------------------
    def claim(self, generation: int, tp: TopicPartition, start: int = 0) -> Claim:
        """Take ownership of a partition: bump its epoch, so an older owner is fenced."""
        with self._begin() as conn:
            # Two processes may claim a partition for the first time at once: the row
            # is created by whichever comes first, then both go through the lock.
            conn.execute(
                self._insert(projection_offsets)
                .values(
                    generation=generation,
                    topic=tp.topic,
                    partition=tp.partition,
                    next_offset=start,
                    owner_epoch=0,
                    updated_at=now(),
                )
                .on_conflict_do_nothing(index_elements=["generation", "topic", "partition"])
            )
            row = conn.execute(
                select(projection_offsets.c.next_offset, projection_offsets.c.owner_epoch)
                .where(self._offset_key(generation, tp))
                .with_for_update()
            ).one()
            epoch = int(row.owner_epoch) + 1
            conn.execute(
                update(projection_offsets)
                .where(self._offset_key(generation, tp))
                .values(owner_epoch=epoch, owner=self.owner, updated_at=now())
            )
            return Claim(epoch, int(row.next_offset))

    def offsets(self, generation: int) -> dict[TopicPartition, int]:
        """Where each partition of a generation reads next."""
        return self._per_partition(generation, projection_offsets.c.next_offset)

    def _per_partition(self, generation: int, column: Any) -> dict[TopicPartition, int]:
        with self._connect() as conn:
            rows = conn.execute(
                select(projection_offsets.c.topic, projection_offsets.c.partition, column).where(
                    projection_offsets.c.generation == generation
                )
            ).all()
        return {TopicPartition(r[0], r[1]): int(r[2]) for r in rows}

    def advance(
        self,
        generation: int,
        tp: TopicPartition,
        claim: Claim,
        offset: int,
        *,
        require_status: str = "active",
    ) -> None:
        """Move a claimed partition's offset forward over offsets without messages."""
        with self._begin() as conn:
            self._check_generation(conn, generation, require_status)
            self._move(conn, generation, tp, claim, offset)

    def _move(
        self, conn: Connection, generation: int, tp: TopicPartition, claim: Claim, offset: int
    ) -> None:
        """Set a claimed partition's next offset, only if ``claim`` still holds it exactly.

        The update also locks the offset row until the transaction ends; a claim whose
        epoch or offset moved on (another consumer took over) raises ``Fenced``.
        """
        moved = conn.execute(
            update(projection_offsets)
            .where(
                self._offset_key(generation, tp),
                projection_offsets.c.owner_epoch == claim.epoch,
                projection_offsets.c.next_offset == claim.next_offset,
            )
            .values(next_offset=offset, updated_at=now())
        ).rowcount
        if moved != 1:
            raise Fenced(f"{tp.topic}:{tp.partition} is owned by another consumer now")

    def set_offsets(self, generation: int, offsets: Mapping[TopicPartition, int]) -> None:
        """Set where a generation reads next (a rebuild's start); bumps every epoch."""
        with self._begin() as conn:
            for tp, offset in offsets.items():
                updated = conn.execute(
                    update(projection_offsets)
                    .where(self._offset_key(generation, tp))
                    .values(
                        next_offset=offset,
                        owner_epoch=projection_offsets.c.owner_epoch + 1,
                        owner=None,
                        updated_at=now(),
                    )
                ).rowcount
                if not updated:
                    conn.execute(
                        projection_offsets.insert().values(
                            generation=generation,
                            topic=tp.topic,
                            partition=tp.partition,
                            next_offset=offset,
                            owner_epoch=0,
                            updated_at=now(),
                        )
                    )

    # -- the batch --------------------------------------------------------------
    def apply_batch(
        self,
        generation: int,
        messages: Sequence[SourceMessage],
        claims: Mapping[TopicPartition, Claim],
        *,
        require_status: str = "active",
    ) -> BatchResult:
        """Apply one batch in one transaction; raises ``Fenced`` or ``GenerationChanged``.

        ``messages`` must continue each partition exactly at its claim's offset.
        """
        result = BatchResult(messages=len(messages))
        by_tp: dict[TopicPartition, list[SourceMessage]] = defaultdict(list)
        for message in messages:
            by_tp[message.tp].append(message)

        with self._begin() as conn:
            self._check_generation(conn, generation, require_status)
            # Fence first: this also locks the partitions' offset rows for the transaction.
            for tp in sorted(by_tp):
                next_offset = by_tp[tp][-1].offset + 1
                self._move(conn, generation, tp, claims[tp], next_offset)
                result.next_offsets[tp] = next_offset

            events: list[tuple[Event, SourceMessage]] = []
            for message in messages:
                try:
                    event = parse_message(
                        message.value, message.key, message.headers, self.source_tz
                    )
                except EventParseError as exc:
                    self._dead_letter(conn, generation, message, exc)
                    result.dead_letters += 1
                    continue
                events.append((event, message))

            self._apply_events(conn, generation, events, result, notify=require_status == "active")
        return result

    def apply_replayed(
        self, generation: int, message: SourceMessage, event: Event, dead_letter_id: int
    ) -> BatchResult:
        """Apply a dead letter that now parses, and mark it replayed, in one transaction."""
        result = BatchResult(messages=1)
        with self._begin() as conn:
            self._check_generation(conn, generation, "active")  # not into a retired one
            self._apply_events(conn, generation, [(event, message)], result, notify=True)
            conn.execute(
                update(dead_letters)
                .where(dead_letters.c.id == dead_letter_id)
                .values(status="replayed", replayed_at=now(), replayed_event_id=event.event_id)
            )
        return result

    def _apply_events(
        self,
        conn: Connection,
        generation: int,
        events: Sequence[tuple[Event, SourceMessage]],
        result: BatchResult,
        *,
        notify: bool,
    ) -> None:
        if self._pg and events:
            self._lock_deliveries(conn, {event.delivery_id for event, _ in events})
        new_events = self._insert_history(conn, generation, events)
        result.applied += len(new_events)
        result.duplicates += len(events) - len(new_events)
        if new_events:
            result.refolded += self._fold_into_rows(conn, generation, new_events)
            changed = {e.delivery_id for e in new_events}
            result.changed |= changed
            if self._pg and notify:
                self._notify(conn, generation, changed)

    def _lock_deliveries(self, conn: Connection, ids: set[str]) -> None:
        """Serialise writers of the same delivery (PostgreSQL; SQLite has one writer).

        Events of one delivery normally share a partition, and so a writer; but a
        producer without the delivery id as key would spread them, and two
        consumers must then not fold the same row from two stale reads. The locks
        are taken in one order, so two batches cannot deadlock on them.
        """
        conn.execute(
            text(
                "SELECT pg_advisory_xact_lock(h) FROM ("
                " SELECT hashtextextended(id, 0) AS h FROM unnest(CAST(:ids AS text[])) AS id"
                " ORDER BY h) AS ordered"
            ),
            {"ids": sorted(ids)},
        )

    def _check_generation(self, conn: Connection, generation: int, status: str) -> None:
        query = select(generations.c.status).where(generations.c.generation == generation)
        if self._pg:
            query = query.with_for_update(read=True)
        found = conn.execute(query).scalar()
        if found != status:
            raise GenerationChanged(f"generation {generation} is {found or 'gone'}, not {status}")

    def _dead_letter(
        self, conn: Connection, generation: int, message: SourceMessage, exc: EventParseError
    ) -> None:
        log.warning(
            "dead letter %s:%s@%s %s: %s",
            message.topic,
            message.partition,
            message.offset,
            exc.code.value,
            exc.reason,
        )
        values = dict(
            generation=generation,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            headers=[
                [_header_text(k.encode("utf-8", errors="surrogatepass")), _header_text(v)]
                for k, v in message.headers
            ],
            error_code=exc.code.value,
            reason=exc.reason,
            status="pending",
            created_at=now(),
        )
        conn.execute(self._insert(dead_letters).values(**values).on_conflict_do_nothing())

    def _insert_history(
        self, conn: Connection, generation: int, events: Sequence[tuple[Event, SourceMessage]]
    ) -> list[Event]:
        """Insert the events not seen before (by id); returns those, first copy winning."""
        if not events:
            return []
        first: dict[str, tuple[Event, SourceMessage]] = {}
        for event, message in events:
            first.setdefault(event.event_id, (event, message))
        applied_at = now()
        rows = [
            _history_row(generation, event, message, applied_at)
            for event, message in first.values()
        ]
        stmt = (
            self._insert(delivery_events)
            .on_conflict_do_nothing(index_elements=["generation", "event_id"])
            .returning(delivery_events.c.event_id)
        )
        inserted: set[str] = set()
        for chunk in _chunks(rows, 500):
            inserted.update(conn.execute(stmt, chunk).scalars())
        return [first[event_id][0] for event_id in first if event_id in inserted]

    def _fold_into_rows(self, conn: Connection, generation: int, new_events: list[Event]) -> int:
        by_delivery: dict[str, list[Event]] = defaultdict(list)
        for event in new_events:
            by_delivery[event.delivery_id].append(event)
        current = self._load_rows(conn, generation, list(by_delivery))
        refold: list[str] = []
        rows: list[DeliveryRow] = []
        for delivery_id, events in by_delivery.items():
            events.sort(key=lambda e: e.sort_key)
            row = current.get(delivery_id)
            if row is not None and events[0].sort_key < row.fold_key:
                refold.append(delivery_id)
                continue
            for event in events:
                row = apply(row, event)
            assert row is not None
            rows.append(row)
        for history in self._load_history(conn, generation, refold).values():
            row = fold(history)
            assert row is not None
            rows.append(row)
        self._upsert_rows(conn, generation, rows)
        return len(refold)

    def _load_rows(
        self, conn: Connection, generation: int, ids: Sequence[str]
    ) -> dict[str, DeliveryRow]:
        out: dict[str, DeliveryRow] = {}
        for chunk in _chunks(list(ids), 500):
            for r in conn.execute(
                select(deliveries).where(
                    deliveries.c.generation == generation, deliveries.c.delivery_id.in_(chunk)
                )
            ):
                out[r.delivery_id] = row_from_db(r._mapping)
        return out

    def _load_history(
        self, conn: Connection, generation: int, ids: Sequence[str]
    ) -> dict[str, list[Event]]:
        out: dict[str, list[Event]] = defaultdict(list)
        for chunk in _chunks(list(ids), 200):
            for r in conn.execute(
                select(delivery_events).where(
                    delivery_events.c.generation == generation,
                    delivery_events.c.delivery_id.in_(chunk),
                )
            ):
                out[r.delivery_id].append(self.event_from_db(r._mapping))
        return out

    def event_from_db(self, r: Mapping[Any, Any]) -> Event:
        """An event of the history; its ETA as read when it was first applied."""
        event = make_event(
            r["event_id"],
            r["event_type"],
            r["delivery_id"],
            r["occurred_at"],
            r["sequence"],
            r["data"],
            self.source_tz,
        )
        if event.estimated_delivery_at is None:
            return event
        return replace(event, estimated_delivery_at=r["estimated_delivery_at"])

    def _upsert_rows(self, conn: Connection, generation: int, rows: Sequence[DeliveryRow]) -> None:
        if not rows:
            return
        values = [row_to_db(generation, row) for row in rows]
        stmt = self._insert(deliveries)
        stmt = stmt.on_conflict_do_update(
            index_elements=["generation", "delivery_id"],
            set_={c: stmt.excluded[c] for c in values[0] if c not in ("generation", "delivery_id")},
        )
        for chunk in _chunks(values, 500):
            conn.execute(stmt, chunk)

    def _notify(self, conn: Connection, generation: int, ids: Iterable[str]) -> None:
        """PostgreSQL NOTIFY, delivered to listeners only if this transaction commits."""
        batch: list[str] = []
        size = 0
        for delivery_id in sorted(ids):
            if size + len(delivery_id) > 7000:
                self._send(conn, generation, batch)
                batch, size = [], 0
            batch.append(delivery_id)
            size += len(delivery_id) + 4
        if batch:
            self._send(conn, generation, batch)

    def _send(self, conn: Connection, generation: int, ids: list[str]) -> None:
        payload = json.dumps({"generation": generation, "ids": ids}, ensure_ascii=False)
        conn.execute(select(func.pg_notify(NOTIFY_CHANNEL, payload)))

    # -- repair (rebuild --in-place) ----------------------------------------------
    def refold(
        self,
        generation: int,
        delivery_ids: Iterable[str],
        *,
        require_status: str = "active",
        chunk: int = 500,
    ) -> int:
        """Recompute the current rows of these deliveries from their history; returns how many.

        ``apply_batch`` skips an event id it already holds and refolds nothing, so a
        replay cannot by itself restore a row that was lost while its history stayed.
        Each chunk is one transaction that first locks the generation's row (FOR
        UPDATE on PostgreSQL; SQLite writers are serial): the live projector's batches
        take FOR SHARE on it, so none interleaves between reading a history and
        writing its row.
        """
        ids = sorted(set(delivery_ids))
        done = 0
        for part in _chunks(ids, chunk):
            with self._begin() as conn:
                query = select(generations.c.status).where(generations.c.generation == generation)
                if self._pg:
                    query = query.with_for_update()
                found = conn.execute(query).scalar()
                if found != require_status:
                    raise GenerationChanged(
                        f"generation {generation} is {found or 'gone'}, not {require_status}"
                    )
                if self._pg:
                    self._lock_deliveries(conn, set(part))
                rows = []
                for history in self._load_history(conn, generation, part).values():
                    row = fold(history)
                    if row is not None:
                        rows.append(row)
                self._upsert_rows(conn, generation, rows)
                done += len(rows)
        return done

    def deliveries_replayed(
        self, generation: int, starts: Mapping[TopicPartition, int]
    ) -> set[str]:
        """Deliveries with a history row at or after ``starts`` (per partition)."""
        with self._connect() as conn:
            return deliveries_since(conn, generation, starts)

    def deliveries_without_row(self, generation: int) -> set[str]:
        """Deliveries that have history but no current row (a lost row)."""
        with self._connect() as conn:
            return set(
                conn.execute(
                    select(delivery_events.c.delivery_id)
                    .distinct()
                    .where(
                        delivery_events.c.generation == generation,
                        ~select(deliveries.c.delivery_id)
                        .where(
                            deliveries.c.generation == generation,
                            deliveries.c.delivery_id == delivery_events.c.delivery_id,
                        )
                        .exists(),
                    )
                ).scalars()
            )

    def epochs(self, generation: int) -> dict[TopicPartition, int]:
        """The current owner epoch of each partition of a generation."""
        return self._per_partition(generation, projection_offsets.c.owner_epoch)

    # -- plumbing ---------------------------------------------------------------
    def _insert(self, table: Any) -> Any:
        return (postgresql if self._pg else sqlite).insert(table)

    @staticmethod
    def _offset_key(generation: int, tp: TopicPartition) -> Any:
        return and_(
            projection_offsets.c.generation == generation,
            projection_offsets.c.topic == tp.topic,
            projection_offsets.c.partition == tp.partition,
        )

    def _begin(self) -> Any:
        return _Guard(self.engine, begin=True)

    def _connect(self) -> Any:
        return _Guard(self.engine, begin=False)


class _Guard:
    """A connection (or transaction) whose connection failures become ``StoreUnavailable``."""

    def __init__(self, engine: Engine, *, begin: bool) -> None:
        self.engine = engine
        self.begin = begin
        self._cm: Any = None

    def __enter__(self) -> Connection:
        try:
            self._cm = self.engine.begin() if self.begin else self.engine.connect()
            return self._cm.__enter__()  # type: ignore[no-any-return]
        except (OperationalError, InterfaceError) as exc:
            raise unavailable(self.engine, exc) from exc

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._cm.__exit__(exc_type, exc, tb)
        except (OperationalError, InterfaceError) as failure:
            raise unavailable(self.engine, failure) from failure
        if isinstance(exc, (OperationalError, InterfaceError)) and _is_disconnect(exc):
            raise unavailable(self.engine, exc) from exc


def _is_disconnect(exc: DBAPIError) -> bool:
    """A lost or refused connection, as opposed to a bad statement or a lock timeout."""
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower()
    return any(
        word in text
        for word in (
            "connection",
            "server closed",
            "terminating",
            "could not connect",
            "timeout",
            "locked",
            "deadlock",
            "could not serialize",
        )
    )


def unavailable(engine: Engine, exc: DBAPIError) -> StoreUnavailable:
    detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
    return StoreUnavailable(f"database {redacted(str(engine.url))} is unavailable: {detail}")


def _history_row(
    generation: int, event: Event, message: SourceMessage, applied_at: datetime
) -> dict[str, Any]:
    return dict(
        generation=generation,
        event_id=event.event_id,
        delivery_id=event.delivery_id,
        event_type=event.event_type,
        known=1 if event.known else 0,
        occurred_at=event.occurred_at,
        sequence=event.sequence,
        data=dict(event.data),
        estimated_delivery_at=event.estimated_delivery_at,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        applied_at=applied_at,
    )


def deliveries_since(
    conn: Connection, generation: int, starts: Mapping[TopicPartition, int]
) -> set[str]:
    """Deliveries with a history row at or after ``starts`` (per partition)."""
    out: set[str] = set()
    for tp, start in starts.items():
        out.update(
            conn.execute(
                select(delivery_events.c.delivery_id)
                .distinct()
                .where(
                    delivery_events.c.generation == generation,
                    delivery_events.c.topic == tp.topic,
                    delivery_events.c.partition == tp.partition,
                    delivery_events.c.offset >= start,
                )
            ).scalars()
        )
    return out


def row_to_db(generation: int, row: DeliveryRow) -> dict[str, Any]:
    occurred_at, sequence, event_id = row.fold_key
    return dict(
        generation=generation,
        delivery_id=row.delivery_id,
        order_id=row.order_id,
        shop_id=row.shop_id,
        rider_id=row.rider_id,
        state=row.state.value,
        created_at=row.created_at,
        assigned_at=row.assigned_at,
        picked_up_at=row.picked_up_at,
        delivered_at=row.delivered_at,
        cancelled_at=row.cancelled_at,
        cancel_reason=row.cancel_reason,
        estimated_delivery_at=row.estimated_delivery_at,
        last_event_at=row.last_event_at,
        event_count=row.event_count,
        fold_occurred_at=occurred_at,
        fold_sequence=sequence,
        fold_event_id=event_id,
    )


def row_from_db(r: Mapping[Any, Any]) -> DeliveryRow:
    return DeliveryRow(
        delivery_id=r["delivery_id"],
        state=State(r["state"]),
        last_event_at=r["last_event_at"],
        event_count=int(r["event_count"]),
        fold_key=(r["fold_occurred_at"], int(r["fold_sequence"]), r["fold_event_id"]),
        order_id=r["order_id"],
        shop_id=r["shop_id"],
        rider_id=r["rider_id"],
        created_at=r["created_at"],
        assigned_at=r["assigned_at"],
        picked_up_at=r["picked_up_at"],
        delivered_at=r["delivered_at"],
        cancelled_at=r["cancelled_at"],
        cancel_reason=r["cancel_reason"],
        estimated_delivery_at=r["estimated_delivery_at"],
    )


def _header_text(value: bytes | None) -> str | None:
    """Header bytes as storable text (JSONB refuses NUL; invalid UTF-8 is escaped)."""
    if value is None:
        return None
    return value.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


__all__ = [
    "BatchResult",
    "Claim",
    "ReadModelStore",
    "SqlStore",
    "row_from_db",
    "row_to_db",
]
