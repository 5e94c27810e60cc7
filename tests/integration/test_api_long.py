"""``Long`` (the contract, section GraphQL API): sequences and offsets beyond 32 bits, up to 2^63-1, end to end.

The projector stores a Kafka offset and an outbox sequence as 64-bit integers;
the API must hand them back exactly, never as null with an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from projector.sources.base import SourceMessage, TopicPartition
from projector.store import SqlStore
from schema.db import make_engine, migrate
from tests.api_support import BACKENDS, client_for, data_of, error_messages, gql, settings_for
from tests.helpers import create_pg_database, make_event, prepared

pytestmark = pytest.mark.integration

LONG_MAX = 2**63 - 1
TOPIC = "delivery-events"
# (offset, sequence): past 2^31, past 2^53 (where JavaScript stops being exact), the maximum.
CASES = [(2**31, 2**31 + 5), (2**53 + 1, 2**53 + 1), (LONG_MAX - 1, LONG_MAX)]


@pytest.fixture(params=BACKENDS)
def big_read_model(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/long.db"
        drop = None
    else:
        url, drop = create_pg_database()
    engine = make_engine(url)
    try:
        migrate(engine)
        store = SqlStore(engine)
        generation = store.active_generation()
        for partition, (offset, sequence) in enumerate(CASES):
            tp = TopicPartition(TOPIC, partition)
            store.set_offsets(generation, {tp: offset})
            claim = store.claim(generation, tp)
            event = make_event("DeliveryCreated", f"D-{partition}", sequence=sequence,
                               event_id=f"e-{partition}")
            message = SourceMessage(TOPIC, partition, offset, f"D-{partition}".encode(),
                                    json.dumps(event).encode())
            result = store.apply_batch(generation, prepared([message]), {tp: claim})
            assert result.applied == 1
    finally:
        engine.dispose()
    yield url
    if drop is not None:
        drop()


def test_sequences_offsets_and_counts_beyond_32_bits_are_served_exactly(
    big_read_model: str,
) -> None:
    with client_for(settings_for(big_read_model)) as client:
        result = gql(client, """
          { deliveries(first: 10) { edges { node { id
              history(first: 5) { edges { node { sequence source { partition offset } } } } } } }
            projectionStatus { eventsApplied partitions { partition nextOffset } } }""")
    data = data_of(result)
    served = {
        edge["node"]["id"]: edge["node"]["history"]["edges"][0]["node"]
        for edge in data["deliveries"]["edges"]
    }
    for partition, (offset, sequence) in enumerate(CASES):
        node = served[f"D-{partition}"]
        assert node["sequence"] == sequence
        assert node["source"] == {"partition": partition, "offset": offset}
    next_offsets = {p["partition"]: p["nextOffset"] for p in data["projectionStatus"]["partitions"]}
    assert next_offsets == {p: offset + 1 for p, (offset, _) in enumerate(CASES)}
    assert next_offsets[2] == LONG_MAX
    assert data["projectionStatus"]["eventsApplied"] == len(CASES)


def test_a_long_out_of_range_or_not_an_integer_is_a_readable_error() -> None:
    from query_api.errors import UserInputError
    from query_api.scalars import parse_long, serialize_long

    assert parse_long(LONG_MAX) == LONG_MAX and parse_long(-(2**63)) == -(2**63)
    for bad in (2**63, -(2**63) - 1, 1.5, "7", True):
        with pytest.raises(UserInputError):
            parse_long(bad)
    with pytest.raises(ValueError, match="64-bit"):
        serialize_long(2**63)


def test_the_schema_declares_long_for_counts_and_offsets(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    with client_for(settings_for(url)) as client:
        result = gql(client, '{ __type(name: "PartitionStatus") { fields { name type {'
                             ' name ofType { name } } } } }')
        bad = gql(client, "{ projectionStatus { generation nextOffset } }")
    fields = {f["name"]: f["type"]["name"] or f["type"]["ofType"]["name"]
              for f in data_of(result)["__type"]["fields"]}
    assert fields["nextOffset"] == fields["endOffset"] == fields["lag"] == "Long"
    assert error_messages(bad)
