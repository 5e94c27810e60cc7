"""The served generation's history as an ``MessageSource`` (``rebuild --from-history``).

It holds a fixed range per partition: from wherever the projector seeks up to the
served generation's offsets when the rebuild started (``ends``). Offsets without a
message (duplicates, records compacted or deleted, blank lines) are skipped, and
``position`` reports the end once a partition is read, so the building generation
stands exactly where the served one stood. Pages come from the store
(``projector.store.history``); nothing here speaks SQL.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence

from projector.sources.base import SourceMessage, TopicPartition

#: (partition, start, end) -> (messages in offset order, where the next page starts).
PageReader = Callable[[TopicPartition, int, int], tuple[list[SourceMessage], int]]


class HistorySource:
    def __init__(self, ends: Mapping[TopicPartition, int], read: PageReader) -> None:
        self._ends = dict(ends)
        self._read = read
        self._assigned: set[TopicPartition] = set()
        self._buffers: dict[TopicPartition, deque[SourceMessage]] = {}
        self._next_page: dict[TopicPartition, int] = {}

    def partitions(self) -> list[TopicPartition]:
        return sorted(self._ends)

    def start(self) -> None:
        return None

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        self._assigned = set(partitions)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if self.position(tp) == offset:
            return
        self._buffers[tp] = deque()
        self._next_page[tp] = offset

    def position(self, tp: TopicPartition) -> int | None:
        if tp not in self._next_page:
            return None
        buffer = self._buffers.get(tp)
        return buffer[0].offset if buffer else self._next_page[tp]

    def poll(self, max_records: int, timeout_ms: int) -> list[SourceMessage]:
        out: list[SourceMessage] = []
        for tp in sorted(self._assigned):
            buffer = self._buffers.setdefault(tp, deque())
            while len(out) < max_records:
                if not buffer:
                    start, end = self._next_page.get(tp), self._ends.get(tp, 0)
                    if start is None or start >= end:
                        break
                    messages, self._next_page[tp] = self._read(tp, start, end)
                    buffer.extend(messages)
                    continue
                out.append(buffer.popleft())
            if len(out) >= max_records:
                break
        return out

    def beginning_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in partitions}

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._ends.get(tp, 0) for tp in partitions}

    def offsets_for_time(
        self, partitions: Sequence[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int]:
        return self.beginning_offsets(partitions)

    def commit_hint(self, offsets: dict[TopicPartition, int]) -> None:
        return None

    def close(self) -> None:
        self._buffers.clear()

