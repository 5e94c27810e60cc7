"""A generation loaded in bulk on PostgreSQL: the stream once, COPY, one fold per delivery.

The live path (``SqlStore.apply_batch``) pays, per batch, for staging, locks, an
upsert into indexed tables and a read of the current rows. A rebuild into a new
generation needs none of it: nobody reads that generation until it is switched
to. So ``BulkLoad.load`` does, in one transaction on one connection:

1. create the generation's bare tables (``partitions.create_bare``: no index, not
   attached);
2. read the source once from ``starts`` to ``targets``, parse every message as the
   live path does (``prepare_batch``: the same dead letters), and COPY every event
   into the bare history, in chunks; the dead letters are inserted between chunks;
3. drop the later copies of an event id, as the live path does (the first copy
   wins: the lowest partition, then the lowest offset, which is the order in
   which a partition is read), counting them per partition;
4. fold each delivery once: the history is read back ordered by delivery through
   a server-side cursor, a page at a time, each delivery's events folded by
   ``schema.fold.fold`` (the refold's definition, from what was stored), and the
   rows COPYed in chunks: memory holds one page and one delivery, not the stream;
5. build the indexes, attach both tables (``partitions.index_and_attach``) and
   set the generation's offsets and counts (read, duplicates, counted to) as the
   live path's batches would have left them.

A failure anywhere rolls all of it back: the generation is left with its offsets
at ``starts`` and no partitions, which ``generations.take_over`` (``--resume``)
and ``generations.discard`` know how to handle. What the source holds beyond the
targets is then caught up through the normal path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any, Final

from psycopg.types.json import set_json_dumps
from sqlalchemy import Connection, Engine, bindparam, update

from projector.batch import prepare_batch
from projector.runtime import now
from projector.settings import DEFAULT_MAX_MESSAGE_BYTES
from projector.sources.base import MessageSource, SourceMessage, TopicPartition
from projector.store import partitions
from projector.store.headers import headers_to_db
from projector.store.pg import _STAGE_EVENTS_COLUMNS, _STAGE_ROWS_COLUMNS, _copy_types
from projector.store.rows import history_row, jsonb_text, load_json, quoted
from schema.events import EventParseError
from schema.fold import DeliveryRow, fold
from schema.lifecycle import DeadLetterStatus
from schema.rows import DELIVERY_COLUMNS, HISTORY_COLUMNS, delivery_values, event_from_history
from schema.tables import dead_letters, partition_name, projection_offsets

log = logging.getLogger(__name__)

#: Messages polled per read of the source, and history rows per COPY.
POLL_RECORDS: Final = 5000
COPY_CHUNK: Final = 50_000
#: History rows fetched per page of the fold's read-back.
FOLD_PAGE: Final = 20_000
#: Memory for the sorts and the index builds of this one transaction.
WORK_MEM: Final = "128MB"
MAINTENANCE_WORK_MEM: Final = "512MB"

_HISTORY_COPY_TYPES: Final = ["int4", *_copy_types(_STAGE_EVENTS_COLUMNS), "timestamptz"]
_HISTORY_COPY_TYPES[1 + HISTORY_COLUMNS.index("data")] = "jsonb"
_ROWS_COPY_TYPES: Final = ["int4", *_copy_types(_STAGE_ROWS_COLUMNS)]
_FOLD_COLUMNS: Final = (
    "event_id", "event_type", "delivery_id", "known", "occurred_at", "sequence", "data",
    "estimated_delivery_at", "event_version",
)


@dataclass
class BulkResult:
    """What a bulk load read and wrote, counted as the live path counts it."""

    messages: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    deliveries: int = 0
    #: partition -> next offset, messages read, duplicates
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    read: dict[TopicPartition, int] = field(default_factory=dict)
    copies: dict[TopicPartition, int] = field(default_factory=dict)
    #: seconds per phase (stream, dedup, fold, index), for the log and the benchmark
    phases: dict[str, float] = field(default_factory=dict)


class BulkLoad:
    """Load one bare generation from a source (PostgreSQL only); see the module."""

    def __init__(
        self,
        engine: Engine,
        *,
        source_tz: tzinfo = UTC,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        heartbeat: Callable[[], None] = lambda: None,
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("a bulk load is for PostgreSQL; SQLite replays the live path")
        self.engine = engine
        self.source_tz = source_tz
        self.max_message_bytes = max_message_bytes
        self.heartbeat = heartbeat
        self.stop = stop

    def load(
        self,
        generation: int,
        source: MessageSource,
        starts: Mapping[TopicPartition, int],
        targets: Mapping[TopicPartition, int],
    ) -> BulkResult:
        """Read ``source`` from ``starts`` up to ``targets`` into ``generation``'s partitions."""
        result = BulkResult(next_offsets=dict(starts), read=dict.fromkeys(starts, 0),
                            copies=dict.fromkeys(starts, 0))
        with self.engine.connect() as conn, conn.begin():
            raw = conn.connection.driver_connection
            assert raw is not None  # a checked-out connection always has its driver's
            raw.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
            raw.execute(f"SET LOCAL maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'")
            partitions.create_bare(conn, generation)
            clock = time.monotonic()
            self._stream(conn, raw, generation, source, starts, targets, result)
            clock = _lap(result, "stream", clock)
            self._drop_copies(raw, generation, result)
            clock = _lap(result, "dedup", clock)
            self._fold(raw, generation, result)
            clock = _lap(result, "fold", clock)
            partitions.index_and_attach(conn, generation, analyze=True)
            clock = _lap(result, "index", clock)
            self._set_offsets(conn, generation, result)
        log.info(
            "bulk load of generation %s: %s messages, %s events, %s duplicates, %s dead"
            " letters, %s deliveries; %s",
            generation, result.messages, result.applied, result.duplicates,
            result.dead_letters, result.deliveries,
            ", ".join(f"{k} {v:.1f}s" for k, v in result.phases.items()),
        )
        return result

    # -- 2. the stream -----------------------------------------------------------------
    def _stream(
        self,
        conn: Connection,
        raw: Any,
        generation: int,
        source: MessageSource,
        starts: Mapping[TopicPartition, int],
        targets: Mapping[TopicPartition, int],
        result: BulkResult,
    ) -> None:
        expected = dict(starts)
        pending = {tp for tp in starts if starts[tp] < targets.get(tp, 0)}
        for tp in pending:
            source.seek(tp, starts[tp])
        copy_sql = (
            f"COPY {partition_name('delivery_events', generation)}"
            f" (generation, {quoted(HISTORY_COLUMNS)}, applied_at) FROM STDIN (FORMAT BINARY)"
        )
        cursor = raw.cursor()
        set_json_dumps(_as_is, context=cursor)  # ``data`` is JSON text already
        applied_at = now()
        while pending:
            if self.stop():
                raise InterruptedError("bulk load interrupted")
            dead: list[tuple[SourceMessage, EventParseError]] = []
            written = 0
            with cursor.copy(copy_sql) as copy:
                copy.set_types(_HISTORY_COPY_TYPES)
                while pending and written < COPY_CHUNK:
                    messages = self._admit(source.poll(POLL_RECORDS, 500), expected, targets)
                    self._settle(source, pending, expected, targets)
                    if not messages:
                        if self.stop():
                            break
                        continue
                    prepared = prepare_batch(messages, self.source_tz, self.max_message_bytes)
                    for message in messages:
                        result.read[message.tp] += 1
                    for event, message in prepared.events:
                        row = history_row(event, message)
                        copy.write_row((generation, *row[:6], jsonb_text(row.data), *row[7:],
                                        applied_at))
                    written += len(prepared.events)
                    dead.extend(prepared.dead)
                    result.messages += len(messages)
                    result.applied += len(prepared.events)
            if dead:
                self._dead_letters(conn, generation, dead)
                result.dead_letters += len(dead)
            self.heartbeat()
        result.next_offsets.update(expected)

    @staticmethod
    def _admit(
        messages: list[SourceMessage],
        expected: dict[TopicPartition, int],
        targets: Mapping[TopicPartition, int],
    ) -> list[SourceMessage]:
        """The messages that continue each partition, below its target, in offset order."""
        kept: list[SourceMessage] = []
        for message in messages:
            tp = message.tp
            if tp not in expected or message.offset < expected[tp]:
                continue
            if message.offset >= targets.get(tp, 0):
                continue
            kept.append(message)
            expected[tp] = message.offset + 1
        return kept

    @staticmethod
    def _settle(
        source: MessageSource,
        pending: set[TopicPartition],
        expected: dict[TopicPartition, int],
        targets: Mapping[TopicPartition, int],
    ) -> None:
        """Drop the partitions read up to their target (offsets without messages too)."""
        for tp in list(pending):
            if expected[tp] >= targets.get(tp, 0):
                pending.discard(tp)
                continue
            position = source.position(tp)
            if position is not None and position >= targets.get(tp, 0):
                # Nothing left below the target: transaction markers, compaction.
                expected[tp] = max(expected[tp], targets[tp])
                pending.discard(tp)

    def _dead_letters(
        self,
        conn: Connection,
        generation: int,
        dead: list[tuple[SourceMessage, EventParseError]],
    ) -> None:
        stamp = now()
        for message, exc in dead:
            log.warning(
                "dead letter %s:%s@%s %s: %s",
                message.topic, message.partition, message.offset, exc.code.value, exc.reason,
            )
        conn.execute(
            dead_letters.insert(),
            [
                dict(
                    generation=generation, topic=m.topic, partition=m.partition,
                    offset=m.offset, key=m.key, value=m.value,
                    headers=headers_to_db(m.headers), error_code=exc.code.value,
                    reason=exc.reason, status=DeadLetterStatus.PENDING, created_at=stamp,
                )
                for m, exc in dead
            ],
        )

    # -- 3. duplicates -------------------------------------------------------------------
    @staticmethod
    def _drop_copies(raw: Any, generation: int, result: BulkResult) -> None:
        """Delete every later copy of an event id; count them on their partitions."""
        table = partition_name("delivery_events", generation)
        rows = raw.execute(
            f"DELETE FROM {table} WHERE ctid IN ("
            " SELECT ctid FROM ("
            "  SELECT ctid, row_number() OVER"
            '   (PARTITION BY event_id ORDER BY topic, "partition", "offset") AS n'
            f"  FROM {table} WHERE event_id IN"
            f"   (SELECT event_id FROM {table} GROUP BY event_id HAVING count(*) > 1)"
            " ) AS copies WHERE n > 1)"
            ' RETURNING topic, "partition"'
        ).fetchall()
        for topic, number in rows:
            tp = TopicPartition(topic, number)
            result.copies[tp] = result.copies.get(tp, 0) + 1
        result.duplicates = len(rows)
        result.applied -= len(rows)

    # -- 4. the fold ---------------------------------------------------------------------
    def _fold(self, raw: Any, generation: int, result: BulkResult) -> None:
        history = partition_name("delivery_events", generation)
        rows_sql = (
            f"COPY {partition_name('deliveries', generation)}"
            f" (generation, delivery_id, {quoted(DELIVERY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        )
        reader = raw.cursor(name=f"bulk_fold_{generation}")
        reader.execute(
            f"SELECT {quoted(_FOLD_COLUMNS[:6])}, data::text, estimated_delivery_at,"
            f" event_version FROM {history} ORDER BY delivery_id"
        )
        writer = raw.cursor()
        for rows in _folded_pages(reader):
            with writer.copy(rows_sql) as copy:
                copy.set_types(_ROWS_COPY_TYPES)
                for row in rows:
                    copy.write_row((generation, *delivery_values(row)))
            result.deliveries += len(rows)
            self.heartbeat()
        reader.close()

    # -- 5. offsets ----------------------------------------------------------------------
    @staticmethod
    def _set_offsets(conn: Connection, generation: int, result: BulkResult) -> None:
        """Where the generation stands, with its counts, as its batches would have left them."""
        o = projection_offsets.c
        conn.execute(
            update(projection_offsets)
            .where(o.generation == generation, o.topic == bindparam("t"),
                   o.partition == bindparam("p"))
            .values(
                next_offset=bindparam("n"), counted_to=bindparam("n"),
                messages_read=o.messages_read + bindparam("r"),
                duplicates=o.duplicates + bindparam("d"),
                owner_epoch=o.owner_epoch + 1, owner=None, updated_at=now(),
            ),
            [
                {"t": tp.topic, "p": tp.partition, "n": offset, "r": result.read.get(tp, 0),
                 "d": result.copies.get(tp, 0)}
                for tp, offset in result.next_offsets.items()
            ],
        )


def _folded_pages(reader: Any) -> Iterator[list[DeliveryRow]]:
    """Rows folded from the history read in delivery order, a page of deliveries at a time.

    A delivery whose events straddle two pages is carried over to the next one.
    """
    carry: list[Any] = []
    while True:
        page = reader.fetchmany(FOLD_PAGE)
        if not page:
            break
        rows: list[DeliveryRow] = []
        group: list[Any] = carry
        current = group[0][2] if group else None
        for record in page:
            if record[2] != current:
                if group:
                    rows.append(_fold_one(group))
                group, current = [], record[2]
            group.append(record)
        carry = group
        yield rows
    if carry:
        yield [_fold_one(carry)]


def _fold_one(records: list[Any]) -> DeliveryRow:
    events = []
    for record in records:
        values = dict(zip(_FOLD_COLUMNS, record, strict=True))
        values["data"] = load_json(values["data"])
        events.append(event_from_history(values))
    row = fold(events)
    assert row is not None
    return row


def _as_is(text: str) -> str:
    return text


def _lap(result: BulkResult, phase: str, since: float) -> float:
    at = time.monotonic()
    result.phases[phase] = at - since
    return at
