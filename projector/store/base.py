"""What the projector loop, rebuild and verify need from the read model: one narrow interface.

``ReadModelStore`` is the port; ``SqlStore`` (``projector.store.sql``) is the
adapter for SQLite and PostgreSQL, and the loop's unit tests use an in-memory
fake of the same protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Protocol

from projector.settings import DEFAULT_MAX_MESSAGE_BYTES
from projector.sources.base import SourceMessage, TopicPartition
from schema.events import ErrorCode, Event, EventParseError, parse_message
from schema.lifecycle import GenerationStatus


@dataclass(frozen=True)
class Claim:
    """This process's hold on one partition of one generation.

    ``counted_to``: messages below this offset were counted (read, duplicates) when
    first read, as the claim found it; a batch counts only its messages at or after
    it, so an in-place replay reads them again without counting them twice. It stays
    as claimed: later batches under the same claim only count offsets beyond it.
    """

    epoch: int
    next_offset: int
    counted_to: int = 0


@dataclass
class BatchResult:
    messages: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    refolded: int = 0
    changed: set[str] = field(default_factory=set)
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedBatch:
    """A batch parsed and ready to write: no database was needed to get here.

    Parsing is the CPU-heavy half of a batch; keeping it apart lets the loop parse
    the next batch while the database writes this one.
    """

    messages: Sequence[SourceMessage]
    events: Sequence[tuple[Event, SourceMessage]]
    dead: Sequence[tuple[SourceMessage, EventParseError]]


class ReadModelStore(Protocol):
    """What the projector loop, rebuild and verify need from the read model."""

    def active_generation(self) -> int: ...

    def claim(self, generation: int, tp: TopicPartition) -> Claim: ...

    def prepare(self, messages: Sequence[SourceMessage]) -> PreparedBatch: ...

    def apply_batch(
        self,
        generation: int,
        batch: PreparedBatch | Sequence[SourceMessage],
        claims: Mapping[TopicPartition, Claim],
        *,
        require_status: str = GenerationStatus.ACTIVE,
    ) -> BatchResult:
        """Apply one batch in one transaction; raises ``Fenced`` or ``GenerationChanged``.

        The batch must continue each partition exactly at its claim's offset.
        Plain messages are prepared first.
        """
        ...

    def offsets(self, generation: int) -> dict[TopicPartition, int]: ...

    def epochs(self, generation: int) -> dict[TopicPartition, int]: ...

    def advance(
        self,
        generation: int,
        tp: TopicPartition,
        claim: Claim,
        offset: int,
        *,
        require_status: str = GenerationStatus.ACTIVE,
    ) -> None: ...

    def set_offsets(self, generation: int, offsets: Mapping[TopicPartition, int]) -> None: ...

    def refold(
        self,
        generation: int,
        delivery_ids: Iterable[str],
        *,
        require_status: str = GenerationStatus.ACTIVE,
    ) -> int: ...

    def deliveries_replayed(
        self, generation: int, starts: Mapping[TopicPartition, int]
    ) -> set[str]: ...

    def deliveries_without_row(self, generation: int) -> set[str]: ...


def message_size(message: SourceMessage) -> int:
    """The bytes a message carries: key, value, header keys and values."""
    size = len(message.key or b"") + len(message.value or b"")
    for key, value in message.headers:
        size += len(key.encode("utf-8", errors="surrogatepass")) + len(value or b"")
    return size


def parse_source_message(
    message: SourceMessage, source_tz: tzinfo, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> Event:
    """The message's event, or ``EventParseError`` (also when it is over ``max_bytes``)."""
    if max_bytes > 0:
        size = message_size(message)
        if size > max_bytes:
            raise EventParseError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"the message is {size} bytes, over the {max_bytes} bytes the projector "
                "accepts (PROJECTOR_MAX_MESSAGE_BYTES)",
            )
    return parse_message(message.value, message.key, message.headers, source_tz)


def prepare_batch(
    messages: Sequence[SourceMessage],
    source_tz: tzinfo,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> PreparedBatch:
    """Parse every message of a batch; the unparseable ones become dead letters."""
    events: list[tuple[Event, SourceMessage]] = []
    dead: list[tuple[SourceMessage, EventParseError]] = []
    for message in messages:
        try:
            event = parse_source_message(message, source_tz, max_message_bytes)
        except EventParseError as exc:
            dead.append((message, exc))
            continue
        events.append((event, message))
    return PreparedBatch(messages, events, dead)
