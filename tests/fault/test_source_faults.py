"""Faults at the source, real Kafka -> projector -> PostgreSQL.

Scenario 6, duplicates and reordering: a realistic stream (producer/simulate.py,
which already has a few late and redelivered events) with each delivery's events
shuffled within a window, and a random 10% of the events published a second time
later on. The read model must equal the pure fold of the whole log.

Scenario 7, poison at scale: 1% of the messages come from a catalogue of malformed
inputs (the contract, section Bad input), plus a few payloads just under the broker's
message size limit. Each one must become a dead letter at its own position with the
expected error code, nothing else may (unknown event types, a key that differs from
the body's deliveryId, and a valid event near the size limit are not bad input),
every valid event must be applied, and the lag must come back to zero.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from producer.simulate import SimulationConfig, encode, simulate
from schema.db import make_engine
from schema.events import ErrorCode, EventParseError, parse_message
from schema.lifecycle import DeadLetterStatus
from schema.tables import dead_letters
from tests.fault.support import LogRecord, assert_read_model_equals_fold
from tests.helpers import projector_env, run_projector, unique

pytestmark = [pytest.mark.integration, pytest.mark.fault]

Position = tuple[int, int]  # (partition, offset)
Message = tuple[bytes | None, bytes | None]  # (key, value) as published; None: absent
PENDING = DeadLetterStatus.PENDING.value


# -- publishing with positions --------------------------------------------------------
def publish_with_positions(bootstrap: str, topic: str, messages: Sequence[Message],
                           max_request_size: int = 1_048_576) -> list[Position]:
    """Publish in order with one producer; returns where each record landed."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=5,
                             max_in_flight_requests_per_connection=1,
                             max_request_size=max_request_size)
    positions: list[Position] = []
    try:
        for start in range(0, len(messages), 2_000):
            futures = [producer.send(topic, key=key, value=value)
                       for key, value in messages[start:start + 2_000]]
            producer.flush(timeout=120)
            for future in futures:
                meta = future.get(timeout=120)
                positions.append((int(meta.partition), int(meta.offset)))
    finally:
        producer.close(timeout=10)
    return positions


