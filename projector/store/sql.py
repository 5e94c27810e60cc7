"""The SQL adapter of the read model: one batch, one transaction.

``SqlStore.apply_batch`` writes the offsets, the history rows, the current rows
and the dead letters of one batch in a single database transaction, and only if
this process still owns every partition in it (its ``owner_epoch`` is current)
and the generation it writes is still the one it was started for. Anything less
is rolled back whole, so a crash or a lost partition never leaves half a batch.

The batch comes parsed (``projector.batch``: the loop parses, no database needed);
the fence (``_move``) and the generation check guard the transaction;
``fold_batch`` (pure) decides each row; ``PgTables``/``SqliteTables`` hold each
dialect's fixed statements behind the ``DialectTables`` protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError

from projector.batch import PreparedBatch
from projector.errors import Fenced, GenerationChanged, Stalled, StoreUnavailable
from projector.runtime import now, owner_name
from projector.sources.base import SourceMessage, TopicPartition
from projector.stall import StallWatch
from projector.store.base import BatchResult, Claim
from projector.store.failures import first_line, is_database_error, is_retryable, is_stalled
from projector.store.headers import headers_to_db
from projector.store.pg import PgTables
from projector.store.rows import history_row
from projector.store.sqlite import SqliteTables
from projector.store.tables import DialectTables
from schema.db import SchemaError, active_generation, redacted
from schema.events import Event, EventParseError
from schema.fold import DeliveryRow, fold, fold_batch
from schema.lifecycle import DeadLetterStatus, GenerationStatus
from schema.tables import (
    dead_letters,
    deliveries,
    delivery_events,
    generations,
    projection_offsets,
)

log = logging.getLogger(__name__)


class SqlStore:
    """``ProjectionStore`` and ``RepairStore`` (``projector.store.base``) on one engine."""

    def __init__(self, engine: Engine, *, stall_watch: StallWatch | None = None) -> None:
        self.engine = engine
        # With a watch, a lost connection after the process stood still inside the
        # transaction is ``Stalled``, not an outage to retry (projector/stall.py).
        self.stall_watch = stall_watch
        self.owner = owner_name()
        self._pg = engine.dialect.name == "postgresql"
        self.tables: DialectTables = PgTables() if self._pg else SqliteTables()

    # -- generations ------------------------------------------------------------
    def active_generation(self) -> int:
        with self._connect() as conn:
            try:
                return active_generation(conn)
            except SchemaError as exc:
                raise StoreUnavailable(str(exc)) from None

    # -- offsets ----------------------------------------------------------------
    def claim(self, generation: int, tp: TopicPartition) -> Claim:
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
                    next_offset=0,
                    owner_epoch=0,
                    updated_at=now(),
                )
                .on_conflict_do_nothing(index_elements=["generation", "topic", "partition"])
            )
            row = conn.execute(
                select(
                    projection_offsets.c.next_offset,
                    projection_offsets.c.owner_epoch,
                    projection_offsets.c.counted_to,
                )
                .where(self._offset_key(generation, tp))
                .with_for_update()
            ).one()
            epoch = int(row.owner_epoch) + 1
            conn.execute(
                update(projection_offsets)
                .where(self._offset_key(generation, tp))
                .values(owner_epoch=epoch, owner=self.owner, updated_at=now())
            )
            return Claim(epoch, int(row.next_offset), int(row.counted_to))

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
        require_status: str = GenerationStatus.ACTIVE,
    ) -> None:
        """Move a claimed partition's offset forward over offsets without messages."""
        with self._begin() as conn:
            self._check_generation(conn, generation, require_status)
            self._move(conn, generation, tp, claim, offset)

    def _move(
        self,
        conn: Connection,
        generation: int,
        tp: TopicPartition,
        claim: Claim,
        offset: int,
        read: int = 0,
    ) -> None:
        """Set a claimed partition's next offset, only if ``claim`` still holds it exactly.

        The update also locks the offset row until the transaction ends; a claim whose
        epoch or offset moved on (another consumer took over) raises ``Fenced``. The
        same statement counts the ``read`` messages read for the first time (at or
        after ``claim.counted_to``; they end at ``offset``).
        """
        values: dict[str, Any] = {"next_offset": offset, "updated_at": now()}
        if read:
            values["messages_read"] = projection_offsets.c.messages_read + read
            values["counted_to"] = offset
        moved = conn.execute(
            update(projection_offsets)
            .where(
                self._offset_key(generation, tp),
                projection_offsets.c.owner_epoch == claim.epoch,
                projection_offsets.c.next_offset == claim.next_offset,
            )
            .values(**values)
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
        prepared: PreparedBatch,
        claims: Mapping[TopicPartition, Claim],
        *,
        require_status: str = GenerationStatus.ACTIVE,
    ) -> BatchResult:
        """Apply one batch in one transaction; raises ``Fenced`` or ``GenerationChanged``.

        The batch must continue each partition exactly at its claim's offset.
        """
        result = BatchResult(messages=len(prepared.messages))
        ends: dict[TopicPartition, int] = {}
        read: dict[TopicPartition, int] = dict.fromkeys(claims, 0)
        for message in prepared.messages:
            ends[message.tp] = message.offset + 1
            if message.offset >= claims[message.tp].counted_to:  # not an in-place re-read
                read[message.tp] += 1

        with self._begin() as conn:
            self._check_generation(conn, generation, require_status)
            # Fence first: this also locks the partitions' offset rows for the transaction.
            for tp in sorted(ends):
                self._move(conn, generation, tp, claims[tp], ends[tp], read[tp])
                result.next_offsets[tp] = ends[tp]
            for message, exc in prepared.dead:
                self._dead_letter(conn, generation, message, exc)
            result.dead_letters = len(prepared.dead)
            live = require_status == GenerationStatus.ACTIVE
            copies = self._apply_events(conn, generation, prepared.events, result, notify=live)
            counted = [m for m in copies if m.offset >= claims[m.tp].counted_to]
            self._count_duplicates(conn, generation, counted)
        return result

    def apply_replayed(
        self, generation: int, message: SourceMessage, event: Event, dead_letter_id: int
    ) -> BatchResult:
        """Apply a dead letter that now parses, and mark it replayed, in one transaction."""
        result = BatchResult(messages=1)
        with self._begin() as conn:
            # Not into a retired one:
            self._check_generation(conn, generation, GenerationStatus.ACTIVE)
            # The partition's counts row before the deliveries' locks, as a batch takes them.
            conn.execute(
                select(projection_offsets.c.duplicates)
                .where(self._offset_key(generation, message.tp))
                .with_for_update()
            )
            copies = self._apply_events(conn, generation, [(event, message)], result, notify=True)
            # Already applied: the dead letter was a later copy, now counted as one.
            self._count_duplicates(conn, generation, copies)
            conn.execute(
                update(dead_letters)
                .where(dead_letters.c.id == dead_letter_id)
                .values(
                    status=DeadLetterStatus.REPLAYED,
                    replayed_at=now(),
                    replayed_event_id=event.event_id,
                )
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
    ) -> list[SourceMessage]:
        """Insert the events new to the history and fold their deliveries.

        Returns the messages that were duplicates: later copies of an event id
        already held, or met earlier in ``events``.
        """
        if not events:
            return []
        first: dict[str, tuple[Event, SourceMessage]] = {}
        for event, message in events:
            first.setdefault(event.event_id, (event, message))
        raw = _driver(conn)
        ids = {event.delivery_id for event, _ in first.values()}
        self.tables.lock_deliveries(raw, generation, sorted(ids))
        inserted = self.tables.insert_history(
            raw, generation, [history_row(e, m) for e, m in first.values()], now()
        )
        new_events = [e for event_id, (e, _) in first.items() if event_id in inserted]
        result.applied += len(new_events)
        result.duplicates += len(events) - len(new_events)
        copies = []
        if len(new_events) < len(events):
            copies = [
                m for e, m in events if e.event_id not in inserted or first[e.event_id][1] is not m
            ]
        if not new_events:
            return copies
        changed = {e.delivery_id for e in new_events}
        current = self.tables.load_rows(raw, generation, sorted(changed))
        decision = fold_batch(current, new_events)
        rows = decision.rows + self._refolded(raw, generation, decision.refold)
        self.tables.upsert_rows(raw, generation, rows)
        result.refolded += len(decision.refold)
        result.changed |= changed
        if notify:
            self.tables.notify(raw, generation, changed)
        return copies

    @staticmethod
    def _count_duplicates(
        conn: Connection, generation: int, copies: Sequence[SourceMessage]
    ) -> None:
        """Add duplicates to their partitions' counts (rows the batch's fence has locked)."""
        if not copies:
            return
        per: dict[TopicPartition, int] = {}
        for message in copies:
            per[message.tp] = per.get(message.tp, 0) + 1
        conn.execute(
            update(projection_offsets)
            .where(
                projection_offsets.c.generation == bindparam("g"),
                projection_offsets.c.topic == bindparam("t"),
                projection_offsets.c.partition == bindparam("p"),
            )
            .values(duplicates=projection_offsets.c.duplicates + bindparam("n")),
            [{"g": generation, "t": tp.topic, "p": tp.partition, "n": n} for tp, n in per.items()],
        )

    def _refolded(self, raw: Any, generation: int, ids: Sequence[str]) -> list[DeliveryRow]:
        """The rows of these deliveries folded again from their whole history."""
        rows: list[DeliveryRow] = []
        for part in _chunks(list(ids), 1000):
            for history in self.tables.load_history(raw, generation, part).values():
                row = fold(history)
                if row is not None:
                    rows.append(row)
        return rows

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
            headers=headers_to_db(message.headers),
            error_code=exc.code.value,
            reason=exc.reason,
            status=DeadLetterStatus.PENDING,
            created_at=now(),
        )
        conn.execute(self._insert(dead_letters).values(**values).on_conflict_do_nothing())

    # -- repair (rebuild --in-place) ----------------------------------------------
    def refold(
        self,
        generation: int,
        delivery_ids: Iterable[str],
        *,
        require_status: str = GenerationStatus.ACTIVE,
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
                raw = _driver(conn)
                self.tables.lock_deliveries(raw, generation, part)
                rows = self._refolded(raw, generation, part)
                self.tables.upsert_rows(raw, generation, rows)
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
        return _Guard(self.engine, begin=True, watch=self.stall_watch)

    def _connect(self) -> Any:
        return _Guard(self.engine, begin=False, watch=self.stall_watch)


class _Guard:
    """A connection (or transaction) whose retryable failures become ``StoreUnavailable``.

    The batch's statements go through SQLAlchemy and, on the hot path, straight
    through the driver: both kinds of error are classified here, by code.
    """

    def __init__(self, engine: Engine, *, begin: bool, watch: StallWatch | None = None) -> None:
        self.engine = engine
        self.begin = begin
        self.watch = watch
        self._began = 0.0
        self._cm: Any = None

    def __enter__(self) -> Connection:
        if self.watch is not None:
            self._began = self.watch.now()
        try:
            self._cm = self.engine.begin() if self.begin else self.engine.connect()
            return self._cm.__enter__()  # type: ignore[no-any-return]
        except (OperationalError, InterfaceError) as exc:
            raise unavailable(self.engine, exc) from exc

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._cm.__exit__(exc_type, exc, tb)
        except Exception as failure:  # the commit (or rollback) itself failed
            if self._stalled(failure) or (exc is not None and self._stalled(exc)):
                raise stalled(failure) from failure
            if is_database_error(failure) and is_retryable(failure):
                raise unavailable(self.engine, failure) from failure
            raise
        if exc is not None and self._stalled(exc):
            raise stalled(exc) from exc
        if exc is not None and is_database_error(exc) and is_retryable(exc):
            raise unavailable(self.engine, exc) from exc

    def _stalled(self, exc: BaseException) -> bool:
        """The server ended our session for standing still in a transaction (it said so,
        or the connection is gone after this process stood still past the bound)."""
        if not is_database_error(exc):
            return False
        if is_stalled(exc):
            return True
        return (
            self.watch is not None and is_retryable(exc) and self.watch.stood_still(self._began)
        )


def stalled(exc: BaseException) -> Stalled:
    return Stalled(
        "this projector stood still inside a database transaction past its bound"
        f" (PROJECTOR_IDLE_IN_TRANSACTION_TIMEOUT_MS; {first_line(exc)}): the batch was"
        " rolled back and another projector may own its partitions now; exiting"
    )


def unavailable(engine: Engine, exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(
        f"database {redacted(str(engine.url))} is unavailable: {first_line(exc)}"
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


def _driver(conn: Connection) -> Any:
    """The DBAPI connection under ``conn``, inside the same transaction."""
    return conn.connection.driver_connection


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
