"""``SqlGenerations``: the ``GenerationLifecycle`` port on one engine.

The lifecycle's statements are ``projector.store.generations``' (one function a
step, each its own transaction); this adapter binds them to the read model's engine
so that a rebuild holds a port, not an engine, and adds the two reads a rebuild
makes of the served generation (its history, what the topic no longer holds).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from sqlalchemy import Engine

from projector.sources.base import TopicPartition
from projector.sources.history import PageReader
from projector.store import generations
from projector.store.generations import GenerationRecord
from projector.store.history import history_page
from projector.store.retention import served_before_start_of_active


class SqlGenerations:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def active_number(self) -> int:
        return generations.active_number(self.engine)

    def running_build(self) -> GenerationRecord | None:
        return generations.running_build(self.engine)

    def events_held(self) -> tuple[int, int]:
        return generations.events_held(self.engine)

    def create(
        self, *, purpose: str, from_spec: str, owner: str, partitions: bool = True
    ) -> tuple[int, int]:
        return generations.create(
            self.engine, purpose=purpose, from_spec=from_spec, owner=owner, partitions=partitions
        )

    def take_over(self, generation: int, owner: str) -> None:
        generations.take_over(self.engine, generation, owner)

    def mark_in_place(self, owner: str, spec: str) -> int:
        return generations.mark_in_place(self.engine, owner, spec)

    def heartbeat(self, generation: int, owner: str) -> None:
        generations.heartbeat(self.engine, generation, owner)

    def release(self, generation: int, owner: str, *, clear_owner: bool = False) -> None:
        generations.release(self.engine, generation, owner, clear_owner=clear_owner)

    def switch(self, old: int, new: int, owner: str) -> None:
        generations.switch(self.engine, old, new, owner)

    def discard(self, generation: int) -> None:
        generations.discard(self.engine, generation)

    def forget(self, generation: int) -> None:
        generations.forget(self.engine, generation)

    def drop_rows(self, generation: int) -> int:
        return generations.drop_rows(self.engine, generation)

    def history_pages(self, generation: int) -> PageReader:
        """Pages of ``generation``'s history, for a ``HistorySource``."""
        return partial(history_page, self.engine, generation)

    def served_before_start(
        self, starts: Mapping[TopicPartition, int]
    ) -> tuple[int, dict[TopicPartition, int]]:
        """(the active generation, how many events it serves below ``starts``)."""
        return served_before_start_of_active(self.engine, starts)
