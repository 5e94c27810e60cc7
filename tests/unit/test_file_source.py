"""The JSON Lines file source: partition 0, offset = line number (the contract's EVENT_SOURCE)."""

from __future__ import annotations

import inspect
from datetime import datetime
from pathlib import Path

import pytest

from projector.errors import SourceUnavailable
from projector.sources.base import MessageSource, SourceMessage, TopicPartition
from projector.sources.file import FileSource
from schema.events import zone
from tests.helpers import encode, make_event, write_jsonl

pytestmark = pytest.mark.unit


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def poll_all(source: FileSource, rounds: int = 3) -> list[SourceMessage]:
    """Everything the source yields over a few polls (no waiting: timeout 0)."""
    out: list[SourceMessage] = []
    for _ in range(rounds):
        out.extend(source.poll(1000, 0))
    return out


def opened(path: Path) -> FileSource:
    source = FileSource(str(path))
    source.start()
    return source


@pytest.fixture
def lines() -> list[bytes]:
    return [encode(make_event(at=f"2026-11-25T10:0{i}:00Z", event_id=f"e-{i}")) for i in range(5)]


def test_the_file_source_has_every_method_of_the_protocol() -> None:
    wanted = {n for n, _ in inspect.getmembers(MessageSource, inspect.isfunction)
              if not n.startswith("_")}
    assert wanted <= set(dir(FileSource))
    for name in wanted:
        assert (inspect.signature(getattr(FileSource, name)).parameters.keys()
                >= inspect.signature(getattr(MessageSource, name)).parameters.keys())


def test_offsets_are_line_numbers(tmp_path: Path, lines: list[bytes]) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", lines)
    source = opened(path)
    tp = TopicPartition(str(path.resolve()), 0)
    assert source.partitions() == [tp]
    assert source.assignment() == {tp}
    messages = poll_all(source)
    assert [m.offset for m in messages] == [0, 1, 2, 3, 4]
    assert [m.value for m in messages] == lines
    assert all(m.tp == tp and m.key is None and m.headers == () for m in messages)
    assert source.beginning_offsets([tp]) == {tp: 0}
    assert source.end_offsets([tp]) == {tp: 5}


def test_poll_respects_max_records(tmp_path: Path, lines: list[bytes]) -> None:
    source = opened(write_jsonl(tmp_path / "e.jsonl", lines))
    assert [m.offset for m in source.poll(2, 0)] == [0, 1]
    assert [m.offset for m in source.poll(2, 0)] == [2, 3]
    assert [m.offset for m in source.poll(2, 0)] == [4]
    assert source.poll(2, 0) == []


def test_white_space_lines_are_skipped_but_keep_their_number(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"a":0}\n\n   \n{"a":3}\r\n\t \r\n{"a":5}\n')
    source = opened(path)
    messages = poll_all(source)
    assert [(m.offset, m.value) for m in messages] == [
        (0, b'{"a":0}'), (3, b'{"a":3}'), (5, b'{"a":5}'),
    ]
    assert source.end_offsets([source.tp]) == {source.tp: 6}


def test_trailing_white_space_lines_keep_their_numbers_and_the_position_passes_them(
        tmp_path: Path) -> None:
    """The end offset counts every line; the source's position steps over blank ones, so
    the projector can move its stored offset to the end (as over Kafka's markers)."""
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"a":0}\n{"a":1}\n\n  \n')
    source = opened(path)
    assert [m.offset for m in poll_all(source)] == [0, 1]
    assert source.end_offsets([source.tp]) == {source.tp: 4}
    assert source.position(source.tp) == 4
    blank = tmp_path / "blank.jsonl"
    blank.write_bytes(b"\n \n")
    assert FileSource(str(blank)).end_offsets([FileSource(str(blank)).tp]) == {
        FileSource(str(blank)).tp: 2
    }


def test_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"")
    source = opened(path)
    assert poll_all(source) == []
    assert source.end_offsets([source.tp]) == {source.tp: 0}
    assert source.offsets_for_time([source.tp], 0) == {source.tp: 0}


@pytest.mark.parametrize("offset, expected", [(0, [0, 1, 2, 3, 4]), (3, [3, 4]), (5, []),
                                              (9, [])])
def test_seek(tmp_path: Path, lines: list[bytes], offset: int, expected: list[int]) -> None:
    source = opened(write_jsonl(tmp_path / "e.jsonl", lines))
    poll_all(source)
    source.seek(source.tp, offset)
    assert [m.offset for m in poll_all(source)] == expected


def test_seek_back_reads_again(tmp_path: Path, lines: list[bytes]) -> None:
    source = opened(write_jsonl(tmp_path / "e.jsonl", lines))
    first = poll_all(source)
    source.seek(source.tp, 1)
    again = poll_all(source)
    assert again == first[1:]


def test_seek_onto_a_blank_line_yields_the_next_message(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"a":0}\n\n{"a":2}\n')
    source = opened(path)
    source.seek(source.tp, 1)
    assert [m.offset for m in poll_all(source)] == [2]


def test_seek_beyond_the_end_then_the_file_grows(tmp_path: Path, lines: list[bytes]) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", lines[:2])
    source = opened(path)
    source.seek(source.tp, 4)
    assert poll_all(source) == []
    with open(path, "ab") as fh:
        fh.write(b"\n".join(lines[2:]) + b"\n")
    # Line numbers stay true: the loop, not the source, skips those below its position.
    assert [m.offset for m in poll_all(source)] == [2, 3, 4]


