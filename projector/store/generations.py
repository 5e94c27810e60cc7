"""The generation lifecycle's SQL: create, heartbeat, switch, drop and discard generations.

A rebuild writes generation G+1 beside the active G. The ``generations`` table is
also the lock that makes rebuilds one at a time: a ``building`` row (or the active
row with an ``owner``, for an in-place rebuild) *is* the running rebuild, and its
``owner`` (host:pid) and ``heartbeat_at`` tell whether its process is still there.

The switch is one transaction. On PostgreSQL it first takes ``FOR UPDATE`` on the
old and new rows; the live projector's ``apply_batch`` holds ``FOR SHARE`` on the
active row for its whole transaction, so a batch in flight commits before the
switch, and the next one waits for it and then sees ``retired`` (GenerationChanged).
On SQLite every writer is ``BEGIN IMMEDIATE``, which serialises the same way.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from projector.errors import RebuildError
from projector.runtime import now
from projector.sources.base import TopicPartition
from projector.store import partitions as pg_partitions
from schema.db import IS_ACTIVE
from schema.lifecycle import GenerationPurpose, GenerationStatus
from schema.tables import (
    dead_letters,
    deliveries,
    delivery_events,
    generations,
    projection_offsets,
)

log = logging.getLogger(__name__)

#: A builder that has not written a heartbeat for this long is taken for gone.
STALE_AFTER = timedelta(seconds=60)
#: Rows deleted per transaction when a generation is dropped, so the live projector
#: (one writer at a time on SQLite) is never held up for long.
DELETE_CHUNK = 5000


@dataclass(frozen=True)
class GenerationRecord:
    generation: int
    status: str
    purpose: str
    from_spec: str | None
    owner: str | None
    created_at: datetime
    activated_at: datetime | None
    heartbeat_at: datetime | None

    @classmethod
    def from_row(cls, r: Any) -> GenerationRecord:
        return cls(**{k: r[k] for k in cls.__dataclass_fields__})

    @property
    def alive(self) -> bool:
        """Whether its builder seems to be running (fresh heartbeat, process present)."""
        if self.owner is None or self.heartbeat_at is None:
            return False
        if now() - self.heartbeat_at > STALE_AFTER:
            return False
        host, _, pid = self.owner.rpartition(":")
        if host == socket.gethostname() and pid.isdigit():
            return _pid_alive(int(pid))
        return True

    def describe(self) -> str:
        in_place = self.status == GenerationStatus.ACTIVE
        kind = "in-place rebuild of" if in_place else f"{self.purpose} of"
        beat = "never" if self.heartbeat_at is None else _ago(self.heartbeat_at)
        return (
            f"{kind} generation {self.generation} from {self.from_spec or 'earliest'}"
            f" (owner {self.owner or 'none'}, started {self.created_at:%Y-%m-%dT%H:%M:%SZ},"
            f" last heartbeat {beat})"
        )


def _ago(when: datetime) -> str:
    return f"{max((now() - when).total_seconds(), 0.0):.0f}s ago"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


# -- reading ---------------------------------------------------------------------
def active_number(engine: Engine) -> int:
    """The active generation's number (``RebuildError`` if there is none)."""
    with engine.connect() as conn:
        return active(conn).generation


def running_build(engine: Engine) -> GenerationRecord | None:
    """The rebuild in progress or interrupted, if any (``running``, in its own read)."""
    with engine.connect() as conn:
        return running(conn)


def events_held(engine: Engine) -> tuple[int, int]:
    """(the active generation, how many history rows it holds)."""
    with engine.connect() as conn:
        current = active(conn).generation
        held = conn.execute(
            select(func.count()).where(delivery_events.c.generation == current)
        ).scalar_one()
    return current, int(held)


def get(conn: Connection, generation: int) -> GenerationRecord | None:
    row = conn.execute(select(generations).where(generations.c.generation == generation)).first()
    return None if row is None else GenerationRecord.from_row(row._mapping)


def active(conn: Connection) -> GenerationRecord:
    row = conn.execute(select(generations).where(IS_ACTIVE)).first()
    if row is None:
        raise RebuildError("no active read-model generation; run `projector migrate`")
    return GenerationRecord.from_row(row._mapping)


def running(conn: Connection) -> GenerationRecord | None:
    """The rebuild in progress or interrupted: a building generation, or an in-place one."""
    row = conn.execute(
        select(generations)
        .where(generations.c.status == GenerationStatus.BUILDING)
        .order_by(generations.c.generation.desc())
    ).first()
    if row is not None:
        return GenerationRecord.from_row(row._mapping)
    current = active(conn)
    if current.owner is not None and current.alive:
        return current
    return None


