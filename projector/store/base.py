"""What the read model's callers need from it, one protocol per caller.

As pyeventsourcing nests its recorders, the port is cut by who calls it:

- ``ProjectionStore``: the projector loop (claim a partition, apply a prepared batch,
  advance over offsets without messages, read offsets and epochs).
- ``RepairStore``: repair (set a generation's offsets, refold deliveries from their
  history, find what a replay touched, apply a replayed dead letter).
- ``GenerationLifecycle``: a rebuild's generation (create, take over, switch,
  heartbeat, release, discard, forget, drop its rows), and what a rebuild reads of
  the served generation (its history, the events the topic no longer holds).
- ``ReadModelStore``: both the loop's and repair's, what a rebuild replays through.

``SqlStore`` (``projector.store.sql``) implements the first two and ``SqlGenerations``
(``projector.store.lifecycle``) the third, on SQLite and PostgreSQL; the loop's unit
tests use an in-memory fake of ``ReadModelStore``. Each caller is typed by the
narrowest protocol it uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from projector.batch import PreparedBatch
from projector.counts import Counts
from projector.sources.base import SourceMessage, TopicPartition
from projector.sources.history import PageReader
from projector.store.generations import GenerationRecord
from schema.events import Event
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
class BatchResult(Counts):
    """One batch's counts, the deliveries it changed and where it left each partition."""

    changed: set[str] = field(default_factory=set)
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)


class ProjectionStore(Protocol):
    """What the projector loop needs: claims, batches, offsets."""

    def active_generation(self) -> int: ...

    def claim(self, generation: int, tp: TopicPartition) -> Claim: ...

    def apply_batch(
        self,
        generation: int,
        batch: PreparedBatch,
        claims: Mapping[TopicPartition, Claim],
        *,
        require_status: str = GenerationStatus.ACTIVE,
    ) -> BatchResult:
        """Apply one batch in one transaction; raises ``Fenced`` or ``GenerationChanged``.

        The batch must continue each partition exactly at its claim's offset.
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


class RepairStore(Protocol):
    """What repair needs: move offsets, refold from the history, replay a dead letter."""

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

    def apply_replayed(
        self, generation: int, message: SourceMessage, event: Event, dead_letter_id: int
    ) -> BatchResult:
        """A dead letter that now parses, applied and marked replayed in one transaction."""
        ...


class ReadModelStore(ProjectionStore, RepairStore, Protocol):
    """What a rebuild replays through: the loop's port and repair's."""


class GenerationLifecycle(Protocol):
    """What a rebuild or verify needs of the generations table."""

    def active_number(self) -> int: ...

    def running_build(self) -> GenerationRecord | None: ...

    def events_held(self) -> tuple[int, int]: ...

    def create(
        self, *, purpose: str, from_spec: str, owner: str, partitions: bool = True
    ) -> tuple[int, int]:
        """A new building generation: (new, active). ``partitions=False``: its tables
        are left to a bulk load (PostgreSQL, ``projector.store.bulk``)."""
        ...

    def take_over(self, generation: int, owner: str) -> None: ...

    def mark_in_place(self, owner: str, spec: str) -> int: ...

    def heartbeat(self, generation: int, owner: str) -> None: ...

    def release(self, generation: int, owner: str, *, clear_owner: bool = False) -> None: ...

    def switch(self, old: int, new: int, owner: str) -> None: ...

    def discard(self, generation: int) -> None: ...

    def forget(self, generation: int) -> None: ...

    def drop_rows(self, generation: int) -> int: ...

    def history_pages(self, generation: int) -> PageReader: ...

    def served_before_start(
        self, starts: Mapping[TopicPartition, int]
    ) -> tuple[int, dict[TopicPartition, int]]: ...