def test_a_file_that_grows_between_polls(tmp_path: Path, lines: list[bytes]) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", lines[:2])
    source = opened(path)
    assert [m.offset for m in poll_all(source)] == [0, 1]
    with open(path, "ab") as fh:
        fh.write(b"\n" + lines[2] + b"\n")
    assert [(m.offset, m.value) for m in poll_all(source)] == [(3, lines[2])]
    with open(path, "ab") as fh:
        fh.write(lines[3] + b"\n" + lines[4] + b"\n")
    assert [m.offset for m in poll_all(source)] == [4, 5]
    assert source.end_offsets([source.tp]) == {source.tp: 6}


def test_a_last_line_without_newline_waits_until_the_file_stops_growing(
    tmp_path: Path, lines: list[bytes]
) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(lines[0] + b"\n" + lines[1][:10])  # a writer caught mid-line
    source = opened(path)
    assert [m.offset for m in source.poll(100, 0)] == [0]
    with open(path, "ab") as fh:
        fh.write(lines[1][10:20])  # still growing
    assert source.poll(100, 0) == []
    with open(path, "ab") as fh:
        fh.write(lines[1][20:] + b"\n")  # the line is complete
    assert [(m.offset, m.value) for m in source.poll(100, 0)] == [(1, lines[1])]


def test_a_last_line_without_newline_is_read_once_the_file_is_still(
    tmp_path: Path, lines: list[bytes]
) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(lines[0] + b"\n" + lines[1])
    source = opened(path)
    first = source.poll(100, 0)
    second = source.poll(100, 0)
    assert [m.offset for m in first + second] == [0, 1]
    assert second and second[-1].value == lines[1]
    assert source.poll(100, 0) == []  # once only
    assert source.end_offsets([source.tp]) == {source.tp: 2}


def test_a_static_file_without_final_newline_is_read_on_the_second_poll(
    tmp_path: Path, lines: list[bytes]
) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(lines[0])
    source = opened(path)
    assert source.poll(100, 0) == []
    assert [m.value for m in source.poll(100, 0)] == [lines[0]]


def test_offsets_for_time(tmp_path: Path) -> None:
    misspelled = make_event()
    misspelled["occurenceDateTime"] = "2026-11-25T12:00:00Z"
    del misspelled["occurrenceDateTime"]
    path = write_jsonl(
        tmp_path / "e.jsonl",
        [
            make_event(at="2026-11-25T10:00:00Z"),
            b"not json",
            make_event(at="2026-11-25T12:00:00+09:00"),  # 03:00Z
            b"",
            make_event(at="2026-11-25T11:00:00Z"),
            misspelled,
        ],
    )
    source = opened(path)
    tp = source.tp
    assert source.offsets_for_time([tp], ms("2026-11-25T00:00:00+00:00")) == {tp: 0}
    assert source.offsets_for_time([tp], ms("2026-11-25T10:00:00+00:00")) == {tp: 0}
    assert source.offsets_for_time([tp], ms("2026-11-25T10:00:00.001+00:00")) == {tp: 4}
    assert source.offsets_for_time([tp], ms("2026-11-25T11:30:00+00:00")) == {tp: 5}
    after_all = ms("2026-11-25T13:00:00+00:00")
    assert source.offsets_for_time([tp], after_all) == source.end_offsets([tp])
    assert source.end_offsets([tp]) == {tp: 6}


def test_offsets_for_time_reads_local_times_in_the_source_zone(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "e.jsonl",
        [make_event(at="2026-11-25 09:00:00"), make_event(at="2026-11-25 18:00:00")],
    )
    seoul = FileSource(str(path), source_tz=zone("Asia/Seoul"))
    utc = FileSource(str(path))
    when = ms("2026-11-25T08:00:00+00:00")  # 17:00 in Seoul
    assert utc.offsets_for_time([utc.tp], when) == {utc.tp: 0}
    assert seoul.offsets_for_time([seoul.tp], when) == {seoul.tp: 1}


def test_a_missing_file_is_source_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "events.jsonl"
    source = FileSource(str(path))
    for call in (source.partitions, source.start):
        with pytest.raises(SourceUnavailable) as info:
            call()
        assert str(path) in str(info.value)
        assert "does not exist" in str(info.value)
    tp = TopicPartition(str(path), 0)
    for call in (lambda: source.end_offsets([tp]), lambda: source.offsets_for_time([tp], 0),
                 lambda: source.seek(tp, 0)):
        with pytest.raises(SourceUnavailable) as info:
            call()
        assert str(path) in str(info.value) and "No such file" in str(info.value)


def test_a_file_removed_while_reading_is_source_unavailable(tmp_path: Path,
                                                             lines: list[bytes]) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", lines)
    source = opened(path)
    poll_all(source)
    path.unlink()
    with pytest.raises(SourceUnavailable, match="cannot read"):
        source.poll(10, 0)


def test_only_partition_zero_exists(tmp_path: Path, lines: list[bytes]) -> None:
    source = FileSource(str(write_jsonl(tmp_path / "e.jsonl", lines)))
    with pytest.raises(SourceUnavailable, match="only 0"):
        source.assign([TopicPartition(source.topic, 1)])
    with pytest.raises(SourceUnavailable):
        source.seek(TopicPartition("other", 0), 0)


def test_nothing_is_read_until_assigned(tmp_path: Path, lines: list[bytes]) -> None:
    source = FileSource(str(write_jsonl(tmp_path / "e.jsonl", lines)))
    assert source.assignment() == set()
    assert source.poll(10, 0) == []
    source.assign([source.tp])
    assert [m.offset for m in source.poll(10, 0)] == [0, 1, 2, 3, 4]
    source.assign([])
    assert source.assignment() == set()
    source.close()
    source.close()  # twice is fine