def _lock_all(conn: Connection) -> None:
    """Serialise generation changes (PostgreSQL; SQLite writers are serial already)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(generations.c.generation).with_for_update()).all()


def refuse_running(found: GenerationRecord) -> RebuildError:
    if found.alive:
        return RebuildError(
            f"another rebuild is running: {found.describe()}; wait for it to finish"
        )
    if found.status == GenerationStatus.ACTIVE:
        return RebuildError(f"an in-place rebuild was interrupted: {found.describe()}")
    return RebuildError(
        f"a rebuild was interrupted: {found.describe()}; continue it with"
        " `projector rebuild --resume` or drop it with `projector rebuild --discard`"
    )


# -- creating and owning -----------------------------------------------------------
def create(
    engine: Engine, *, purpose: str, from_spec: str, owner: str, partitions: bool = True
) -> tuple[int, int]:
    """Create a ``building`` generation; returns (new, active). One rebuild at a time.

    On PostgreSQL its partitions are created empty and attached in the same
    transaction; ``partitions=False`` leaves them to a bulk load
    (``projector.store.bulk``), which attaches its own once loaded and indexed.
    A stale verify scratch (its process is gone) is not worth resuming: it is
    discarded here instead of blocking the next rebuild.
    """
    stale_scratch: int | None = None
    with engine.begin() as conn:
        _lock_all(conn)
        found = running(conn)
        if (
            found is not None
            and found.purpose == GenerationPurpose.VERIFY
            and found.status == GenerationStatus.BUILDING
            and not found.alive
        ):
            conn.execute(
                update(generations)
                .where(generations.c.generation == found.generation)
                .values(status=GenerationStatus.FAILED, heartbeat_at=None)
            )
            stale_scratch = found.generation
            found = running(conn)
        if found is not None:
            raise refuse_running(found)
        current = active(conn)
        top: int = conn.execute(select(func.max(generations.c.generation))).scalar_one()
        new = int(top) + 1
        conn.execute(
            insert(generations).values(
                generation=new, status=GenerationStatus.BUILDING, purpose=purpose,
                from_spec=from_spec,
                owner=owner, created_at=now(), heartbeat_at=now(),
            )
        )
        if partitions and conn.dialect.name == "postgresql":
            pg_partitions.ensure_attached(conn, new)
    if stale_scratch is not None:
        log.info("dropped the scratch generation %s of an interrupted verify", stale_scratch)
        drop_rows(engine, stale_scratch)
    return new, current.generation


def take_over(engine: Engine, generation: int, owner: str) -> None:
    """Become the builder of an interrupted generation (``--resume``)."""
    with engine.begin() as conn:
        _lock_all(conn)
        found = get(conn, generation)
        if found is None or found.status != GenerationStatus.BUILDING:
            raise RebuildError(f"generation {generation} is not being built; nothing to resume")
        if found.alive:
            raise refuse_running(found)
        conn.execute(
            update(generations)
            .where(generations.c.generation == generation)
            .values(owner=owner, heartbeat_at=now())
        )
        if conn.dialect.name == "postgresql":  # a bulk load killed before its attach
            pg_partitions.ensure_attached(conn, generation)


def mark_in_place(engine: Engine, owner: str, spec: str) -> int:
    """Record an in-place rebuild on the active row (so it is one at a time); returns it."""
    with engine.begin() as conn:
        _lock_all(conn)
        building = conn.execute(
            select(generations).where(generations.c.status == GenerationStatus.BUILDING)
        ).first()
        if building is not None:
            raise refuse_running(GenerationRecord.from_row(building._mapping))
        current = active(conn)
        if current.owner is not None and current.alive:
            raise refuse_running(current)
        conn.execute(
            update(generations)
            .where(generations.c.generation == current.generation)
            .values(owner=owner, heartbeat_at=now())
        )
        return current.generation


def heartbeat(engine: Engine, generation: int, owner: str) -> None:
    """Say we are still building; raises ``RebuildError`` if someone took it from us."""
    with engine.begin() as conn:
        done = conn.execute(
            update(generations)
            .where(generations.c.generation == generation, generations.c.owner == owner)
            .values(heartbeat_at=now())
        ).rowcount
    if not done:
        raise RebuildError(
            f"generation {generation} was taken over or discarded by another process; stopping"
        )


def release(engine: Engine, generation: int, owner: str, *, clear_owner: bool = False) -> None:
    """Mark our build as not running any more (it stays resumable)."""
    values: dict[str, Any] = {"heartbeat_at": None}
    if clear_owner:
        values["owner"] = None
    with engine.begin() as conn:
        conn.execute(
            update(generations)
            .where(generations.c.generation == generation, generations.c.owner == owner)
            .values(**values)
        )


# -- switching and dropping ----------------------------------------------------------
class NotCaughtUp(RebuildError):
    """The new generation is behind what the active one already serves."""

    def __init__(self, behind: dict[TopicPartition, int]) -> None:
        super().__init__(f"{len(behind)} partition(s) behind the active generation")
        self.behind = behind


def offsets_of(conn: Connection, generation: int) -> dict[TopicPartition, int]:
    rows = conn.execute(
        select(projection_offsets.c.topic, projection_offsets.c.partition,
               projection_offsets.c.next_offset)
        .where(projection_offsets.c.generation == generation)
    ).all()
    return {TopicPartition(r.topic, r.partition): int(r.next_offset) for r in rows}


def switch(engine: Engine, old: int, new: int, owner: str) -> None:
    """Make ``new`` active and ``old`` retired, atomically; raises ``NotCaughtUp``.

    Within the locked transaction the new generation must stand at least where the
    old one does on every partition, so the switch never serves older data.
    """
    with engine.begin() as conn:
        query = select(generations).where(generations.c.generation.in_([old, new]))
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        rows = {r.generation: GenerationRecord.from_row(r._mapping) for r in conn.execute(query)}
        if rows.get(old) is None or rows[old].status != GenerationStatus.ACTIVE:
            raise RebuildError(f"generation {old} is no longer active; not switching")
        building = rows.get(new)
        if building is None or building.status != GenerationStatus.BUILDING \
                or building.owner != owner:
            raise RebuildError(f"generation {new} is no longer ours to build; not switching")
        old_offsets, new_offsets = offsets_of(conn, old), offsets_of(conn, new)
        behind = {
            tp: offset for tp, offset in old_offsets.items() if new_offsets.get(tp, 0) < offset
        }
        if behind:
            raise NotCaughtUp(behind)
        stamp = now()
        conn.execute(
            update(generations).where(generations.c.generation == old)
            .values(status=GenerationStatus.RETIRED, owner=None, heartbeat_at=None)
        )
        conn.execute(
            update(generations).where(generations.c.generation == new)
            .values(
                status=GenerationStatus.ACTIVE, activated_at=stamp, owner=None, heartbeat_at=None
            )
        )


def discard(engine: Engine, generation: int) -> None:
    """Mark a building generation failed (its builder, if any, stops) and delete its rows."""
    with engine.begin() as conn:
        _lock_all(conn)
        conn.execute(
            update(generations)
            .where(
                generations.c.generation == generation,
                generations.c.status == GenerationStatus.BUILDING,
            )
            .values(status=GenerationStatus.FAILED, heartbeat_at=None)
        )
    drop_rows(engine, generation)


def forget(engine: Engine, generation: int) -> None:
    """Delete a scratch generation entirely: its rows, then its ``generations`` row."""
    with engine.begin() as conn:
        conn.execute(
            update(generations)
            .where(generations.c.generation == generation)
            .values(status=GenerationStatus.FAILED, heartbeat_at=None)
        )
    drop_rows(engine, generation)
    with engine.begin() as conn:
        conn.execute(delete(generations).where(
            generations.c.generation == generation, generations.c.status == GenerationStatus.FAILED
        ))


def drop_rows(engine: Engine, generation: int) -> int:
    """Drop a non-active generation's rows; returns how many.

    On PostgreSQL its partitions are detached and dropped (``projector.store.
    partitions``); on SQLite, and for the dead letters, rows are deleted a chunk per
    transaction, so the live projector (one writer at a time on SQLite) is never held
    up for long.
    """
    with engine.connect() as conn:
        found = get(conn, generation)
    if found is not None and found.status == GenerationStatus.ACTIVE:
        raise RebuildError(f"refusing to drop the rows of the active generation {generation}")
    total = 0
    chunked: list[tuple[Any, Any]] = [(dead_letters, dead_letters.c.id)]
    if engine.dialect.name == "postgresql":
        total += pg_partitions.detach_and_drop(engine, generation)
    else:
        chunked = [
            (deliveries, deliveries.c.delivery_id),
            (delivery_events, delivery_events.c.event_id),
            *chunked,
        ]
    for table, key in chunked:
        while True:
            chunk = (
                select(key).where(table.c.generation == generation).limit(DELETE_CHUNK)
                .scalar_subquery()
            )
            with engine.begin() as conn:
                gone = conn.execute(
                    delete(table).where(table.c.generation == generation, key.in_(chunk))
                ).rowcount
            total += gone
            if gone < DELETE_CHUNK:
                break
    with engine.begin() as conn:
        conn.execute(
            delete(projection_offsets).where(projection_offsets.c.generation == generation)
        )
    return total
