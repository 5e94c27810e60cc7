"""``HistorySource``: the served history, per partition in offset order, ending exactly at
the served generation's offsets (gaps skipped), read in pages; and the request's flags."""

from __future__ import annotations

import pytest

from projector.errors import RebuildError
from projector.rebuild import RebuildMode, RebuildRequest
from projector.sources.base import SourceMessage, TopicPartition
from projector.sources.history import HistorySource

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)
HELD = {P0: [0, 1, 4, 5, 8], P1: [2, 3]}  # offsets with a message (the rest: gaps)


def _reader(page: int, calls: list[tuple[TopicPartition, int, int]]):  # type: ignore[no-untyped-def]
    def read(tp: TopicPartition, start: int, end: int) -> tuple[list[SourceMessage], int]:
        calls.append((tp, start, end))
        found = [o for o in HELD[tp] if start <= o < end][:page]
        upper = found[-1] + 1 if len(found) == page else end
        return [SourceMessage(tp.topic, tp.partition, o, None, b"{}") for o in found], upper
    return read


def test_it_reads_each_partition_in_offset_order_and_stands_at_its_end() -> None:
    calls: list[tuple[TopicPartition, int, int]] = []
    source = HistorySource({P0: 10, P1: 4}, _reader(2, calls))
    source.assign([P0, P1])
    source.seek(P0, 0)
    source.seek(P1, 3)
    seen: list[tuple[int, int]] = []
    for _ in range(10):
        seen += [(m.partition, m.offset) for m in source.poll(3, 0)]
    assert seen == [(0, 0), (0, 1), (0, 4), (0, 5), (0, 8), (1, 3)]
    assert source.position(P0) == 10 and source.position(P1) == 4  # past the trailing gaps
    assert source.end_offsets([P0, P1]) == {P0: 10, P1: 4}
    assert all(end == {P0: 10, P1: 4}[tp] for tp, _, end in calls)


def test_a_seek_back_reads_again_and_a_seek_to_the_position_keeps_the_buffer() -> None:
    calls: list[tuple[TopicPartition, int, int]] = []
    source = HistorySource({P0: 10}, _reader(5, calls))
    source.assign([P0])
    source.seek(P0, 0)
    assert [m.offset for m in source.poll(2, 0)] == [0, 1]
    assert source.position(P0) == 4
    source.seek(P0, 4)  # where it stands: nothing read again
    assert [m.offset for m in source.poll(10, 0)] == [4, 5, 8]
    assert calls == [(P0, 0, 10), (P0, 9, 10)]  # the page after the full one; 4.. not again
    source.seek(P0, 1)
    assert [m.offset for m in source.poll(10, 0)] == [1, 4, 5, 8]
    assert source.position(P0) == 10


def test_from_history_is_its_own_mode_and_refuses_flags_of_a_rebuild_from_the_topic() -> None:
    assert RebuildRequest.of(from_history=True).mode is RebuildMode.FROM_HISTORY
    assert RebuildRequest.of(from_history=True, keep_old=True).keep_old
    for flags in ({"from_offset": "5"}, {"in_place": True}, {"resume": True},
                  {"allow_loss": True}, {"allow_empty": True}):
        with pytest.raises(RebuildError):
            RebuildRequest.of(from_history=True, **flags)  # type: ignore[arg-type]
