"""The first round of a rebuild as a bulk load (PostgreSQL), before the normal catch-up.

A rebuild into a new generation used to replay the live path into it: a batch at a
time through staging, locks, upserts into indexed tables. On PostgreSQL the new
generation's tables are partitions of its own, so the first round is instead a
bulk load (``projector.store.bulk``): the source read once up to the end offsets
seen now, COPYed into bare tables, each delivery folded once, indexed after, and
attached. What arrived meanwhile is then caught up through the normal path and
switched (``switch.Build.replay_and_switch``) as before.

SQLite, and ``PROJECTOR_REBUILD_BULK=0``, keep the replay of the live path.
"""

from __future__ import annotations

import logging

from projector.loop import Totals
from projector.rebuild.context import RebuildContext
from projector.rebuild.switch import Build
from projector.sources.base import MessageSource, TopicPartition

log = logging.getLogger("projector.rebuild")


def applies(ctx: RebuildContext) -> bool:
    """Whether this rebuild's first round is a bulk load (the bootstrap opened a loader)."""
    return ctx.bulk is not None


def bulk_round(
    build: Build,
    source: MessageSource,
    starts: dict[TopicPartition, int],
    targets: dict[TopicPartition, int],
) -> Totals:
    """Load ``source`` from ``starts`` to ``targets`` into the bare ``build.new``.

    On any failure the building generation is released with its offsets at
    ``starts`` and no partitions: ``--resume`` attaches empty ones and replays.
    """
    ctx = build.ctx
    assert ctx.bulk is not None
    totals = Totals()
    log.info("bulk-loading generation %s up to the end offsets seen now", build.new)
    try:
        loaded = ctx.bulk.load(
            build.new, source, starts, targets, heartbeat=ctx.heartbeat(build.new)
        )
    except BaseException:
        build.release()
        raise
    totals.add(loaded)
    return totals
