"""What every rebuild mode works on, opened once: settings, the read model's ports, who we are.

Each mode (``new_generation``, ``from_history``, ``in_place``, ``verify``) is a
function of one ``RebuildContext`` and what is particular to it, so the shared
plumbing lives here once: a source assigned every partition without a consumer
group, the start offsets of a SPEC, the heartbeat that keeps a building generation
claimed, the projector a mode replays with, and the retention guard.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from projector import retention
from projector.batch import BatchParser
from projector.bootstrap import (
    open_bulk_loader,
    open_engine,
    open_generations,
    open_parser,
    open_reader,
    open_source,
    open_store,
)
from projector.errors import GenerationChanged, RebuildError
from projector.loop import Mode, ProgressHook, Projector
from projector.runtime import install_stop_signals, owner_name
from projector.settings import Settings
from projector.sources.base import MessageSource, TopicPartition
from projector.spec import OffsetSpec, resolve
from projector.store import GenerationLifecycle, ReadModelStore
from projector.store.bulk import BulkLoad

log = logging.getLogger("projector.rebuild")

#: Seconds between two heartbeats of a generation being built (its claim's liveness).
HEARTBEAT_EVERY = 5.0


@dataclass(frozen=True)
class RebuildContext:
    """The settings, the read model's store and generations, and this process as their owner."""

    settings: Settings
    store: ReadModelStore
    generations: GenerationLifecycle
    parser: BatchParser
    owner: str
    #: The bulk loader of a new generation's first round (None: replay the live path).
    bulk: BulkLoad | None = None

    @classmethod
    def open(cls, settings: Settings) -> RebuildContext:
        engine = open_engine(settings)
        return cls(
            settings,
            open_store(settings, engine),
            open_generations(engine),
            open_parser(settings),
            owner_name(),
            open_bulk_loader(settings, engine),
        )

    def assigned_source(self) -> tuple[MessageSource, list[TopicPartition]]:
        """The source without a consumer group, assigned every partition."""
        source = open_source(self.settings, group=False)
        try:
            partitions = source.partitions()
            source.assign(partitions)
        except BaseException:
            source.close()
            raise
        return source, partitions

    def reader(self) -> Engine:
        """An engine that only reads (verify's snapshot of both generations)."""
        return open_reader(self.settings)

    def heartbeat(self, generation: int) -> Heartbeat:
        return Heartbeat(self.generations, generation, self.owner)

    def projector(self, source: MessageSource, mode: Mode, progress: ProgressHook) -> Projector:
        """A projector replaying ``source`` into ``mode``'s generation; a signal stops it."""
        projector = Projector(
            source,
            self.store,
            mode,
            parser=self.parser,
            batch_size=self.settings.batch_size,
            batch_max_wait_ms=self.settings.batch_max_wait_ms,
            progress=progress,
            pipeline=True,
        )
        install_stop_signals(projector.stop)
        return projector

    def guard_retention(
        self, source: MessageSource, partitions: Sequence[TopicPartition], *, allow_loss: bool
    ) -> None:
        """Refuse a rebuild from the topic that would drop served events (see ``retention``)."""
        begins = source.beginning_offsets(partitions)
        current, served = self.generations.served_before_start(begins)
        gone = retention.Gone.of(current, served)
        retention.check(gone, allow_loss=allow_loss)
        if gone.total:
            log.warning("--allow-loss: rebuilding anyway; %s", gone.describe())


class Heartbeat:
    """Called at the projector's progress pace; writes a heartbeat every ``HEARTBEAT_EVERY``."""

    def __init__(self, generations: GenerationLifecycle, generation: int, owner: str) -> None:
        self.generations, self.generation, self.owner = generations, generation, owner
        self._last = time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self._last >= HEARTBEAT_EVERY:
            self._last = time.monotonic()
            self.generations.heartbeat(self.generation, self.owner)


def start_offsets(
    source: MessageSource, partitions: Sequence[TopicPartition], spec: OffsetSpec
) -> dict[TopicPartition, int]:
    """Where SPEC starts on each partition, asked of the source."""
    begins = source.beginning_offsets(partitions)
    ends = source.end_offsets(partitions)
    times = None
    if spec.timestamp_ms is not None:
        times = source.offsets_for_time(partitions, spec.timestamp_ms)
    return resolve(spec, partitions, begins, ends, times)


def catch_up(
    projector: Projector, targets: dict[TopicPartition, int], what: str, generation: int
) -> None:
    """Run ``projector`` to ``targets``; a switch under it or a stop is a ``RebuildError``."""
    try:
        projector.run(targets=targets)
    except GenerationChanged as exc:
        raise RebuildError(f"{what} of generation {generation} stopped: {exc}") from exc
    if projector.stop_event.is_set():
        raise RebuildError(
            f"{what} of generation {generation} interrupted; its offsets are kept"
            + ("; continue with `projector rebuild --resume`" if what == "rebuild" else "")
        )
