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
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from schema.db import active_generation
from schema.status import partition_offsets
from schema.tables import delivery_events

if TYPE_CHECKING:
    from query_api.context import Services

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

    def bind(self, services: Services) -> None:
        self.registry.register(ProjectionCollector(services))


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
        if newest is not None:
            last = GaugeMetricFamily(
                "projection_last_event_timestamp_seconds", "newest occurrence time applied"
            )
            last.add_metric([], newest.timestamp())
            yield last
