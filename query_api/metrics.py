"""Prometheus metrics: requests, operations and their latency, projection lag.

Each app has its own registry (so tests can build many apps). Operation names come
from clients, so their label is bounded: well-formed names up to ``MAX_NAMES``
distinct ones, everything else under ``other``. Projection gauges are read from
the database when scraped, never cached beside it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Integer, func, select

from schema.db import active_generation
from schema.lifecycle import DeadLetterStatus, GenerationStatus
from schema.status import partition_offsets
from schema.tables import dead_letters, delivery_events, generations, projection_offsets

if TYPE_CHECKING:
    from query_api.context import Services
    from query_api.limits.clients import Counts

log = logging.getLogger(__name__)

MAX_NAMES = 100
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "query_api_http_requests",
            "HTTP requests by route, method and status",
            ["path", "method", "status"],
            registry=self.registry,
        )
        self.operations = Counter(
            "query_api_graphql_operations",
            "GraphQL operations by name, type and outcome (ok/error)",
            ["operation", "type", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "query_api_graphql_operation_duration_seconds",
            "GraphQL operation latency by name and type",
            ["operation", "type"],
            registry=self.registry,
        )
        #: Operations that found every database slot of their lane taken (the pool's
        #: queue, ``query_api.database``): how long they waited, and those refused as busy.
        self.db_waits = Histogram(
            "query_api_db_queue_wait_seconds",
            "Waits for a database slot (only operations that found none free), by lane",
            ["lane"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.db_busy = Counter(
            "query_api_db_busy",
            "Operations refused as busy: no database slot freed within the queue timeout",
            ["lane"],
            registry=self.registry,
        )
        for lane in ("main", "heavy"):  # both series exist from the start (dashboards, alerts)
            self.db_waits.labels(lane)
            self.db_busy.labels(lane)
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def operation_label(self, name: str) -> str:
        if not name:
            return "anonymous"
        if not _NAME.match(name):
            return "other"
        with self._lock:
            if name in self._names:
                return name
            if len(self._names) >= MAX_NAMES:
                return "other"
            self._names.add(name)
            return name

    def observe(self, name: str, kind: str, outcome: str, seconds: float) -> None:
        label = self.operation_label(name)
        self.operations.labels(label, kind, outcome).inc()
        self.latency.labels(label, kind).observe(seconds)

    def db_wait(self, lane: str, seconds: float, busy: bool) -> None:
        """``ReadDatabase.on_wait``: thread-safe (the heavy lane calls it from its thread)."""
        self.db_waits.labels(lane).observe(seconds)
        if busy:
            self.db_busy.labels(lane).inc()

    def bind(self, services: Services) -> None:
        self.registry.register(ProjectionCollector(services))
        services.database.on_wait = self.db_wait

    def bind_websockets(self, sockets: Counts, operations: Counts) -> None:
        self.registry.register(WebSocketCollector(sockets, operations))


class WebSocketCollector(Collector):
    """Open WebSockets, running WebSocket operations, and refusals by limit."""

    def __init__(self, sockets: Counts, operations: Counts) -> None:
        self._sockets = sockets
        self._operations = operations

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("query_api_websockets", "WebSockets open",
                                value=self._sockets.total)
        yield GaugeMetricFamily("query_api_websocket_operations",
                                "operations running on WebSockets (subscriptions included)",
                                value=self._operations.total)
        refused = CounterMetricFamily(
            "query_api_websocket_refusals",
            "WebSockets (what=socket) and their operations (what=operation) refused, by the"
            " bound that refused them (limit: server, client, socket)",
            labels=["what", "limit"],
        )
        for limit in ("server", "client"):
            refused.add_metric(["socket", limit], self._sockets.refused[limit])
        for limit in ("server", "client", "socket"):
            refused.add_metric(["operation", limit], self._operations.refused[limit])
        yield refused


class ProjectionCollector(Collector):
    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("query_api_read_model_up", "1 if the read model answered")
        try:
            with self._services.engine.connect() as conn:
                generation = active_generation(conn)
                offsets = partition_offsets(conn, generation)
                newest = conn.execute(
                    select(func.max(delivery_events.c.occurred_at)).where(
                        delivery_events.c.generation == generation
                    )
                ).scalar()
                health = _health_rows(conn, generation)
                building = _building(conn)
        except Exception as exc:  # noqa: BLE001 - a scrape reports the failure, not raises it
            log.warning("metrics: cannot read the read model: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        gen = GaugeMetricFamily("projection_generation", "read-model generation being served")
        gen.add_metric([], generation)
        yield gen
        ends = self._services.end_offsets.get([(p.topic, p.partition) for p in offsets])
        labels = ["topic", "partition"]
        next_g = GaugeMetricFamily("projection_next_offset", "next offset to read", labels=labels)
        end_g = GaugeMetricFamily("projection_end_offset", "the source's end offset", labels=labels)
        lag_g = GaugeMetricFamily(
            "projection_lag_messages", "end offset minus next offset", labels=labels
        )
        for p in offsets:
            key = [p.topic, str(p.partition)]
            next_g.add_metric(key, p.next_offset)
            end = None if ends is None else ends.get((p.topic, p.partition))
            if end is not None:
                end_g.add_metric(key, end)
                lag_g.add_metric(key, end - p.next_offset)
        yield next_g
        yield end_g
        yield lag_g
        yield from _partition_health(health)
        yield from _rebuild_progress(building, ends)
        if newest is not None:
            last = GaugeMetricFamily(
                "projection_last_event_timestamp_seconds", "newest occurrence time applied"
            )
            last.add_metric([], newest.timestamp())
            yield last


# -- per partition and rebuild (docs/dashboards-and-alerts.md) -------------------------
# Read from the small tables only (offsets, dead letters, generations): a scrape never
# counts the history.
_PARTITION = ["topic", "partition"]


def _health_rows(conn: Connection, generation: int) -> list[Any]:
    dead = (
        select(
            dead_letters.c.topic,
            dead_letters.c.partition,
            func.count().label("dead"),
            func.sum(
                (dead_letters.c.status == DeadLetterStatus.PENDING).cast(Integer)
            ).label("pending"),
        )
        .where(dead_letters.c.generation == generation)
        .group_by(dead_letters.c.topic, dead_letters.c.partition)
        .subquery()
    )
    return list(
        conn.execute(
            select(
                projection_offsets.c.topic,
                projection_offsets.c.partition,
                projection_offsets.c.owner,
                projection_offsets.c.updated_at,
                projection_offsets.c.messages_read,
                projection_offsets.c.duplicates,
                func.coalesce(dead.c.dead, 0).label("dead"),
                func.coalesce(dead.c.pending, 0).label("pending"),
            )
            .outerjoin(
                dead,
                (dead.c.topic == projection_offsets.c.topic)
                & (dead.c.partition == projection_offsets.c.partition),
            )
            .where(projection_offsets.c.generation == generation)
            .order_by(projection_offsets.c.topic, projection_offsets.c.partition)
        ).all()
    )


def _partition_health(rows: list[Any]) -> Iterator[Metric]:
    owned = GaugeMetricFamily(
        "projection_partition_owned", "1 if a projector has claimed the partition",
        labels=_PARTITION,
    )
    updated = GaugeMetricFamily(
        "projection_partition_updated_timestamp_seconds",
        "when a projector last moved or claimed the partition's offset", labels=_PARTITION,
    )
    read = CounterMetricFamily(
        "projection_messages_read", "messages read for the first time", labels=_PARTITION
    )
    copies = CounterMetricFamily(
        "projection_duplicates", "messages that were copies of an applied event",
        labels=_PARTITION,
    )
    dead = CounterMetricFamily(
        "projection_dead_letters", "messages dead-lettered (pending or replayed)",
        labels=_PARTITION,
    )
    pending = GaugeMetricFamily(
        "projection_dead_letters_pending", "dead letters not replayed", labels=_PARTITION
    )
    for r in rows:
        key = [r.topic, str(r.partition)]
        owned.add_metric(key, 0 if r.owner is None else 1)
        updated.add_metric(key, r.updated_at.timestamp())
        read.add_metric(key, int(r.messages_read))
        copies.add_metric(key, int(r.duplicates))
        dead.add_metric(key, int(r.dead))
        pending.add_metric(key, int(r.pending or 0))
    yield from (owned, updated, read, copies, dead, pending)


def _building(conn: Connection) -> tuple[Any, dict[tuple[str, int], int]] | None:
    """The generation a rebuild is writing, if any, and where it reads next."""
    row = conn.execute(
        select(generations.c.generation, generations.c.heartbeat_at, generations.c.created_at)
        .where(generations.c.status == GenerationStatus.BUILDING)
        .order_by(generations.c.generation.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    offsets = {
        (p.topic, p.partition): p.next_offset for p in partition_offsets(conn, row.generation)
    }
    return row, offsets


def _rebuild_progress(
    building: tuple[Any, dict[tuple[str, int], int]] | None,
    ends: Mapping[tuple[str, int], int] | None,
) -> Iterator[Metric]:
    running = GaugeMetricFamily("projection_rebuild_running", "1 while a rebuild writes")
    running.add_metric([], 0 if building is None else 1)
    yield running
    if building is None:
        return
    row, offsets = building
    gen = GaugeMetricFamily("projection_rebuild_generation", "the generation being rebuilt")
    gen.add_metric([], row.generation)
    yield gen
    beat = GaugeMetricFamily(
        "projection_rebuild_heartbeat_timestamp_seconds", "the rebuild's last sign of life"
    )
    beat.add_metric([], (row.heartbeat_at or row.created_at).timestamp())
    yield beat
    if ends is not None:
        lag = GaugeMetricFamily(
            "projection_rebuild_lag_messages", "messages the rebuild has still to read",
            labels=_PARTITION,
        )
        for (topic, partition), next_offset in sorted(offsets.items()):
            end = ends.get((topic, partition))
            if end is not None:
                lag.add_metric([topic, str(partition)], max(0, end - next_offset))
        yield lag
