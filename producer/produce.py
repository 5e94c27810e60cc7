"""Producing to Kafka: for `projector simulate` and for tests that need a real stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from producer.errors import KafkaUnavailable
from schema import kafka_clients
from schema.kafka_clients import KafkaError, NewTopic, TopicAlreadyExistsError

if TYPE_CHECKING:
    from schema.kafka_clients import KafkaProducer


class KafkaTarget(Protocol):
    """Where to produce: a broker list and a topic (the projector's settings have both)."""

    @property
    def kafka_bootstrap_servers(self) -> str: ...

    @property
    def kafka_topic(self) -> str: ...


def ensure_topic(settings: KafkaTarget, partitions: int = 3) -> None:
    """Create the topic if it does not exist (replication factor 1 if we create it)."""
    try:
        admin = kafka_clients.admin(settings.kafka_bootstrap_servers)
    except (KafkaError, OSError) as exc:
        raise KafkaUnavailable(
            f"Kafka at {settings.kafka_bootstrap_servers} is unavailable: {exc}"
        ) from exc
    try:
        if settings.kafka_topic not in admin.list_topics():
            admin.create_topics([NewTopic(settings.kafka_topic, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot create topic {settings.kafka_topic}: {exc}") from exc
    finally:
        admin.close()


def open_producer(settings: KafkaTarget, partitions: int = 3) -> KafkaProducer:
    """A producer that keeps each delivery's order (acks from all replicas, one request
    in flight), after making sure the topic exists."""
    ensure_topic(settings, partitions)
    try:
        return kafka_clients.producer(
            settings.kafka_bootstrap_servers,
            acks="all",
            linger_ms=5,
            max_in_flight_requests_per_connection=1,
        )
    except (KafkaError, OSError) as exc:
        raise KafkaUnavailable(
            f"Kafka at {settings.kafka_bootstrap_servers} is unavailable: {exc}"
        ) from exc


def produce(
    settings: KafkaTarget,
    messages: Sequence[tuple[bytes | None, bytes | None]]
    | Sequence[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
    partitions: int = 3,
) -> None:
    """Send (key, value[, headers]) messages in order and wait until all are acknowledged."""
    producer = open_producer(settings, partitions)
    try:
        futures = []
        for message in messages:
            key, value = message[0], message[1]
            headers = list(message[2]) if len(message) > 2 else None
            futures.append(
                producer.send(settings.kafka_topic, key=key, value=value, headers=headers)
            )
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)
    except KafkaError as exc:
        raise KafkaUnavailable(f"producing to {settings.kafka_topic} failed: {exc}") from exc
    finally:
        producer.close(timeout=10)
