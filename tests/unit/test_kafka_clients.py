"""Kafka clients are made on first use, once, and made again after being dropped."""

from __future__ import annotations

import pytest

from projector.settings import Settings
from projector.sources.kafka import KafkaSource
from schema.kafka_clients import OnFirstUse, servers

pytestmark = pytest.mark.unit


def test_nothing_is_made_until_asked_for_then_once() -> None:
    made: list[object] = []

    def create() -> object:
        made.append(object())
        return made[-1]

    client = OnFirstUse(create)
    assert made == [] and client.created is None
    first = client.get()
    assert client.get() is first and made == [first] and client.created is first
    assert client.forget() is first and client.created is None
    assert client.get() is not first and len(made) == 2


def test_a_failed_creation_keeps_nothing_and_the_next_use_tries_again() -> None:
    attempts: list[int] = []

    def create() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("broker unreachable")
        return "client"

    client = OnFirstUse(create)
    with pytest.raises(OSError):
        client.get()
    assert client.created is None
    assert client.get() == "client" and len(attempts) == 2


def test_building_a_kafka_source_touches_no_broker() -> None:
    settings = Settings.from_env().with_overrides(kafka_bootstrap_servers="127.0.0.1:1")
    source = KafkaSource(settings)
    assert source._consumer.created is None
    source.close()  # nothing to close, nothing made
    assert source._consumer.created is None


def test_the_broker_list_is_split_on_commas() -> None:
    assert servers("a:9092,b:9093") == ["a:9092", "b:9093"]
    assert servers("localhost:9092") == ["localhost:9092"]
