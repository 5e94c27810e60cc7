"""A JSON Lines file as an event source: one message a line, partition 0, offset = line number.

A line of only white space is skipped but keeps its number. The file may grow
while we read it (``projector run`` follows it); a last line without its newline
is read only once the file has stopped growing for one poll, so that a writer
caught mid-line is not mistaken for a bad message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import UTC, tzinfo
from pathlib import Path
from typing import IO

from projector.errors import SourceUnavailable
from projector.sources.base import SourceMessage, TopicPartition
from schema import jsonl
from schema.events import EventParseError, decode_value, parse_time


class FileSource:
    def __init__(self, path: str, source_tz: tzinfo = UTC) -> None:
        self.path = Path(path).expanduser().resolve()
        self.source_tz = source_tz  # for times without an offset, as the parser reads them
        self.topic = jsonl.topic_of(self.path)
        self.tp = TopicPartition(self.topic, jsonl.PARTITION)
        self._fh: IO[bytes] | None = None
        self._next = 0  # the offset of the next line to read
        self._assigned = False
        self._last_size = -1
        self._starts: dict[int, int] = {}  # offset -> byte position, for recent lines

    # -- protocol ---------------------------------------------------------------
    def partitions(self) -> list[TopicPartition]:
        self._check()
        return [self.tp]

    def start(self) -> None:
        self._check()
        self._assigned = True

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        self._check_partitions(partitions)
        self._assigned = bool(partitions)

    def assignment(self) -> set[TopicPartition]:
        return {self.tp} if self._assigned else set()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._check_partitions([tp])
        if self._fh is not None and offset in self._starts:
            # Recently read (the loop seeks back a little after a skipped blank line).
            self._fh.seek(self._starts[offset])
            self._next = offset
            return
        self._reopen()
        self._starts.clear()
        assert self._fh is not None
        self._next = 0
        while self._next < offset:
            line = self._fh.readline()
            if not line.endswith(b"\n"):
                self._fh.seek(-len(line), os.SEEK_CUR)
                break
            self._next += 1

    def position(self, tp: TopicPartition) -> int | None:
        return self._next if self._fh is not None and tp == self.tp else None

    def poll(self, max_records: int, timeout_ms: int) -> list[SourceMessage]:
        if not self._assigned:
            time.sleep(timeout_ms / 1000)
            return []
        if self._fh is None:
            self.seek(self.tp, 0)
        assert self._fh is not None
        messages: list[SourceMessage] = []
        size = self._size()
        while len(messages) < max_records:
            start = self._fh.tell()
            line = self._fh.readline()
            if not line:
                break
            if not line.endswith(b"\n") and size != self._last_size:
                self._fh.seek(start)  # maybe a writer mid-line: look again next poll
                break
            offset = self._next
            self._next += 1
            self._remember(offset, start)
            body = line.rstrip(b"\r\n")
            if not jsonl.holds_message(body):
                continue
            messages.append(SourceMessage(self.topic, 0, offset, None, body))
        self._last_size = size
        if not messages and timeout_ms:
            time.sleep(min(timeout_ms, 200) / 1000)
        return messages

    def beginning_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        self._check_partitions(partitions)
        return {tp: 0 for tp in partitions}

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        self._check_partitions(partitions)
        return {tp: self._end_offset() for tp in partitions}

    def offsets_for_time(
        self, partitions: Sequence[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int]:
        """The first line whose occurrence time is at or after ``timestamp_ms``."""
        self._check_partitions(partitions)
        found: int | None = None
        with self._open() as fh:
            for offset, line in enumerate(fh):
                if not jsonl.holds_message(line):
                    continue
                try:
                    body = decode_value(line.rstrip(b"\r\n"))
                    raw = body.get("occurrenceDateTime", body.get("occurenceDateTime"))
                    when = parse_time(raw, self.source_tz, "occurrenceDateTime")
                except EventParseError:
                    continue
                if when.timestamp() * 1000 >= timestamp_ms:
                    found = offset
                    break
        return {tp: (found if found is not None else self._end_offset()) for tp in partitions}

    def commit_hint(self, offsets: dict[TopicPartition, int]) -> None:
        return None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    # -- helpers ----------------------------------------------------------------
    def _remember(self, offset: int, position: int) -> None:
        self._starts[offset] = position
        if len(self._starts) > 20_000:  # bounded: keep the newest half
            for old in sorted(self._starts)[:10_000]:
                del self._starts[old]

    def _check(self) -> None:
        if not self.path.is_file():
            raise SourceUnavailable(f"event source file {self.path} does not exist")

    def _check_partitions(self, partitions: Sequence[TopicPartition]) -> None:
        for tp in partitions:
            if tp != self.tp:
                raise SourceUnavailable(
                    f"{tp.topic}:{tp.partition} is not a partition of {self.topic} (only 0 is)"
                )

    def _open(self) -> IO[bytes]:
        try:
            return open(self.path, "rb")
        except OSError as exc:
            raise SourceUnavailable(f"cannot read {self.path}: {exc.strerror}") from exc

    def _end_offset(self) -> int:
        try:
            return jsonl.end_offset(self.path)
        except OSError as exc:
            raise SourceUnavailable(f"cannot read {self.path}: {exc.strerror}") from exc

    def _reopen(self) -> None:
        self.close()
        self._fh = self._open()
        self._last_size = -1

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError as exc:
            raise SourceUnavailable(f"cannot read {self.path}: {exc.strerror}") from exc
