"""Event sources behind one small protocol: a Kafka topic or a JSON Lines file."""

from __future__ import annotations

from projector.settings import Settings
from projector.sources.base import MessageSource, SourceMessage, TopicPartition


def open_source(settings: Settings, *, group: bool = True) -> MessageSource:
    """The source named by ``EVENT_SOURCE``; created here, connected on first use."""
    if settings.uses_kafka:
        from projector.sources.kafka import KafkaSource

        return KafkaSource(settings, group=group)
    from projector.sources.file import FileSource

    return FileSource(settings.event_source, settings.source_tz)


__all__ = ["MessageSource", "SourceMessage", "TopicPartition", "open_source"]
