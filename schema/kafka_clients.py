"""The one place that builds Kafka clients (kafka-python 3), for every side of the pipeline.

The projector's source, the API's end-offset probe and the producer side all talk to
the same broker with the same library; they differ only in configuration, which each
caller passes. Here sit the library's imports, the broker-list rule (one string of
comma-separated ``host:port``, as ``KAFKA_BOOTSTRAP_SERVERS`` holds it) and the rule
that a client is created on first use, never when its owner is built: building a
source, an API or a command touches no network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import FencedInstanceIdError, KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

T = TypeVar("T")


def servers(bootstrap_servers: str) -> list[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` as the client wants it: one address per item."""
    return bootstrap_servers.split(",")


def consumer(bootstrap_servers: str, **config: Any) -> KafkaConsumer:
    """A consumer of the brokers; ``config`` is kafka-python's, as the caller needs it."""
    return KafkaConsumer(bootstrap_servers=servers(bootstrap_servers), **config)


def producer(bootstrap_servers: str, **config: Any) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=servers(bootstrap_servers), **config)


def admin(bootstrap_servers: str, **config: Any) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=servers(bootstrap_servers), **config)


class OnFirstUse(Generic[T]):
    """A client made by ``create`` when first asked for, then kept until ``forget``.

    ``create`` may raise (an unreachable broker); nothing is kept then, and the next
    ``get`` tries again.
    """

    def __init__(self, create: Callable[[], T]) -> None:
        self._create = create
        self._client: T | None = None

    @property
    def created(self) -> T | None:
        """The client if it has been made, without making it."""
        return self._client

    def get(self) -> T:
        if self._client is None:
            self._client = self._create()
        return self._client

    def forget(self) -> T | None:
        """Drop the client (the caller closes what this returns); ``get`` makes a new one."""
        client, self._client = self._client, None
        return client


__all__ = [
    "FencedInstanceIdError",
    "KafkaAdminClient",
    "KafkaConsumer",
    "KafkaError",
    "KafkaPartition",
    "KafkaProducer",
    "NewTopic",
    "OffsetAndMetadata",
    "OnFirstUse",
    "TopicAlreadyExistsError",
    "admin",
    "consumer",
    "producer",
    "servers",
]