def topic_message_limit(bootstrap: str, topic: str) -> tuple[int, int]:
    """(the topic's max.message.bytes, the broker's message.max.bytes), asked of the broker."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","))
    try:
        found = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None}),
             ConfigResource(ConfigResourceType.BROKER, "1", {"message.max.bytes": None})],
            config_filter="all")
    finally:
        admin.close()
    return (int(found["topic"][topic]["max.message.bytes"]["value"]),
            int(found["broker"]["1"]["message.max.bytes"]["value"]))


def project_until_caught_up(db_url: str, bootstrap: str, topic: str) -> tuple[str, float]:
    """`projector migrate` and `run --until-caught-up`; returns its log and seconds taken."""
    env = projector_env(db_url, "kafka", KAFKA_BOOTSTRAP_SERVERS=bootstrap, KAFKA_TOPIC=topic,
                        KAFKA_GROUP_ID=unique("group"))
    run_projector(["migrate"], env)
    started = time.monotonic()
    done = run_projector(["run", "--until-caught-up"], env, timeout=1_200)
    return done.stderr, time.monotonic() - started


def projector_status(db_url: str, bootstrap: str, topic: str) -> dict[str, Any]:
    env = projector_env(db_url, "kafka", KAFKA_BOOTSTRAP_SERVERS=bootstrap, KAFKA_TOPIC=topic,
                        KAFKA_GROUP_ID=unique("group"))
    doc: dict[str, Any] = json.loads(run_projector(["status", "--json"], env).stdout)
    return doc


_TOTALS = re.compile(r"projected (\d+) messages: (\d+) applied, (\d+) duplicates, "
                     r"(\d+) dead letters, (\d+) refolded")


def run_totals(log: str) -> tuple[int, int, int, int, int] | None:
    """The projector's own closing counts (messages, applied, duplicates, dead letters,
    refolded), when its log has them."""
    found = _TOTALS.findall(log)
    if not found:
        return None
    m, a, d, x, r = (int(v) for v in found[-1])
    return m, a, d, x, r


def assert_lag_zero(status: dict[str, Any], ends: dict[int, int]) -> None:
    by_partition = {p["partition"]: p for p in status["partitions"]}
    for partition, end in ends.items():
        p = by_partition.get(partition)
        assert p is not None, f"partition {partition} missing from the status: {status}"
        assert p["endOffset"] == end and p["nextOffset"] == end and p["lag"] == 0, (
            f"partition {partition} not caught up: {p}, end {end}")


def ends_of(positions: Sequence[Position]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for partition, offset in positions:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


# -- scenario 6: duplicates and reordering ------------------------------------------
REORDER_WINDOW = 5
DUPLICATE_RATIO = 0.10


def reorder_within_window(stream: list[dict[str, Any]], window: int,
                          rng: random.Random) -> tuple[list[dict[str, Any]], int]:
    """Shuffle each delivery's events among that delivery's own slots in the stream, each
    by fewer than ``window`` places of its delivery's order; returns the stream and how
    many events changed place."""
    slots: dict[str, list[int]] = {}
    for index, event in enumerate(stream):
        slots.setdefault(event["deliveryId"], []).append(index)
    out = list(stream)
    moved = 0
    for indexes in slots.values():
        order = sorted(range(len(indexes)), key=lambda j: j + rng.uniform(0, window))
        for slot, j in zip(indexes, order, strict=True):
            out[slot] = stream[indexes[j]]
            moved += slot != indexes[j]
    return out, moved


def republish_some(records: list[LogRecord], ratio: float,
                   rng: random.Random) -> tuple[list[LogRecord], int]:
    """A copy of a random ``ratio`` of the records, each published again 1 to 2,000
    records after its original."""
    chosen = rng.sample(range(len(records)), round(len(records) * ratio))
    keyed: list[tuple[float, LogRecord]] = [(float(i), r) for i, r in enumerate(records)]
    keyed += [(i + rng.randint(1, 2_000) + 0.5, records[i]) for i in chosen]
    keyed.sort(key=lambda item: item[0])
    return [r for _, r in keyed], len(chosen)


def test_duplicates_and_reordering_at_the_source_leave_the_fold_unchanged(
    pg_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str], full_size: bool,
) -> None:
    rng = random.Random(6)
    deliveries = 47_500 if full_size else 4_500
    stream = simulate(SimulationConfig(deliveries=deliveries, seed=6))
    shuffled, moved = reorder_within_window(stream, REORDER_WINDOW, rng)
    records, copies = republish_some(
        [LogRecord(encode(e), e["deliveryId"].encode()) for e in shuffled], DUPLICATE_RATIO, rng)
    distinct = len({e["eventId"] for e in stream})

    topic = topic_factory(3)
    positions = publish_with_positions(kafka_bootstrap, topic,
                                       [(r.key, r.value) for r in records])
    log, seconds = project_until_caught_up(pg_url, kafka_bootstrap, topic)

    verified = assert_read_model_equals_fold(pg_url, records)
    assert verified.events == distinct and verified.invalid == 0
    status = projector_status(pg_url, kafka_bootstrap, topic)
    assert_lag_zero(status, ends_of(positions))
    assert status["eventsApplied"] == distinct and status["deadLetters"] == 0, status
    totals = run_totals(log)
    if totals is not None:
        messages, applied, duplicates, dead, refolded = totals
        assert (messages, applied, duplicates, dead) == (
            len(records), distinct, len(records) - distinct, 0), totals

    print(f"\ninjected: {len(stream)} simulated events ({len(stream) - distinct} already "
          f"redelivered by the simulator), {moved} events moved within their delivery "
          f"(window {REORDER_WINDOW}), {copies} duplicates published "
          f"({DUPLICATE_RATIO:.0%}); {len(records)} records on {topic}")
    print(f"projector: {len(records)} records in {seconds:.1f} s "
          f"({len(records) / seconds:.0f}/s)"
          + (f", {totals[2]} duplicates skipped, {totals[4]} deliveries refolded" if totals
             else ""))
    print(verified.line())


# -- scenario 7: poison at scale -----------------------------------------------------
POISON_RATIO = 0.01


@dataclass(frozen=True)
class Poison:
    """One kind of malformed message: its name, the code it must be dead-lettered with,
    and how to build an instance (key, value) from a unique number and a delivery key."""

    name: str
    code: ErrorCode
    build: Callable[[int, bytes], Message]


def _envelope(n: int, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventId": f"poison-{n}",
        "eventType": "DeliveryRiderAssigned",
        "deliveryId": f"D-P{n}",
        "occurrenceDateTime": "2026-11-25T10:00:00Z",
        "sequence": 1,
        "data": {"riderId": "R-1"},
    }
    for name, value in changes.items():
        if value is _DROP:
            body.pop(name, None)
        else:
            body[name] = value
    return body


_DROP = object()


def _json(n: int, key: bytes, **changes: Any) -> Message:
    return key, json.dumps(_envelope(n, **changes)).encode()


def _raw(text: str) -> Callable[[int, bytes], Message]:
    """A raw value template: {n} is the unique number."""
    return lambda n, key: (key, text.replace("{n}", str(n)).encode())


CATALOGUE: tuple[Poison, ...] = (
    Poison("truncated JSON", ErrorCode.INVALID_JSON,
           _raw('{"eventId": "poison-{n}", "eventType": "DeliveryCreated", "deliv')),
    Poison("trailing garbage", ErrorCode.INVALID_JSON,
           lambda n, k: (k, json.dumps(_envelope(n)).encode() + b"}}")),
    Poison("NaN", ErrorCode.INVALID_JSON,
           _raw('{"eventId": "poison-{n}", "eventType": "X", "deliveryId": "D-1", '
                '"occurrenceDateTime": "2026-11-25T10:00:00Z", "sequence": NaN}')),
    Poison("number beyond float range", ErrorCode.INVALID_JSON,
           _raw('{"eventId": "poison-{n}", "eventType": "X", "deliveryId": "D-1", '
                '"occurrenceDateTime": "2026-11-25T10:00:00Z", "data": {"tip": 1e999}}')),
    Poison("5,000-digit integer", ErrorCode.INVALID_JSON,
           _raw('{"eventId": "poison-{n}", "eventType": "X", "deliveryId": "D-1", '
                '"occurrenceDateTime": "2026-11-25T10:00:00Z", "data": {"tip": '
                + "9" * 5_000 + "}}")),
    Poison("nested 100 deep", ErrorCode.INVALID_JSON,
           lambda n, k: (k, json.dumps(_envelope(n)).encode()[:-2]
                         + b', "x": ' + b"[" * 100 + b"]" * 100 + b"}}")),
    Poison("NUL in eventType", ErrorCode.INVALID_JSON,
           lambda n, k: _json(n, k, eventType="DeliveryCreated\u0000")),
    Poison("array", ErrorCode.NOT_AN_OBJECT, _raw('[{"eventId": "poison-{n}"}]')),
    Poison("number", ErrorCode.NOT_AN_OBJECT, _raw("{n}")),
    Poison("text payload holding an array", ErrorCode.NOT_AN_OBJECT,
           _raw('"[\\"poison-{n}\\"]"')),
    Poison("text payload holding no JSON", ErrorCode.INVALID_JSON, _raw('"poison {n}"')),
    Poison("empty value", ErrorCode.EMPTY_MESSAGE, lambda n, k: (k, b"")),
    Poison("tombstone (null value)", ErrorCode.EMPTY_MESSAGE, lambda n, k: (k, None)),
    Poison("bad UTF-8 byte", ErrorCode.INVALID_UTF8,
           lambda n, k: (k, json.dumps(_envelope(n)).encode().replace(b"R-1", b"R-\xff"))),
    Poison("overlong UTF-8", ErrorCode.INVALID_UTF8,
           lambda n, k: (k, json.dumps(_envelope(n)).encode().replace(b"R-1", b"R\xc0\xaf"))),
    Poison("lone surrogate escape", ErrorCode.INVALID_UTF8,
           lambda n, k: _json(n, k, eventId=f"poison-{n}-\ud800")),
    Poison("no eventId", ErrorCode.MISSING_FIELD, lambda n, k: _json(n, k, eventId=_DROP)),
    Poison("no eventType", ErrorCode.MISSING_FIELD, lambda n, k: _json(n, k, eventType=_DROP)),
    Poison("no occurrenceDateTime", ErrorCode.MISSING_FIELD,
           lambda n, k: _json(n, k, occurrenceDateTime=_DROP)),
    Poison("no deliveryId and no key", ErrorCode.MISSING_FIELD,
           lambda n, k: (None, json.dumps(_envelope(n, deliveryId=_DROP)).encode())),
    Poison("eventId a number", ErrorCode.WRONG_TYPE, lambda n, k: _json(n, k, eventId=n)),
    Poison("deliveryId an object", ErrorCode.WRONG_TYPE,
           lambda n, k: _json(n, k, deliveryId={"id": "D-1"})),
    Poison("eventType a boolean", ErrorCode.WRONG_TYPE, lambda n, k: _json(n, k, eventType=True)),
    Poison("sequence a string", ErrorCode.WRONG_TYPE, lambda n, k: _json(n, k, sequence="3")),
    Poison("sequence a fraction", ErrorCode.WRONG_TYPE, lambda n, k: _json(n, k, sequence=2.5)),
    Poison("sequence 2^63", ErrorCode.WRONG_TYPE, lambda n, k: _json(n, k, sequence=2**63)),
    Poison("sequence 10^30", ErrorCode.WRONG_TYPE, lambda n, k: _json(n, k, sequence=10**30)),
    Poison("data an array", ErrorCode.WRONG_TYPE, lambda n, k: _json(n, k, data=["R-1"])),
    Poison("empty eventId", ErrorCode.EMPTY_FIELD, lambda n, k: _json(n, k, eventId="")),
    Poison("blank eventType", ErrorCode.EMPTY_FIELD, lambda n, k: _json(n, k, eventType="   ")),
    Poison("eventId of 129 characters", ErrorCode.FIELD_TOO_LONG,
           lambda n, k: _json(n, k, eventId=f"poison-{n}-".ljust(129, "x"))),
    Poison("deliveryId of 300 characters", ErrorCode.FIELD_TOO_LONG,
           lambda n, k: _json(n, k, deliveryId="D-".ljust(300, "9"))),
    Poison("impossible date", ErrorCode.INVALID_TIME,
           lambda n, k: _json(n, k, occurrenceDateTime="2026-13-45T25:61:00Z")),
    Poison("words for a date", ErrorCode.INVALID_TIME,
           lambda n, k: _json(n, k, occurrenceDateTime="yesterday")),
    Poison("epoch seconds for a date", ErrorCode.INVALID_TIME,
           lambda n, k: _json(n, k, occurrenceDateTime=1_764_064_800)),
    Poison("before year 1 in UTC", ErrorCode.INVALID_TIME,
           lambda n, k: _json(n, k, occurrenceDateTime="0001-01-01T00:00:00+01:00")),
    Poison("after year 9999 in UTC", ErrorCode.INVALID_TIME,
           lambda n, k: _json(n, k, occurrenceDateTime="9999-12-31T23:59:59-01:00")),
    Poison("created without shopId", ErrorCode.MISSING_DATA_FIELD,
           lambda n, k: _json(n, k, eventType="DeliveryCreated", data={"orderId": "O-1"})),
    Poison("ETA change without the ETA", ErrorCode.MISSING_DATA_FIELD,
           lambda n, k: _json(n, k, eventType="DeliveryEtaChanged", data={})),
    Poison("riderId a number", ErrorCode.INVALID_DATA_FIELD,
           lambda n, k: _json(n, k, data={"riderId": 7})),
    Poison("alias with an empty riderId", ErrorCode.INVALID_DATA_FIELD,
           lambda n, k: _json(n, k, eventType="배차완료", data={"riderId": ""})),
    Poison("ETA not a date", ErrorCode.INVALID_DATA_FIELD,
           lambda n, k: _json(n, k, eventType="DeliveryEtaChanged",
                              data={"estimatedDeliveryAt": "soon"})),
)


def near_limit_poison(limit: int) -> tuple[Poison, ...]:
    """Malformed messages whose record is a few hundred bytes under the broker's limit."""

    def size(key: bytes) -> int:
        return limit - 512 - len(key)

    def padded(n: int, key: bytes) -> Message:
        head = json.dumps(_envelope(n, eventId=_DROP)).encode()[:-1] + b', "padding": "'
        return key, head + b"x" * (size(key) - len(head) - 2) + b'"}'

    def unterminated(n: int, key: bytes) -> Message:
        head = f'{{"eventId": "poison-{n}", "data": {{"note": "'.encode()
        return key, head + b"y" * (size(key) - len(head))

    def bad_utf8(n: int, key: bytes) -> Message:
        head = json.dumps(_envelope(n)).encode()[:-1] + b', "padding": "'
        return key, head + b"z" * (size(key) - len(head) - 3) + b'\xff"}'

    return (
        Poison("near the size limit, no eventId", ErrorCode.MISSING_FIELD, padded),
        Poison("near the size limit, unterminated", ErrorCode.INVALID_JSON, unterminated),
        Poison("near the size limit, bad UTF-8 at the end", ErrorCode.INVALID_UTF8, bad_utf8),
    )


