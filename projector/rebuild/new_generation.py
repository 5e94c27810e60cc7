"""A rebuild into a new generation from the topic, and its ``--resume`` and ``--discard``.

Create generation G+1 (``building``), set its offsets to the SPEC, bulk-load it up
to the end offsets seen now on PostgreSQL (``bulk``), replay into it with its own
projector (no consumer group; the live one is not disturbed), and once
it stands at least where the active generation G stands on every partition, switch
(``switch.Build``). The live projector, which follows the active generation, is
refused its next batch on G (GenerationChanged) and continues in G+1 from G+1's
offsets. G's rows are then deleted unless ``--keep-old``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from projector.errors import RebuildError
from projector.progress import Summary
from projector.rebuild import bulk
from projector.rebuild.context import RebuildContext, start_offsets
from projector.rebuild.from_history import HISTORY_SPEC, continue_from_history
from projector.rebuild.switch import Build, retire
from projector.sources.base import MessageSource, TopicPartition
from projector.spec import OffsetSpec, parse_spec
from projector.store.generations import refuse_running
from schema.lifecycle import GenerationPurpose, GenerationStatus

log = logging.getLogger("projector.rebuild")


def new_generation(
    ctx: RebuildContext,
    spec: OffsetSpec,
    *,
    keep_old: bool,
    allow_empty: bool = False,
    allow_loss: bool = False,
) -> Summary:
    source, partitions = ctx.assigned_source()
    try:
        ctx.guard_retention(source, partitions, allow_loss=allow_loss)
        starts = start_offsets(source, partitions, spec)
        if not allow_empty:
            _refuse_empty(ctx, source, partitions, starts, spec)
        in_bulk = bulk.applies(ctx)
        new, old = ctx.generations.create(
            purpose=GenerationPurpose.REBUILD, from_spec=spec.text, owner=ctx.owner,
            partitions=not in_bulk,
        )
        log.info("building generation %s from %s while generation %s serves", new, spec.text, old)
        build = Build(ctx, new, old, Summary("rebuild", "new-generation", spec.text, new, old))
        try:
            ctx.store.set_offsets(new, starts)
        except BaseException:
            build.release()
            raise
        if in_bulk:
            totals = bulk.bulk_round(build, source, starts, source.end_offsets(partitions))
            stored = ctx.store.offsets(new)
            build.replay_and_switch(source, partitions, stored, totals=totals)
        else:
            build.replay_and_switch(source, partitions, starts)
    finally:
        source.close()
    retire(ctx, build.summary, keep_old)
    return build.summary


def resume(ctx: RebuildContext, *, keep_old: bool) -> Summary:
    """Continue an interrupted rebuild from its stored offsets (or its history)."""
    found = ctx.generations.running_build()
    if (
        found is None
        or found.status != GenerationStatus.BUILDING
        or found.purpose != GenerationPurpose.REBUILD
    ):
        raise RebuildError("there is no interrupted rebuild to resume")
    ctx.generations.take_over(found.generation, ctx.owner)
    spec_text = found.from_spec or "earliest"
    if spec_text == HISTORY_SPEC:
        old = ctx.generations.active_number()
        log.info("resuming generation %s from the history of generation %s", found.generation, old)
        summary = Summary("rebuild", "resume", spec_text, found.generation, old)
        continue_from_history(Build(ctx, found.generation, old, summary))
        retire(ctx, summary, keep_old)
        return summary
    source, partitions = ctx.assigned_source()
    try:
        stored = ctx.store.offsets(found.generation)
        missing = [tp for tp in partitions if tp not in stored]
        if missing:  # killed between creating the generation and setting its offsets
            starts = start_offsets(source, partitions, parse_spec(spec_text))
            ctx.store.set_offsets(found.generation, {tp: starts[tp] for tp in missing})
            stored.update({tp: starts[tp] for tp in missing})
        old = ctx.generations.active_number()
        log.info(
            "resuming generation %s (from %s) at its stored offsets", found.generation, spec_text
        )
        summary = Summary("rebuild", "resume", spec_text, found.generation, old)
        Build(ctx, found.generation, old, summary).replay_and_switch(source, partitions, stored)
    finally:
        source.close()
    retire(ctx, summary, keep_old)
    return summary


def discard(ctx: RebuildContext) -> Summary:
    """Give an interrupted rebuild up: its generation and everything it wrote go."""
    found = ctx.generations.running_build()
    if found is None or found.status != GenerationStatus.BUILDING:
        raise RebuildError("there is no interrupted rebuild to discard")
    if found.alive:
        raise refuse_running(found)
    ctx.generations.discard(found.generation)
    log.info("discarded generation %s (%s)", found.generation, found.describe())
    current = ctx.generations.active_number()
    return Summary("rebuild", "discard", found.from_spec or "earliest", found.generation, current)


def _refuse_empty(
    ctx: RebuildContext,
    source: MessageSource,
    partitions: Sequence[TopicPartition],
    starts: dict[TopicPartition, int],
    spec: OffsetSpec,
) -> None:
    """A SPEC past every end (a mistyped year in @TIME) would swap the model for an empty one."""
    ends = source.end_offsets(partitions)
    if any(starts[tp] < ends.get(tp, 0) for tp in partitions):
        return
    current, held = ctx.generations.events_held()
    if held:
        raise RebuildError(
            f"--from-offset {spec.text} leaves nothing to replay: the new generation would be"
            f" empty while generation {current} holds {held} events; pass --allow-empty to do it"
        )
