"""The projection loop: read a batch, apply it in one transaction, repeat.

The loop depends only on the ``MessageSource`` and ``ProjectionStore`` protocols, and
parses each batch itself (``BatchParser``) before the store writes it.
Positions come from the read model: whenever this process gains a partition it
claims it in the database (which fences any earlier owner) and seeks the source
to the stored offset. A message that does not continue a partition exactly where
the read model stands is never applied: older ones are skipped (already applied),
a gap makes the loop seek back.

Transient failures (source or database unreachable) are retried with backoff and
logged; nothing is skipped. A bad message is parsed into a dead letter here and
written by the store inside the batch's transaction.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TypeVar

from projector.batch import BatchParser, PreparedBatch
from projector.counts import Counts
from projector.errors import Fenced, GenerationChanged, SourceUnavailable, StoreUnavailable
from projector.sources.base import MessageSource, SourceMessage, TopicPartition
from projector.store.base import BatchResult, Claim, ProjectionStore
from schema.lifecycle import GenerationStatus

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Totals(Counts):
    """A run's counts so far, its batches, and since when it runs."""

    batches: int = 0
    started: float = field(default_factory=time.monotonic)

    def add_batch(self, result: BatchResult) -> None:
        self.batches += 1
        self.add(result)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


#: Called at most once a second with (stored positions, targets, totals so far).
ProgressHook = Callable[
    [dict[TopicPartition, int], dict[TopicPartition, int] | None, Totals], None
]


@dataclass(frozen=True)
class Mode:
    """Which generation a projector writes, and how it shares its partitions.

    ``live``: whichever generation is active, followed to a new one when a rebuild
    switches. ``building``: a rebuild's own generation, until it is switched or given
    up. ``verifying``: verify's scratch generation, never read past the run's targets,
    so that it stands at exactly the live generation's offsets. ``in_place``: the
    active generation beside the live projector; a partition the live projector
    takes over is left to it, and taken back if it stands still for ``retake_after``
    seconds below its target.
    """

    generation: int | None = None
    require_status: str = GenerationStatus.ACTIVE
    yield_when_fenced: bool = False
    #: Never apply a message at or beyond the offset ``run`` was asked to reach.
    stop_at_targets: bool = False
    #: Seconds a partition left to another projector may stand still below its target.
    retake_after: float | None = None

    @classmethod
    def live(cls) -> Mode:
        return cls()

    @classmethod
    def building(cls, generation: int) -> Mode:
        return cls(generation, GenerationStatus.BUILDING)

    @classmethod
    def verifying(cls, generation: int) -> Mode:
        return cls(generation, GenerationStatus.BUILDING, stop_at_targets=True)

    @classmethod
    def in_place(cls, generation: int, *, retake_after: float | None = None) -> Mode:
        return cls(
            generation, GenerationStatus.ACTIVE, yield_when_fenced=True, retake_after=retake_after
        )


