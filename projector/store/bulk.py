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
3. fold each delivery as its events arrive (``StreamFold``, below): a bounded
   cache of current rows, the least recently touched written out (COPY, between
   the history's chunks) when it is full;
4. drop the later copies of an event id, as the live path does (the first copy
   wins: the lowest partition, then the lowest offset, which is the order in
   which a partition is read), counting them per partition;
5. refold from the stored history, as the live path's refold does, every
   delivery the stream fold could not settle: an event that sorted before what it
   had folded, a copy of an event just dropped, a delivery written out and met
   again (it then has two rows). Their ids go to a temporary table, never to
   memory; the history is read back for them alone, in delivery order, through a
   server-side cursor, a page at a time;
6. build the indexes, attach both tables (``partitions.index_and_attach``) and set
   the generation's offsets and counts (read, duplicates, counted to) as the live
   path's batches would have left them.

Memory holds the cache, one chunk and one page, not the stream. A failure anywhere
rolls all of it back: the generation is left with its offsets at ``starts`` and no
partitions, which ``generations.take_over`` (``--resume``) and
``generations.discard`` handle. What the source holds beyond the targets is then
caught up through the normal path.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from psycopg.types.json import set_json_dumps
from sqlalchemy import Connection, Engine, bindparam, update

from projector.batch import BatchParser
from projector.counts import Counts
from projector.runtime import now
from projector.sources.base import MessageSource, SourceMessage, TopicPartition
from projector.store import partitions
from projector.store.headers import headers_to_db
from projector.store.pg import _STAGE_EVENTS_COLUMNS, _STAGE_ROWS_COLUMNS, _copy_types
from projector.store.rows import history_event, history_row, jsonb_text, quoted
from schema.events import Event, EventParseError
from schema.fold import DeliveryRow, apply, fold
from schema.lifecycle import DeadLetterStatus
from schema.rows import DELIVERY_COLUMNS, HISTORY_COLUMNS, delivery_values
from schema.tables import dead_letters, partition_name, projection_offsets

log = logging.getLogger(__name__)

#: Messages polled per read of the source, and history rows per COPY.
POLL_RECORDS: Final = 5000
COPY_CHUNK: Final = 50_000
#: Current rows the stream fold holds (about 1 KB each) before it writes the oldest out.
FOLD_CACHE: Final = 50_000
#: History rows fetched per page of the refold's read-back.
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
_REFOLD: Final = "bulk_refold"


class StreamFold:
    """The current rows of deliveries folded as their events arrive, at most ``capacity``.

    Pure (no database). ``add`` folds one event (in arrival order) onto its delivery's
    row exactly as ``fold_batch`` folds an event that sorts after the row's fold key;
    an event that sorts before it *spoils* the delivery, which must be refolded from
    its history. When more than ``capacity`` deliveries are held, the least recently
    touched one leaves: ``written`` gets its row, or ``spoiled`` its id. A delivery
    met again after it left starts over from no row; the caller finds it by its two
    rows and refolds it. Duplicates are not seen here: the caller refolds the
    deliveries of the copies it drops.
    """

    def __init__(self, capacity: int = FOLD_CACHE) -> None:
        self.capacity = capacity
        self.rows: OrderedDict[str, DeliveryRow | None] = OrderedDict()  # None: spoiled
        self.written: list[DeliveryRow] = []
        self.spoiled: list[str] = []

    def add(self, event: Event) -> None:
        rows = self.rows
        key = event.delivery_id
        row: DeliveryRow | None = None
        if key in rows:
            row = rows[key]
            rows.move_to_end(key)
            if row is None:
                return
            if event.sort_key < row.fold_key:
                rows[key] = None
                return
        elif len(rows) >= self.capacity:
            self._leave()
        rows[key] = apply(row, event)

    def _leave(self) -> None:
        key, row = self.rows.popitem(last=False)
        if row is None:
            self.spoiled.append(key)
        else:
            self.written.append(row)

    def drain(self) -> None:
        """Every delivery leaves (the end of the stream)."""
        while self.rows:
            self._leave()

    def take(self) -> tuple[list[DeliveryRow], list[str]]:
        """The rows and the spoiled ids that left since the last call."""
        written, spoiled = self.written, self.spoiled
        self.written, self.spoiled = [], []
        return written, spoiled


@dataclass
class BulkResult(Counts):
    """What a bulk load read and wrote, counted as the live path counts it (``Counts``;
    ``refolded``: deliveries folded from the history instead of the stream)."""

    deliveries: int = 0
    #: partition -> next offset, messages read, duplicates
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    read: dict[TopicPartition, int] = field(default_factory=dict)
    copies: dict[TopicPartition, int] = field(default_factory=dict)
    #: seconds per phase (stream, dedup, refold, index), for the log and the benchmark
    phases: dict[str, float] = field(default_factory=dict)


class BulkLoad:
    """Load one bare generation from a source (PostgreSQL only); see the module."""

    def __init__(
        self, engine: Engine, parser: BatchParser | None = None, *, cache: int = FOLD_CACHE
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("a bulk load is for PostgreSQL; SQLite replays the live path")
        self.engine = engine
        self.parser = parser or BatchParser()
        self.cache = cache
        self.heartbeat: Callable[[], None] = _nothing

    def load(
        self,
        generation: int,
        source: MessageSource,
        starts: Mapping[TopicPartition, int],
        targets: Mapping[TopicPartition, int],
        *,
        heartbeat: Callable[[], None] = lambda: None,
    ) -> BulkResult:
        """Read ``source`` from ``starts`` up to ``targets`` into ``generation``'s partitions.

        ``heartbeat`` is called between chunks (the building generation's liveness).
        """
        self.heartbeat = heartbeat
        result = BulkResult(next_offsets=dict(starts), read=dict.fromkeys(starts, 0),
                            copies=dict.fromkeys(starts, 0))
        with self.engine.connect() as conn, conn.begin():
            raw: Any = conn.connection.driver_connection
            raw.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
            raw.execute(f"SET LOCAL maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'")
            # The bound on one statement (PROJECTOR_STATEMENT_TIMEOUT_MS) is for the live
            # path's batches; a load's sort or index build grows with the stream.
            raw.execute("SET LOCAL statement_timeout = 0")
            raw.execute(
                f'CREATE TEMPORARY TABLE {_REFOLD} (delivery_id text COLLATE "C")'
                " ON COMMIT DROP"
            )
            partitions.create_bare(conn, generation)
            clock = time.monotonic()
            self._stream(conn, raw, generation, source, starts, targets, result)
            clock = _lap(result, "stream", clock)
            self._drop_copies(raw, generation, result)
            clock = _lap(result, "dedup", clock)
            self._refold(raw, generation, result)
            clock = _lap(result, "refold", clock)
            partitions.index_and_attach(conn, generation, analyze=True)
            clock = _lap(result, "index", clock)
            self._set_offsets(conn, generation, result)
        log.info(
            "bulk load of generation %s: %s messages, %s events, %s duplicates, %s dead"
            " letters, %s deliveries (%s refolded from the history); %s",
            generation, result.messages, result.applied, result.duplicates,
            result.dead_letters, result.deliveries, result.refolded,
            ", ".join(f"{k} {v:.1f}s" for k, v in result.phases.items()),
        )
        return result

    # -- 2, 3. the stream and its fold -----------------------------------------------
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
        folder = StreamFold(self.cache)
        applied_at = now()
        while pending:
            dead: list[tuple[SourceMessage, EventParseError]] = []
            written = 0
            with cursor.copy(copy_sql) as copy:
                copy.set_types(_HISTORY_COPY_TYPES)
                while pending and written < COPY_CHUNK:
                    messages = self._admit(source.poll(POLL_RECORDS, 500), expected, targets)
                    self._settle(source, pending, expected, targets)
                    if not messages:
                        continue
                    prepared = self.parser(messages)
                    read = result.read
                    for message in messages:
                        read[message.tp] += 1
                    add = folder.add
                    write = copy.write_row
                    for event, message in prepared.events:
                        row = history_row(event, message)
                        write((generation, *row[:6], jsonb_text(row.data), *row[7:], applied_at))
                        add(event)
                    written += len(prepared.events)
                    dead.extend(prepared.dead)
                    result.messages += len(messages)
                    result.applied += len(prepared.events)
            if not pending:
                folder.drain()
            if dead:
                self._dead_letters(conn, generation, dead)
                result.dead_letters += len(dead)
            self._write_out(raw, generation, folder, result)
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

    def _write_out(
        self, raw: Any, generation: int, folder: StreamFold, result: BulkResult
    ) -> None:
        """COPY the rows that left the stream fold; the spoiled ids into the refold table."""
        rows, spoiled = folder.take()
        if rows:
            _copy_rows(raw, generation, rows)
            result.deliveries += len(rows)
        if spoiled:
            with raw.cursor().copy(f"COPY {_REFOLD} (delivery_id) FROM STDIN") as copy:
                for key in spoiled:
                    copy.write_row((key,))

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

    # -- 4. duplicates -------------------------------------------------------------------
    @staticmethod
    def _drop_copies(raw: Any, generation: int, result: BulkResult) -> None:
        """Delete every later copy of an event id; count them on their partitions, and
        mark the deliveries they were folded into for a refold."""
        table = partition_name("delivery_events", generation)
        counts = raw.execute(
            f"WITH gone AS (DELETE FROM {table} WHERE ctid IN ("
            " SELECT ctid FROM ("
            "  SELECT ctid, row_number() OVER"
            '   (PARTITION BY event_id ORDER BY topic, "partition", "offset") AS n'
            f"  FROM {table} WHERE event_id IN"
            f"   (SELECT event_id FROM {table} GROUP BY event_id HAVING count(*) > 1)"
            " ) AS copies WHERE n > 1)"
            ' RETURNING topic, "partition", delivery_id),'
            f" marked AS (INSERT INTO {_REFOLD} SELECT delivery_id FROM gone)"
            ' SELECT topic, "partition", count(*) FROM gone GROUP BY topic, "partition"'
        ).fetchall()
        for topic, number, n in counts:
            tp = TopicPartition(topic, number)
            result.copies[tp] = result.copies.get(tp, 0) + int(n)
            result.duplicates += int(n)
        result.applied -= result.duplicates

    # -- 5. the refold -------------------------------------------------------------------
    def _refold(self, raw: Any, generation: int, result: BulkResult) -> None:
        """Fold again from the history every delivery in the refold table, or with two rows."""
        rows_table = partition_name("deliveries", generation)
        history = partition_name("delivery_events", generation)
        raw.execute(
            f"INSERT INTO {_REFOLD} SELECT delivery_id FROM {rows_table}"
            " GROUP BY delivery_id HAVING count(*) > 1"
        )
        marked = raw.execute(f"SELECT count(*) FROM {_REFOLD}").fetchone()[0]
        if not marked:
            return
        raw.execute(f"ANALYZE {_REFOLD}")
        gone = raw.execute(
            f"DELETE FROM {rows_table} WHERE delivery_id IN (SELECT delivery_id FROM {_REFOLD})"
        ).rowcount
        result.deliveries -= gone
        reader = raw.cursor(name=f"bulk_refold_{generation}")
        reader.execute(
            "SELECT h.event_id, h.event_type, h.delivery_id, h.known, h.occurred_at,"
            " h.sequence, h.data::text, h.estimated_delivery_at, h.event_version"
            f" FROM {history} AS h WHERE h.delivery_id IN (SELECT delivery_id FROM {_REFOLD})"
            " ORDER BY h.delivery_id"
        )
        for rows in _folded_pages(reader):
            _copy_rows(raw, generation, rows)
            result.deliveries += len(rows)
            result.refolded += len(rows)
            self.heartbeat()
        reader.close()

    # -- 6. offsets ----------------------------------------------------------------------
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


def _copy_rows(raw: Any, generation: int, rows: list[DeliveryRow]) -> None:
    sql = (
        f"COPY {partition_name('deliveries', generation)}"
        f" (generation, delivery_id, {quoted(DELIVERY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    )
    with raw.cursor().copy(sql) as copy:
        copy.set_types(_ROWS_COPY_TYPES)
        for row in rows:
            copy.write_row((generation, *delivery_values(row)))


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
    row = fold(history_event(dict(zip(_FOLD_COLUMNS, r, strict=True))) for r in records)
    assert row is not None
    return row


def _nothing() -> None:
    return None


def _as_is(text: str) -> str:
    return text


def _lap(result: BulkResult, phase: str, since: float) -> float:
    at = time.monotonic()
    result.phases[phase] = at - since
    return at
