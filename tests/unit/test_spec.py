"""``--from-offset SPEC``: parsing and resolving against given offsets, no source needed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from projector.errors import ProjectorError, SpecError
from projector.sources.base import TopicPartition
from projector.spec import parse_spec, resolve

pytestmark = pytest.mark.unit

T = "delivery-events"
P = [TopicPartition(T, 0), TopicPartition(T, 1), TopicPartition(T, 2)]
BEGIN = {P[0]: 0, P[1]: 5, P[2]: 0}
END = {P[0]: 100, P[1]: 50, P[2]: 0}


def test_earliest_is_every_beginning() -> None:
    for text in ("earliest", " EARLIEST "):
        assert resolve(parse_spec(text), P, BEGIN, END) == BEGIN


def test_n_applies_to_every_partition() -> None:
    spec = parse_spec("0")
    assert spec.every == 0
    with pytest.raises(SpecError, match="before the beginning of partition 1"):
        resolve(spec, P, BEGIN, END)
    assert resolve(parse_spec("7"), P[:2], BEGIN, END) == {P[0]: 7, P[1]: 7}


def test_pairs_name_some_partitions_the_rest_start_at_earliest() -> None:
    spec = parse_spec("0:10, 1:50")
    assert dict(spec.per_partition) == {0: 10, 1: 50}
    assert resolve(spec, P, BEGIN, END) == {P[0]: 10, P[1]: 50, P[2]: 0}


def test_the_end_offset_itself_is_allowed_beyond_it_is_not() -> None:
    assert resolve(parse_spec("2:0"), P, BEGIN, END)[P[2]] == 0
    with pytest.raises(SpecError, match=r"offset 101 is beyond the end of partition 0 \(it holds"
                                        r" offsets 0..99; its end offset is 100\)"):
        resolve(parse_spec("0:101"), P, BEGIN, END)
    with pytest.raises(SpecError, match="partition 2 .*holds no messages"):
        resolve(parse_spec("2:1"), P, BEGIN, END)


def test_before_the_beginning_is_an_error() -> None:
    with pytest.raises(SpecError, match="offset 4 is before the beginning of partition 1"):
        resolve(parse_spec("1:4"), P, BEGIN, END)


def test_unknown_partition_is_named() -> None:
    with pytest.raises(SpecError, match="partition 7 does not exist in delivery-events"
                                        r" \(partitions: 0, 1, 2\)"):
        resolve(parse_spec("0:1,7:3"), P, BEGIN, END)


def test_time_forms() -> None:
    spec = parse_spec("@2026-11-25T00:00:00Z")
    expected = int(datetime(2026, 11, 25, tzinfo=UTC).timestamp() * 1000)
    assert spec.timestamp_ms == expected
    assert parse_spec("@2026-11-25T09:00:00+09:00").timestamp_ms == expected
    assert parse_spec("@2026-11-25 00:00:00").timestamp_ms == expected  # no offset: UTC
    assert parse_spec(f"@{expected}").timestamp_ms == expected  # epoch milliseconds


def test_time_resolves_through_offsets_for_time_clamped_to_what_is_held() -> None:
    spec = parse_spec("@2026-11-25T00:00:00Z")
    times = {P[0]: 40, P[1]: 2, P[2]: 0}  # 2 is older than partition 1's beginning
    assert resolve(spec, P, BEGIN, END, times) == {P[0]: 40, P[1]: 5, P[2]: 0}
    with pytest.raises(ValueError):
        resolve(spec, P, BEGIN, END)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty --from-offset"),
        ("   ", "empty --from-offset"),
        ("latest", "is not a SPEC"),
        ("-1", "is not a SPEC"),
        ("1.5", "is not a SPEC"),
        ("0x10", "is not a SPEC"),
        ("0:", "'0:' is not PARTITION:OFFSET"),
        ("0:1:2", "is not PARTITION:OFFSET"),
        ("a:1", "is not PARTITION:OFFSET"),
        ("0:-3", "is not PARTITION:OFFSET"),
        ("0:1,,1:2", "'' is not PARTITION:OFFSET"),
        ("0:1,0:2", "partition 0 is named twice"),
        ("@", "is not an ISO-8601 time"),
        ("@yesterday", "is not an ISO-8601 time"),
        ("@2026-13-01T00:00:00Z", "is not an ISO-8601 time"),
        ("@1900-01-01T00:00:00Z", "before 1970"),
    ],
)
def test_malformed_specs_say_what_is_wrong_in_one_line(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        parse_spec(text)
    assert "\n" not in str(info.value)


# -- rebuild and verify requests ------------------------------------------------------
def test_rebuild_requests_from_flags() -> None:
    from projector.errors import RebuildError
    from projector.rebuild import RebuildMode, RebuildRequest, VerifyRequest

    assert RebuildRequest.of().mode is RebuildMode.NEW_GENERATION
    assert RebuildRequest.of(in_place=True, from_offset="5").mode is RebuildMode.IN_PLACE
    assert RebuildRequest.of(in_place=True, from_offset="5").spec.every == 5
    assert RebuildRequest.of(resume=True, keep_old=True).keep_old
    for flags, message in [
        ({"resume": True, "discard": True}, "--resume and --discard cannot be used together"),
        ({"resume": True, "from_offset": "3"}, "--from-offset cannot be used with --resume"),
        ({"in_place": True, "keep_old": True}, "--keep-old only applies"),
        ({"from_offset": "x:y"}, "'x:y' is not PARTITION:OFFSET"),
    ]:
        with pytest.raises(ProjectorError, match=message):
            RebuildRequest.of(**flags)  # type: ignore[arg-type]
    assert issubclass(RebuildError, ProjectorError)
    assert VerifyRequest.of(limit=3).limit == 3
    with pytest.raises(RebuildError, match="--limit must not be negative"):
        VerifyRequest.of(limit=-1)
