"""Kafka as an event source (kafka-python 3): a consumer group, or explicit partitions.

The consumer is created on first use, never in ``__init__``, so that building a
source never touches the network. Auto-commit is off: the read model keeps the
offsets; what we commit to Kafka is only a hint for lag tools.

Hand-over, so that no partition stands unread for long: a member that stops cleanly
leaves the group in ``close`` (its partitions go to the others at once); one that dies
holds them until its session times out (``KAFKA_SESSION_TIMEOUT_MS``, 6 s by default,
the broker's minimum). A static member (``KAFKA_GROUP_INSTANCE_ID``) restarted with the
same id gets its partitions back at once, without a rebalance; in exchange it does not
leave the group when it stops (Kafka's rule for static members), so its partitions wait
for it, or for its session to time out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from projector.errors import ConfigError, SourceUnavailable
from projector.settings import Settings
from projector.sources.base import SourceMessage, TopicPartition
from schema import kafka_clients
from schema.kafka_clients import (
    FencedInstanceIdError,
    KafkaError,
    KafkaPartition,
    OffsetAndMetadata,
    OnFirstUse,
)

log = logging.getLogger(__name__)

_TIMEOUT_MS = 15_000
_CLOSE_TIMEOUT_MS = 5_000  # a clean stop must not hang on an unreachable broker
_REQUEST_TIMEOUT_MS = 5_000  # beyond the fetch's own wait (PROJECTOR_BATCH_MAX_WAIT_MS)


class KafkaSource:
    def __init__(self, settings: Settings, *, group: bool = True) -> None:
        self.settings = settings
        self.topic = settings.kafka_topic
        self.group = group
        self._consumer: OnFirstUse[Any] = OnFirstUse(self._new_consumer)

    # -- protocol ---------------------------------------------------------------
    def partitions(self) -> list[TopicPartition]:
        consumer = self._client()
        try:
            ids = consumer.partitions_for_topic(self.topic)
        except Exception as exc:  # noqa: BLE001 - any client failure is "unreachable" here
            raise self._unavailable(exc) from exc
        if not ids:
            raise SourceUnavailable(
                f"topic {self.topic!r} does not exist on {self.settings.kafka_bootstrap_servers}"
            )
        return [TopicPartition(self.topic, p) for p in sorted(ids)]

    def start(self) -> None:
        consumer = self._client()
        if self.group:
            consumer.subscribe([self.topic])
            # Learn the topic's partitions before the first join (``topics`` always asks
            # the broker). A group leader that joins before it knows them assigns
            # nothing and rejoins when they arrive; in kafka-python 3.0.12 a poll that
            # times out during that rejoin drops its result, and the member then owns
            # no partition until the next rebalance.
            try:
                consumer.topics()
            except KafkaError as exc:
                raise self._unavailable(exc) from exc

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        self._client().assign([KafkaPartition(tp.topic, tp.partition) for tp in partitions])

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self._client().assignment()}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._client().seek(KafkaPartition(tp.topic, tp.partition), offset)

    def position(self, tp: TopicPartition) -> int | None:
        try:
            ktp = KafkaPartition(tp.topic, tp.partition)
            return int(self._client().position(ktp, timeout_ms=1_000))
        except (KafkaError, AssertionError, KeyError, ValueError):
            return None  # not assigned any more, or not known yet

    def poll(self, max_records: int, timeout_ms: int) -> list[SourceMessage]:
        try:
            records = self._client().poll(timeout_ms=timeout_ms, max_records=max_records)
        except FencedInstanceIdError:
            # Two live members with one instance id would take the partitions from each
            # other forever: the one fenced by the broker stops.
            raise ConfigError(
                f"KAFKA_GROUP_INSTANCE_ID={self.settings.kafka_group_instance_id!r} is in use "
                f"by another member of group {self.settings.kafka_group_id!r}; give each "
                "projector its own"
            ) from None
        except KafkaError as exc:
            raise self._unavailable(exc) from exc
        messages: list[SourceMessage] = []
        for ktp, batch in records.items():
            for record in batch:
                messages.append(
                    SourceMessage(
                        topic=ktp.topic,
                        partition=ktp.partition,
                        offset=record.offset,
                        key=record.key,
                        value=record.value,
                        headers=tuple(record.headers) if record.headers else (),
                        timestamp_ms=record.timestamp,
                    )
                )
        return messages

    def beginning_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return self._offsets("beginning_offsets", partitions)

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return self._offsets("end_offsets", partitions)

    def offsets_for_time(
        self, partitions: Sequence[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int]:
        ends = self.end_offsets(partitions)
        try:
            found = self._client().offsets_for_times(
                {KafkaPartition(tp.topic, tp.partition): timestamp_ms for tp in partitions},
                timeout_ms=_TIMEOUT_MS,
            )
        except KafkaError as exc:
            raise self._unavailable(exc) from exc
        out: dict[TopicPartition, int] = {}
        for tp in partitions:
            hit = found.get(KafkaPartition(tp.topic, tp.partition))
            out[tp] = hit.offset if hit is not None else ends[tp]
        return out

    def commit_hint(self, offsets: dict[TopicPartition, int]) -> None:
        if not self.group or not offsets:
            return

        try:
            self._client().commit_async(
                {
                    KafkaPartition(tp.topic, tp.partition): OffsetAndMetadata(o, "", -1)
                    for tp, o in offsets.items()
                }
            )
        except Exception as exc:  # noqa: BLE001 - a hint only; the read model has the truth
            log.debug("kafka commit hint failed: %s", exc)

    def close(self) -> None:
        """Leave the group (a dynamic member: its partitions are reassigned at once,
        not after its session), then close the connections."""
        consumer = self._consumer.forget()
        if consumer is not None:
            consumer.close(autocommit=False, timeout_ms=_CLOSE_TIMEOUT_MS)

    # -- helpers ----------------------------------------------------------------
    def _client(self) -> Any:
        return self._consumer.get()

    def _new_consumer(self) -> Any:
        membership: dict[str, Any] = {}
        if self.group and self.settings.kafka_group_instance_id:
            membership["group_instance_id"] = self.settings.kafka_group_instance_id
        try:
            return kafka_clients.consumer(
                self.settings.kafka_bootstrap_servers,
                group_id=self.settings.kafka_group_id if self.group else None,
                enable_auto_commit=False,
                # Never fold what a transactional producer rolled back.
                isolation_level="read_committed",
                auto_offset_reset="earliest",
                max_poll_records=self.settings.batch_size,
                fetch_max_wait_ms=self.settings.batch_max_wait_ms,
                client_id="delivery-projector",
                session_timeout_ms=self.settings.kafka_session_timeout_ms,
                heartbeat_interval_ms=self.settings.kafka_heartbeat_interval_ms,
                # After a broker restart: reconnect within a second (the client's
                # default backs off up to 30 s), and give up on a fetch left
                # unanswered by the old broker within seconds, not 20 (a join
                # waits longer on its own: kafka-python gives it the rebalance
                # timeout + 5 s).
                reconnect_backoff_max_ms=1_000,
                request_timeout_ms=self.settings.batch_max_wait_ms + _REQUEST_TIMEOUT_MS,
                bootstrap_timeout_ms=_TIMEOUT_MS,
                **membership,
            )
        except (KafkaError, OSError, ValueError) as exc:
            raise self._unavailable(exc) from exc

    def _offsets(
        self, method: str, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        if not partitions:
            return {}
        try:
            found = getattr(self._client(), method)(
                [KafkaPartition(tp.topic, tp.partition) for tp in partitions],
                timeout_ms=_TIMEOUT_MS,
            )
        except KafkaError as exc:
            raise self._unavailable(exc) from exc
        return {TopicPartition(k.topic, k.partition): int(v) for k, v in found.items()}

    def _unavailable(self, exc: BaseException) -> SourceUnavailable:
        return SourceUnavailable(
            f"Kafka at {self.settings.kafka_bootstrap_servers} is unavailable: "
            f"{type(exc).__name__}: {exc}"
        )
