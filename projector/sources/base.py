"""The ``MessageSource`` protocol: what the projector needs from any ordered, offset-addressed log.

It yields raw messages (``SourceMessage``), not events: parsing is the loop's. (The
GraphQL type ``EventSource`` is something else: where a served event was read.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True)
class SourceMessage:
    """One raw message, as read: nothing parsed yet."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = field(default=())
    timestamp_ms: int | None = None

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


class MessageSource(Protocol):
    """An ordered log of messages per partition.

    In group mode the source decides which partitions this process owns (a Kafka
    consumer group) and ``assignment`` tells; otherwise ``assign`` names them.
    Positions are always set by the projector with ``seek`` from the offsets kept
    in the read model: the source's own committed offsets are only a hint for
    lag tools.
    """

    def partitions(self) -> list[TopicPartition]:
        """Every partition of the source."""
        ...

    def start(self) -> None:
        """Join the group (group mode), or do nothing until ``assign``."""
        ...

    def assign(self, partitions: Sequence[TopicPartition]) -> None: ...

    def assignment(self) -> set[TopicPartition]: ...

    def seek(self, tp: TopicPartition, offset: int) -> None: ...

    def position(self, tp: TopicPartition) -> int | None:
        """The offset of the next message this source will return, if known."""
        ...

    def poll(self, max_records: int, timeout_ms: int) -> list[SourceMessage]:
        """Up to ``max_records`` messages, in offset order within each partition."""
        ...

    def beginning_offsets(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]: ...

    def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset after the last message of each partition."""
        ...

    def offsets_for_time(
        self, partitions: Sequence[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int]:
        """First offset at or after ``timestamp_ms``; the end offset when there is none."""
        ...

    def commit_hint(self, offsets: dict[TopicPartition, int]) -> None:
        """Tell the source how far we got, for lag tools; never relied upon."""
        ...

    def close(self) -> None: ...
