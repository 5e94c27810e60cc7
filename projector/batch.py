"""A batch of source messages parsed for the store: what the loop hands ``apply_batch``.

Parsing is the CPU-heavy half of a batch and needs no database. The loop does it
(``BatchParser``), so it can parse the next batch while the database writes this
one, and the store's port holds neither the source's time zone nor the message
bound: a store is given events and dead letters, never bytes to interpret.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo

from projector.settings import DEFAULT_MAX_MESSAGE_BYTES
from projector.sources.base import SourceMessage
from schema.events import ErrorCode, Event, EventParseError, parse_message


@dataclass(frozen=True)
class PreparedBatch:
    """A batch parsed and ready to write: no database was needed to get here."""

    messages: Sequence[SourceMessage]
    events: Sequence[tuple[Event, SourceMessage]]
    dead: Sequence[tuple[SourceMessage, EventParseError]]


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


@dataclass(frozen=True)
class BatchParser:
    """How this process reads messages: the source's time zone and the message bound."""

    source_tz: tzinfo = UTC
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def __call__(self, messages: Sequence[SourceMessage]) -> PreparedBatch:
        return prepare_batch(messages, self.source_tz, self.max_message_bytes)

    def event(self, message: SourceMessage) -> Event:
        """One message's event (a dead letter's replay), or ``EventParseError``."""
        return parse_source_message(message, self.source_tz, self.max_message_bytes)