def controls(stream: list[dict[str, Any]], limit: int, rng: random.Random) -> list[LogRecord]:
    """Valid messages that look odd but are not bad input (the contract, section Events)."""
    out: list[LogRecord] = []
    ids = sorted({e["deliveryId"] for e in stream})
    for n in range(max(3, len(stream) // 1_000)):
        delivery = rng.choice(ids)
        unknown = {"eventId": f"control-unknown-{n}", "eventType": "DeliveryTipAdded",
                   "deliveryId": delivery, "occurrenceDateTime": "2026-11-25T13:00:00Z",
                   "data": {"tip": 10**30, "currency": "KRW"}}
        out.append(LogRecord(encode(unknown), delivery.encode()))
        other = rng.choice(ids)
        mismatch = {"eventId": f"control-key-{n}", "eventType": "DeliveryEtaChanged",
                    "deliveryId": delivery, "occurrenceDateTime": "2026-11-25T13:00:01Z",
                    "data": {"estimatedDeliveryAt": "2026-11-25T14:00:00Z"}}
        out.append(LogRecord(encode(mismatch), other.encode()))  # the body's id wins
    big_id = "D-NEAR-LIMIT"
    data = {"orderId": "O-BIG", "shopId": "S-BIG", "note": ""}
    head = {"eventId": "control-near-limit", "eventType": "DeliveryCreated",
            "deliveryId": big_id, "occurrenceDateTime": "2026-11-25T13:00:00Z", "data": data}
    data["note"] = "n" * (limit - 512 - len(big_id) - len(encode(head)))
    out.append(LogRecord(encode(head), big_id.encode()))
    return out


def test_poison_at_scale_is_dead_lettered_with_its_reason_and_lag_returns_to_zero(
    pg_url: str, kafka_bootstrap: str, topic_factory: Callable[..., str], full_size: bool,
) -> None:
    from kafka.errors import KafkaError

    rng = random.Random(7)
    topic = topic_factory(3)
    limit, broker_limit = topic_message_limit(kafka_bootstrap, topic)
    stream = simulate(SimulationConfig(deliveries=47_000 if full_size else 4_500, seed=7))
    base: list[Message] = [(e["deliveryId"].encode(), encode(e)) for e in stream]
    keys = [k or b"" for k, _ in base]

    extras: list[tuple[Poison | None, Message]] = [
        (None, (r.key, r.value)) for r in controls(stream, limit, rng)]
    for key, value in (m for _, m in extras):
        parse_message(value, key)  # the controls are valid
    near = near_limit_poison(limit)
    near_copies = 3 if full_size else 1
    count = round((len(base) + len(extras)) / (1 - POISON_RATIO) * POISON_RATIO)
    kinds = [CATALOGUE[i % len(CATALOGUE)] for i in range(count - len(near) * near_copies)]
    kinds += list(near) * near_copies
    for n, kind in enumerate(kinds):
        message = kind.build(n, rng.choice(keys))
        try:
            parse_message(message[1], message[0])
        except EventParseError as exc:
            assert exc.code == kind.code, f"catalogue: {kind.name} parses as {exc.code}"
        else:
            raise AssertionError(f"catalogue: {kind.name} is a valid event")
        extras.append((kind, message))

    # The stream keeps its order; each extra message goes at a random place in it.
    total = len(base) + len(extras)
    slots = set(rng.sample(range(total), len(extras)))
    rng.shuffle(extras)
    base_iter, extra_iter = iter(base), iter(extras)
    order = [next(extra_iter) if i in slots else (None, next(base_iter)) for i in range(total)]
    messages = [m for _, m in order]
    poison = [(kind, m) for kind, m in order if kind is not None]

    positions = publish_with_positions(kafka_bootstrap, topic, messages,
                                       max_request_size=limit + 65_536)
    with pytest.raises(KafkaError):  # the limit is real: a little over it is refused
        publish_with_positions(kafka_bootstrap, topic, [(b"D-OVER", b"x" * (limit + 64))],
                               max_request_size=limit + 65_536)
    expected = {pos: (kind, m) for (kind, m), pos in zip(order, positions, strict=True)
                if kind is not None}
    largest = max(len(v or b"") for _, v in messages)

    log, seconds = project_until_caught_up(pg_url, kafka_bootstrap, topic)

    engine = make_engine(pg_url, writer=False)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(dead_letters).where(dead_letters.c.generation == 1)).all()
    finally:
        engine.dispose()
    found = {(int(r.partition), int(r.offset)): r for r in rows}
    missing = sorted(expected.keys() - found.keys())
    extra = sorted(found.keys() - expected.keys())
    assert not missing and not extra, (
        f"dead letters differ from the poison published: {len(missing)} missing "
        f"{[(m, expected[m][0].name) for m in missing[:5]]}, {len(extra)} extra "
        f"{[(e, found[e].error_code, found[e].reason) for e in extra[:5]]}")
    wrong = []
    for pos, (kind, (key, value)) in expected.items():
        row = found[pos]
        stored = (row.topic, row.error_code, row.status, _bytes(row.key), _bytes(row.value))
        if stored != (topic, kind.code.value, PENDING, key, value) or not row.reason:
            wrong.append((kind.name, pos, stored[:4], (stored[4] or b"")[:80], row.reason))
    assert not wrong, f"{len(wrong)} dead letters stored wrongly: {wrong[:5]}"

    records = [LogRecord(v if v is not None else b"", k) for k, v in messages]
    verified = assert_read_model_equals_fold(pg_url, records)
    assert verified.invalid == len(poison)
    status = projector_status(pg_url, kafka_bootstrap, topic)
    assert_lag_zero(status, ends_of(positions))
    assert status["deadLetters"] == len(poison) and status["eventsApplied"] == verified.events, (
        status)
    totals = run_totals(log)
    if totals is not None:
        assert totals[0] == len(messages) and totals[3] == len(poison), totals

    by_code: dict[str, int] = {}
    for kind, _ in poison:
        by_code[kind.code.value] = by_code.get(kind.code.value, 0) + 1
    print(f"\ninjected: {len(poison)} poison messages ({len(poison) / len(messages):.2%} of "
          f"{len(messages)}) of {len(CATALOGUE) + len(near)} kinds: "
          + ", ".join(f"{c} {n}" for c, n in sorted(by_code.items())))
    print(f"near the size limit: topic max.message.bytes {limit} (broker message.max.bytes "
          f"{broker_limit}); {len(near) * near_copies} poison and 1 valid record of up to "
          f"{largest} bytes accepted, {limit + 64} bytes refused by the broker")
    print(f"not poison: {len(extras) - len(poison)} controls (unknown event types, key != "
          "deliveryId, a valid event near the limit) applied, none dead-lettered")
    print(f"verified: every poison message a dead letter at its offset with its code and "
          f"bytes, nothing else; lag 0 on {len(status['partitions'])} partitions; "
          f"{len(messages)} messages projected in {seconds:.1f} s")
    print(verified.line())


def _bytes(value: bytes | memoryview | None) -> bytes | None:
    return None if value is None else bytes(value)
