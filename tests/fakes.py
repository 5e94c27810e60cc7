"""The in-memory fake of the read model, for the loop's tests.

It subclasses the real ``ReadModelStore`` protocol and keeps the promises of
``SqlStore`` that the loop relies on: offsets move only under a current claim
(epoch and next offset), a batch is all or nothing, a retired generation refuses
batches. ``tests/integration/test_store_behaviour.py`` runs the same behaviour
tests against it and against SQLite and PostgreSQL, so it cannot drift.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from projector.batch import PreparedBatch
from projector.errors import Fenced, GenerationChanged, StoreUnavailable
from projector.sources.base import SourceMessage, TopicPartition
from projector.store import BatchResult, Claim, ReadModelStore


class FakeStore(ReadModelStore):
    """Offsets with fencing epochs, as ``SqlStore`` keeps them; records what it applied."""

    def __init__(self, generation: int = 1) -> None:
        self.generation = generation
        self.next: dict[tuple[int, TopicPartition], int] = defaultdict(int)
        self.epoch: dict[tuple[int, TopicPartition], int] = defaultdict(int)
        self.counted_to: dict[tuple[int, TopicPartition], int] = defaultdict(int)
        self.applied: dict[TopicPartition, list[int]] = defaultdict(list)
        self.claims = 0
        self.fenced = 0
        self.batch_failures = 0     # the next N apply_batch calls raise StoreUnavailable
        self.claim_failures = 0
        self.generation_failures = 0
        self.calls: list[str] = []

    def claim(self, generation: int, tp: TopicPartition) -> Claim:
        self.calls.append("claim")
        if self.claim_failures:
            self.claim_failures -= 1
            raise StoreUnavailable("database down (claim)")
        self.claims += 1
        self.epoch[generation, tp] += 1
        return Claim(self.epoch[generation, tp], self.next[generation, tp],
                     self.counted_to[generation, tp])

    def apply_batch(
        self,
        generation: int,
        batch: PreparedBatch,
        claims: Mapping[TopicPartition, Claim],
        *,
        require_status: str = "active",
    ) -> BatchResult:
        messages = batch.messages
        self.calls.append("apply")
        if self.batch_failures:
            self.batch_failures -= 1
            raise StoreUnavailable("database down (apply)")
        if generation != self.generation:
            raise GenerationChanged(f"generation {generation} is retired")
        by_tp: dict[TopicPartition, list[SourceMessage]] = defaultdict(list)
        for m in messages:
            by_tp[m.tp].append(m)
        for tp, items in by_tp.items():  # all or nothing, like one transaction
            claim = claims[tp]
            if (claim.epoch, claim.next_offset) != (self.epoch[generation, tp],
                                                    self.next[generation, tp]):
                self.fenced += 1
                raise Fenced(f"{tp} is owned by another consumer now")
            offsets = [m.offset for m in items]
            assert offsets == sorted(offsets) and offsets[0] >= claim.next_offset
        result = BatchResult(messages=len(messages), applied=len(messages))
        for tp, items in by_tp.items():
            self.applied[tp].extend(m.offset for m in items)
            self.next[generation, tp] = items[-1].offset + 1
            result.next_offsets[tp] = items[-1].offset + 1
            end = self.counted_to[generation, tp]
            self.counted_to[generation, tp] = max(end, items[-1].offset + 1)
        return result

    def offsets(self, generation: int) -> dict[TopicPartition, int]:
        return {tp: n for (g, tp), n in self.next.items() if g == generation}

    def advance(self, generation: int, tp: TopicPartition, claim: Claim, offset: int, *,
                require_status: str = "active") -> None:
        self.calls.append("advance")
        if (claim.epoch, claim.next_offset) != (self.epoch[generation, tp], self.next[generation, tp]):
            self.fenced += 1
            raise Fenced(f"{tp} is owned by another consumer now")
        self.next[generation, tp] = offset

    def active_generation(self) -> int:
        if self.generation_failures:
            self.generation_failures -= 1
            raise StoreUnavailable("database down (generation)")
        return self.generation

    def epochs(self, generation: int) -> dict[TopicPartition, int]:
        return {tp: e for (g, tp), e in self.epoch.items() if g == generation}

    def take_over(self, tp: TopicPartition, applied_up_to: int | None = None) -> None:
        """Another consumer claims ``tp`` (and maybe applies up to an offset)."""
        self.epoch[self.generation, tp] += 1
        if applied_up_to is not None:
            self.next[self.generation, tp] = applied_up_to

    def set_offsets(self, generation: int, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self.next[generation, tp] = offset
            self.epoch[generation, tp] += 1

    def refold(self, generation: int, delivery_ids: Iterable[str], *,
               require_status: str = "active") -> int:
        return 0

    def deliveries_replayed(self, generation: int,
                            starts: Mapping[TopicPartition, int]) -> set[str]:
        return set()

    def deliveries_without_row(self, generation: int) -> set[str]:
        return set()