class Projector:
    """Projects a source into one generation of the read model (see ``Mode``)."""

    def __init__(
        self,
        source: MessageSource,
        store: ProjectionStore,
        mode: Mode | None = None,
        *,
        parser: BatchParser | None = None,
        batch_size: int = 500,
        batch_max_wait_ms: int = 200,
        progress: ProgressHook | None = None,
        max_backoff: float = 30.0,
        pipeline: bool = False,
    ) -> None:
        mode = mode or Mode.live()
        self.mode = mode
        self.source = source
        self.store = store
        self.parser = parser or BatchParser()
        self.follow_active = mode.generation is None
        self.generation = mode.generation
        self.require_status = mode.require_status
        self.batch_size = batch_size
        self.batch_max_wait_ms = batch_max_wait_ms
        self.progress = progress
        self.max_backoff = max_backoff
        self.claims: dict[TopicPartition, Claim] = {}
        self.totals = Totals()
        self.stop_event = threading.Event()
        self._failures = 0
        # Never apply a message at or beyond this offset (``Mode.stop_at_targets``).
        self.limits: dict[TopicPartition, int] = {}
        # In place, a partition taken by another projector is left to it (not
        # re-claimed); ``run`` with targets then waits for the stored offsets.
        self.yield_when_fenced = mode.yield_when_fenced
        self.released: set[TopicPartition] = set()
        # A released partition's stored offset, and since when it has stood there.
        self._standing: dict[TopicPartition, tuple[int, float]] = {}
        # ``pipeline``: write a batch in a worker thread while this thread polls and
        # parses the next one (the database works on the other core meanwhile). At
        # most one batch is in flight; ``self.claims`` then already stand where it
        # will leave them, and a failure of it discards the next one unwritten.
        self.pipeline = pipeline
        self._writer: ThreadPoolExecutor | None = None
        self._in_flight: Future[BatchResult] | None = None

    # -- public -------------------------------------------------------------------
    def run(
        self, *, until_caught_up: bool = False, targets: dict[TopicPartition, int] | None = None
    ) -> Totals:
        """Project until stopped, or until every partition reaches ``targets``.

        With ``until_caught_up`` and no ``targets``, the targets are the source's
        end offsets seen at start.
        """
        # At start an unreachable source or database is an error for the operator;
        # once running, the same failures are transient and retried.
        self.source.start()
        if self.generation is None:
            self.generation = self.store.active_generation()
        if until_caught_up and targets is None:
            partitions = self.source.partitions()
            targets = self.source.end_offsets(partitions)
        if self.mode.stop_at_targets:
            self.limits = dict(targets or {})
        watching = self.progress is not None or self.mode.retake_after is not None
        last_report = 0.0
        try:
            while not self.stop_event.is_set():
                if targets is not None and self._caught_up(targets):
                    break
                self._step()
                if watching and time.monotonic() - last_report >= 1.0:
                    last_report = time.monotonic()
                    positions = self._positions()
                    if self.progress is not None:
                        self.progress(positions, targets, self.totals)
                    self._retake_standing(positions, targets or {})
            self._guarded(self._drain)  # a batch in flight commits before we return
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None
        if self.progress is not None:
            self.progress(self._positions(), targets, self.totals)
        return self.totals

    def stop(self) -> None:
        self.stop_event.set()

    # -- one step -----------------------------------------------------------------
    def _step(self) -> None:
        self._guarded(self._poll_and_apply)

    def _poll_and_apply(self) -> None:
        self._reconcile()
        if self.released and not self.claims:
            self._drain()
            return  # every partition left to the projector that took it
        messages = self.source.poll(self.batch_size, self.batch_max_wait_ms)
        batch = self._admit(messages)
        prepared = self.parser(batch) if batch else None
        self._drain()  # the previous batch must commit before this one is written
        self._advance_idle({m.tp for m in messages})
        if prepared is None:
            return
        assert self.generation is not None
        ends: dict[TopicPartition, int] = {}  # where the batch leaves each partition
        for message in batch:  # in offset order per partition (``_admit``)
            ends[message.tp] = message.offset + 1
        claims = {tp: self.claims[tp] for tp in ends}
        if not self.pipeline:
            self._finish(self._write(self.generation, prepared, claims))
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-writer")
        self._in_flight = self._writer.submit(self._write, self.generation, prepared, claims)
        # The next batch continues where this one will leave each partition.
        for tp, end in ends.items():
            self.claims[tp] = replace(claims[tp], next_offset=end)

    def _write(
        self, generation: int, prepared: PreparedBatch, claims: Mapping[TopicPartition, Claim]
    ) -> BatchResult:
        return self.store.apply_batch(
            generation, prepared, claims, require_status=self.require_status
        )

    def _drain(self) -> None:
        """Wait for the batch in flight, if any; its failure is raised here."""
        pending, self._in_flight = self._in_flight, None
        if pending is not None:
            self._finish(pending.result())

    def _finish(self, result: BatchResult) -> None:
        self._failures = 0
        for tp, offset in result.next_offsets.items():
            if tp in self.claims:
                self.claims[tp] = replace(self.claims[tp], next_offset=offset)
        self.totals.add_batch(result)
        self.source.commit_hint(result.next_offsets)

    def _settle(self) -> None:
        """After a failure: let a batch still in flight end, and count it if it committed.

        Its own failure needs nothing more: the claims are dropped or re-read next.
        The batch prepared after it is never written (it is read again).
        """
        pending, self._in_flight = self._in_flight, None
        if pending is None:
            return
        try:
            self._finish(pending.result())
        except (Fenced, GenerationChanged, SourceUnavailable, StoreUnavailable) as exc:
            log.info("the batch in flight did not commit either: %s", exc)

    def _guarded(self, work: Callable[[], None]) -> None:
        """Run ``work``; a lost partition, a switched generation or an outage is handled here."""
        try:
            work()
        except Fenced as exc:
            self._settle()
            if self.yield_when_fenced:
                self._release_lost(exc)
                return
            log.warning("fenced: %s; re-claiming", exc)
            self.claims.clear()
        except GenerationChanged as exc:
            self._settle()
            if not self.follow_active:
                raise
            self.generation = self._retry(self.store.active_generation)
            log.info(
                "generation changed (%s); now projecting into generation %s", exc, self.generation
            )
            self.claims.clear()
        except (SourceUnavailable, StoreUnavailable) as exc:
            self._settle()
            self._backoff(exc)
            self.claims.clear()  # positions are re-read from the read model after a failure

    def _reconcile(self) -> None:
        """Claim newly owned partitions (and seek to their stored offsets); drop lost ones."""
        owned = self.source.assignment() - self.released
        if not owned and self.released:
            self.stop_event.wait(self.batch_max_wait_ms / 1000)  # all left to their owner
            return
        for tp in list(self.claims):
            if tp not in owned:
                del self.claims[tp]
        assert self.generation is not None
        for tp in sorted(owned - set(self.claims)):
            claim = self.store.claim(self.generation, tp)
            self.claims[tp] = claim
            self.source.seek(tp, claim.next_offset)
            log.info(
                "claimed %s:%s in generation %s at offset %s (epoch %s)",
                tp.topic,
                tp.partition,
                self.generation,
                claim.next_offset,
                claim.epoch,
            )

    def _admit(self, messages: list[SourceMessage]) -> list[SourceMessage]:
        """Keep only messages that continue each claimed partition exactly."""
        batch: list[SourceMessage] = []
        expected = {tp: c.next_offset for tp, c in self.claims.items()}
        by_tp: dict[TopicPartition, list[SourceMessage]] = defaultdict(list)
        for message in messages:
            by_tp[message.tp].append(message)
        for tp, items in by_tp.items():
            if tp not in expected:
                continue  # not ours (yet): claimed and re-read on the next step
            limit = self.limits.get(tp)
            for message in sorted(items, key=lambda m: m.offset):
                if message.offset < expected[tp]:
                    continue  # already in the read model
                if limit is not None and message.offset >= limit:
                    break  # beyond this run's upper limit
                if message.offset > expected[tp]:
                    # Offsets without a message are normal: transaction markers and
                    # aborted records in Kafka, compaction, retention, blank lines of
                    # a file. The source read them in order; nothing is lost.
                    log.debug(
                        "no messages at %s:%s offsets %s..%s",
                        tp.topic, tp.partition, expected[tp], message.offset - 1,
                    )
                batch.append(message)
                expected[tp] = message.offset + 1
        return batch

    def _advance_idle(self, polled: set[TopicPartition]) -> None:
        """Move a partition's stored offset over offsets that hold no message.

        A Kafka transaction marker, an aborted record or a record removed by
        retention has an offset but never reaches us as a message; without this
        the stored offset would stop short of the end, and `--until-caught-up`
        (or a rebuild) would wait for it forever.
        """
        assert self.generation is not None
        for tp, claim in list(self.claims.items()):
            if tp in polled:
                continue
            position = self.source.position(tp)
            if position is None or position <= claim.next_offset:
                continue
            limit = self.limits.get(tp)
            if limit is not None:
                position = min(position, limit)
                if position <= claim.next_offset:
                    continue
            self.store.advance(self.generation, tp, claim, position,
                               require_status=self.require_status)
            self.claims[tp] = replace(claim, next_offset=position)
            log.debug("%s:%s advanced to %s over offsets without messages",
                      tp.topic, tp.partition, position)

    def _release_lost(self, exc: Fenced) -> None:
        """Leave every partition whose epoch moved on to its new owner; re-claim none."""
        assert self.generation is not None
        generation = self.generation
        current = self._retry(lambda: self.store.epochs(generation))
        lost = False
        for tp, claim in list(self.claims.items()):
            if current.get(tp) != claim.epoch:
                lost = True
                self.released.add(tp)
                del self.claims[tp]
                log.info(
                    "%s:%s was taken by another projector (%s); leaving it the replay",
                    tp.topic,
                    tp.partition,
                    exc,
                )
        if not lost:
            self.claims.clear()

    def _retake_standing(
        self, positions: Mapping[TopicPartition, int], targets: Mapping[TopicPartition, int]
    ) -> None:
        """Take back a released partition whose owner stopped moving it (``retake_after``)."""
        after = self.mode.retake_after
        if after is None:
            return
        for tp in list(self.released):
            at = positions.get(tp, 0)
            seen = self._standing.get(tp)
            if seen is None or seen[0] != at:
                self._standing[tp] = (at, time.monotonic())
            elif time.monotonic() - seen[1] > after and at < targets.get(tp, 0):
                log.info(
                    "partition %s has not moved for %.0fs; replaying it here", tp.partition, after
                )
                self.released.discard(tp)

    # -- progress and failures ------------------------------------------------------
    def _positions(self) -> dict[TopicPartition, int]:
        assert self.generation is not None
        try:
            return self.store.offsets(self.generation)
        except StoreUnavailable:
            return {tp: c.next_offset for tp, c in self.claims.items()}

    def _caught_up(self, targets: dict[TopicPartition, int]) -> bool:
        assert self.generation is not None
        # A partition we hold is known here: while one is behind, skip the query.
        if any(c.next_offset < targets.get(tp, 0) for tp, c in self.claims.items()):
            return False
        stored = self._retry(lambda: self.store.offsets(self.generation or 0))
        return all(stored.get(tp, 0) >= end for tp, end in targets.items() if end > 0)

    def _backoff(self, exc: Exception) -> None:
        self._failures += 1
        delay = min(self.max_backoff, 0.5 * 2 ** min(self._failures - 1, 8))
        log.warning("%s; retrying in %.1fs (attempt %s)", exc, delay, self._failures)
        self.stop_event.wait(delay)

    def _retry(self, call: Callable[[], T]) -> T:
        while True:
            try:
                result = call()
                self._failures = 0
                return result
            except (SourceUnavailable, StoreUnavailable) as exc:
                if self.stop_event.is_set():
                    raise
                self._backoff(exc)


def stderr_progress(
    positions: dict[TopicPartition, int], targets: dict[TopicPartition, int] | None, totals: Totals
) -> None:
    """One plain progress line while catching up."""
    rate = totals.messages / totals.seconds if totals.seconds > 0 else 0.0
    if targets:
        done = sum(min(positions.get(tp, 0), end) for tp, end in targets.items())
        total = sum(targets.values())
        pct = 100.0 * done / total if total else 100.0
        print(
            f"catching up: {done}/{total} messages ({pct:.1f}%), {totals.applied} applied, "
            f"{totals.dead_letters} dead letters, {rate:.0f} msg/s",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(
            f"projected {totals.messages} messages, {totals.applied} applied, "
            f"{totals.dead_letters} dead letters, {rate:.0f} msg/s",
            file=sys.stderr,
            flush=True,
        )
