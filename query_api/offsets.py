"""How far the source has got: end offsets per partition, when the source can say.

``projectionStatus`` and the lag metric ask this; neither may hang on a slow or
absent broker. Kafka is asked from one worker thread with a short timeout and
the answer is reused for a few seconds; a file source is answered by counting its
lines (offset = line number, the contract, section Settings). When nothing answers in time the
end is unknown (``None``) and the API says so with a null ``endOffset``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from query_api.settings import Settings
from schema import jsonl, kafka_clients
from schema.kafka_clients import KafkaError, KafkaPartition

log = logging.getLogger(__name__)

Partition = tuple[str, int]
Ends = Mapping[Partition, int]


class EndOffsets:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._cache: tuple[float, frozenset[Partition], dict[Partition, int] | None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._inflight: Future[dict[Partition, int] | None] | None = None
        self._consumer: Any = None

    def get(self, partitions: Iterable[Partition]) -> Ends | None:
        """End offsets for ``partitions`` (those the source knows), or None when unknown.

        Blocking, bounded by ``end_offsets_timeout_seconds``; call it off the event loop.
        """
        wanted = frozenset(partitions)
        if not wanted:
            return {}
        now = time.monotonic()
        with self._lock:
            if (
                self._cache is not None
                and self._cache[1] == wanted
                and now - self._cache[0] < self._settings.end_offsets_cache_seconds
            ):
                return self._cache[2]
            ends = self._ask(wanted)
            self._cache = (time.monotonic(), wanted, ends)
            return ends

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                if self._consumer is not None:
                    self._executor.submit(self._close_consumer)
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

    # -- sources ----------------------------------------------------------------
    def _ask(self, wanted: frozenset[Partition]) -> dict[Partition, int] | None:
        if self._settings.uses_kafka:
            return self._ask_kafka(wanted)
        return self._count_lines(wanted)

    def _count_lines(self, wanted: frozenset[Partition]) -> dict[Partition, int] | None:
        path = self._settings.event_source
        try:
            partition = (jsonl.topic_of(path), jsonl.PARTITION)
            count = jsonl.end_offset(path)
        except OSError:
            return None
        return {partition: count} if partition in wanted else {}

    def _ask_kafka(self, wanted: frozenset[Partition]) -> dict[Partition, int] | None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="end-offsets")
        if self._inflight is not None and not self._inflight.done():
            return None  # an earlier question still hangs: do not queue another behind it
        self._inflight = self._executor.submit(self._kafka_end_offsets, sorted(wanted))
        try:
            return self._inflight.result(timeout=self._settings.end_offsets_timeout_seconds)
        except FutureTimeout:
            log.warning("Kafka did not tell its end offsets within %ss",
                        self._settings.end_offsets_timeout_seconds)
            return None

    def _kafka_end_offsets(self, wanted: list[Partition]) -> dict[Partition, int] | None:
        timeout_ms = int(self._settings.end_offsets_timeout_seconds * 1000)
        try:
            if self._consumer is None:
                self._consumer = kafka_clients.consumer(
                    self._settings.kafka_bootstrap_servers,
                    group_id=None,
                    enable_auto_commit=False,
                    client_id="query-api-end-offsets",
                    bootstrap_timeout_ms=timeout_ms,
                    request_timeout_ms=max(timeout_ms * 2, 5000),
                )
            answer = self._consumer.end_offsets(
                [KafkaPartition(t, p) for t, p in wanted], timeout_ms=timeout_ms
            )
        except (KafkaError, OSError, ValueError) as exc:
            log.warning("cannot ask Kafka for end offsets: %s", exc)
            self._close_consumer()
            return None
        return {(tp.topic, tp.partition): int(end) for tp, end in answer.items()}

    def _close_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except Exception:  # noqa: BLE001 - closing a broken client must not fail shutdown
                log.debug("closing the end-offsets consumer failed", exc_info=True)
