"""``projector verify``: replay into a scratch generation and diff it with the live one.

Same offsets: the live offsets are read, and the scratch projector replays exactly up
to them (``Mode.verifying``). The live projector keeps running, so the comparison
reads the live generation in one snapshot (REPEATABLE READ on PostgreSQL, one read
transaction on SQLite/WAL); if its offsets moved past the scratch's, the scratch is
extended (up to ``VERIFY_ROUNDS``) and, failing that, the deliveries that received
events beyond the scratch's offsets are left out of the diff and counted
(``skipped_moved``). The scratch generation is deleted at the end.
"""

from __future__ import annotations

import logging

from projector.loop import Mode
from projector.progress import Progress, Summary
from projector.rebuild.context import RebuildContext, catch_up, start_offsets
from projector.rebuild.requests import VerifyRequest
from projector.settings import Settings
from projector.sources.base import TopicPartition
from projector.store import ProjectionStore
from projector.store.verify import diff_generations
from schema.lifecycle import GenerationPurpose

log = logging.getLogger("projector.rebuild")

#: Replays of the scratch generation before the deliveries that moved on are left out.
VERIFY_ROUNDS = 3


def run_verify(settings: Settings, request: VerifyRequest) -> Summary:
    """Replay into a scratch generation up to the live offsets and diff it row by row."""
    ctx = RebuildContext.open(settings)
    store, spec = ctx.store, request.spec
    source, partitions = ctx.assigned_source()
    reader = ctx.reader()
    scratch: int | None = None
    try:
        starts = start_offsets(source, partitions, spec)
        scratch, live = ctx.generations.create(
            purpose=GenerationPurpose.VERIFY, from_spec=spec.text, owner=ctx.owner
        )
        summary = Summary("verify", "verify", spec.text, scratch, live)
        limits = _live_limits(store, live, partitions, starts)
        starts = {tp: min(starts[tp], limits[tp]) for tp in partitions}
        store.set_offsets(scratch, starts)
        with Progress("verify", starts, also=ctx.heartbeat(scratch)) as progress:
            projector = ctx.projector(source, Mode.verifying(scratch), progress)
            for attempt in range(1, VERIFY_ROUNDS + 1):
                catch_up(projector, limits, "verify", scratch)
                result = diff_generations(
                    reader, live, scratch, request.limit, final=attempt == VERIFY_ROUNDS
                )
                if result is not None:
                    break
                limits = _live_limits(store, live, partitions, starts)
                log.info("the live generation moved on during the replay; extending the scratch")
            progress.final(store.offsets(scratch), limits, projector.totals)
        assert result is not None
        summary.take(projector.totals)
        summary.differences, summary.skipped_moved, summary.first_differences = result
    finally:
        source.close()
        reader.dispose()
        if scratch is not None:
            ctx.generations.forget(scratch)
    return summary


def _live_limits(
    store: ProjectionStore,
    live: int,
    partitions: list[TopicPartition],
    starts: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Where the live generation stands; a partition it never read stands at its start."""
    stored = store.offsets(live)
    return {tp: stored.get(tp, starts[tp]) for tp in partitions}
