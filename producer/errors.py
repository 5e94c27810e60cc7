"""Every error the producer side raises on purpose derives from ``ProducerError``."""

from __future__ import annotations


class ProducerError(Exception):
    """Base of the producer side's errors; its message is one line for the operator."""


class KafkaUnavailable(ProducerError):
    """The Kafka broker cannot be reached, or refused what was produced."""
