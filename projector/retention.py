"""The retention guard: a rebuild from the topic must not silently drop served events.

Retention (``retention.ms``, ``retention.bytes``) and ``delete_records`` move a
partition's start offset forward. A rebuild from the topic would then build a
generation without the events below it and switch to it, deleting the old one:
history lost without a word. So before a rebuild from the topic the served
generation's history is compared with each partition's start offset
(``projector.store.retention``); if any served event is gone, the rebuild is
refused unless the operator passed ``--allow-loss``. ``rebuild --from-history``
is the way that keeps them. The decision here is pure; the I/O is its caller's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from projector.errors import RetentionLoss
from projector.sources.base import TopicPartition


@dataclass(frozen=True)
class Gone:
    """Served events below each partition's start offset (partitions with none left out)."""

    generation: int
    by_partition: Mapping[TopicPartition, int]

    @classmethod
    def of(cls, generation: int, counts: Mapping[TopicPartition, int]) -> Gone:
        return cls(generation, {tp: n for tp, n in sorted(counts.items()) if n > 0})

    @property
    def total(self) -> int:
        return sum(self.by_partition.values())

    def describe(self) -> str:
        """How many served events are gone, and from which partitions."""
        where = ", ".join(f"{tp.partition}: {n}" for tp, n in self.by_partition.items())
        noun = "partition" if len(self.by_partition) == 1 else "partitions"
        return (
            f"the topic no longer holds {self.total} events that generation {self.generation}"
            f" serves ({noun} {where}; retention or deleted records moved their start)"
        )

    def refusal(self) -> str:
        """The one line an operator sees: how many, where, and what to do instead."""
        return (
            f"{self.describe()}; a rebuild from the topic would lose them: use"
            " `projector rebuild --from-history`, or pass --allow-loss to rebuild without them"
        )


def check(gone: Gone, *, allow_loss: bool) -> None:
    """Refuse (``RetentionLoss``, exit 2) when served events are gone, unless allowed."""
    if gone.total and not allow_loss:
        raise RetentionLoss(gone.refusal())
